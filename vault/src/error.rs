//! The one error type of this crate.
//!
//! No variant ever carries plaintext: a secret's value never reaches an error message,
//! and neither does key material. Names and targets do appear, because they are not
//! secret and an operator needs them to see what went wrong.

use crate::KeyId;
use std::path::PathBuf;

/// Everything that can go wrong while handling keys or sealing and opening secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The secret was sealed to another target's key than the one held here.
    #[error("secret was sealed for key {sealed_for}, but this keypair is {have}")]
    WrongKey {
        /// Key id recorded in the sealed secret.
        sealed_for: KeyId,
        /// Key id of the keypair that tried to open it.
        have: KeyId,
    },
    /// The sealed secret opened, but it was sealed under another secret name: the
    /// ciphertext was moved between names.
    #[error("sealed secret belongs to secret name {found:?}, expected {expected:?}")]
    NameMismatch {
        /// Name the caller asked for.
        expected: String,
        /// Name bound inside the envelope.
        found: String,
    },
    /// The sealed secret opened, but it was sealed for another target: the ciphertext
    /// was moved between targets.
    #[error("sealed secret belongs to target {found:?}, expected {expected:?}")]
    TargetMismatch {
        /// Target the caller asked for.
        expected: String,
        /// Target bound inside the envelope.
        found: String,
    },
    /// Authentication failed: the ciphertext was modified, or it was sealed to a
    /// different key than its key id claims.
    #[error(
        "sealed secret failed authentication: the ciphertext was tampered with or sealed to another key"
    )]
    Tampered,
    /// The ciphertext is too short to be a sealed envelope.
    #[error("sealed secret is truncated: {len} bytes of ciphertext, at least {min} needed")]
    Truncated {
        /// Decoded ciphertext length.
        len: usize,
        /// Minimum length of a sealed envelope.
        min: usize,
    },
    /// The sealed secret or its envelope uses a format version this build cannot read.
    #[error("unsupported sealed secret version {0} (this build reads version {v})", v = crate::ENVELOPE_VERSION)]
    UnsupportedVersion(u8),
    /// The ciphertext authenticated but does not hold a well-formed envelope (it was
    /// sealed by something other than this crate).
    #[error("sealed secret holds a malformed envelope: {0}")]
    MalformedEnvelope(&'static str),
    /// The `ciphertext` field is not valid standard base64.
    #[error("sealed secret ciphertext is not valid base64: {0}")]
    InvalidCiphertext(#[source] base64::DecodeError),
    /// A name or target is too long to fit the envelope's 16-bit length field.
    #[error("{field} is {len} bytes long; at most 65535 bytes fit in an envelope")]
    FieldTooLong {
        /// `"name"` or `"target"`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// Sealing failed inside the cipher (cannot happen for in-memory buffers, kept so
    /// that an upstream change surfaces as an error rather than a panic).
    #[error("sealing failed")]
    Seal,
    /// A key file is readable or writable by group or others.
    #[error(
        "key file {} has mode {mode:04o}: it must not be accessible by group or others (run: chmod 600 {})",
        path.display(),
        path.display()
    )]
    LoosePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Refused to overwrite an existing key file.
    #[error("key file {} already exists; refusing to overwrite it", path.display())]
    KeyFileExists {
        /// The key file.
        path: PathBuf,
    },
    /// Reading or writing a key file failed.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file exists but is not in the expected format.
    #[error("key file {} is not a sealrun target key: {reason}", path.display())]
    InvalidKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never its contents).
        reason: &'static str,
    },
    /// A public key in text form could not be parsed, or is unusable.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    /// A key id in text form is not of the form `k1_` + 32 lowercase hex digits.
    #[error("invalid key id {0:?}: expected \"k1_\" followed by 32 lowercase hex digits")]
    InvalidKeyId(String),
}
