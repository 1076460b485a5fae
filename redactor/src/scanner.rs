//! The matching engine shared by whole-buffer and streaming redaction.
//!
//! [`Redactor::redact`](crate::Redactor::redact) is one [`Scanner::push`] of the whole input
//! followed by [`Scanner::finish`], so the two paths run the same code and streaming output
//! equals whole-buffer output for any split of the input.
//!
//! A push samples the grids of the [q-gram index](crate::qgram) over the held-back bytes and
//! the new chunk, confirms hits, and records every complete occurrence in the [`Coverage`].
//! It then finds the longest suffix of the data that is a proper prefix of some pattern.
//! Every occurrence starting before that suffix is complete (otherwise its start would begin a
//! longer such suffix) and has been found (its grid position lies inside it), so everything
//! before the suffix is written out and only the suffix is kept: at most
//! `max_pattern_len - 1` bytes. Grid positions inside the kept suffix are sampled again on the
//! next push, because their occurrences may not have been complete yet.

use std::mem;

use zeroize::{Zeroize, Zeroizing};

use crate::Redactor;
use crate::coverage::Coverage;
use crate::patterns::PatternSet;
use crate::qgram::{Grid, HIT_BATCH, key};

/// During a large push, output is written out at least this often (in bytes of input) so the
/// list of secret runs stays short and the output is produced while the input is in cache.
const FLUSH_INTERVAL: u64 = 1 << 16;

/// The most grids an index has (see [`crate::qgram`]).
const MAX_GRIDS: usize = 3;

/// The held-back bytes (`head`) followed by a new chunk (`tail`), addressed by absolute
/// stream position. Only positions near the seam take the slow paths.
struct Hay<'a> {
    head: &'a [u8],
    tail: &'a [u8],
    /// Stream position of `head[0]`.
    origin: u64,
}

impl Hay<'_> {
    fn end(&self) -> u64 {
        self.origin + (self.head.len() + self.tail.len()) as u64
    }

    /// Stream position of `tail[0]`.
    fn tail_origin(&self) -> u64 {
        self.origin + self.head.len() as u64
    }

    fn byte(&self, pos: u64) -> u8 {
        let r = (pos - self.origin) as usize;
        match r.checked_sub(self.head.len()) {
            Some(t) => self.tail[t],
            None => self.head[r],
        }
    }

    /// The key of the `N` bytes at `pos` (`pos + N <= end`), wherever they lie.
    fn key<const N: usize>(&self, pos: u64) -> u64 {
        let r = (pos - self.origin) as usize;
        match r.checked_sub(self.head.len()) {
            Some(t) => key::<N>(&self.tail[t..]),
            None => {
                let mut bytes = [0u8; 8];
                for (k, b) in bytes[..N].iter_mut().enumerate() {
                    *b = self.byte(pos + k as u64);
                }
                let key = u64::from_le_bytes(bytes);
                bytes.zeroize();
                key
            }
        }
    }

    /// Whether `pattern` occurs at `pos` (`pos + pattern.len() <= end`).
    #[inline]
    fn matches(&self, pos: u64, pattern: &[u8]) -> bool {
        let r = (pos - self.origin) as usize;
        match r.checked_sub(self.head.len()) {
            // Most candidates differ early: comparing 8 bytes inline first saves a call.
            Some(t) if pattern.len() >= 8 => {
                let text = &self.tail[t..t + pattern.len()];
                key::<8>(text) == key::<8>(pattern) && text == pattern
            }
            Some(t) => self.tail[t..t + pattern.len()] == *pattern,
            None => {
                let in_head = (self.head.len() - r).min(pattern.len());
                self.head[r..r + in_head] == pattern[..in_head]
                    && self.tail[..pattern.len() - in_head] == pattern[in_head..]
            }
        }
    }

    /// Appends the bytes at `[from, to)` to `out`.
    fn copy(&self, out: &mut Vec<u8>, from: u64, to: u64) {
        let (a, b) = ((from - self.origin) as usize, (to - self.origin) as usize);
        let h = self.head.len();
        if a < h {
            out.extend_from_slice(&self.head[a..b.min(h)]);
        }
        if b > h {
            out.extend_from_slice(&self.tail[a.max(h) - h..b - h]);
        }
    }
}

