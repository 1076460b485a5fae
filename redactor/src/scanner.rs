//! The matching engine shared by whole-buffer and streaming redaction.
//!
//! [`Redactor::redact`](crate::Redactor::redact) is one [`Scanner::push`] of the whole input
//! followed by [`Scanner::finish`], so the two paths run the same code and streaming output
//! equals whole-buffer output for any split of the input.
//!
//! A push looks at the held-back bytes and the new chunk together:
//!
//! 1. *Grid*: it samples the [index](crate::index) at every stride-th stream position; each
//!    hit names candidate (form, offset) pairs, and each candidate is [extended](crate::extend)
//!    both ways into a maximal piece of its form. A piece covering a run of its value
//!    (`W` non-public bytes) is recorded as secret in the [`Coverage`], segment by segment.
//! 2. *Joins*: at every line break it also probes the gram made of the two characters before
//!    it and the two after it (indentation skipped), so that a run wrapped across lines with
//!    fewer than `stride + 3` characters on each side (base64 at 76 columns: 8 and 8) is met.
//! 3. *Hold-back*: a piece that reaches the end of the data may go on, so everything from its
//!    start is held back; so is any shorter suffix that could begin a piece (every position of
//!    the last [`TAIL`] bytes is probed, and the last three bytes are looked up in the short
//!    gram sets). Everything before is final and is written out.
//!
//! Grid positions, joins and pieces inside the held-back bytes are looked at again on the next
//! push, with more data. A piece never extends before the held-back bytes: had it begun
//! there, it would have been held back.

use std::mem;

use zeroize::{Zeroize, Zeroizing};

use crate::Redactor;
use crate::coverage::Coverage;
use crate::extend::{Hay, Piece, extend};
use crate::index::{HIT_BATCH, key, key8};

/// A push is processed in pieces of at most this many bytes, so that the held-back bytes
/// and the secret runs found stay small and the output is produced while the input is in
/// cache.
const PIECE: usize = 1 << 16;

/// How far from the end of the data every position is probed when deciding what to hold
/// back: longer than a grid stride plus a gram plus the layout a dump puts between two lines.
const TAIL: u64 = 80;

/// The most a dump puts between a line's last hex character and its line break:
/// `hexdump -C`'s two spaces and `|` column of 16 characters, with a `\r`, and a margin.
const DUMP_TRAILER: u64 = 24;

/// The longest dump line looked for: `hexdump -C`'s 79 characters, with a margin.
const DUMP_LINE: usize = 100;

/// How many recent pieces are remembered, so that the other seeds of a long piece do not
/// extend it again.
const CACHE: usize = 16;

/// The state of one output stream.
pub(crate) struct Scanner {
    /// Bytes held back: they may be the start of a piece. Grown only through [`grow`], which
    /// wipes the old buffer.
    pending: Zeroizing<Vec<u8>>,
    /// Stream position of `pending[0]`: everything before it has been written out.
    start: u64,
    /// The next grid position to sample.
    next_sample: u64,
    coverage: Coverage,
}

/// What one pass over the held-back bytes and a chunk works with.
struct Pass<'a> {
    redactor: &'a Redactor,
    hay: &'a Hay<'a>,
    last: bool,
    coverage: &'a mut Coverage,
    /// Recent pieces.
    cache: Vec<Piece>,
    /// The earliest start of a piece that may go on.
    hold: u64,
}

