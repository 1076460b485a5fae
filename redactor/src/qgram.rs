//! The sampling q-gram index: the prefilter that lets the redactor skip clean output at
//! GB/s, and the candidate tables that confirm its hits.
//!
//! # Sampling
//!
//! Take patterns at least `L` bytes long, keyed by `K`-byte grams (`K` = 4 or 8). An
//! occurrence starting at `p` contains the `L - K + 1` grams starting at `p ..= p + L - K`. So
//! reading the text only at a grid of positions `i ≡ 0 (mod s)` with `s ≤ L - K + 1` meets
//! every occurrence exactly once, at an offset `j = i - p < s` into its pattern. Registering
//! the grams at the first `s` offsets of every pattern (not all of them) is therefore enough,
//! which keeps the filter sparse for tens of thousands of secrets with all their forms. This
//! is the sampling idea of Hyperscan's FDR and of BNDM-style matchers.
//!
//! # Grids
//!
//! The stride is set by the shortest pattern on a grid, and each grid position costs one load
//! and one probe of a blocked Bloom filter (two bits in one 64-bit word). A small set (up to
//! [`SMALL_SET_KEYS`] registered positions, e.g. 100 secrets with all their forms) has one
//! grid keyed by 4-byte grams: the longest stride, and a filter that stays in the L1/L2 cache.
//!
//! In a large set, four bytes of hex or base64 text carry too few bits (16 to 24) to tell tens
//! of thousands of secrets from ordinary output, and the filter outgrows the caches, so the
//! patterns are split by length (and alphabet) over up to three grids:
//! - *long* patterns (at least [`LONG`] bytes, or [`LONG_HEX`] for hex-only ones): keyed by
//!   8-byte grams, stride `L - 7` (at least 9, usually 17): most patterns, few probes;
//! - *short* patterns (from [`TINY`] bytes): keyed by 4-byte grams, stride `L - 3` (at least
//!   9), a moderate filter;
//! - *tiny* patterns (shorter than [`TINY`]): keyed by 4-byte grams, stride `L - 3` (at least
//!   5), usually a handful with a filter that stays in the L1 cache.
//!
//! A filter hit is confirmed in the table keyed by the exact gram: each entry names a pattern
//! and the offset `j` it has the gram at, so the occurrence can only start at `i - j` and is
//! checked with one comparison.
//!
//! # Prefixes
//!
//! The index also answers "is this text a proper prefix of some pattern?", which decides how
//! many bytes a stream must hold back.

use zeroize::Zeroizing;

use crate::patterns::PatternSet;

/// Up to this many 4-byte keys, one grid keyed by 4-byte grams serves all patterns: too few
/// keys to hit ordinary output often, and the longest stride.
const SMALL_SET_KEYS: usize = 1 << 16;
/// In larger sets, patterns shorter than this get a grid of their own: they force a short
/// stride, and are usually few, so their grid's filter stays small and its probes cheap.
const TINY: usize = 12;
/// In larger sets, patterns at least this long go on the grid keyed by 8-byte grams...
const LONG: usize = 24;
/// ...and so do hex-only patterns (hex forms) at least this long: four hex digits carry only
/// 16 bits, and hex text (hashes, ids) is common in output.
const LONG_HEX: usize = 16;

// The strides and keys above rely on these.
const _: () = assert!(
    crate::MIN_SECRET_LEN >= 8
        && LONG_HEX >= 16
        && LONG >= LONG_HEX
        && TINY >= crate::MIN_SECRET_LEN
);

/// Largest sampling stride; offsets are packed in [`OFFSET_BITS`] bits of a table entry.
/// Longer strides would register more grams per pattern than the skipped reads save.
const MAX_STRIDE: usize = 1 << OFFSET_BITS;
const OFFSET_BITS: u32 = 5;
const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;

/// Sets with more patterns than this get the two-byte index into their sorted starts.
const BY_FIRST2_FROM: usize = 4096;

/// How many filter hits [`Grid::scan`] collects before they are confirmed.
pub(crate) const HIT_BATCH: usize = 64;

