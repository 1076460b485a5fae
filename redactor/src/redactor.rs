//! [`Redactor`]: the immutable, shareable index built from a run's secrets.

use std::fmt;

use crate::forms::{Form, Value, forms_of, values_of};
use crate::index::Index;
use crate::scanner::Scanner;
use crate::{Error, MAX_SECRET_LEN, MIN_SECRET_LEN};

/// Masks a fixed set of secrets, and every covered encoding of every run of them, in output.
///
/// Immutable once built, `Send + Sync`: build it once per job and share it through an
/// [`Arc`](std::sync::Arc) between the [`StreamRedactor`](crate::StreamRedactor)s of the job's
/// output streams. Every table derived from the secrets is wiped when the last reference is
/// dropped. `Debug` shows only counts.
pub struct Redactor {
    pub(crate) values: Vec<Value>,
    pub(crate) forms: Vec<Form>,
    pub(crate) index: Index,
    /// Per value: the form that is the value itself...
    pub(crate) raw_forms: Vec<u32>,
    /// ...and its text forms whose own-byte grams are indexed there (see `Form::plain`).
    pub(crate) companions: Vec<Vec<u32>>,
}

/// How much a stream may hold back per byte of the longest form: the layout a form's
/// characters may be spread over (line breaks, indentation, dump columns) included.
const HOLD_BACK_PER_FORM_BYTE: usize = 64;

impl Redactor {
    /// Builds a redactor for `secrets`: every secret, its readings and structured values, and
    /// every form the crate documentation lists.
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
        let mut values: Vec<Value> = Vec::new();
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
            for value in values_of(secret) {
                if !values.iter().any(|v| *v.bytes == *value.bytes) {
                    values.push(value);
                }
            }
        }
        let forms = forms_of(&values);
        let shortest = forms
            .iter()
            .map(|f| f.shortest_run(values[f.value as usize].need as usize))
            .min()
            .unwrap_or(usize::MAX);
        let long: Vec<bool> = forms
            .iter()
            .map(|f| values[f.value as usize].need as usize >= crate::RUN_LEN)
            .collect();
        let index = Index::new(&forms, shortest, &long).map_err(|too| Error::TooManyPatterns {
            count: too.0,
            max: u32::MAX as usize - 1,
        })?;
        let mut raw_forms = vec![u32::MAX; values.len()];
        let mut companions = vec![Vec::new(); values.len()];
        for (id, form) in forms.iter().enumerate() {
            let v = form.value as usize;
            if raw_forms[v] == u32::MAX {
                // The value itself is its first form.
                raw_forms[v] = id as u32;
            } else if form.plain.is_some() {
                companions[v].push(id as u32);
            }
        }
        Ok(Redactor {
            values,
            forms,
            index,
            raw_forms,
            companions,
        })
    }

    /// A redactor that masks nothing, for runs without secrets.
    pub fn empty() -> Redactor {
        // Infallible: an empty set indexes nothing.
        Redactor::new(std::iter::empty::<&[u8]>()).unwrap_or_else(|_| unreachable!())
    }

    /// Masks a whole buffer at once.
    ///
    /// The result is exactly what a [`StreamRedactor`](crate::StreamRedactor) produces for the
    /// same bytes, however they are split into chunks.
    pub fn redact(&self, input: &[u8]) -> Vec<u8> {
        self.redact_counted(input).0
    }

    /// [`Redactor::redact`], with the number of masks written (each `***`).
    pub fn redact_counted(&self, input: &[u8]) -> (Vec<u8>, u64) {
        let mut out = Vec::with_capacity(input.len());
        let mut scanner = Scanner::new(self);
        scanner.push(self, input, &mut out);
        scanner.finish(self, &mut out);
        (out, scanner.masks())
    }

    /// Number of distinct encoded forms indexed: for each value (a secret, its readings and
    /// its structured values), one per covered transform that spells it differently.
    pub fn pattern_count(&self) -> usize {
        self.forms.len()
    }

    /// Length of the longest encoded form (0 for a redactor without secrets).
    pub fn max_pattern_len(&self) -> usize {
        self.forms.iter().map(|f| f.text.len()).max().unwrap_or(0)
    }

    /// The most bytes a stream ever holds back: the longest form spread over the layout a
    /// transform may put between its characters (line breaks, indentation, dump columns).
    pub fn max_hold_back(&self) -> usize {
        HOLD_BACK_PER_FORM_BYTE * self.max_pattern_len() + 128
    }

    /// Approximate heap memory held by the redactor, in bytes: the forms and their token
    /// tables, and the index.
    pub fn heap_bytes(&self) -> usize {
        let values: usize = self.values.iter().map(|v| v.bytes.len()).sum();
        let forms: usize = self
            .forms
            .iter()
            .map(|f| {
                f.text.len()
                    + f.tok_src.as_ref().map_or(0, |s| 4 * s.len())
                    + match &f.geometry {
                        crate::forms::Geometry::Table { starts, .. } => 4 * starts.len(),
                        _ => 0,
                    }
            })
            .sum();
        values + forms + self.index.heap_bytes()
    }

    /// Number of (gram, position) entries in the index: about one per character of every
    /// form.
    pub fn index_entries(&self) -> usize {
        self.index.entries()
    }

    /// The sampling stride: the output is read every this many bytes.
    pub fn stride(&self) -> usize {
        self.index.stride()
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &self.values.len())
            .field("patterns", &self.pattern_count())
            .field("index_entries", &self.index_entries())
            .finish_non_exhaustive()
    }
}