/// Finds the occurrences of one grid's patterns in one push.
struct Sampler<'a> {
    hay: &'a Hay<'a>,
    patterns: &'a PatternSet,
    grid: &'a Grid,
}

impl Sampler<'_> {
    /// Samples the grid positions from `from` (one of them) up to `to` whose `N`-byte gram is
    /// available, recording the complete occurrences found; returns the first position not
    /// sampled.
    #[inline(always)]
    fn run<const N: usize>(&self, from: u64, to: u64, coverage: &mut Coverage) -> u64 {
        let hay = self.hay;
        let stride = self.grid.stride() as u64;
        let end = hay.end();
        let tail_origin = hay.tail_origin();
        let mut i = from;
        // Positions whose gram starts in the held-back bytes.
        while i < to && i + N as u64 <= end && i < tail_origin {
            let key = hay.key::<N>(i);
            if self.grid.may_contain(key) {
                self.confirm(i, key, coverage);
            }
            i += stride;
        }
        // The hot loop: positions inside the chunk, probed in batches.
        if i < to && i >= tail_origin {
            let tail = hay.tail;
            let mut r = (i - tail_origin) as usize;
            let r_end = ((to - tail_origin) as usize).min((tail.len() + 1).saturating_sub(N));
            let mut hits = [0usize; HIT_BATCH];
            while r < r_end {
                let (next, found) = self.grid.scan::<N>(tail, r, r_end, &mut hits);
                for &hit in &hits[..found] {
                    self.confirm(tail_origin + hit as u64, key::<N>(&tail[hit..]), coverage);
                }
                r = next;
            }
            i = tail_origin + r as u64;
        }
        i
    }

    /// Records every complete occurrence that has its grid position at `i`.
    #[inline(never)]
    fn confirm(&self, i: u64, key: u64, coverage: &mut Coverage) {
        let end = self.hay.end();
        for (id, offset) in self.grid.candidates(key) {
            let Some(p) = i.checked_sub(offset as u64) else {
                continue;
            };
            let len = self.patterns.len_of(id) as u64;
            // Before `origin`: written out already, so found by an earlier push.
            // Past `end`: not complete yet; this grid position is sampled again later.
            if p >= self.hay.origin && p + len <= end && self.hay.matches(p, self.patterns.get(id))
            {
                coverage.add(p, p + len);
            }
        }
    }
}

/// The state of one output stream.
pub(crate) struct Scanner {
    /// Bytes held back: they may be the start of a pattern. Never more than
    /// `max_pattern_len - 1`, within a capacity reserved up front so that the buffer is never
    /// reallocated (which would leave an unwiped copy behind).
    pending: Zeroizing<Vec<u8>>,
    /// Stream position of `pending[0]`: everything before it has been written out.
    start: u64,
    /// The next position to sample, per grid.
    next_sample: [u64; MAX_GRIDS],
    coverage: Coverage,
}

