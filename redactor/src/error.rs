//! Errors returned when building a [`Redactor`](crate::Redactor).

/// Why a set of secrets was refused.
///
/// No variant ever carries the secret value, so an error can be logged or shown as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A secret is shorter than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN). Masking very short
    /// values would mask ordinary words all over the output, so they are refused when they are
    /// set rather than silently ignored.
    #[error("a secret is {len} bytes long; secrets must be at least {min} bytes")]
    TooShort {
        /// Length of the refused secret, in bytes.
        len: usize,
        /// The minimum length.
        min: usize,
    },
    /// A secret is longer than [`MAX_SECRET_LEN`](crate::MAX_SECRET_LEN). The redactor holds
    /// back up to one pattern length of output, so the longest secret bounds its memory.
    #[error("a secret is {len} bytes long; secrets may be at most {max} bytes")]
    TooLong {
        /// Length of the refused secret, in bytes.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// The secrets and their derived forms add up to more patterns than one redactor indexes.
    #[error("the secrets expand to {count} patterns; at most {max} are supported")]
    TooManyPatterns {
        /// Number of distinct patterns the secrets expanded to.
        count: usize,
        /// The maximum number of patterns.
        max: usize,
    },
}