/// Number of patterns an index can address.
pub(crate) const MAX_PATTERNS: usize = 1 << (32 - OFFSET_BITS);

/// Filter bits per key, as a power of two: with 32 bits and two bits set per key, about 0.3%
/// of unrelated grams pass (a capped filter holds fewer bits per key).
const FILTER_BITS_PER_KEY_LOG2: u32 = 5;
/// A filter never grows past 2 MiB (2^24 bits): measured on 10,000 secrets, a larger one costs
/// more in cache and TLB misses (the allocator hands out 4 KiB pages) than its lower
/// false-positive rate saves.
const MAX_FILTER_BITS_LOG2: u32 = 24;
const MIN_FILTER_BITS_LOG2: u32 = 9;
// A probe takes the word index from hash bits 44 and up, the bit numbers from bits 26..44.
const _: () = assert!(MAX_FILTER_BITS_LOG2 - 6 <= 64 - 44);

/// Fibonacci hashing: one multiplication spreads the key over the high bits.
#[inline(always)]
fn hash(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The little-endian key of the first `N` (4 or 8) bytes of `bytes`.
#[inline(always)]
pub(crate) fn key<const N: usize>(bytes: &[u8]) -> u64 {
    // Slicing checks the length once; converting a slice of exactly 4 or 8 bytes cannot fail,
    // and the whole compiles to one unaligned load.
    if N == 8 {
        u64::from_le_bytes(bytes[..8].try_into().expect("an 8-byte slice"))
    } else {
        u64::from(u32::from_le_bytes(
            bytes[..4].try_into().expect("a 4-byte slice"),
        ))
    }
}

/// A blocked Bloom filter: two or three bits per key, all in the word its top hash bits
/// select, so a probe is one memory access.
pub(crate) struct Bloom {
    words: Zeroizing<Vec<u64>>,
    shift: u32,
    /// Bits set per key: 2, or 3 for filters of 8-byte keys (see [`bloom_bits`]).
    bits: u32,
}

/// Bits a filter of `key_len`-byte keys sets per key. The filters of 8-byte keys belong to
/// large sets, are capped in size and so fuller, and a false positive costs two cache misses
/// in a large table: a third bit halves their rate for two more instructions per probe.
const fn bloom_bits(key_len: usize) -> u32 {
    if key_len == 8 { 3 } else { 2 }
}

impl Bloom {
    fn new(keys: &[u64], bits: u32) -> Bloom {
        let size = (log2_ceil(keys.len().max(1)) + FILTER_BITS_PER_KEY_LOG2)
            .clamp(MIN_FILTER_BITS_LOG2, MAX_FILTER_BITS_LOG2);
        let shift = 64 - (size - 6);
        let mut words = Zeroizing::new(vec![0u64; 1 << (size - 6)]);
        for &key in keys {
            let (word, mask) = if bits == 3 {
                Self::probe::<3>(hash(key), shift)
            } else {
                Self::probe::<2>(hash(key), shift)
            };
            words[word] |= mask;
        }
        Bloom { words, shift, bits }
    }

    /// The word and the `K` bits of a hashed key.
    #[inline(always)]
    fn probe<const K: u32>(h: u64, shift: u32) -> (usize, u64) {
        // Bits 26..44 lie below the word index (`shift >= 44`) and, unlike the lowest bits of
        // a product, depend on more than the key's first byte.
        let mut mask = (1u64 << ((h >> 32) & 63)) | (1u64 << ((h >> 38) & 63));
        if K == 3 {
            mask |= 1u64 << ((h >> 26) & 63);
        }
        ((h >> shift) as usize, mask)
    }

    /// `false` when `key` was not inserted; `true` means "maybe".
    #[inline(always)]
    pub(crate) fn may_contain(&self, key: u64) -> bool {
        let (word, mask) = if self.bits == 3 {
            Self::probe::<3>(hash(key), self.shift)
        } else {
            Self::probe::<2>(hash(key), self.shift)
        };
        self.words[word] & mask == mask
    }
}

/// One sampling grid: its stride, the length of its keys, a filter and the exact table.
pub(crate) struct Grid {
    stride: usize,
    key_len: usize,
    filter: Bloom,
    /// Entries of bucket `b` are `bucket_starts[b] .. bucket_starts[b + 1]`.
    bucket_starts: Vec<u32>,
    bucket_shift: u32,
    /// The exact gram of each entry (secret material).
    keys: Zeroizing<Vec<u64>>,
    /// `pattern id << OFFSET_BITS | offset` of each entry.
    targets: Vec<u32>,
}

impl Grid {
    /// A grid for the patterns `ids` of `patterns`, keyed by `key_len`-byte grams.
    fn new(patterns: &PatternSet, ids: &[usize], key_len: usize) -> Grid {
        let min_len = ids
            .iter()
            .map(|&id| patterns.len_of(id))
            .min()
            .unwrap_or(key_len);
        // At least 5 for 4-byte keys (patterns of at least 8 bytes) and 9 for 8-byte keys
        // (at least 16): always longer than a key, which `scan` relies on.
        let stride = (min_len + 1 - key_len).min(MAX_STRIDE);
        debug_assert!(stride > key_len);
        let mut entries: Zeroizing<Vec<(u64, u32)>> =
            Zeroizing::new(Vec::with_capacity(ids.len() * stride));
        for &id in ids {
            let pattern = patterns.get(id);
            for offset in 0..stride {
                let gram = &pattern[offset..];
                let key = if key_len == 8 {
                    key::<8>(gram)
                } else {
                    key::<4>(gram)
                };
                entries.push((key, (id as u32) << OFFSET_BITS | offset as u32));
            }
        }
        let mut distinct: Zeroizing<Vec<u64>> =
            Zeroizing::new(entries.iter().map(|e| e.0).collect());
        distinct.sort_unstable();
        distinct.dedup();
        let filter = Bloom::new(&distinct, bloom_bits(key_len));
        let bucket_bits = log2_ceil(distinct.len().max(1)).clamp(1, 28);
        let bucket_shift = 64 - bucket_bits;
        let bucket = |key: u64| (hash(key) >> bucket_shift) as usize;
        // Bucket by bucket; within one, the entries of a gram are contiguous.
        entries.sort_unstable_by_key(|&(key, target)| (bucket(key), key, target));
        let mut bucket_starts = vec![0u32; (1 << bucket_bits) + 1];
        for &(key, _) in entries.iter() {
            bucket_starts[bucket(key) + 1] += 1;
        }
        for b in 1..bucket_starts.len() {
            bucket_starts[b] += bucket_starts[b - 1];
        }
        let keys = Zeroizing::new(entries.iter().map(|e| e.0).collect());
        let targets = entries.iter().map(|e| e.1).collect();
        Grid {
            stride,
            key_len,
            filter,
            bucket_starts,
            bucket_shift,
            keys,
            targets,
        }
    }

    /// Grid positions are the multiples of the stride.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Length of the grams read at each grid position: 4 or 8.
    pub(crate) fn key_len(&self) -> usize {
        self.key_len
    }

    /// `false` when no registered position has the gram `key`; `true` means "maybe".
    #[inline(always)]
    pub(crate) fn may_contain(&self, key: u64) -> bool {
        self.filter.may_contain(key)
    }

    /// Probes the grid positions `r, r + stride, ...` below `r_end` of `text` (each with `N`
    /// bytes available there), storing the ones that pass the filter in `hits`, and stops
    /// early when `hits` is full. Returns the next position to probe and the number of hits.
    ///
    /// This is the hot loop of the redactor: a plain function over slices, four independent
    /// probes per iteration and one branch for all four (hits are rare).
    #[inline(always)]
    pub(crate) fn scan<const N: usize>(
        &self,
        text: &[u8],
        mut r: usize,
        r_end: usize,
        hits: &mut [usize; HIT_BATCH],
    ) -> (usize, usize) {
        let s = self.stride;
        let shift = self.filter.shift;
        // The filter has a power-of-two number of words; indexing through the mask (a no-op)
        // lets the compiler drop the bounds check.
        let word_mask = self.filter.words.len() - 1;
        let words = &self.filter.words[..=word_mask];
        let test = |gram: &[u8]| {
            let h = hash(key::<N>(gram));
            let (word, mask) = if bloom_bits(N) == 3 {
                Bloom::probe::<3>(h, shift)
            } else {
                Bloom::probe::<2>(h, shift)
            };
            words[word & word_mask] & mask == mask
        };
        let mut n = 0;
        // Every gram lies within its own stride (`s > N`, see `Grid::new`), so four strides
        // are four grams at fixed offsets of one block.
        if s > N {
            let quad = 4 * s;
            for block in text[r.min(text.len())..].chunks_exact(quad) {
                if r + 3 * s >= r_end || n + 4 > HIT_BATCH {
                    break;
                }
                let (a, b, c, d) = (
                    test(block),
                    test(&block[s..]),
                    test(&block[2 * s..]),
                    test(&block[3 * s..]),
                );
                if a | b | c | d {
                    for (k, hit) in [a, b, c, d].into_iter().enumerate() {
                        if hit {
                            hits[n] = r + k * s;
                            n += 1;
                        }
                    }
                }
                r += quad;
            }
        }
        while r < r_end && n < HIT_BATCH {
            if test(&text[r..]) {
                hits[n] = r;
                n += 1;
            }
            r += s;
        }
        (r, n)
    }

    /// `(pattern id, offset)` of every position registered with the gram `key`.
    #[inline]
    pub(crate) fn candidates(&self, key: u64) -> impl Iterator<Item = (usize, usize)> + '_ {
        let bucket = (hash(key) >> self.bucket_shift) as usize;
        let (start, end) = (
            self.bucket_starts[bucket] as usize,
            self.bucket_starts[bucket + 1] as usize,
        );
        (start..end).filter(move |&e| self.keys[e] == key).map(|e| {
            let target = self.targets[e];
            (
                (target >> OFFSET_BITS) as usize,
                (target & OFFSET_MASK) as usize,
            )
        })
    }
}

