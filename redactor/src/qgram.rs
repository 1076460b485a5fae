//! The sampling q-gram index: the prefilter that lets the redactor skip clean output at
//! several GB/s, and the candidate table that confirms its hits.
//!
//! Every pattern is at least `L` bytes long (the shortest pattern of the set, never less than
//! [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN)). With q-grams of [`Q`] bytes, an occurrence
//! starting at `p` contains the `L - Q + 1` q-grams starting at `p ..= p + L - Q`. So reading
//! only the q-grams at a grid of positions `i ≡ 0 (mod s)` with `s ≤ L - Q + 1` meets every
//! occurrence exactly once, at offset `j = i - p < s` into its pattern. Registering the first
//! `s` q-grams of every pattern (not all of them) is therefore enough, and keeps the filter
//! sparse for tens of thousands of secrets with all their forms. This is the sampling idea of
//! Hyperscan's FDR and of BNDM-style matchers.
//!
//! A grid position whose q-gram hits the bit filter is confirmed in the candidate table, keyed
//! by the exact q-gram: each entry names a pattern and the offset `j` it has that q-gram at, so
//! the occurrence can only start at `i - j` and is checked with one comparison.
//!
//! The index also answers "is this text a proper prefix of some pattern?", which decides how
//! many bytes a stream must hold back.

use zeroize::Zeroizing;

use crate::patterns::PatternSet;

/// Length of the sampled q-grams: one unaligned `u32` load.
pub(crate) const Q: usize = 4;

/// Largest sampling stride; offsets are packed in [`OFFSET_BITS`] bits of a table entry.
/// Longer strides would register more q-grams per pattern than the skipped reads save.
const MAX_STRIDE: usize = 1 << OFFSET_BITS;
const OFFSET_BITS: u32 = 5;
const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;

/// Number of patterns an index can address.
pub(crate) const MAX_PATTERNS: usize = 1 << (32 - OFFSET_BITS);

/// Filter bits per registered q-gram, as a power of two: 32 bits each keeps the filter's
/// false-positive rate near 3%.
const FILTER_BITS_PER_QGRAM_LOG2: u32 = 5;
/// The filter never grows past 8 MiB (2^26 bits), which stays within the last-level cache.
const MAX_FILTER_BITS_LOG2: u32 = 26;
const MIN_FILTER_BITS_LOG2: u32 = 12;

