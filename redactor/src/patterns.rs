//! The set of byte strings the redactor masks: every secret and its derived forms, without
//! duplicates, stored back to back in one buffer that is wiped when dropped.

use zeroize::Zeroizing;

use crate::forms::SecretBytes;

/// Distinct patterns, addressed by a dense id (`0..len()`).
pub(crate) struct PatternSet {
    bytes: Zeroizing<Vec<u8>>,
    /// `(start, len)` of each pattern in `bytes`.
    spans: Vec<(usize, usize)>,
    max_len: usize,
}

impl PatternSet {
    /// Builds the set; duplicates (the same form reached from two secrets) are kept once.
    pub(crate) fn new(mut forms: Vec<SecretBytes>) -> PatternSet {
        forms.sort_unstable_by(|a, b| a.as_slice().cmp(b.as_slice()));
        forms.dedup_by(|a, b| a.as_slice() == b.as_slice());
        let total = forms.iter().map(|f| f.len()).sum();
        let mut bytes = Zeroizing::new(Vec::with_capacity(total));
        let mut spans = Vec::with_capacity(forms.len());
        for form in &forms {
            spans.push((bytes.len(), form.len()));
            bytes.extend_from_slice(form);
        }
        let max_len = spans.iter().map(|&(_, len)| len).max().unwrap_or(0);
        PatternSet {
            bytes,
            spans,
            max_len,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The bytes of pattern `id`.
    #[inline]
    pub(crate) fn get(&self, id: usize) -> &[u8] {
        let (start, len) = self.spans[id];
        &self.bytes[start..start + len]
    }

    /// Length of pattern `id`, without touching its bytes.
    #[inline]
    pub(crate) fn len_of(&self, id: usize) -> usize {
        self.spans[id].1
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|id| self.get(id))
    }

    /// Length of the longest pattern (0 when empty).
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }
}
