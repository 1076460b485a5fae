//! The sampling q-gram index: the prefilter that lets the redactor skip clean output at
//! GB/s, and the table that turns its hits into candidate positions in the forms.
//!
//! # Sampling
//!
//! Every qualifying occurrence (a piece of a form covering a run of `W` bytes of its value)
//! is at least `L` characters long without a break, where `L` is the shortest such piece of
//! any form ([`Form::shortest_run`]). Reading the output only at positions `i ≡ 0 (mod s)`,
//! `s = L - 3`, therefore meets every occurrence at a position whose 4-byte gram lies inside
//! it, at an unknown offset into its form: so every gram of every form, at every offset, is
//! registered (unlike a whole-pattern matcher, which needs only the first `s` offsets). This
//! is the sampling idea of Hyperscan's FDR and of BNDM-style matchers. Occurrences broken by
//! line breaks (wrapped base64) are met by the joins (see the scanner).
//!
//! A grid position costs one load and one probe of a blocked Bloom filter holding every 4-byte
//! gram of every form, in every spelling extension accepts (hex letters in either case, base64
//! in either alphabet: see [`push_gram`]), so that the output's bytes are looked up as they
//! are. Four bytes of clean log text often spell four bytes of some form (any four hex digits
//! or a timestamp's `12:34` spell some secret's hex forms once there are a few hundred), so a
//! hit is confirmed by a second filter over 8-byte grams before any table is read: for values
//! of 12 bytes or more (every other one, see [`Index::long`]), the sites are registered by
//! their 8-byte gram, and a grid gram inside a qualifying piece has one of the two 8-byte
//! grams around it inside the piece too. The hits of a batch are sifted this way together
//! ([`Index::sift`]), each looked up only if its other half (beside the grid's gram) is in
//! the grid's filter too; the 8-byte grams of eight hex digits, and those of digits with the
//! punctuation of numbers and timestamps, have small filters and tables of their own
//! ([`Filter8`]). The survivors are looked up in tables bucketed by the exact gram,
//! whose entries name a form and an offset ("site").
//!
//! Joins (the gram made of the two characters before a line break and the two after it) and
//! the last bytes of the data are looked up by 4-byte grams, in the tables of the short
//! values and of the forms that wrap (base64, `od -c`).
//!
//! # Bounds
//!
//! A gram that repeats with a short period inside one form (a long run of one byte, say) is
//! registered only near both ends of each periodic stretch: an occurrence inside the stretch
//! is found from any of them, and one crossing an end from one near that end. This bounds the
//! candidates of a hit, and so the cost of pathological output.

use zeroize::{Zeroize, Zeroizing};

use crate::forms::{Family, Form};

/// Largest sampling stride.
pub(crate) const MAX_STRIDE: usize = 32;

/// How many filter hits [`Index::scan`] collects before they are confirmed.
pub(crate) const HIT_BATCH: usize = 64;

/// Within a periodic stretch, grams this close to either end stay registered.
const PERIODIC_EDGE: usize = 48;
/// Periods up to this long count as periodic.
const MAX_PERIOD: usize = 8;

/// Filter bits per key, as a power of two: with 32 bits and two bits set per key, about 0.3%
/// of unrelated grams pass (a capped filter holds fewer bits per key).
const FILTER_BITS_PER_KEY_LOG2: u32 = 4;
/// A filter never grows past 4 MiB (2^25 bits): a larger one costs more in cache and TLB
/// misses than its lower false-positive rate saves.
const MAX_FILTER_BITS_LOG2: u32 = 25;
/// The filter of 8-byte grams is probed only after the grid's filter passes, so it may be
/// larger: up to 8 MiB (2^26 bits), about 6 bits a gram (11 a distinct one) for 10,000
/// secrets; a larger one measured slower (more cache and TLB misses than false positives
/// saved).
const MAX_FILTER8_BITS_LOG2: u32 = 26;
/// The filters of the 8-byte grams of the small classes (eight hex digits, and digits with the
/// punctuation of numbers: see [`Filter8`]) stay within 1 MiB (2^23 bits) each: with 10,000
/// secrets each holds about half a million keys, 16 bits a key, and stays in the L2 cache
/// with the grid's hot words more than the large one does.
const MAX_HEX8_BITS_LOG2: u32 = 23;
const MIN_FILTER_BITS_LOG2: u32 = 9;

/// A Bloom filter's word is the hash's bits from here up, masked to the filter's size: the
/// top bits for the largest filters (2^19 words), which are those of the grid with
/// thousands of secrets.
const WORD_SHIFT: u32 = 64 - (MAX_FILTER_BITS_LOG2 - 6);
/// The same for [`Filter8`], whose largest filter has 2^20 words.
const WORD8_SHIFT: u32 = 64 - (MAX_FILTER8_BITS_LOG2 - 6);

/// The two bits of a probe: entry `n` has bits `n % 64` and `n / 64` set, so that the two
/// bits of a key (two 6-bit fields of its hash, side by side) are one load from a table that
/// stays in the L1 cache (32 KiB), instead of two shifts by a variable amount (see
/// [`Bloom::probe`]).
static BIT2: [u64; 4096] = {
    let mut bits = [0u64; 4096];
    let mut n = 0;
    while n < 4096 {
        bits[n] = (1 << (n % 64)) | (1 << (n / 64));
        n += 1;
    }
    bits
};