impl Pass<'_> {
    /// A grid gram `key` seen at `i` (it passed the grid's filter): extends every candidate of
    /// the values shorter than 12 bytes with that gram, and of the longer ones with the 8-byte
    /// grams around it (see `Index::long`).
    fn confirm(&mut self, i: u64, key: u32, record: bool) {
        let index = &self.redactor.index;
        for (form_id, j) in index.short_candidates(key) {
            self.seed(i, form_id, j, record);
        }
        let (origin, end) = (self.hay.origin, self.hay.end());
        // The candidates of the gram at `i`, so that those of the gram at `i - 4` in the same
        // alignment (the same piece, in a piece that holds both) are not extended again.
        let mut first = [(0usize, 0usize); 8];
        let mut n = 0;
        // An 8-byte gram whose other half no form has is no gram of a form (see
        // `Index::sift`, which drops such hits).
        if i + 8 <= end && index.may_hold8(self.key_at(i + 4)) {
            let key = self.key8_at(i);
            for (form_id, j) in index.long_candidates(key) {
                if n < first.len() {
                    first[n] = (form_id, j);
                    n += 1;
                }
                self.seed(i, form_id, j, record);
            }
        }
        if let Some(at) = i
            .checked_sub(4)
            .filter(|&a| a >= origin && a + 8 <= end && index.may_hold8(self.key_at(a)))
        {
            let key = self.key8_at(at);
            for (form_id, j) in index.long_candidates(key) {
                if first[..n].contains(&(form_id, j + 4)) {
                    self.seed_companions(at, form_id, j, Some(j + 4), record);
                } else {
                    self.seed(at, form_id, j, record);
                }
            }
        }
    }

    /// Extends every candidate of the 8-byte gram at `at` (`at + 8 <= end`).
    #[inline]
    fn confirm8(&mut self, at: u64, record: bool) {
        let key = self.key8_at(at);
        for (form_id, j) in self.redactor.index.long_candidates(key) {
            self.seed(at, form_id, j, record);
        }
    }

    /// The gram `key` spanning a line break, seen at `i`: the values shorter than 12 bytes and
    /// the wrapping forms of the longer ones.
    fn confirm_join(&mut self, i: u64, key: u32, record: bool) {
        let index = &self.redactor.index;
        for (form_id, j) in index.short_candidates(key) {
            self.seed(i, form_id, j, record);
        }
        for (form_id, j) in index.wrapped_candidates(key) {
            self.seed(i, form_id, j, record);
        }
    }

    /// Extends the seed "output `i` spells the form `form_id` at `j`", and, for a value's own
    /// form, its text forms at the same byte (see `Form::plain`).
    fn seed(&mut self, i: u64, form_id: usize, j: usize, record: bool) {
        self.candidate(i, form_id, j, record);
        self.seed_companions(i, form_id, j, None, record);
    }

    /// The text forms of `form_id` (if it is a value's own form) at the byte `j` spelled at
    /// output `i`; with `done = Some(k)`, those whose alignment is the one the seed at
    /// `i + (k - j)` for byte `k` gave them (their tokens in between are one character
    /// each) are skipped: that seed extended them already.
    fn seed_companions(
        &mut self,
        i: u64,
        form_id: usize,
        j: usize,
        done: Option<usize>,
        record: bool,
    ) {
        let redactor = self.redactor;
        let value = redactor.forms[form_id].value as usize;
        if redactor.raw_forms[value] as usize != form_id {
            return;
        }
        for &other in &redactor.companions[value] {
            let form = &redactor.forms[other as usize];
            if let Some(at) = form.offset_of_source(j) {
                if let Some(k) = done
                    && form.offset_of_source(k) == Some(at + (k - j))
                {
                    continue;
                }
                self.candidate(i, other as usize, at, record);
            }
        }
    }

    /// The key ([`key8`]) of the 8 bytes at `pos` (`pos + 8 <= end`).
    fn key8_at(&self, pos: u64) -> u64 {
        let hay = self.hay;
        if pos >= hay.tail_origin() {
            return key8(&hay.tail[(pos - hay.tail_origin()) as usize..]);
        }
        let mut bytes = [0u8; 8];
        for (k, b) in bytes.iter_mut().enumerate() {
            *b = hay.byte(pos + k as u64);
        }
        let key = key8(&bytes);
        bytes.zeroize();
        key
    }

    /// Extends the seed "output `i` spells `form_id` at `j`" unless a recent piece did.
    fn candidate(&mut self, i: u64, form_id: usize, j: usize, record: bool) {
        {
            if self
                .cache
                .iter()
                .any(|p| p.form as usize == form_id && p.aligns(i, j))
            {
                return;
            }
            let form = &self.redactor.forms[form_id];
            let piece = extend(self.hay, form, form_id, i, j, self.last);
            if piece.open {
                self.hold = self.hold.min(piece.start());
            } else if record {
                let (x, y) = piece.form_range();
                let (a, b) = form.source_range(x, y);
                let value = &self.redactor.values[form.value as usize];
                if b > a && value.secret_bytes_in(a, b) >= value.need {
                    self.record(&piece, form.echo);
                }
            }
            if self.cache.len() == CACHE {
                self.cache.remove(0);
            }
            self.cache.push(piece);
        }
    }

    /// Marks a qualifying piece secret, segment by segment (the layout between segments stays
    /// visible). For the `echo $VAR` form, a space at either end is left out: it stands for
    /// the value's own whitespace (`echo $KEY` turns the newlines around a line into spaces),
    /// and masking it would glue the mask to the words around it.
    fn record(&mut self, piece: &Piece, echo: bool) {
        let trim = if echo { 1 } else { 0 };
        let n = piece.segments.len();
        for (k, s) in piece.segments.iter().enumerate() {
            let (mut start, mut end) = (s.start, s.end);
            if k == 0 {
                while start < end
                    && start - s.start < trim
                    && matches!(self.hay.byte(start), b' ' | b'\t')
                {
                    start += 1;
                }
            }
            if k + 1 == n {
                while end > start
                    && s.end - end < trim
                    && matches!(self.hay.byte(end - 1), b' ' | b'\t')
                {
                    end -= 1;
                }
            }
            if start < end {
                self.coverage.add(start, end);
            }
        }
    }

    /// The key of the 4 bytes at `pos` (`pos + 4 <= end`), wherever they lie.
    fn key_at(&self, pos: u64) -> u32 {
        let hay = self.hay;
        if pos >= hay.tail_origin() {
            return key(&hay.tail[(pos - hay.tail_origin()) as usize..]);
        }
        let mut bytes = [0u8; 4];
        for (k, b) in bytes.iter_mut().enumerate() {
            *b = self.hay.byte(pos + k as u64);
        }
        let key = key(&bytes);
        bytes.zeroize();
        key
    }

    /// Samples the grid from `from` (a grid position); returns the first position not
    /// sampled (its gram does not fit yet).
    fn grid(&mut self, from: u64) -> u64 {
        let index = &self.redactor.index;
        let stride = index.stride() as u64;
        let hay = self.hay;
        let end = hay.end();
        let tail_origin = hay.tail_origin();
        let mut i = from;
        // Positions whose gram starts in the held-back bytes.
        while i + 4 <= end && i < tail_origin {
            let key = self.key_at(i);
            if index.may_contain(key) {
                self.confirm(i, key, true);
            }
            i += stride;
        }
        // The hot loop: positions inside the chunk, probed in batches.
        if i + 4 <= end && i >= tail_origin {
            let tail = hay.tail;
            let mut r = (i - tail_origin) as usize;
            let r_end = tail.len() - 3;
            let mut hits = [0usize; HIT_BATCH];
            while r < r_end {
                let (next, found) = index.scan(tail, r, r_end, &mut hits);
                let found = index.sift(tail, &mut hits[..found]);
                for &hit in &hits[..found] {
                    self.confirm(tail_origin + hit as u64, key(&tail[hit..]), true);
                }
                r = next;
            }
            i = tail_origin + r as u64;
        }
        i
    }

    /// Probes the gram spanning each line break (two characters before it, two after the
    /// indentation after it).
    fn joins(&mut self) {
        let hay = self.hay;
        let tail_origin = hay.tail_origin();
        for k in memchr::memchr_iter(b'\n', hay.head) {
            self.join(hay.origin + k as u64);
        }
        let tail = hay.tail;
        for k in memchr::memchr_iter(b'\n', tail) {
            // The common case, all inside the chunk: `ab\ncd`.
            if k >= 2 && k + 3 <= tail.len() {
                let (a, b) = (tail[k - 2], tail[k - 1]);
                let (c, d) = (tail[k + 1], tail[k + 2]);
                let plain = |x: u8| !matches!(x, b'\n' | b'\r' | b' ' | b'\t');
                if plain(a) && plain(b) && plain(c) && plain(d) {
                    let key = key(&[a, b, c, d]);
                    if self.redactor.index.may_join(key) {
                        self.confirm_join(tail_origin + k as u64 - 2, key, true);
                    }
                    continue;
                }
            }
            self.join(tail_origin + k as u64);
        }
    }

    /// The join at the line break at `nl`, wherever its bytes lie.
    fn join(&mut self, nl: u64) {
        let hay = self.hay;
        let (origin, end) = (hay.origin, hay.end());
        let mut a = nl;
        while a > origin && hay.byte(a - 1) == b'\r' {
            a -= 1;
        }
        if a < origin + 2 {
            return;
        }
        let a = a - 2;
        let mut b = nl + 1;
        while b < end && matches!(hay.byte(b), b' ' | b'\t') && b - nl <= 16 {
            b += 1;
        }
        let gram = [hay.byte(a), hay.byte(a + 1)];
        if gram.iter().any(|&c| c == b'\n' || c == b'\r') {
            return;
        }
        if b + 2 > end {
            // The line after it has not come yet: what ends this one may go on there.
            if !self.last && self.redactor.index.may_be_wrapped_piece(&gram) {
                self.hold = self.hold.min(a);
            }
            return;
        }
        let key = key(&[gram[0], gram[1], hay.byte(b), hay.byte(b + 1)]);
        self.confirm_join(a, key, true);
    }

    /// What may begin a piece that goes on after the end of the data.
    fn tail(&mut self) {
        let hay = self.hay;
        let (origin, end) = (hay.origin, hay.end());
        let index = &self.redactor.index;
        let from = end.saturating_sub(TAIL).max(origin);
        let mut p = from;
        while p + 4 <= end {
            let key = self.key_at(p);
            // The grid's filter holds every 4-byte gram of every form: a gram it does not
            // hold begins no site, short, wrapped or 8-byte.
            if !index.may_contain(key) {
                p += 1;
                continue;
            }
            // Every position is probed here, so the 8-byte gram starting at each is enough.
            // Where it does not fit yet, what follows may begin a piece of a longer value if
            // every 4-byte gram of it is a gram of some form.
            self.confirm_join(p, key, false);
            if p + 8 <= end {
                // See `Index::sift`.
                if index.may_hold8(self.key_at(p + 4)) {
                    self.confirm8(p, false);
                }
            } else if (p..=end - 4).all(|k| index.may_contain(self.key_at(k))) {
                self.hold = self.hold.min(p);
            }
            p += 1;
        }
        // The last bytes as they are.
        for len in (1..=3u64).rev() {
            if end >= origin + len {
                let mut piece = [0u8; 3];
                for k in 0..len {
                    piece[k as usize] = hay.byte(end - len + k);
                }
                let found = index.may_be_piece(&piece[..len as usize]);
                piece.zeroize();
                if found {
                    self.hold = self.hold.min(end - len);
                    break;
                }
            }
        }
        // A base64 or hex piece may begin with the last one to three characters of a line and
        // go on after the line break: if what is held (or the end) follows a line break, those
        // characters are held too, line after line.
        // A last line of one to three characters (no gram yet) may go on a wrapped piece from
        // the line before.
        // Data that ends inside a `\r\n` (its `\r` here, its `\n` in the next chunk) ends
        // with a line break: what is before the `\r` is judged as a line's end.
        let mut text_end = end;
        while text_end > origin && end - text_end < 2 && hay.byte(text_end - 1) == b'\r' {
            text_end -= 1;
        }
        if text_end < end {
            if let Some(at) = self.wrapped_start_before(text_end) {
                self.hold = self.hold.min(at);
                self.hold_wrapped_start(at);
            }
        }
        let mut line = text_end;
        while line > origin && text_end - line < 4 && hay.byte(line - 1) != b'\n' {
            line -= 1;
        }
        let short_line =
            line > origin && line < text_end && text_end - line <= 3 && hay.byte(line - 1) == b'\n';
        if short_line {
            let mut piece = [0u8; 3];
            let len = (text_end - line) as usize;
            for (n, b) in piece[..len].iter_mut().enumerate() {
                *b = hay.byte(line + n as u64);
            }
            let wraps = index.may_be_wrapped_piece(&piece[..len]);
            piece.zeroize();
            if wraps {
                self.hold = self.hold.min(line);
            }
        }
        // Data that ends in a dump line's trailer (the spaces and character column after its
        // hex, before its line break): the hex may go on after the line break.
        let line_start = self.line_start(end);
        if self.may_be_dump_line(line_start) {
            self.hold_dump_hex_ends(line_start.max(end.saturating_sub(DUMP_TRAILER)), end);
        }
        // Then every line break whose next line is held (or is all that follows): the last one
        // to three characters before it may begin a piece wrapped there.
        let mut nl = end;
        for _ in 0..8 {
            let Some(at) = (origin..nl).rev().take(80).find(|&p| hay.byte(p) == b'\n') else {
                break;
            };
            nl = at;
            let mut line = at + 1;
            while line < end && matches!(hay.byte(line), b' ' | b'\t') && line - at <= 16 {
                line += 1;
            }
            // A dump's next line begins with an offset column (hex digits, then `:` or
            // spaces) before its first byte: what is held after it (or the end of the data
            // inside it) leaves the piece undecided as well.
            let mut bytes = at + 1;
            while bytes < end && hay.byte(bytes).is_ascii_hexdigit() && bytes - at <= 16 {
                bytes += 1;
            }
            if bytes < end && hay.byte(bytes) == b':' {
                bytes += 1;
            }
            while bytes < end && matches!(hay.byte(bytes), b' ' | b'\t') && bytes - at <= 40 {
                bytes += 1;
            }
            let held = self.hold.min(end);
            if held > line.max(bytes) {
                break;
            }
            // A dump line's hex may end before its character column: a piece wrapped from
            // it there begins with its last characters.
            let line_start = self.line_start(at);
            if self.may_be_dump_line(line_start) {
                self.hold_dump_hex_ends(line_start.max(at.saturating_sub(DUMP_TRAILER)), at);
            }
            if held > line {
                break;
            }
            self.hold_wrapped_start(at + 1);
        }
    }

    /// The start of the line that `pos` is in or ends (after its line break), or `origin` if
    /// that is more than a dump line's length before `pos`.
    fn line_start(&self, pos: u64) -> u64 {
        let hay = self.hay;
        let origin = hay.origin;
        (origin..pos)
            .rev()
            .take(DUMP_LINE)
            .find(|&p| hay.byte(p) == b'\n')
            .map_or(pos.saturating_sub(DUMP_LINE as u64).max(origin), |nl| {
                nl + 1
            })
    }

    /// Whether the line starting at `line` may be a dump line with an offset column (four to
    /// sixteen hex digits, then `:` or a space: `xxd`, `hexdump -C`, `od -tx1`). A line whose
    /// start was written out already (before the held-back bytes, not at the stream's start)
    /// may be one.
    fn may_be_dump_line(&self, line: u64) -> bool {
        let hay = self.hay;
        let end = hay.end();
        if line == hay.origin && line > 0 {
            return true;
        }
        let mut k = line;
        while k < end && hay.byte(k).is_ascii_hexdigit() && k - line < 16 {
            k += 1;
        }
        k - line >= 4 && (k == end || matches!(hay.byte(k), b':' | b' '))
    }

    /// Holds the last characters that could begin a hex piece before every run of layout in
    /// `[from, to)` (a dump line's trailer, or the data's end in one): a hex piece of a dump
    /// may go on across the character column and the line break, and extension reads it so
    /// (`skip_right`, `skip_left`), so the characters before the column are undecided until
    /// the next line's first byte is seen. Pieces of eight characters or more are met by the
    /// probes of the last bytes (their 8-byte gram extends into the layout and needs more);
    /// shorter ones have no gram to be met by, so every such end is held: a few bytes more
    /// held back at the end of a push, and never a part of a piece written out before the
    /// rest of it is seen.
    fn hold_dump_hex_ends(&mut self, from: u64, to: u64) {
        let hay = self.hay;
        let origin = hay.origin;
        let layout = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        let mut e = from.max(origin + 1);
        while e < to {
            if layout(hay.byte(e)) && hay.byte(e - 1).is_ascii_hexdigit() {
                if let Some(at) = self.hex_start_before(e) {
                    self.hold = self.hold.min(at);
                }
            }
            e += 1;
        }
    }

    /// The start of the longest run of one to seven hex characters (digits and the hex forms'
    /// separators, ending with a digit) ending at `e` that could begin a hex piece, if any: up
    /// to three are looked up in the short-gram sets, more must have every 4-byte gram in the
    /// grid's filter.
    fn hex_start_before(&self, e: u64) -> Option<u64> {
        let hay = self.hay;
        let index = &self.redactor.index;
        if e == hay.origin || !hay.byte(e - 1).is_ascii_hexdigit() {
            return None;
        }
        for len in (1..=7u64).rev() {
            if e < hay.origin + len {
                continue;
            }
            let a = e - len;
            let hexish = |b: u8| b.is_ascii_hexdigit() || matches!(b, b' ' | b':' | b',');
            if !(a..e).all(|p| hexish(hay.byte(p))) {
                continue;
            }
            let found = if len <= 3 {
                let mut piece = [0u8; 3];
                for n in 0..len {
                    piece[n as usize] = hay.byte(a + n);
                }
                let wraps = index.may_be_wrapped_piece(&piece[..len as usize]);
                piece.zeroize();
                wraps
            } else {
                (a..=e - 4).all(|k| index.may_contain(self.key_at(k)))
            };
            if found {
                return Some(a);
            }
        }
        None
    }

    /// If `from` follows a line break (and indentation), holds the last one to three
    /// characters before it that could begin a wrapped base64 or hex piece, line after line.
    fn hold_wrapped_start(&mut self, from: u64) {
        let hay = self.hay;
        let origin = hay.origin;
        let mut h = from;
        for _ in 0..8 {
            let mut k = h;
            while k > origin && matches!(hay.byte(k - 1), b' ' | b'\t') && h - k < 16 {
                k -= 1;
            }
            if k == origin || hay.byte(k - 1) != b'\n' {
                break;
            }
            k -= 1;
            while k > origin && hay.byte(k - 1) == b'\r' {
                k -= 1;
            }
            match self.wrapped_start_before(k) {
                Some(at) => {
                    self.hold = self.hold.min(at);
                    h = at;
                }
                None => break,
            }
        }
    }

    /// The start of the last one to three characters before `k` (where a line break begins)
    /// that could begin a wrapped base64 or hex piece, if any.
    fn wrapped_start_before(&self, k: u64) -> Option<u64> {
        // Four to seven hex characters of a value of 12 bytes or more at the end of a line
        // (`xxd -p`) have no 8-byte gram on the line and no join (those are for base64 and
        // short values): they are held like the shorter ends, when every gram of them is a
        // gram of some form.
        if let Some(at) = self.hex_start_before(k).filter(|&at| k - at > 3) {
            return Some(at);
        }
        let hay = self.hay;
        for len in (1..=3u64).rev() {
            if k >= hay.origin + len {
                let mut piece = [0u8; 3];
                for n in 0..len {
                    piece[n as usize] = hay.byte(k - len + n);
                }
                let wraps = self
                    .redactor
                    .index
                    .may_be_wrapped_piece(&piece[..len as usize]);
                piece.zeroize();
                if wraps {
                    return Some(k - len);
                }
            }
        }
        None
    }
}