/// See the module documentation.
pub(crate) struct QgramIndex {
    /// One to three grids (see the module documentation); none without patterns.
    grids: Vec<Grid>,
    /// `(first 8 bytes big-endian, pattern id)` of every pattern, sorted: numeric order is
    /// byte order, so the patterns sharing a prefix form a range.
    starts: Zeroizing<Vec<(u64, u32)>>,
    /// The first 8 bytes (little-endian) of every pattern.
    start_filter: Bloom,
    /// In large sets, `by_first2[x]` is the index in `starts` of the first pattern whose first
    /// two bytes (big-endian) are `x` or more: a prefix search then stays within a few cache
    /// lines instead of bisecting the whole array, which a stream does on every push.
    by_first2: Option<Vec<u32>>,
}

impl QgramIndex {
    /// Indexes `patterns`, all of which are at least 8 bytes long and fewer than
    /// [`MAX_PATTERNS`].
    pub(crate) fn new(patterns: &PatternSet) -> QgramIndex {
        QgramIndex::with_layout(patterns, SMALL_SET_KEYS, BY_FIRST2_FROM)
    }

    /// [`QgramIndex::new`] with the thresholds of the large-set layout: up to
    /// `small_set_keys` registered positions a set has one grid, and from `by_first2_from`
    /// patterns its starts are indexed by their first two bytes. Tests pass 0 and 0 to
    /// exercise the large-set code paths on small sets.
    pub(crate) fn with_layout(
        patterns: &PatternSet,
        small_set_keys: usize,
        by_first2_from: usize,
    ) -> QgramIndex {
        let grids = classes(patterns, small_set_keys)
            .into_iter()
            .map(|(ids, key_len)| Grid::new(patterns, &ids, key_len))
            .collect();
        let mut starts: Zeroizing<Vec<(u64, u32)>> = Zeroizing::new(
            patterns
                .iter()
                .enumerate()
                .map(|(id, p)| {
                    (
                        // Every pattern is at least `MIN_SECRET_LEN` (8) bytes long.
                        u64::from_be_bytes(p[..8].try_into().expect("8 bytes")),
                        id as u32,
                    )
                })
                .collect(),
        );
        starts.sort_unstable();
        let start_keys: Zeroizing<Vec<u64>> =
            Zeroizing::new(starts.iter().map(|s| s.0.swap_bytes()).collect());
        let start_filter = Bloom::new(&start_keys, bloom_bits(8));
        let by_first2 = (starts.len() > by_first2_from).then(|| {
            let mut index = Vec::with_capacity((1 << 16) + 1);
            let mut at = 0;
            for x in 0..=(1u64 << 16) {
                while at < starts.len() && starts[at].0 >> 48 < x {
                    at += 1;
                }
                index.push(at as u32);
            }
            index
        });
        QgramIndex {
            grids,
            starts,
            start_filter,
            by_first2,
        }
    }