/// Fibonacci hashing: one multiplication spreads the key over the high bits.
#[inline(always)]
fn hash(key: u32) -> u64 {
    u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The `0x20` bit of each byte of `$key` that is `A`-`F` or `X` (SWAR, no carries between
/// bytes: every sum stays below `0x100` in its byte).
macro_rules! fold_bits {
    ($key:expr, $ones:expr, $t:ty) => {{
        let key: $t = $key;
        let low = key & ($ones * 0x7f);
        // The high bit of each byte: at least `A`, at least `G`, not `X`.
        let from_a = low + $ones * (0x80 - 0x41);
        let from_g = low + $ones * (0x80 - 0x47);
        let not_x = (low ^ ($ones * 0x58)) + $ones * 0x7f;
        let high = ((from_a & !from_g) | !not_x) & !key & ($ones * 0x80);
        high >> 2
    }};
}

/// The key of an 8-byte gram: `A`-`F` and `X` to lower case and the URL-safe base64 alphabet
/// spelled as the standard one (`-` as `+`, `_` as `/`), every other byte unchanged.
/// Extension takes the upper case of every lower-case character of a hex form (digits `a`-`f`,
/// the `x` of `\x`) and either base64 alphabet, character by character, so one key stands
/// for every such spelling.
///
/// Only those letters: folding every letter (as this once did, for the 4-byte grams too)
/// made the four letters of almost any word a key of some base64 form once there are
/// thousands of secrets (base64 has both cases, so its grams, folded, cover nearly every
/// four lower-case letters), and half of all grid positions of clean log text hit; base64
/// and text forms are matched case-sensitively anyway.
#[inline(always)]
pub(crate) fn fold8(key: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let k = key | fold_bits!(key, ONES, u64);
    // One bit (0x01) in each byte equal to `c`: exact, no carries between bytes.
    let equal = |c: u8| {
        let x = k ^ (ONES * u64::from(c));
        (!(((x & (ONES * 0x7f)) + ONES * 0x7f) | x) >> 7) & ONES
    };
    k ^ (equal(b'-') * u64::from(b'-' ^ b'+')) ^ (equal(b'_') * u64::from(b'_' ^ b'/'))
}

/// The key ([`fold8`]) of the 8 bytes at the start of `bytes`.
#[inline(always)]
pub(crate) fn key8(bytes: &[u8]) -> u64 {
    fold8(u64::from_le_bytes(
        bytes[..8].try_into().expect("an 8-byte slice"),
    ))
}

/// Whether the 8-byte key is eight hex digits, in either case (SWAR, no carries between
/// bytes: every sum stays below `0x100` in its byte).
#[inline(always)]
pub(crate) fn all_hex8(key: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low = key & (ONES * 0x7f);
    let folded = low | (ONES * 0x20);
    // The high bit of each byte: at least `0` and not past `9`, or (folded) at least `a` and
    // not past `f`; and the byte itself below `0x80`.
    let from_0 = low + ONES * (0x80 - 0x30);
    let past_9 = low + ONES * (0x80 - 0x3a);
    let from_a = folded + ONES * (0x80 - 0x61);
    let past_f = folded + ONES * (0x80 - 0x67);
    let digit = ((from_0 & !past_9) | (from_a & !past_f)) & !key & (ONES * 0x80);
    digit == ONES * 0x80
}

/// Whether every byte of the 8-byte key (a [`key8`]) is a digit, a space or one of `+,-./:`
/// and `T`, `Z` (`-` is read as `+` in a key): the grams of timestamps, numbers, dates and
/// times in log text (SWAR, no carries between bytes).
#[inline(always)]
pub(crate) fn all_numeric8(key: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low = key & (ONES * 0x7f);
    // The high bit of each byte: in `+` ..= `:` (`+,-./0123456789:`)...
    let from_plus = low + ONES * (0x80 - 0x2b);
    let past_colon = low + ONES * (0x80 - 0x3b);
    let range = from_plus & !past_colon;
    // ...or equal to ` `, `T` or `Z`.
    let equal = |c: u8| {
        let x = key ^ (ONES * u64::from(c));
        !(((x & (ONES * 0x7f)) + ONES * 0x7f) | x)
    };
    let numeric = (range | equal(b' ') | equal(b'T') | equal(b'Z')) & !key & (ONES * 0x80);
    numeric == ONES * 0x80
}

/// The class of 8-byte keys of [`Filter8`] (and of the table) a key (a [`key8`]) belongs to:
/// [`HEX8`] when it is eight hex digits, [`NUMERIC8`] when it is otherwise made of digits
/// and the punctuation of numbers and timestamps ([`all_numeric8`]), else [`OTHER8`].
/// A function of the key alone, so the index registers a gram and the sift looks it up in
/// the same class.
#[inline(always)]
pub(crate) fn class8(key: u64) -> usize {
    let hex = all_hex8(key);
    let numeric = all_numeric8(key) & !hex;
    usize::from(hex) * HEX8 + usize::from(numeric) * NUMERIC8
}

/// [`class8`] with a branch: for building, where a gram is of neither small class almost
/// always and a well-predicted branch past the numeric test saves its thirty-odd
/// instructions a gram (building for 20 secrets has to stay under 5 ms). The sift keeps the
/// branchless [`class8`]: there a third of the grams are numeric.
#[inline(always)]
fn class8_of_gram(key: u64) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    if all_hex8(key) {
        return HEX8;
    }
    // Every numeric byte is below `[` (0x5b): the high bit of each byte of `key + 0x25` per
    // byte is clear exactly for the bytes below it (and the key is ASCII).
    let low = key & (ONES * 0x7f);
    let below = ((low + ONES * (0x80 - 0x5b)) | key) & (ONES * 0x80) == 0;
    if below && all_numeric8(key) {
        NUMERIC8
    } else {
        OTHER8
    }
}

/// Classes of 8-byte keys (see [`class8`]).
pub(crate) const OTHER8: usize = 0;
/// See [`class8`].
pub(crate) const HEX8: usize = 1;
/// See [`class8`].
pub(crate) const NUMERIC8: usize = 2;

/// [`hash`] for an 8-byte key: its halves are mixed first, so that every bit of the product
/// above bit 31 depends on every byte.
fn hash8(key: u64) -> u64 {
    (key ^ (key >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What the index keeps of an 8-byte key: 32 bits of its hash. Two grams that share it only
/// cost an extension that fails at once; half the memory of the whole key.
#[inline(always)]
pub(crate) fn fingerprint8(key: u64) -> u32 {
    (hash8(key) >> 32) as u32
}

/// The key of the 4 bytes at the start of `bytes`: the bytes as they are. (A form registers
/// every spelling of its grams that extension accepts, see [`push_gram`]: the grid's hot loop
/// does no folding, and no letters are folded together.)
#[inline(always)]
pub(crate) fn key(bytes: &[u8]) -> u32 {
    // Slicing checks the length once; converting a slice of exactly 4 bytes cannot fail, and
    // the whole compiles to one unaligned load.
    u32::from_le_bytes(bytes[..4].try_into().expect("a 4-byte slice"))
}

/// A blocked Bloom filter: two bits per key, both in the word its top hash bits select, so a
/// probe is one memory access.
struct Bloom {
    words: Zeroizing<Vec<u64>>,
    /// The number of words less one (a power of two less one).
    word_mask: usize,
    /// Four bits per key instead of two (see [`Bloom::probe_wide`]).
    wide: bool,
}

impl Bloom {
    fn new(
        hashes: impl Iterator<Item = u64>,
        count: usize,
        max_bits_log2: u32,
        wide: bool,
    ) -> Bloom {
        let mut bloom = Bloom::empty(count, max_bits_log2);
        bloom.wide = wide;
        for h in hashes {
            bloom.insert(h);
        }
        bloom
    }

    /// The size (log2 of its bits) of a filter for `count` keys.
    fn size_log2(count: usize, max_bits_log2: u32) -> u32 {
        (log2_ceil(count.max(1)) + FILTER_BITS_PER_KEY_LOG2)
            .clamp(MIN_FILTER_BITS_LOG2, max_bits_log2)
    }

    /// An empty filter sized for `count` keys.
    fn empty(count: usize, max_bits_log2: u32) -> Bloom {
        let size = Bloom::size_log2(count, max_bits_log2);
        Bloom {
            words: Zeroizing::new(vec![0u64; 1 << (size - 6)]),
            word_mask: (1 << (size - 6)) - 1,
            wide: false,
        }
    }

    #[inline(always)]
    fn insert(&mut self, h: u64) {
        let (word, mask) = self.bits(h);
        self.words[word] |= mask;
    }

    #[inline(always)]
    fn bits(&self, h: u64) -> (usize, u64) {
        let (word, mask) = if self.wide {
            Self::probe_wide(h)
        } else {
            Self::probe(h)
        };
        (word & self.word_mask, mask)
    }

    /// The word (before masking it to the filter's size) and the two bits of a hashed key.
    ///
    /// The word is the hash's bits from [`WORD_SHIFT`] up, a constant shift, and the bits are
    /// one lookup in [`BIT2`]: no shift by a variable amount, which on x86-64 (without BMI2,
    /// which the crate cannot assume) needs the `cl` register and several micro-operations,
    /// and with four probes in flight made the compiler shuffle `cl` between them. (The bits
    /// are the same as `1 << a | 1 << b` of before; only the word of a filter smaller than the
    /// largest is taken from other bits of the hash.)
    #[inline(always)]
    fn probe(h: u64) -> (usize, u64) {
        // Bits 24..36 (the two bits' positions) lie below the word index (`WORD_SHIFT` is at
        // least 44).
        let mask = BIT2[(h >> 24) as usize & 4095];
        ((h >> WORD_SHIFT) as usize, mask)
    }

    /// The word and the four bits of a hashed key: two more, from the hash mixed again.
    /// For the filter of 8-byte grams, which is fuller (with 10,000 secrets about six
    /// million keys in 8 MiB) and whose false positives each cost a table read (two cache
    /// misses): four bits pass about a third as many unrelated grams as two, for the same
    /// one memory access.
    #[inline(always)]
    fn probe_wide(h: u64) -> (usize, u64) {
        let (word, mask) = Self::probe(h);
        let g = (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        // Bits 52..58 and 58..64.
        let more = BIT2[(g >> 52) as usize & 4095];
        (word, mask | more)
    }

    #[inline(always)]
    fn may_contain(&self, h: u64) -> bool {
        let (word, mask) = self.bits(h);
        self.words[word] & mask == mask
    }
}

/// Sites bucketed by the hash of their exact gram (`K`: 4 or 8 bytes).
struct Table<K: zeroize::DefaultIsZeroes> {
    /// Entries of bucket `b` are `starts[b] .. starts[b + 1]`.
    starts: Vec<u32>,
    shift: u32,
    /// The exact gram of each entry (secret material).
    keys: Zeroizing<Vec<K>>,
    /// The site of each entry: `site_base[form] + offset`.
    sites: Vec<u32>,
}

impl<K: PartialEq + zeroize::DefaultIsZeroes> Table<K> {
    /// A counting sort by bucket: linear, so that building stays fast for large sets; about
    /// eight entries a bucket, since a bucket is only read after a filter hit.
    fn new(entries: &[(K, u32)], hash: impl Fn(K) -> u64) -> Table<K> {
        let bits = log2_ceil((entries.len() / 8).max(1)).clamp(1, 28);
        let shift = 64 - bits;
        let bucket = |key: K| (hash(key) >> shift) as usize;
        let mut starts = vec![0u32; (1 << bits) + 1];
        for &(key, _) in entries {
            starts[bucket(key) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut fill = starts.clone();
        let mut keys = Zeroizing::new(vec![K::default(); entries.len()]);
        let mut sites = vec![0u32; entries.len()];
        for &(key, site) in entries {
            let slot = &mut fill[bucket(key)];
            keys[*slot as usize] = key;
            sites[*slot as usize] = site;
            *slot += 1;
        }
        Table {
            starts,
            shift,
            keys,
            sites,
        }
    }

    /// The sites registered with `key`, whose hash is `h`.
    #[inline]
    fn sites(&self, key: K, h: u64) -> impl Iterator<Item = u32> + '_ {
        let bucket = (h >> self.shift) as usize;
        let (start, end) = (
            self.starts[bucket] as usize,
            self.starts[bucket + 1] as usize,
        );
        (start..end)
            .filter(move |&e| self.keys[e] == key)
            .map(|e| self.sites[e])
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn heap_bytes(&self) -> usize {
        self.starts.len() * 4 + self.keys.len() * (std::mem::size_of::<K>() + 4)
    }
}

/// The filters of the 8-byte grams of values of at least 12 bytes, one per [`class8`], in
/// one array: first the filter of every gram of neither small class ([`OTHER8`], up to
/// 8 MiB), then a small one of the grams that are eight hex digits ([`HEX8`]), then one of
/// the grams made of digits and the punctuation of numbers and timestamps ([`NUMERIC8`]),
/// each within 1 MiB (keyed the same way, [`fingerprint8`] of the [`key8`]).
///
/// Why apart: with thousands of secrets almost any four hex digits of a digest or a UUID
/// spell two bytes of some secret's hex form, and a timestamp's `12:34` is colon hex, so
/// most grid hits in clean log text lie in hex runs, timestamps and numbers, and their sift
/// probes the 8-byte grams around them, which are eight hex digits, or digits and
/// punctuation, there. Those grams of the index are few (mostly each value's contiguous
/// hex form, both nibble phases, about 50 a value; and the pieces of its colon-, space- and
/// comma-separated hex forms that happen to have only decimal digits, about 55 a value;
/// against about 1,000 8-byte grams of all its forms), so their own filters are small
/// enough to stay in the L2 cache, where the shared one (8 MiB) costs a cache and often a
/// TLB miss a probe, and have about 16 bits a key instead of 7, so that far fewer of their
/// probes pass falsely (each false pass costs a table read). The class is a function of the
/// key, and the key spells the output's bytes (extension takes hex digits in either case
/// and `-` as `+`, and the key folds them the same way), so the filters and their tables
/// split the index without changing what any lookup finds.
struct Filter8 {
    words: Zeroizing<Vec<u64>>,
    /// Per class: the mask that gives a hash's word in its filter (from [`WORD8_SHIFT`] up)...
    masks: [usize; 3],
    /// ...and where its filter starts in `words`.
    bases: [usize; 3],
}

impl Filter8 {
    /// `entries[c]`: the entries of class `c`. The three filters are filled in place in one
    /// vector allocated at its final size (building each apart and copying them together
    /// cost a copy and a wipe of each, a measurable part of building for 20 secrets).
    fn new(entries: [&[(u32, u32)]; 3]) -> Filter8 {
        let mut masks = [0; 3];
        let mut bases = [0; 3];
        let mut total = 0;
        for (class, entries) in entries.iter().enumerate() {
            let max_bits_log2 = if class == OTHER8 {
                MAX_FILTER8_BITS_LOG2
            } else {
                MAX_HEX8_BITS_LOG2
            };
            let size = Bloom::size_log2(entries.len(), max_bits_log2);
            masks[class] = (1 << (size - 6)) - 1;
            bases[class] = total;
            total += 1 << (size - 6);
        }
        let mut words = Zeroizing::new(vec![0u64; total]);
        for (class, entries) in entries.iter().enumerate() {
            for e in entries.iter() {
                let h = hash(e.0);
                let (_, mask) = Bloom::probe_wide(h);
                words[bases[class] + ((h >> WORD8_SHIFT) as usize & masks[class])] |= mask;
            }
        }
        Filter8 {
            words,
            masks,
            bases,
        }
    }

    /// The word (in `words`) and the four bits of the key of class `class` hashed to `h`.
    /// No branch: the sift computes these for grams of every class alike.
    #[inline(always)]
    fn slot(&self, class: usize, h: u64) -> (usize, u64) {
        let (_, mask) = Bloom::probe_wide(h);
        let word = (h >> WORD8_SHIFT) as usize & self.masks[class];
        (self.bases[class] + word, mask)
    }

    #[inline(always)]
    fn may_contain(&self, class: usize, h: u64) -> bool {
        let (word, mask) = self.slot(class, h);
        self.words[word] & mask == mask
    }
}

/// A table with its own filter, so that a miss costs one probe.
struct Sites<K: zeroize::DefaultIsZeroes> {
    filter: Bloom,
    table: Table<K>,
}

impl<K: PartialEq + Copy + zeroize::DefaultIsZeroes> Sites<K> {
    fn new(entries: &[(K, u32)], hash: fn(K) -> u64, max_bits_log2: u32, wide: bool) -> Sites<K> {
        Sites {
            filter: Bloom::new(
                entries.iter().map(|e| hash(e.0)),
                entries.len(),
                max_bits_log2,
                wide,
            ),
            table: Table::new(entries, hash),
        }
    }

    /// `false` when no site has `key` (whose hash is `h`).
    #[inline(always)]
    fn may_contain(&self, h: u64) -> bool {
        !self.table.keys.is_empty() && self.filter.may_contain(h)
    }

    /// The sites registered with `key` (none, after one filter probe, for most keys).
    #[inline]
    fn get(&self, key: K, hash: fn(K) -> u64) -> impl Iterator<Item = u32> + '_ {
        let h = hash(key);
        let maybe = !self.table.keys.is_empty() && self.filter.may_contain(h);
        let sites = maybe.then(|| self.table.sites(key, h));
        sites.into_iter().flatten()
    }

    fn heap_bytes(&self) -> usize {
        self.filter.words.len() * 8 + self.table.heap_bytes()
    }
}

/// See the module documentation.
pub(crate) struct Index {
    stride: usize,
    /// The grid's filter: every 4-gram of every form, at every offset, as the output may
    /// spell it (hex in either case, base64 in either alphabet, see [`push_gram`]).
    filter: Bloom,
    /// Values of at least 12 bytes are looked up by 8-byte grams: a qualifying piece of one
    /// of their forms is at least 12 characters long between layout breaks (a wrapped base64
    /// piece whose lines are all shorter is met by a join instead, below), so a grid gram
    /// `[i, i + 4)` inside it lies in `[i - 4, i + 4)` or `[i, i + 8)` inside it too. Four
    /// bytes of clean log text (timestamps, hex digests, words) often spell four bytes of
    /// some form of a large set; eight rarely do, so a grid hit is confirmed by the two
    /// 8-byte grams around it before any form is extended. Keys are [`fingerprint8`]s of
    /// [`key8`]s; each [`class8`] of them has its table here (indexed by class) and its
    /// filter in `filter8`.
    long: [Table<u32>; 3],
    /// The filters of `long`.
    filter8: Filter8,
    /// Values shorter than 12 bytes (a piece may be their whole value, 8 to 11 characters):
    /// 4-byte grams, at grid positions, joins and the tail.
    short: Sites<u32>,
    /// The base64 and `od -c` forms of values of at least 12 bytes by 4-byte grams, for the
    /// gram spanning a line break (joins) and the end of the data only: a piece wrapped over
    /// lines shorter than 12 characters has no 8-byte gram inside one line.
    wrapped: Sites<u32>,
    /// First site of each form, increasing.
    site_base: Vec<u32>,
    /// The form of every `RESOLVE_BLOCK`-th site (the one holding it), so that resolving a
    /// site reads one entry and then steps over the few forms that start in its block. A
    /// binary search over `site_base` (240,000 forms with 10,000 secrets) is about 18
    /// dependent reads, most of them cache and TLB misses: two fifths of the samples of
    /// confirming a grid hit were in it.
    form_at: Vec<u32>,
    /// Short pieces (one to three bytes) of the forms, for deciding whether the last bytes of
    /// a push could begin an occurrence: of the text and `od -c` forms as they are spelled...
    short_exact: ShortGrams,
    /// ...of the hex forms, in lower case (the output is looked up with `A-F` lowered)...
    short_hex: ShortGrams,
    /// ...and of the base64 forms, in the standard alphabet (the output is looked up with `-`
    /// as `+` and `_` as `/`). Hex and base64 pieces may begin with that few characters at
    /// the end of a line.
    short_base64: ShortGrams,
}

/// Why an index could not be built.
pub(crate) struct TooLarge(pub(crate) usize);

impl Index {
    /// Indexes `forms`; `shortest` is the shortest qualifying piece over all of them, and
    /// `long[f]` tells whether form `f`'s value needs runs of at least 12 bytes.
    pub(crate) fn new(forms: &[Form], shortest: usize, long: &[bool]) -> Result<Index, TooLarge> {
        let stride = shortest.saturating_sub(3).clamp(1, MAX_STRIDE);
        let mut site_base = Vec::with_capacity(forms.len());
        let mut total: u64 = 0;
        for form in forms {
            site_base.push(total as u32);
            total += form.text.len() as u64;
        }
        if total >= u64::from(u32::MAX) {
            return Err(TooLarge(total as usize));
        }
        let mut long8: Zeroizing<Vec<(u32, u32)>> =
            Zeroizing::new(Vec::with_capacity(total as usize));
        let mut hex8: Zeroizing<Vec<(u32, u32)>> = Zeroizing::new(Vec::new());
        let mut numeric8: Zeroizing<Vec<(u32, u32)>> = Zeroizing::new(Vec::new());
        let mut short4: Zeroizing<Vec<(u32, u32)>> = Zeroizing::new(Vec::new());
        let mut wrapped4: Zeroizing<Vec<(u32, u32)>> = Zeroizing::new(Vec::new());
        // Every 4-gram of every form goes into the grid's filter (duplicates set the same
        // bits), sized for one key a character.
        let mut filter = Bloom::empty(total as usize, MAX_FILTER_BITS_LOG2);
        let mut keys = Vec::with_capacity(16);
        let mut short_exact = ShortGrams::new();
        let mut short_hex = ShortGrams::new();
        let mut short_base64 = ShortGrams::new();
        let mut grams = Vec::new();
        let mut grams8 = Vec::new();
        for (f, form) in forms.iter().enumerate() {
            let base = site_base[f];
            for w in form.text.windows(4) {
                let raw = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                keys.clear();
                push_gram(form, raw, &mut keys);
                for &k in &keys {
                    filter.insert(hash(k));
                }
            }
            if long[f] {
                register8(
                    form,
                    base,
                    [&mut long8, &mut hex8, &mut numeric8],
                    &mut grams8,
                );
                if matches!(form.family, Family::Base64 | Family::OdC) {
                    register(form, base, &mut wrapped4, &mut grams);
                }
            } else {
                register(form, base, &mut short4, &mut grams);
            }
            // A base64 or hex piece may begin with fewer than four characters at the end of a
            // line (an `od -c` piece begins with a whole four-character field).
            match form.family {
                Family::Hex => short_hex.add(&form.text),
                Family::Base64 => short_base64.add(&form.text),
                Family::Exact | Family::OdC => short_exact.add(&form.text),
            }
        }
        Ok(Index {
            stride,
            filter,
            long: [
                Table::new(&long8, hash),
                Table::new(&hex8, hash),
                Table::new(&numeric8, hash),
            ],
            filter8: Filter8::new([&long8, &hex8, &numeric8]),
            short: Sites::new(&short4, hash, MAX_FILTER_BITS_LOG2, false),
            wrapped: Sites::new(&wrapped4, hash, MAX_FILTER_BITS_LOG2, false),
            form_at: form_at(&site_base, total),
            site_base,
            short_exact,
            short_hex,
            short_base64,
        })
    }

    /// Grid positions are the multiples of the stride.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Number of registered (gram, site) entries.
    pub(crate) fn entries(&self) -> usize {
        self.long.iter().map(Table::len).sum::<usize>()
            + self.short.table.len()
            + self.wrapped.table.len()
    }

    /// Approximate heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.filter.words.len() * 8
            + self.filter8.words.len() * 8
            + self.long.iter().map(Table::heap_bytes).sum::<usize>()
            + self.short.heap_bytes()
            + self.wrapped.heap_bytes()
            + self.site_base.len() * 4
            + self.form_at.len() * 4
            + 3 * ShortGrams::HEAP_BYTES
    }

    /// `false` when no form has the gram `key` anywhere; `true` means "maybe".
    #[inline(always)]
    pub(crate) fn may_contain(&self, key: u32) -> bool {
        self.filter.may_contain(hash(key))
    }

    /// `(form, offset)` of every site of a value of at least 12 bytes registered with the
    /// 8-byte gram `key` (a [`key8`]).
    #[inline]
    pub(crate) fn long_candidates(&self, key: u64) -> impl Iterator<Item = (usize, usize)> + '_ {
        let fingerprint = fingerprint8(key);
        let h = hash(fingerprint);
        let class = class8(key);
        let table = &self.long[class];
        // An empty table's filter holds no bits: every probe fails.
        let sites = self
            .filter8
            .may_contain(class, h)
            .then(|| table.sites(fingerprint, h));
        sites.into_iter().flatten().map(|site| self.resolve(site))
    }

    /// `(form, offset)` of every site of a value shorter than 12 bytes registered with the
    /// 4-byte gram `key`.
    #[inline]
    pub(crate) fn short_candidates(&self, key: u32) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.short.get(key, hash).map(|site| self.resolve(site))
    }

    /// Whether the gram `key` spanning a line break may have candidates (see
    /// [`Index::short_candidates`] and [`Index::wrapped_candidates`]).
    #[inline(always)]
    pub(crate) fn may_join(&self, key: u32) -> bool {
        let h = hash(key);
        self.short.may_contain(h) || self.wrapped.may_contain(h)
    }

    /// `(form, offset)` of every site of a base64 or `od -c` form of a value of at least 12
    /// bytes registered with the 4-byte gram `key`: for joins and the end of the data.
    #[inline]
    pub(crate) fn wrapped_candidates(&self, key: u32) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.wrapped.get(key, hash).map(|site| self.resolve(site))
    }

    /// Keeps, in order at the front of `hits` (grid positions of `text` whose 4-byte gram
    /// passed the grid's filter), those that may have candidates (see [`Index::long`]), and
    /// returns how many. A hit too close to either end of `text` for its 8-byte grams is kept.
    ///
    /// An 8-byte gram is looked up only if the grid's filter holds its other half (the
    /// 4-byte gram before the hit for the gram `[r - 4, r + 4)`, the one after it for
    /// `[r, r + 8)`; see [`Index::may_hold8`]), which is where most probes stop: on the
    /// benchmark's clean log text with 10,000 secrets 97 % of the grams around a hit outside
    /// hex runs and numbers, and two thirds of those in them, have a half that no form has.
    /// A probe of the grid's filter costs a fraction of one of the 8-byte grams' (4 MiB, and
    /// most of its probes go to the lines the grid itself keeps warm, against 8 MiB), and the
    /// grams it stops are most of those that passed the 8-byte filter falsely, each of which
    /// cost a table read.
    ///
    /// Loops over a batch of hits, each either arithmetic or loads: the first computes the
    /// grid probes of the halves, the second loads them and lists the 8-byte grams that go
    /// on, the third computes those grams' probes (keys, fingerprints, hashes), the fourth
    /// only loads and tests them, so that the out-of-order window holds the probes of many
    /// hits at once and their cache and TLB misses overlap. (In one loop each hit's
    /// forty-odd instructions of hashing came between its loads and the next hit's; with
    /// 10,000 secrets the sift was more than half of the scan's time, and splitting it
    /// measured 1.1x to 1.3x faster on a loaded machine.)
    #[inline]
    pub(crate) fn sift(&self, text: &[u8], hits: &mut [usize]) -> usize {
        let n = hits.len().min(HIT_BATCH);
        // The grid's filter, indexed through its mask (no bounds checks), as in the scan.
        let word_mask = self.filter.word_mask;
        let grid_words = &self.filter.words[..=word_mask];
        // Whether there are values shorter than 12 bytes at all (none in most large sets).
        let short = !self.short.table.keys.is_empty();
        // 1. The grid probes of each hit's halves (`2k`: before it, `2k + 1`: after it).
        let mut words = [0usize; 2 * HIT_BATCH];
        let mut masks = [0u64; 2 * HIT_BATCH];
        let mut keep = [false; HIT_BATCH];
        for k in 0..n {
            let r = hits[k];
            match text.get(r.wrapping_sub(4)..r + 8) {
                Some(around) => {
                    (words[2 * k], masks[2 * k]) = Bloom::probe(hash(key(around)));
                    (words[2 * k + 1], masks[2 * k + 1]) = Bloom::probe(hash(key(&around[8..])));
                    keep[k] = short && self.short.filter.may_contain(hash(key(&around[4..])));
                }
                // Too close to an end for its 8-byte grams: kept.
                None => keep[k] = true,
            }
        }
        // 2. The 8-byte grams (`2k`: at `r - 4`, `2k + 1`: at `r`) whose other half passed,
        // of the hits not kept already.
        let mut grams = [0usize; 2 * HIT_BATCH];
        let mut m = 0;
        for p in 0..2 * n {
            grams[m] = p;
            let half = grid_words[words[p] & word_mask] & masks[p] == masks[p];
            m += usize::from(half & !keep[p / 2]);
        }
        // 3. Their probes...
        let filter = &self.filter8;
        for j in 0..m {
            let p = grams[j];
            let at = hits[p / 2] - 4 + 4 * (p % 2);
            let k = key8(&text[at..]);
            (words[j], masks[j]) = filter.slot(class8(k), hash(fingerprint8(k)));
        }
        // 4. ...only loads and tests. An empty table's filter holds no bits: its probes fail.
        let bits = &filter.words[..];
        for j in 0..m {
            keep[grams[j] / 2] |= bits[words[j]] & masks[j] == masks[j];
        }
        let mut kept = 0;
        for k in 0..n {
            hits[kept] = hits[k];
            kept += usize::from(keep[k]);
        }
        kept
    }

    /// Whether the 8-byte gram whose other half (besides a grid hit) is the 4-byte gram `half`
    /// may be a gram of some form: every 4-byte gram of a form, as the output may spell it,
    /// is in the grid's filter, so a gram of the output that extension would take for one has
    /// both its halves there (see [`Index::sift`]).
    #[inline(always)]
    pub(crate) fn may_hold8(&self, half: u32) -> bool {
        self.may_contain(half)
    }

    fn resolve(&self, site: u32) -> (usize, usize) {
        resolve(&self.site_base, &self.form_at, site)
    }

    /// Whether `piece` (one to three bytes) could be a piece of some form, as far as the
    /// short-gram sets tell (they may answer yes wrongly, never no wrongly).
    pub(crate) fn may_be_piece(&self, piece: &[u8]) -> bool {
        self.short_exact.contains(piece) || self.may_be_wrapped_piece(piece)
    }

    /// Whether `piece` (one to three bytes) could be a piece of a form whose pieces may be
    /// wrapped over lines (as far as the short-gram sets tell: never no wrongly). Extension
    /// takes `E2b` for `e2b` and `-` for `+` character by character, so the piece is looked up
    /// in each family's own spelling.
    pub(crate) fn may_be_wrapped_piece(&self, piece: &[u8]) -> bool {
        let mut hex = [0u8; 3];
        let mut base64 = [0u8; 3];
        let n = piece.len().min(3);
        for (k, &b) in piece[..n].iter().enumerate() {
            hex[k] = if matches!(b, b'A'..=b'F') {
                b | 0x20
            } else {
                b
            };
            base64[k] = match b {
                b'-' => b'+',
                b'_' => b'/',
                b => b,
            };
        }
        let found = piece.len() > 3
            || self.short_hex.contains(&hex[..n])
            || self.short_base64.contains(&base64[..n]);
        hex.zeroize();
        base64.zeroize();
        found
    }

    /// Probes the grid positions `r, r + stride, ...` below `r_end` of `text` (each with 4
    /// bytes available there), storing the ones that pass the filter in `hits`, and stops
    /// early when `hits` is full. Returns the next position to probe and the number of hits.
    ///
    /// This is the hot loop of the redactor. The common strides have a copy of the loop of
    /// their own, in which the stride is a constant: 9 (every secret of 12 bytes or more) and
    /// 5 (8-byte secrets). There the four grams of a block are loads at constant offsets and
    /// their positions constants to add, and the loop is a function apart from the rest of
    /// the pass, whose many live values had pushed its own (the stride, the filter, the
    /// bounds) out of registers into reloads from the stack every block. With the probe of
    /// [`Bloom::probe`] (no shift by a variable amount) a grid position went from about 29
    /// instructions to about 20, and the push with 1, 100 and 10,000 secrets measured 1.10x
    /// faster in one process, every pair of runs faster.
    #[inline(always)]
    pub(crate) fn scan(
        &self,
        text: &[u8],
        r: usize,
        r_end: usize,
        hits: &mut [usize; HIT_BATCH],
    ) -> (usize, usize) {
        match self.stride {
            9 => self.scan_at::<9>(text, r, r_end, hits),
            5 => self.scan_at::<5>(text, r, r_end, hits),
            _ => self.scan_at_any(text, r, r_end, hits),
        }
    }

    /// [`Index::scan`] with the stride `S`.
    #[inline(never)]
    fn scan_at<const S: usize>(
        &self,
        text: &[u8],
        r: usize,
        r_end: usize,
        hits: &mut [usize; HIT_BATCH],
    ) -> (usize, usize) {
        self.scan_with(S, text, r, r_end, hits)
    }

    /// [`Index::scan`] with any other stride.
    #[inline(never)]
    fn scan_at_any(
        &self,
        text: &[u8],
        r: usize,
        r_end: usize,
        hits: &mut [usize; HIT_BATCH],
    ) -> (usize, usize) {
        self.scan_with(self.stride, text, r, r_end, hits)
    }

    /// [`Index::scan`] with the stride `s` (a constant where inlined into [`Index::scan_at`]).
    #[inline(always)]
    fn scan_with(
        &self,
        s: usize,
        text: &[u8],
        mut r: usize,
        r_end: usize,
        hits: &mut [usize; HIT_BATCH],
    ) -> (usize, usize) {
        // The filter has a power-of-two number of words; indexing through the mask lets the
        // compiler drop the bounds check.
        let word_mask = self.filter.word_mask;
        let words = &self.filter.words[..=word_mask];
        let test = |gram: &[u8]| {
            let (word, mask) = Bloom::probe(hash(key(gram)));
            words[word & word_mask] & mask == mask
        };
        let mut n = 0;
        // With a stride of at least 4 every gram lies within its own stride, so four strides
        // are four grams at fixed offsets of one block.
        if s >= 4 {
            while r + 3 * s < r_end && n + 4 <= HIT_BATCH {
                // One bounds check for the block's four grams.
                let block = &text[r..r + 3 * s + 4];
                let (a, b, c, d) = (
                    test(block),
                    test(&block[s..]),
                    test(&block[2 * s..]),
                    test(&block[3 * s..]),
                );
                // Without a branch on the probes: with thousands of secrets a seventh of all
                // positions hit, a branch on them is mispredicted often, and every
                // misprediction throws away the probes of the blocks after it that were
                // already in flight. (`n` stays below `HIT_BATCH` here: the remainder only
                // spares a bounds check.)
                for (k, hit) in [a, b, c, d].into_iter().enumerate() {
                    hits[n % HIT_BATCH] = r + k * s;
                    n += usize::from(hit);
                }
                r += 4 * s;
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
}

/// Bit `n` of a set whose length is a power of two (higher bits of `n` wrap around).
fn bit(set: &[u64], n: usize) -> bool {
    set[(n / 64) & (set.len() - 1)] & (1 << (n % 64)) != 0
}

fn set_bit(set: &mut [u64], n: usize) {
    let mask = set.len() - 1;
    set[(n / 64) & mask] |= 1 << (n % 64);
}

fn gram2(a: u8, b: u8) -> usize {
    usize::from(a) << 8 | usize::from(b)
}

fn gram3(a: u8, b: u8, c: u8) -> usize {
    let h =
        (u64::from(a) << 16 | u64::from(b) << 8 | u64::from(c)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 48) as usize
}

/// The one-, two- and three-byte pieces of some forms, as bit sets (exact for one and two
/// bytes, hashed for three).
struct ShortGrams {
    g1: [u64; 4],
    g2: Zeroizing<Vec<u64>>,
    g3: Zeroizing<Vec<u64>>,
}

impl ShortGrams {
    const WORDS: usize = 1 << 10;
    const HEAP_BYTES: usize = 2 * Self::WORDS * 8;

    fn new() -> ShortGrams {
        ShortGrams {
            g1: [0; 4],
            g2: Zeroizing::new(vec![0; Self::WORDS]),
            g3: Zeroizing::new(vec![0; Self::WORDS]),
        }
    }

    /// Adds every piece of one to three bytes of `text`.
    fn add(&mut self, text: &[u8]) {
        for (k, &a) in text.iter().enumerate() {
            set_bit(&mut self.g1, usize::from(a));
            let Some(&b) = text.get(k + 1) else { continue };
            set_bit(&mut self.g2, gram2(a, b));
            let Some(&c) = text.get(k + 2) else { continue };
            set_bit(&mut self.g3, gram3(a, b, c));
        }
    }

    fn contains(&self, piece: &[u8]) -> bool {
        match *piece {
            [a] => bit(&self.g1, usize::from(a)),
            [a, b] => bit(&self.g2, gram2(a, b)),
            [a, b, c] => bit(&self.g3, gram3(a, b, c)),
            _ => true,
        }
    }
}

/// Whether the `q` characters of `form` from `j` are all the value's own bytes (see
/// [`Form::plain`]): such a gram is indexed at the value itself.
fn own(form: &Form, j: usize, q: usize) -> bool {
    form.plain
        .as_ref()
        .is_some_and(|bits| (j..j + q).all(|c| bits[c / 64] & (1 << (c % 64)) != 0))
}

/// The grams of `form` to register, thinned inside periodic stretches: calls `keep(j)` for
/// each offset `j` of `grams` (the raw grams at every offset) that is registered.
fn thinned<G: PartialEq>(grams: &[G], mut keep: impl FnMut(usize)) {
    // A gram equal to one at most `MAX_PERIOD` before it lies in a periodic stretch.
    let periodic = |j: usize| (1..=MAX_PERIOD.min(j)).any(|d| grams[j] == grams[j - d]);
    let n = grams.len();
    let mut j = 0;
    while j < n {
        if !periodic(j) {
            keep(j);
            j += 1;
            continue;
        }
        let start = j;
        while j < n && periodic(j) {
            j += 1;
        }
        for k in start..j {
            if k - start < PERIODIC_EDGE || j - k <= PERIODIC_EDGE {
                keep(k);
            }
        }
    }
}

/// Registers every 4-byte gram of `form` (thinned inside periodic stretches) at its site.
fn register(form: &Form, base: u32, entries: &mut Vec<(u32, u32)>, grams: &mut Vec<u32>) {
    let t = &form.text;
    if t.len() < 4 {
        return;
    }
    grams.clear();
    grams.extend(
        t.windows(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
    );
    let mut keys = Vec::with_capacity(16);
    thinned(grams, |j| {
        // A gram of the value's own bytes is indexed at the value itself.
        if !own(form, j, 4) {
            keys.clear();
            push_gram(form, grams[j], &mut keys);
            entries.extend(keys.iter().map(|&k| (k, base + j as u32)));
        }
    });
}

/// Registers every 8-byte gram of `form` (thinned inside periodic stretches) at its site, in
/// `entries[class8(key)]` (see [`Filter8`]).
fn register8(form: &Form, base: u32, entries: [&mut Vec<(u32, u32)>; 3], grams: &mut Vec<u64>) {
    let t = &form.text;
    if t.len() < 8 {
        return;
    }
    grams.clear();
    grams.extend(
        t.windows(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("an 8-byte window"))),
    );
    let [long, hex, numeric] = entries;
    thinned(grams, |j| {
        if !own(form, j, 8) {
            let key = fold8(grams[j]);
            let entry = (fingerprint8(key), base + j as u32);
            // A branch per class rather than an index into `entries`: the pushes stay on
            // vectors the compiler can keep in registers (building for 20 secrets has less
            // than 5 ms), and most grams are of the first class.
            match class8_of_gram(key) {
                OTHER8 => long.push(entry),
                HEX8 => hex.push(entry),
                _ => numeric.push(entry),
            }
        }
    });
}

/// Appends the keys of the 4-byte gram `raw` of `form`: every spelling of it that extension
/// accepts (`same` in `extend`), so that the grid, the joins and holding back, which look the
/// output's bytes up as they are, find what extension would take: a hex form's lower-case
/// letters (`a`-`f`, `x`) in either case, a base64 form's `+` and `/` in either alphabet, in
/// every mix (the output may mix them: hex from two tools, base64 pasted together).
fn push_gram(form: &Form, raw: u32, keys: &mut Vec<u32>) {
    keys.push(raw);
    // Bit `k` set: byte `k` has another spelling.
    let swappable = match form.family {
        Family::Exact | Family::OdC => return,
        // Lower-case ASCII letters: bytes `0x61..=0x7a`.
        Family::Hex => raw
            .to_le_bytes()
            .iter()
            .enumerate()
            .fold(0u32, |set, (k, b)| {
                set | u32::from(b.is_ascii_lowercase()) << k
            }),
        Family::Base64 => raw
            .to_le_bytes()
            .iter()
            .enumerate()
            .fold(0u32, |set, (k, b)| {
                set | u32::from(matches!(b, b'+' | b'/')) << k
            }),
    };
    // Every non-empty subset of them (the submasks of `swappable`, largest first).
    let mut mask = swappable;
    while mask != 0 {
        let mut mixed = raw.to_le_bytes();
        for (k, b) in mixed.iter_mut().enumerate() {
            if mask & (1 << k) != 0 {
                *b = match *b {
                    b'+' => b'-',
                    b'/' => b'_',
                    b => b.to_ascii_uppercase(),
                };
            }
        }
        keys.push(u32::from_le_bytes(mixed));
        mask = (mask - 1) & swappable;
    }
}

/// Sites per entry of [`Index::form_at`].
const RESOLVE_BLOCK: u32 = 64;

/// [`Index::form_at`]: for each block of `RESOLVE_BLOCK` sites (of `total`), the last form
/// starting at or before the block's first site.
fn form_at(site_base: &[u32], total: u64) -> Vec<u32> {
    let blocks = total.div_ceil(u64::from(RESOLVE_BLOCK)) as usize;
    let mut at = Vec::with_capacity(blocks);
    let mut form = 0;
    for block in 0..blocks {
        let site = block as u64 * u64::from(RESOLVE_BLOCK);
        while site_base
            .get(form + 1)
            .is_some_and(|&next| u64::from(next) <= site)
        {
            form += 1;
        }
        at.push(form as u32);
    }
    at
}

/// The form holding `site` and the offset in it: the last form starting at or before it.
fn resolve(site_base: &[u32], form_at: &[u32], site: u32) -> (usize, usize) {
    let mut form = form_at[(site / RESOLVE_BLOCK) as usize] as usize;
    while site_base.get(form + 1).is_some_and(|&next| next <= site) {
        form += 1;
    }
    (form, (site - site_base[form]) as usize)
}

fn log2_ceil(n: usize) -> u32 {
    n.next_power_of_two().trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The folding of one byte, as [`fold8`] must do it in every lane.
    fn fold_byte(b: u8) -> u8 {
        if matches!(b, b'A'..=b'F' | b'X') {
            b | 0x20
        } else {
            b
        }
    }

    #[test]
    fn hex_digit_keys_are_told_apart_from_every_other_byte_in_every_lane() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                for other in [b'0', b'9', b'a', b'F'] {
                    let mut bytes = [other; 8];
                    bytes[lane] = b;
                    let want = b.is_ascii_hexdigit();
                    assert_eq!(all_hex8(u64::from_le_bytes(bytes)), want, "{bytes:02x?}");
                }
                // Positive control: no other byte in any lane is read as a digit.
                let mut bytes = [b'g'; 8];
                bytes[lane] = b;
                assert!(!all_hex8(u64::from_le_bytes(bytes)));
            }
        }
    }

    #[test]
    fn numeric_keys_are_told_apart_from_every_other_byte_in_every_lane() {
        let numeric = |b: u8| matches!(b, b' ' | b'+'..=b':' | b'T' | b'Z');
        for b in 0..=255u8 {
            for lane in 0..8 {
                for other in [b'0', b'9', b':', b' ', b'T', b'.'] {
                    let mut bytes = [other; 8];
                    bytes[lane] = b;
                    let key = u64::from_le_bytes(bytes);
                    assert_eq!(all_numeric8(key), numeric(b), "{bytes:02x?}");
                }
                // Positive control: no other byte in any lane is read as numeric.
                let mut bytes = [b'g'; 8];
                bytes[lane] = b;
                assert!(!all_numeric8(u64::from_le_bytes(bytes)));
            }
        }
    }

    #[test]
    fn building_and_sifting_give_a_key_the_same_class() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let alphabet = b" +,-./0123456789:TZabcdefABCDEFxX_g~\x00\x7f\x80\xff";
        let mut numeric = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x
                .to_le_bytes()
                .map(|b| alphabet[usize::from(b) % alphabet.len()]);
            let key = fold8(u64::from_le_bytes(bytes));
            assert_eq!(class8_of_gram(key), class8(key), "{bytes:02x?}");
            numeric += usize::from(class8(key) == NUMERIC8);
        }
        // Positive control: the keys drawn include numeric ones.
        assert!(numeric > 0);
        for b in 0..=255u8 {
            for other in [b'0', b':', b' ', b'a', b'Z'] {
                let mut bytes = [other; 8];
                bytes[3] = b;
                let key = fold8(u64::from_le_bytes(bytes));
                assert_eq!(class8_of_gram(key), class8(key), "{bytes:02x?}");
            }
        }
    }

    #[test]
    fn a_key_has_one_class_hex_before_numeric() {
        let class = |text: &[u8; 8]| class8(key8(text));
        assert_eq!(class(b"12345678"), HEX8);
        assert_eq!(class(b"0cA1f9b2"), HEX8);
        assert_eq!(class(b"12:34:56"), NUMERIC8);
        assert_eq!(class(b"5-11-25T"), NUMERIC8);
        assert_eq!(class(b"56.789Z "), NUMERIC8);
        // Positive control: hex letters with separators, and words, are neither.
        assert_eq!(class(b"0c:a1:59"), OTHER8);
        assert_eq!(class(b"the user"), OTHER8);
        assert_eq!(class(b"1234567g"), OTHER8);
    }

    #[test]
    fn the_scan_with_a_constant_stride_finds_what_the_scan_with_any_stride_finds() {
        // Many secrets, so that a good part of the grid's positions hit, and text that
        // prints some of them between log words.
        let secrets: Vec<Vec<u8>> = (0..300u32)
            .map(|k| format!("tok{k:05}-{:08x}", k.wrapping_mul(0x9E37_79B9)).into_bytes())
            .collect();
        let redactor = crate::Redactor::new(&secrets).expect("valid secrets");
        let index = &redactor.index;
        assert_eq!(index.stride(), 9);
        let mut text = Vec::new();
        for (k, secret) in secrets.iter().enumerate().take(200) {
            text.extend_from_slice(format!("line {k} user=").as_bytes());
            text.extend_from_slice(secret);
            text.extend_from_slice(b" done\n");
        }
        let run = |constant: bool, from: usize| {
            let mut found = Vec::new();
            let mut r = from;
            let r_end = text.len() - 3;
            let mut hits = [0usize; HIT_BATCH];
            while r < r_end {
                let (next, n) = if constant {
                    index.scan_at::<9>(&text, r, r_end, &mut hits)
                } else {
                    index.scan_at_any(&text, r, r_end, &mut hits)
                };
                found.extend_from_slice(&hits[..n]);
                r = next;
            }
            found
        };
        for from in 0..9 {
            let any = run(false, from);
            // Positive control: the printed secrets hit (more than a batch of them).
            assert!(any.len() > HIT_BATCH, "{} hits", any.len());
            assert!(
                any.iter()
                    .all(|&r| (r - from) % 9 == 0 && index.may_contain(key(&text[r..])))
            );
            assert_eq!(run(true, from), any);
        }
    }

    #[test]
    fn the_sift_keeps_a_hit_inside_a_long_secret_and_drops_one_whose_grams_have_no_other_half() {
        let secret = b"k9QmW2vRt7LpX4sN";
        let redactor = crate::Redactor::new([secret]).expect("a valid secret");
        let index = &redactor.index;
        // Positive control: a hit on the secret's third 4-byte gram, printed in full, is kept.
        let mut text = b"lorem ipsum: ".to_vec();
        let at = text.len();
        text.extend_from_slice(secret);
        text.extend_from_slice(b" dolor sit amet");
        let mut hits = [at + 8];
        assert!(index.may_contain(key(&text[at + 8..])));
        assert_eq!(index.sift(&text, &mut hits), 1);
        // The same gram between bytes that no form has: its 8-byte grams' other halves are
        // not in the grid's filter, so the hit is dropped without an 8-byte probe.
        let mut text = b"lorem ipsum: ~~~~".to_vec();
        let at = text.len();
        text.extend_from_slice(&secret[8..12]);
        text.extend_from_slice(b"~~~~ dolor sit amet");
        assert!(index.may_contain(key(&text[at..])));
        assert!(!index.may_hold8(key(&text[at - 4..])));
        assert!(!index.may_hold8(key(&text[at + 4..])));
        let mut hits = [at];
        assert_eq!(index.sift(&text, &mut hits), 0);
    }

    #[test]
    fn a_site_resolves_to_the_last_form_starting_at_or_before_it() {
        // Forms of every length, empty ones and ones longer than a block included.
        let site_base = [0u32, 5, 5, 70, 200, 201, 330, 330, 331];
        let total = 400u64;
        let form_at = form_at(&site_base, total);
        for site in 0..total as u32 {
            let want = site_base.partition_point(|&b| b <= site) - 1;
            let (form, offset) = resolve(&site_base, &form_at, site);
            assert_eq!((form, offset), (want, (site - site_base[want]) as usize));
        }
        // Positive control: a site inside a later form is not resolved to an earlier one.
        assert_eq!(resolve(&site_base, &form_at, 199), (3, 129));
        assert_eq!(resolve(&site_base, &form_at, 330), (7, 0));
    }

    #[test]
    fn the_8_byte_key_lowers_hex_letters_and_x_only_in_every_lane() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                for other in [0x00u8, 0x41, 0x7f, 0x80, 0xff] {
                    let mut bytes = [other; 8];
                    bytes[lane] = b;
                    let want = bytes.map(|c| match fold_byte(c) {
                        b'-' => b'+',
                        b'_' => b'/',
                        c => c,
                    });
                    assert_eq!(
                        fold8(u64::from_le_bytes(bytes)),
                        u64::from_le_bytes(want),
                        "{bytes:02x?}"
                    );
                }
            }
        }
    }
}