impl Scanner {
    pub(crate) fn new(redactor: &Redactor) -> Scanner {
        let _ = redactor;
        Scanner {
            pending: Zeroizing::new(Vec::new()),
            start: 0,
            next_sample: 0,
            coverage: Coverage::default(),
        }
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Masks written so far.
    pub(crate) fn masks(&self) -> u64 {
        self.coverage.masks()
    }

    /// Scans `chunk` (following the held-back bytes) and appends to `out` every byte that can
    /// no longer be part of an undecided piece.
    pub(crate) fn push(&mut self, redactor: &Redactor, chunk: &[u8], out: &mut Vec<u8>) {
        if redactor.forms.is_empty() {
            out.extend_from_slice(chunk);
            return;
        }
        for piece in chunk.chunks(PIECE) {
            self.pass(redactor, piece, false, out);
        }
    }

    /// Writes out the held-back bytes (masked where they hold complete pieces) and makes the
    /// scanner ready for a new stream. The count of masks written is kept.
    pub(crate) fn finish(&mut self, redactor: &Redactor, out: &mut Vec<u8>) {
        if !redactor.forms.is_empty() {
            self.pass(redactor, &[], true, out);
        }
        self.pending.zeroize();
        self.pending.clear();
        self.start = 0;
        self.next_sample = 0;
        self.coverage.reset();
    }

    fn pass(&mut self, redactor: &Redactor, chunk: &[u8], last: bool, out: &mut Vec<u8>) {
        let head = mem::take(&mut self.pending);
        let hay = Hay {
            head: &head,
            tail: chunk,
            origin: self.start,
        };
        let end = hay.end();
        let mut pass = Pass {
            redactor,
            hay: &hay,
            last,
            coverage: &mut self.coverage,
            cache: Vec::new(),
            hold: end,
        };
        pass.grid(self.next_sample);
        pass.joins();
        if !last {
            pass.tail();
        }
        // A piece never starts before the held-back bytes (see the module documentation).
        let keep = if last { end } else { pass.hold.max(self.start) };
        self.coverage
            .emit(self.start, keep, out, |out, a, b| hay.copy(out, a, b));

        // Keep `[keep, end)`, in a buffer that is wiped whenever it is replaced.
        let from = (keep - self.start) as usize;
        let kept = (end - keep) as usize;
        let mut next = head;
        if from < next.len() {
            next.copy_within(from.., 0);
            let h = next.len() - from;
            next.truncate(h);
            grow(&mut next, kept);
            next.extend_from_slice(chunk);
        } else {
            let c = from - next.len();
            next.clear();
            grow(&mut next, kept);
            next.extend_from_slice(&chunk[c..]);
        }
        self.pending = next;
        self.start = keep;
        let stride = redactor.index.stride() as u64;
        self.next_sample = keep.div_ceil(stride) * stride;
    }
}

/// Makes room for `len` bytes in `buf` without letting the vector reallocate on its own
/// (which would free the old allocation unwiped).
fn grow(buf: &mut Zeroizing<Vec<u8>>, len: usize) {
    if buf.capacity() >= len {
        return;
    }
    let mut bigger = Zeroizing::new(Vec::with_capacity(len.max(2 * buf.capacity())));
    bigger.extend_from_slice(buf);
    // The old buffer is wiped as it is dropped.
    *buf = bigger;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

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
        scanner.finish(redactor, &mut out);
        (out, max_pending)
    }