/// Fibonacci hashing: one multiplication spreads the four bytes over the high bits.
#[inline(always)]
fn hash(qgram: u32) -> u64 {
    u64::from(qgram).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Reads the q-gram at the start of `bytes` (which must hold at least [`Q`] bytes).
#[inline(always)]
pub(crate) fn qgram_at(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// See the module documentation.
pub(crate) struct QgramIndex {
    stride: usize,
    /// One bit per hash value: set when some registered q-gram hashes there.
    filter: Zeroizing<Vec<u64>>,
    filter_shift: u32,
    /// Entries of bucket `b` are `bucket_starts[b] .. bucket_starts[b + 1]`.
    bucket_starts: Vec<u32>,
    bucket_shift: u32,
    /// The exact q-gram of each entry (secret material).
    keys: Zeroizing<Vec<u32>>,
    /// `pattern id << OFFSET_BITS | offset` of each entry.
    targets: Vec<u32>,
    /// Every prefix shorter than [`Q`] of every pattern, as `len << 24 | bytes`, sorted.
    short_prefixes: Zeroizing<Vec<u32>>,
}

impl QgramIndex {
    /// Indexes `patterns`, all of which are at least [`Q`] bytes long and fewer than
    /// [`MAX_PATTERNS`].
    pub(crate) fn new(patterns: &PatternSet) -> QgramIndex {
        let stride = (patterns.min_len().saturating_sub(Q) + 1).min(MAX_STRIDE);
        // (bucket, key, target) for the first `stride` q-grams of every pattern.
        let mut entries: Zeroizing<Vec<(u32, u32, u32)>> =
            Zeroizing::new(Vec::with_capacity(patterns.len() * stride));
        let mut short: Zeroizing<Vec<u32>> =
            Zeroizing::new(Vec::with_capacity(patterns.len() * (Q - 1)));
        for (id, pattern) in patterns.iter().enumerate() {
            for offset in 0..stride {
                let target = (id as u32) << OFFSET_BITS | offset as u32;
                entries.push((0, qgram_at(&pattern[offset..]), target));
            }
            for len in 1..Q {
                short.push(short_key(&pattern[..len]));
            }
        }
        short.sort_unstable();
        short.dedup();

        let mut distinct: Zeroizing<Vec<u32>> =
            Zeroizing::new(entries.iter().map(|e| e.1).collect());
        distinct.sort_unstable();
        distinct.dedup();
        let bucket_bits = log2_ceil(distinct.len().max(16)).min(28);
        let filter_bits = (bucket_bits + FILTER_BITS_PER_QGRAM_LOG2)
            .clamp(MIN_FILTER_BITS_LOG2, MAX_FILTER_BITS_LOG2);
        let bucket_shift = 64 - bucket_bits;
        let filter_shift = 64 - filter_bits;

        let mut filter = Zeroizing::new(vec![0u64; 1 << (filter_bits - 6)]);
        for &key in distinct.iter() {
            let bit = hash(key) >> filter_shift;
            filter[(bit >> 6) as usize] |= 1 << (bit & 63);
        }

        for entry in entries.iter_mut() {
            entry.0 = (hash(entry.1) >> bucket_shift) as u32;
        }
        // Within a bucket, entries of one q-gram are contiguous and in offset order, so the
        // offset-0 entries (the patterns a text can start) come first.
        entries.sort_unstable_by_key(|&(bucket, key, target)| {
            (bucket, key, target & OFFSET_MASK, target)
        });
        let mut bucket_starts = vec![0u32; (1 << bucket_bits) + 1];
        for &(bucket, _, _) in entries.iter() {
            bucket_starts[bucket as usize + 1] += 1;
        }
        for b in 1..bucket_starts.len() {
            bucket_starts[b] += bucket_starts[b - 1];
        }
        let keys = Zeroizing::new(entries.iter().map(|e| e.1).collect());
        let targets = entries.iter().map(|e| e.2).collect();
        QgramIndex {
            stride,
            filter,
            filter_shift,
            bucket_starts,
            bucket_shift,
            keys,
            targets,
            short_prefixes: short,
        }
    }

    /// The sampling stride `s`: grid positions are the multiples of `s`.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// `false` when no pattern has `qgram` among its registered q-grams; `true` means "maybe".
    #[inline(always)]
    pub(crate) fn may_contain(&self, qgram: u32) -> bool {
        let bit = hash(qgram) >> self.filter_shift;
        self.filter[(bit >> 6) as usize] & (1 << (bit & 63)) != 0
    }

    /// Calls `f(pattern id, offset)` for every pattern that has `qgram` at `offset < stride`.
    #[inline]
    pub(crate) fn for_each_candidate(&self, qgram: u32, mut f: impl FnMut(usize, usize)) {
        let bucket = (hash(qgram) >> self.bucket_shift) as usize;
        let (start, end) = (
            self.bucket_starts[bucket] as usize,
            self.bucket_starts[bucket + 1] as usize,
        );
        for e in start..end {
            if self.keys[e] == qgram {
                let target = self.targets[e];
                f(
                    (target >> OFFSET_BITS) as usize,
                    (target & OFFSET_MASK) as usize,
                );
            }
        }
    }

    /// Whether some pattern starts with `qgram` (offset 0), checked further by `f`: returns
    /// `true` as soon as `f(pattern id)` does.
    pub(crate) fn any_starting_with(&self, qgram: u32, mut f: impl FnMut(usize) -> bool) -> bool {
        if !self.may_contain(qgram) {
            return false;
        }
        let bucket = (hash(qgram) >> self.bucket_shift) as usize;
        let (start, end) = (
            self.bucket_starts[bucket] as usize,
            self.bucket_starts[bucket + 1] as usize,
        );
        for e in start..end {
            let target = self.targets[e];
            if self.keys[e] == qgram
                && target & OFFSET_MASK == 0
                && f((target >> OFFSET_BITS) as usize)
            {
                return true;
            }
        }
        false
    }

    /// Whether `text` (shorter than [`Q`]) is a prefix of some pattern.
    pub(crate) fn is_short_prefix(&self, text: &[u8]) -> bool {
        debug_assert!(!text.is_empty() && text.len() < Q);
        self.short_prefixes.binary_search(&short_key(text)).is_ok()
    }
}

fn short_key(prefix: &[u8]) -> u32 {
    let mut bytes = [0u8; 4];
    bytes[..prefix.len()].copy_from_slice(prefix);
    (prefix.len() as u32) << 24 | u32::from_le_bytes(bytes)
}

fn log2_ceil(n: usize) -> u32 {
    n.next_power_of_two().trailing_zeros()
}
