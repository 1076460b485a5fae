//! Which bytes of the output are secret, and how they are written out.
//!
//! Every byte inside an occurrence of a pattern is secret. Occurrences are kept as merged runs
//! (overlapping or touching occurrences become one run), and each run is written as a single
//! [`MASK`]. The state survives across chunks: a run may start in one chunk and
//! end in a later one, and a run that touches the previous one continues its mask.

use std::collections::VecDeque;

use crate::MASK;

/// Secret runs not yet fully written, in absolute stream positions.
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    /// Sorted, disjoint and non-touching half-open ranges `[start, end)`.
    runs: VecDeque<(u64, u64)>,
    /// The last byte written out was secret: a run continuing from it writes no new mask.
    mask_open: bool,
    /// Masks written since the coverage was created (not reset by [`Coverage::reset`]).
    masks: u64,
}

impl Coverage {
    /// Marks `[start, end)` as secret.
    #[inline]
    pub(crate) fn add(&mut self, start: u64, end: u64) {
        match self.runs.back_mut() {
            Some(last) if start > last.1 => self.runs.push_back((start, end)),
            Some(last) if start >= last.0 => last.1 = last.1.max(end),
            None => self.runs.push_back((start, end)),
            Some(_) => self.add_anywhere(start, end),
        }
    }

    /// The general case of [`Coverage::add`]: merge with every run the range touches.
    fn add_anywhere(&mut self, mut start: u64, mut end: u64) {
        let first = self.runs.partition_point(|&(_, e)| e < start);
        let mut last = first;
        while last < self.runs.len() && self.runs[last].0 <= end {
            start = start.min(self.runs[last].0);
            end = end.max(self.runs[last].1);
            last += 1;
        }
        self.runs.drain(first..last);
        self.runs.insert(first, (start, end));
    }

    /// Writes positions `[from, to)` to `out`: clear bytes through `copy(out, a, b)`, each
    /// secret run as one mask. `from` is where the previous call stopped.
    pub(crate) fn emit(
        &mut self,
        from: u64,
        to: u64,
        out: &mut Vec<u8>,
        mut copy: impl FnMut(&mut Vec<u8>, u64, u64),
    ) {
        let mut at = from;
        while at < to {
            let Some(&(start, end)) = self.runs.front() else {
                break;
            };
            if start >= to {
                break;
            }
            if start > at {
                copy(out, at, start);
                self.mask_open = false;
            }
            if !self.mask_open {
                out.extend_from_slice(MASK);
                self.mask_open = true;
                self.masks += 1;
            }
            if end <= to {
                self.runs.pop_front();
                at = end;
            } else {
                at = to;
            }
        }
        if at < to {
            copy(out, at, to);
            self.mask_open = false;
        }
    }

    /// Forgets the runs of a finished stream; the count of masks written stays.
    pub(crate) fn reset(&mut self) {
        self.runs.clear();
        self.mask_open = false;
    }

    /// Masks written so far.
    pub(crate) fn masks(&self) -> u64 {
        self.masks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(coverage: &mut Coverage, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        coverage.emit(0, text.len() as u64, &mut out, |out, a, b| {
            out.extend_from_slice(&text[a as usize..b as usize])
        });
        out
    }

    #[test]
    fn overlapping_and_touching_runs_become_one_mask() {
        let mut c = Coverage::default();
        c.add(2, 5);
        c.add(4, 7);
        c.add(7, 9);
        assert_eq!(render(&mut c, b"0123456789"), b"01***9");
    }

    #[test]
    fn runs_added_out_of_order_are_merged() {
        let mut c = Coverage::default();
        c.add(6, 8);
        c.add(1, 2);
        c.add(2, 6);
        assert_eq!(render(&mut c, b"0123456789"), b"0***89");
    }

    #[test]
    fn a_run_split_over_two_emits_writes_one_mask() {
        let text = b"0123456789";
        let mut c = Coverage::default();
        c.add(3, 7);
        let mut out = Vec::new();
        let copy = |out: &mut Vec<u8>, a: u64, b: u64| {
            out.extend_from_slice(&text[a as usize..b as usize])
        };
        c.emit(0, 5, &mut out, copy);
        c.emit(5, 10, &mut out, copy);
        assert_eq!(out, b"012***789");
    }
}
