//! [`Redactor`]: the immutable, shareable set of patterns built from a run's secrets.

use std::fmt;

use crate::forms::derived_forms;
use crate::patterns::PatternSet;
use crate::qgram::{MAX_PATTERNS, QgramIndex};
use crate::scanner::Scanner;
use crate::{Error, MAX_SECRET_LEN, MIN_SECRET_LEN};

/// Masks a fixed set of secrets, and their derived forms, in output.
///
/// Immutable once built, `Send + Sync`: build it once per job and share it through an
/// [`Arc`](std::sync::Arc) between the [`StreamRedactor`](crate::StreamRedactor)s of the job's
/// output streams. The pattern bytes (and every table derived from them) are wiped when the
/// last reference is dropped. `Debug` shows only the number of patterns.
pub struct Redactor {
    pub(crate) patterns: PatternSet,
    pub(crate) index: QgramIndex,
}

impl Redactor {
    /// Builds a redactor for `secrets`, adding every derived form the crate documentation
    /// lists.
    ///
    /// # Errors
    ///
    /// [`Error::TooShort`] if a secret is shorter than [`MIN_SECRET_LEN`] (the empty value
    /// included), [`Error::TooLong`] if one is longer than [`MAX_SECRET_LEN`], and
    /// [`Error::TooManyPatterns`] if the set is too large to index.
    pub fn new<I, S>(secrets: I) -> Result<Redactor, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Redactor::build(secrets, QgramIndex::new)
    }

    /// A redactor whose index has the large-set layout (grids split by length, starts
    /// indexed by their first two bytes) however small the set is, so that tests exercise the
    /// code paths of large sets.
    #[cfg(test)]
    pub(crate) fn with_split_grids<I, S>(secrets: I) -> Result<Redactor, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Redactor::build(secrets, |patterns| QgramIndex::with_layout(patterns, 0, 0))
    }

    fn build<I, S>(
        secrets: I,
        index: impl FnOnce(&PatternSet) -> QgramIndex,
    ) -> Result<Redactor, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut forms = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.len() < MIN_SECRET_LEN {
                return Err(Error::TooShort {
                    len: secret.len(),
                    min: MIN_SECRET_LEN,
                });
            }
            if secret.len() > MAX_SECRET_LEN {
                return Err(Error::TooLong {
                    len: secret.len(),
                    max: MAX_SECRET_LEN,
                });
            }
            forms.extend(derived_forms(secret, MIN_SECRET_LEN));
        }
        let patterns = PatternSet::new(forms);
        if patterns.len() >= MAX_PATTERNS {
            return Err(Error::TooManyPatterns {
                count: patterns.len(),
                max: MAX_PATTERNS - 1,
            });
        }
        let index = index(&patterns);
        Ok(Redactor { patterns, index })
    }

    /// A redactor that masks nothing, for runs without secrets.
    pub fn empty() -> Redactor {
        let patterns = PatternSet::new(Vec::new());
        let index = QgramIndex::new(&patterns);
        Redactor { patterns, index }
    }

    /// Masks a whole buffer at once.
    ///
    /// The result is exactly what a [`StreamRedactor`](crate::StreamRedactor) produces for the
    /// same bytes, however they are split into chunks.
    pub fn redact(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        let mut scanner = Scanner::new(self);
        scanner.push(self, input, &mut out);
        scanner.finish(&mut out);
        out
    }

    /// Number of distinct patterns: the secrets and all their derived forms.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Length of the longest pattern; a stream never holds back more than this many bytes
    /// (0 for a redactor without secrets).
    pub fn max_pattern_len(&self) -> usize {
        self.patterns.max_len()
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.pattern_count())
            .finish_non_exhaustive()
    }
}