    /// The part of `starts` that can hold values from `low` to `high` (big-endian first bytes).
    fn starts_between(&self, low: u64, high: u64) -> &[(u64, u32)] {
        match &self.by_first2 {
            Some(index) => {
                &self.starts[index[(low >> 48) as usize] as usize
                    ..index[(high >> 48) as usize + 1] as usize]
            }
            None => &self.starts,
        }
    }

    pub(crate) fn grids(&self) -> &[Grid] {
        &self.grids
    }

    /// Ids of the patterns whose first 8 bytes are the gram `key` (little-endian).
    pub(crate) fn starting_with(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let found: &[(u64, u32)] = if self.start_filter.may_contain(key) {
            let be = key.swap_bytes();
            let starts = self.starts_between(be, be);
            let first = starts.partition_point(|s| s.0 < be);
            let end = first + starts[first..].partition_point(|s| s.0 == be);
            &starts[first..end]
        } else {
            &[]
        };
        found.iter().map(|s| s.1 as usize)
    }

    /// Whether `text` (shorter than 8 bytes) is a prefix of some pattern; since every pattern
    /// is at least 8 bytes long, it is then a proper one.
    pub(crate) fn is_short_prefix(&self, text: &[u8]) -> bool {
        debug_assert!(!text.is_empty() && text.len() < 8);
        let mut bytes = [0u8; 8];
        bytes[..text.len()].copy_from_slice(text);
        let low = u64::from_be_bytes(bytes);
        let high = low | (u64::MAX >> (8 * text.len()));
        bytes.iter_mut().for_each(|b| *b = 0);
        let starts = self.starts_between(low, high);
        let first = starts.partition_point(|s| s.0 < low);
        starts.get(first).is_some_and(|s| s.0 <= high)
    }
}

