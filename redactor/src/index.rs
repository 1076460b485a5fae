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
//! A grid position costs one load, a fold (ASCII letters to lower case, so that hex in either
//! case is one key) and one probe of a blocked Bloom filter; hits are confirmed in a table
//! bucketed by the exact gram, whose entries name a form and an offset ("site").
//!
//! # Bounds
//!
//! A gram that repeats with a short period inside one form (a long run of one byte, say) is
//! registered only near both ends of each periodic stretch: an occurrence inside the stretch
//! is found from any of them, and one crossing an end from one near that end. This bounds the
//! candidates of a hit, and so the cost of pathological output.

use zeroize::Zeroizing;

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
const MIN_FILTER_BITS_LOG2: u32 = 9;

/// Fibonacci hashing: one multiplication spreads the key over the high bits.
#[inline(always)]
fn hash(key: u32) -> u64 {
    u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// ASCII letters (and `@[\]^_`) to the lower-case half: hex digits in either case, `%2F` and
/// `%2f`, give one key. Bytes below 0x40 (digits, punctuation, controls, NUL) are unchanged.
#[inline(always)]
pub(crate) fn fold(key: u32) -> u32 {
    key | ((key >> 1) & 0x2020_2020)
}

/// [`fold`] for an 8-byte gram.
#[inline(always)]
pub(crate) fn fold8(key: u64) -> u64 {
    key | ((key >> 1) & 0x2020_2020_2020_2020)
}

/// The folded key of the 8 bytes at the start of `bytes`.
#[inline(always)]
pub(crate) fn key8(bytes: &[u8]) -> u64 {
    fold8(u64::from_le_bytes(
        bytes[..8].try_into().expect("an 8-byte slice"),
    ))
}

fn hash8(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The folded key of the 4 bytes at the start of `bytes`.
#[inline(always)]
pub(crate) fn key(bytes: &[u8]) -> u32 {
    // Slicing checks the length once; converting a slice of exactly 4 bytes cannot fail, and
    // the whole compiles to one unaligned load.
    fold(u32::from_le_bytes(
        bytes[..4].try_into().expect("a 4-byte slice"),
    ))
}

/// A blocked Bloom filter: two bits per key, both in the word its top hash bits select, so a
/// probe is one memory access.
struct Bloom {
    words: Zeroizing<Vec<u64>>,
    shift: u32,
}

impl Bloom {
    fn new(hashes: impl Iterator<Item = u64>, count: usize) -> Bloom {
        let size = (log2_ceil(count.max(1)) + FILTER_BITS_PER_KEY_LOG2)
            .clamp(MIN_FILTER_BITS_LOG2, MAX_FILTER_BITS_LOG2);
        let shift = 64 - (size - 6);
        let mut words = Zeroizing::new(vec![0u64; 1 << (size - 6)]);
        for h in hashes {
            let (word, mask) = Self::probe(h, shift);
            words[word] |= mask;
        }
        Bloom { words, shift }
    }

    /// The word and the two bits of a hashed key.
    #[inline(always)]
    fn probe(h: u64, shift: u32) -> (usize, u64) {
        // Bits 32..44 lie below the word index (`shift >= 64 - 19`) and depend on every byte.
        let mask = (1u64 << ((h >> 32) & 63)) | (1u64 << ((h >> 38) & 63));
        ((h >> shift) as usize, mask)
    }

    #[inline(always)]
    fn may_contain(&self, h: u64) -> bool {
        let (word, mask) = Self::probe(h, self.shift);
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

    fn heap_bytes(&self) -> usize {
        self.starts.len() * 4 + self.keys.len() * (std::mem::size_of::<K>() + 4)
    }
}

/// See the module documentation.
pub(crate) struct Index {
    stride: usize,
    filter: Bloom,
    /// The sites of every 4-byte gram but those of [`Index::hex8`].
    table: Table<u32>,
    /// The hex forms of values of at least 12 bytes are looked up by 8-byte grams: four hex
    /// digits carry only 16 bits, and hex text (hashes, ids) is common in output, so 4-byte
    /// hex grams of a hundred secrets already match a fair share of any hex in the output.
    /// Their 4-byte grams are in the filter (a first look); a hit then checks the 8-byte
    /// grams starting and ending with it here. A piece of such a form covers 12 bytes, so
    /// each of its segments (what lies between line breaks) is at least 12 characters long,
    /// and holds one of those two 8-byte grams around any 4-byte gram inside it.
    hex8_filter: Bloom,
    hex8: Table<u64>,
    /// First site of each form, increasing.
    site_base: Vec<u32>,
    /// Short pieces of forms (one to three bytes, as the output may spell them), for deciding
    /// whether the
    /// last bytes of a push could begin an occurrence.
    grams1: [u64; 4],
    grams2: Zeroizing<Vec<u64>>,
    grams3: Zeroizing<Vec<u64>>,
    /// One-, two- and three-byte pieces of the forms whose pieces may begin with that few
    /// characters at the end of a line (base64, hex).
    wrapped1: [u64; 4],
    wrapped2: Zeroizing<Vec<u64>>,
    wrapped3: Zeroizing<Vec<u64>>,
}

/// Why an index could not be built.
pub(crate) struct TooLarge(pub(crate) usize);

impl Index {
    /// Indexes `forms`; `shortest` is the shortest qualifying piece over all of them.
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
        let mut entries: Zeroizing<Vec<(u32, u32)>> =
            Zeroizing::new(Vec::with_capacity(total as usize + total as usize / 8));
        let mut grams1 = [0u64; 4];
        let mut grams2 = Zeroizing::new(vec![0u64; 1 << 10]);
        let mut grams3 = Zeroizing::new(vec![0u64; 1 << 10]);
        let mut wrapped1 = [0u64; 4];
        let mut wrapped2 = Zeroizing::new(vec![0u64; 1 << 10]);
        let mut wrapped3 = Zeroizing::new(vec![0u64; 1 << 10]);
        let mut grams = Vec::new();
        let mut hex8: Zeroizing<Vec<(u64, u32)>> = Zeroizing::new(Vec::new());
        let mut filter_only: Zeroizing<Vec<u32>> = Zeroizing::new(Vec::new());
        for (f, form) in forms.iter().enumerate() {
            if form.family == Family::Hex && long[f] {
                let mut these = Zeroizing::new(Vec::new());
                register(form, site_base[f], &mut these, &mut grams);
                let t = &form.text;
                for &(key, site) in these.iter() {
                    filter_only.push(key);
                    let j = (site - site_base[f]) as usize;
                    if j + 8 <= t.len() {
                        hex8.push((key8(&t[j..]), site));
                    }
                }
            } else {
                register(form, site_base[f], &mut entries, &mut grams);
            }
            // A base64 or hex piece may begin with fewer than four characters at the end of a
            // line (an `od -c` piece begins with a whole four-character field): their short
            // grams go into the wrapped sets, which join the others below.
            if matches!(form.family, Family::Base64 | Family::Hex) {
                short_grams(form, &mut wrapped1, &mut wrapped2, &mut wrapped3);
            } else {
                short_grams(form, &mut grams1, &mut grams2, &mut grams3);
            }
        }
        for (all, wrapped) in [
            (&mut grams1[..], &wrapped1[..]),
            (&mut grams2[..], &wrapped2[..]),
            (&mut grams3[..], &wrapped3[..]),
        ] {
            for (a, w) in all.iter_mut().zip(wrapped) {
                *a |= w;
            }
        }
        let filter = Bloom::new(
            entries
                .iter()
                .map(|e| e.0)
                .chain(filter_only.iter().copied())
                .map(hash),
            entries.len() + filter_only.len(),
        );
        let hex8_filter = Bloom::new(hex8.iter().map(|e| hash8(e.0)), hex8.len());
        Ok(Index {
            stride,
            filter,
            table: Table::new(&entries, hash),
            hex8_filter,
            hex8: Table::new(&hex8, hash8),
            site_base,
            grams1,
            grams2,
            grams3,
            wrapped1,
            wrapped2,
            wrapped3,
        })
    }

    /// Grid positions are the multiples of the stride.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Number of registered (gram, site) entries.
    pub(crate) fn entries(&self) -> usize {
        self.table.keys.len() + self.hex8.keys.len()
    }

    /// Approximate heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.filter.words.len() + self.hex8_filter.words.len()) * 8
            + self.table.heap_bytes()
            + self.hex8.heap_bytes()
            + self.site_base.len() * 4
            + (self.grams2.len() + self.grams3.len() + self.wrapped2.len() + self.wrapped3.len())
                * 8
    }

    /// `false` when no site has the gram `key`; `true` means "maybe".
    #[inline(always)]
    pub(crate) fn may_contain(&self, key: u32) -> bool {
        self.filter.may_contain(hash(key))
    }

    /// `(form, offset)` of every site registered with the gram `key` (but those looked up by
    /// 8-byte grams).
    #[inline]
    pub(crate) fn candidates(&self, key: u32) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.table
            .sites(key, hash(key))
            .map(|site| self.resolve(site))
    }

    /// Whether some forms are looked up by 8-byte grams (see [`Index::hex8`]).
    pub(crate) fn has_hex8(&self) -> bool {
        !self.hex8.keys.is_empty()
    }

    /// `(form, offset)` of every hex site registered with the 8-byte gram `key`.
    #[inline]
    pub(crate) fn hex8_candidates(&self, key: u64) -> impl Iterator<Item = (usize, usize)> + '_ {
        let h = hash8(key);
        let maybe = self.hex8_filter.may_contain(h);
        self.hex8
            .sites(key, h)
            .take(if maybe { usize::MAX } else { 0 })
            .map(|site| self.resolve(site))
    }

    fn resolve(&self, site: u32) -> (usize, usize) {
        let form = self.site_base.partition_point(|&b| b <= site) - 1;
        (form, (site - self.site_base[form]) as usize)
    }

    /// Whether `piece` (one to three bytes) could be a piece of some form, as far as the
    /// short-gram sets tell (they may answer yes wrongly, never no wrongly).
    pub(crate) fn may_be_piece(&self, piece: &[u8]) -> bool {
        match *piece {
            [a] => bit(&self.grams1, usize::from(a)),
            [a, b] => bit(&self.grams2, gram2(a, b)),
            [a, b, c] => bit(&self.grams3, gram3(a, b, c)),
            _ => true,
        }
    }

    /// Whether `piece` (one to three bytes) could be a piece of a form whose pieces may be
    /// wrapped over lines (as far as the short-gram sets tell: never no wrongly).
    pub(crate) fn may_be_wrapped_piece(&self, piece: &[u8]) -> bool {
        match *piece {
            [a] => bit(&self.wrapped1, usize::from(a)),
            [a, b] => bit(&self.wrapped2, gram2(a, b)),
            [a, b, c] => bit(&self.wrapped3, gram3(a, b, c)),
            _ => true,
        }
    }

    /// Probes the grid positions `r, r + stride, ...` below `r_end` of `text` (each with 4
    /// bytes available there), storing the ones that pass the filter in `hits`, and stops
    /// early when `hits` is full. Returns the next position to probe and the number of hits.
    ///
    /// This is the hot loop of the redactor: a plain function over slices, four independent
    /// probes per iteration and one branch for all four (hits are rare).
    #[inline(always)]
    pub(crate) fn scan(
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
            let (word, mask) = Bloom::probe(hash(key(gram)), shift);
            words[word & word_mask] & mask == mask
        };
        let mut n = 0;
        // With a stride of at least 4 every gram lies within its own stride, so four strides
        // are four grams at fixed offsets of one block.
        if s >= 4 {
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

/// The ways the output may spell the characters of `form`: as they are, with hex digits in
/// upper case, with the URL-safe base64 alphabet.
fn variants(form: &Form) -> impl Iterator<Item = fn(u8) -> u8> {
    let same: fn(u8) -> u8 = |b| b;
    let url: fn(u8) -> u8 = |b| match b {
        b'+' => b'-',
        b'/' => b'_',
        b => b,
    };
    let upper: fn(u8) -> u8 = |b| match b {
        b'a'..=b'f' => b.to_ascii_uppercase(),
        b => b,
    };
    let other = match form.family {
        Family::Base64 if form.text.iter().any(|b| b"+/".contains(b)) => Some(url),
        Family::Hex => Some(upper),
        _ => None,
    };
    std::iter::once(same).chain(other)
}

/// Adds the 1-, 2- and 3-byte pieces of `form`, as the output may spell them, to the
/// short-gram sets. Each character may be spelled either way on its own (extension accepts
/// `E2b` for `e2b`), so every mix of spellings is added.
fn short_grams(form: &Form, g1: &mut [u64; 4], g2: &mut [u64], g3: &mut [u64]) {
    let spells: Vec<fn(u8) -> u8> = variants(form).collect();
    let t = &form.text;
    for k in 0..t.len() {
        for sa in &spells {
            let a = sa(t[k]);
            set_bit(g1, usize::from(a));
            let Some(&b) = t.get(k + 1) else { continue };
            for sb in &spells {
                let b = sb(b);
                set_bit(g2, gram2(a, b));
                let Some(&c) = t.get(k + 2) else { continue };
                if g3.is_empty() {
                    continue;
                }
                for sc in &spells {
                    set_bit(g3, gram3(a, b, sc(c)));
                }
            }
        }
    }
}

/// Registers every gram of `form` (thinned inside periodic stretches) at its site.
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
    // A gram of the value's own bytes is indexed at the value itself.
    let own = |j: usize| {
        form.plain
            .as_ref()
            .is_some_and(|bits| (j..j + 4).all(|c| bits[c / 64] & (1 << (c % 64)) != 0))
    };
    // A gram equal to one at most `MAX_PERIOD` before it lies in a periodic stretch.
    let periodic = |j: usize| (1..=MAX_PERIOD.min(j)).any(|d| grams[j] == grams[j - d]);
    let n = grams.len();
    let mut j = 0;
    while j < n {
        if !periodic(j) {
            if !own(j) {
                push_gram(form, base, j, grams[j], entries);
            }
            j += 1;
            continue;
        }
        let start = j;
        while j < n && periodic(j) {
            j += 1;
        }
        for (k, &gram) in grams.iter().enumerate().take(j).skip(start) {
            if (k - start < PERIODIC_EDGE || j - k <= PERIODIC_EDGE) && !own(k) {
                push_gram(form, base, k, gram, entries);
            }
        }
    }
}

fn push_gram(form: &Form, base: u32, j: usize, raw: u32, entries: &mut Vec<(u32, u32)>) {
    let site = base + j as u32;
    entries.push((fold(raw), site));
    if form.family == Family::Base64 {
        // Extension takes `-` for `+` and `_` for `/` character by character, so every mix of
        // the two alphabets is a key of this site: what holding back probes must find what
        // extension would accept.
        let bytes = raw.to_le_bytes();
        // Bit `k` set: byte `k` is `+` or `/`. Every non-empty subset of them, in order.
        let swappable = (0..4)
            .filter(|&k| matches!(bytes[k], b'+' | b'/'))
            .fold(0u32, |set, k| set | 1 << k);
        for mask in (1..16u32).filter(|&m| m & !swappable == 0) {
            let mut mixed = bytes;
            for (k, b) in mixed.iter_mut().enumerate() {
                if mask & (1 << k) != 0 {
                    *b = if *b == b'+' { b'-' } else { b'_' };
                }
            }
            entries.push((fold(u32::from_le_bytes(mixed)), site));
        }
    }
}

fn log2_ceil(n: usize) -> u32 {
    n.next_power_of_two().trailing_zeros()
}