impl Scanner {
    pub(crate) fn new(redactor: &Redactor) -> Scanner {
        Scanner {
            pending: Zeroizing::new(Vec::with_capacity(redactor.max_pattern_len())),
            start: 0,
            next_sample: [0; MAX_GRIDS],
            coverage: Coverage::default(),
        }
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Scans `chunk` (following the held-back bytes) and appends to `out` every byte that can
    /// no longer be part of an undecided occurrence.
    pub(crate) fn push(&mut self, redactor: &Redactor, chunk: &[u8], out: &mut Vec<u8>) {
        let patterns = &redactor.patterns;
        let grids = redactor.index.grids();
        if patterns.is_empty() {
            out.extend_from_slice(chunk);
            return;
        }
        let head = mem::take(&mut *self.pending);
        let hay = Hay {
            head: &head,
            tail: chunk,
            origin: self.start,
        };
        let end = hay.end();
        // No occurrence starting before `hold_floor` can still be incomplete.
        let hold_floor = end.saturating_sub(patterns.max_len() as u64 - 1);
        let coverage = &mut self.coverage;
        let mut emitted = self.start;
        let mut next = self.next_sample;

        let mut block_start = self.start;
        loop {
            let block_end = (block_start + FLUSH_INTERVAL).min(end);
            for (grid, next) in grids.iter().zip(next.iter_mut()) {
                let sampler = Sampler {
                    hay: &hay,
                    patterns,
                    grid,
                };
                *next = match grid.key_len() {
                    8 => sampler.run::<8>(*next, block_end, coverage),
                    _ => sampler.run::<4>(*next, block_end, coverage),
                };
            }
            // Every occurrence starting at or before a grid's last sampled position is known.
            let safe = grids
                .iter()
                .zip(next)
                .map(|(grid, next)| (next + 1).saturating_sub(grid.stride() as u64))
                .min()
                .unwrap_or(end)
                .min(hold_floor);
            if safe > emitted {
                coverage.emit(emitted, safe, out, |out, a, b| hay.copy(out, a, b));
                emitted = safe;
            }
            if block_end == end {
                break;
            }
            block_start = block_end;
        }

        // Hold back the longest suffix that is a proper prefix of some pattern.
        let mut keep = emitted.max(hold_floor);
        while keep < end && !is_proper_prefix(redactor, &hay, keep) {
            keep += 1;
        }
        coverage.emit(emitted, keep, out, |out, a, b| hay.copy(out, a, b));

        let mut head = head;
        let skip = (keep - self.start) as usize;
        if skip < head.len() {
            head.copy_within(skip.., 0);
            head.truncate(head.len() - skip);
            head.extend_from_slice(chunk);
        } else {
            let from = skip - head.len();
            head.clear();
            head.extend_from_slice(&chunk[from..]);
        }
        debug_assert!(head.len() < patterns.max_len());
        *self.pending = head;
        self.start = keep;
        // Grid positions from `keep` on are sampled again: their occurrences may not have been
        // complete. Unsampled positions before `keep` can only start occurrences before `keep`,
        // which are complete and so were found at their own grid positions.
        for ((grid, next), slot) in grids.iter().zip(next).zip(self.next_sample.iter_mut()) {
            let stride = grid.stride() as u64;
            let first_kept = keep.div_ceil(stride) * stride;
            *slot = if next >= keep {
                next.min(first_kept)
            } else {
                first_kept
            };
        }
    }

    /// Writes out the held-back bytes and makes the scanner ready for a new stream.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        let mut head = mem::take(&mut *self.pending);
        let hay = Hay {
            head: &head,
            tail: &[],
            origin: self.start,
        };
        self.coverage
            .emit(self.start, hay.end(), out, |out, a, b| hay.copy(out, a, b));
        head.zeroize();
        *self.pending = head;
        self.start = 0;
        self.next_sample = [0; MAX_GRIDS];
        self.coverage.reset();
    }
}