    /// Secrets and text over a tiny alphabet, so that pieces overlap, touch and nearly match
    /// all the time.
    fn case() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>, Vec<usize>)> {
        let secret = (8usize..40).prop_flat_map(|len| {
            proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n')], len)
        });
        proptest::collection::vec(secret, 1..4)
            .prop_flat_map(|secrets| {
                let text = proptest::collection::vec(
                    prop_oneof![
                        3 => proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n'), Just(b'c'), Just(b' ')], 0..6),
                        1 => (0..secrets.len()).prop_map({ let s = secrets.clone(); move |k| s[k].clone() }),
                    ],
                    0..30,
                )
                .prop_map(|parts| parts.concat());
                (Just(secrets), text, proptest::collection::vec(0usize..400, 0..40))
            })
            .prop_map(|(secrets, text, mut cuts)| {
                cuts.sort_unstable();
                (secrets, text, cuts)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_split_gives_the_whole_buffer_output((secrets, text, cuts) in case()) {
            let redactor = Redactor::new(&secrets).unwrap();
            let whole = streamed(&redactor, &text, &[]).0;
            let (out, max_pending) = streamed(&redactor, &text, &cuts);
            prop_assert_eq!(out, whole);
            prop_assert!(max_pending <= redactor.max_hold_back());
        }

        #[test]
        fn one_byte_chunks_give_the_whole_buffer_output((secrets, text, _cuts) in case()) {
            let redactor = Redactor::new(&secrets).unwrap();
            let cuts: Vec<usize> = (0..text.len()).collect();
            prop_assert_eq!(streamed(&redactor, &text, &cuts).0, streamed(&redactor, &text, &[]).0);
        }
    }

    #[test]
    fn holds_back_what_could_begin_a_piece_only() {
        let redactor = Redactor::new(["abcdefgh-secret"]).unwrap();
        let mut scanner = Scanner::new(&redactor);
        let mut out = Vec::new();
        scanner.push(&redactor, b"log line abcdefgh-se", &mut out);
        assert_eq!(out, b"log line ");
        // `!` and a line break are in no form of the secret: nothing is held back any more.
        scanner.push(&redactor, b"!\n", &mut out);
        assert_eq!(out, b"log line abcdefgh-se!\n");
        assert_eq!(scanner.pending_len(), 0);
    }
}