/// The grids of a pattern set: `(pattern ids, key length)` (see the module documentation).
fn classes(patterns: &PatternSet, small_set_keys: usize) -> Vec<(Vec<usize>, usize)> {
    let ids = 0..patterns.len();
    let min_len = ids.clone().map(|id| patterns.len_of(id)).min().unwrap_or(0);
    let keys4 = patterns.len() * (min_len.saturating_sub(3)).min(MAX_STRIDE);
    if patterns.is_empty() {
        return Vec::new();
    }
    if keys4 <= small_set_keys {
        return vec![(ids.collect(), 4)];
    }
    let (mut tiny, mut short, mut long) = (Vec::new(), Vec::new(), Vec::new());
    for id in ids {
        let pattern = patterns.get(id);
        if pattern.len() >= LONG
            || (pattern.len() >= LONG_HEX && pattern.iter().all(u8::is_ascii_hexdigit))
        {
            long.push(id);
        } else if pattern.len() >= TINY {
            short.push(id);
        } else {
            tiny.push(id);
        }
    }
    [(tiny, 4), (short, 4), (long, 8)]
        .into_iter()
        .filter(|(ids, _)| !ids.is_empty())
        .collect()
}

fn log2_ceil(n: usize) -> u32 {
    n.next_power_of_two().trailing_zeros()
}