/// Whether the bytes from `pos` to the end of `hay` are a proper prefix of some pattern.
fn is_proper_prefix(redactor: &Redactor, hay: &Hay<'_>, pos: u64) -> bool {
    let len = (hay.end() - pos) as usize;
    if len < 8 {
        let mut text = [0u8; 8];
        for (k, b) in text[..len].iter_mut().enumerate() {
            *b = hay.byte(pos + k as u64);
        }
        let found = redactor.index.is_short_prefix(&text[..len]);
        text.zeroize();
        return found;
    }
    let patterns = &redactor.patterns;
    redactor.index.starting_with(hay.key::<8>(pos)).any(|id| {
        let pattern = patterns.get(id);
        pattern.len() > len && hay.matches(pos, &pattern[..len])
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::MASK;

    /// The definition, computed the slow way: mark every byte inside any occurrence of any
    /// pattern, then replace each maximal marked run with one mask.
    fn oracle(redactor: &Redactor, input: &[u8]) -> Vec<u8> {
        let mut secret = vec![false; input.len()];
        for pattern in redactor.patterns.iter() {
            for p in 0..input.len().saturating_sub(pattern.len() - 1) {
                if input[p..].starts_with(pattern) {
                    secret[p..p + pattern.len()]
                        .iter_mut()
                        .for_each(|s| *s = true);
                }
            }
        }
        let mut out = Vec::new();
        for (k, &b) in input.iter().enumerate() {
            if !secret[k] {
                out.push(b);
            } else if k == 0 || !secret[k - 1] {
                out.extend_from_slice(MASK);
            }
        }
        out
    }

    fn streamed(redactor: &Redactor, input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize) {
        let mut scanner = Scanner::new(redactor);
        let mut out = Vec::new();
        let mut max_pending = 0;
        let mut at = 0;
        for &cut in cuts {
            let cut = cut.clamp(at, input.len());
            scanner.push(redactor, &input[at..cut], &mut out);
            max_pending = max_pending.max(scanner.pending_len());
            at = cut;
        }
        scanner.push(redactor, &input[at..], &mut out);
        max_pending = max_pending.max(scanner.pending_len());
        scanner.finish(&mut out);
        (out, max_pending)
    }

    /// Secrets and text over a tiny alphabet, so that occurrences overlap, touch and nearly
    /// match all the time; secret lengths up to 40 exercise strides up to 32.
    fn case() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>, Vec<usize>)> {
        let secret = (8usize..40).prop_flat_map(|len| {
            proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n')], len)
        });
        (proptest::collection::vec(secret, 1..5), proptest::collection::vec(0usize..8, 0..300))
            .prop_flat_map(|(secrets, picks)| {
                // Text: random bytes interleaved with copies of the secrets.
                let text = proptest::collection::vec(
                    prop_oneof![
                        3 => proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n'), Just(b'c')], 0..6),
                        1 => (0..secrets.len()).prop_map({ let s = secrets.clone(); move |k| s[k].clone() }),
                    ],
                    0..30,
                )
                .prop_map(|parts| parts.concat());
                let _ = picks;
                (Just(secrets), text, proptest::collection::vec(0usize..400, 0..40))
            })
            .prop_map(|(secrets, text, mut cuts)| {
                cuts.sort_unstable();
                (secrets, text, cuts)
            })
    }

    /// Both index layouts: one grid (small sets) and the split into grids by pattern length
    /// and alphabet (large sets).
    fn redactors(secrets: &[Vec<u8>]) -> [Redactor; 2] {
        [
            Redactor::new(secrets).unwrap(),
            Redactor::with_split_grids(secrets).unwrap(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn whole_buffer_output_is_the_definition((secrets, text, _cuts) in case()) {
            for redactor in redactors(&secrets) {
                prop_assert_eq!(redactor.redact(&text), oracle(&redactor, &text));
            }
        }

        #[test]
        fn any_split_gives_the_definition_and_holds_back_less_than_a_pattern((secrets, text, cuts) in case()) {
            for redactor in redactors(&secrets) {
                let (out, max_pending) = streamed(&redactor, &text, &cuts);
                prop_assert_eq!(out, oracle(&redactor, &text));
                prop_assert!(max_pending < redactor.max_pattern_len());
            }
        }

        #[test]
        fn one_byte_chunks_give_the_definition((secrets, text, _cuts) in case()) {
            let cuts: Vec<usize> = (0..text.len()).collect();
            for redactor in redactors(&secrets) {
                prop_assert_eq!(streamed(&redactor, &text, &cuts).0, oracle(&redactor, &text));
            }
        }
    }

    #[test]
    fn split_grids_put_short_long_and_hex_patterns_on_separate_grids() {
        let redactor = Redactor::with_split_grids([
            &b"0123456789abcdef0123"[..],
            b"tiny-sec",
            b"short-secret",
            b"a-much-longer-secret-value",
        ])
        .unwrap();
        assert_eq!(redactor.index.grids().len(), 3);
    }

    /// The held-back bytes are exactly the longest suffix that is a proper prefix of a pattern.
    #[test]
    fn holds_back_exactly_the_longest_proper_prefix_suffix() {
        let redactor = Redactor::new(["abcdefgh-secret"]).unwrap();
        let mut scanner = Scanner::new(&redactor);
        let mut out = Vec::new();
        scanner.push(&redactor, b"log line abcdefgh-se", &mut out);
        assert_eq!(out, b"log line ");
        assert_eq!(scanner.pending_len(), "abcdefgh-se".len());
        scanner.push(&redactor, b"x", &mut out);
        assert_eq!(out, b"log line abcdefgh-sex");
        assert_eq!(scanner.pending_len(), 0);
    }
}
