//! Extending a seed: from an output position that a 4-byte gram ties to a position in a form,
//! walk both ways while the output spells the form, skipping what the form's family allows
//! between its characters (line breaks and dump columns), and report the piece of the form
//! found: its output segments and the bytes of the value it covers.

use crate::forms::{Family, Form};

/// The bytes held back (`head`) followed by a new chunk (`tail`), addressed by absolute stream
/// position.
pub(crate) struct Hay<'a> {
    pub(crate) head: &'a [u8],
    pub(crate) tail: &'a [u8],
    /// Stream position of `head[0]`.
    pub(crate) origin: u64,
}

impl Hay<'_> {
    pub(crate) fn end(&self) -> u64 {
        self.origin + (self.head.len() + self.tail.len()) as u64
    }

    /// Stream position of `tail[0]`.
    pub(crate) fn tail_origin(&self) -> u64 {
        self.origin + self.head.len() as u64
    }

    #[inline]
    pub(crate) fn byte(&self, pos: u64) -> u8 {
        let r = (pos - self.origin) as usize;
        match r.checked_sub(self.head.len()) {
            Some(t) => self.tail[t],
            None => self.head[r],
        }
    }

    /// Appends the bytes at `[from, to)` to `out`.
    pub(crate) fn copy(&self, out: &mut Vec<u8>, from: u64, to: u64) {
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

/// A stretch of output spelling `form[form_at..]` character for character.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) form_at: u32,
}

/// A maximal piece of one form found in the output.
#[derive(Debug)]
pub(crate) struct Piece {
    pub(crate) form: u32,
    /// In output order; between two segments lies skipped layout.
    pub(crate) segments: Vec<Segment>,
    /// The piece reached the end of the data seen so far and may go on.
    pub(crate) open: bool,
    /// Where the seed was (the start of a piece that has no segment yet).
    seed: u64,
}

impl Piece {
    pub(crate) fn start(&self) -> u64 {
        self.segments.first().map_or(self.seed, |s| s.start)
    }

    /// The form range `[x, y)` the piece spells.
    pub(crate) fn form_range(&self) -> (usize, usize) {
        match (self.segments.first(), self.segments.last()) {
            (Some(first), Some(last)) => (
                first.form_at as usize,
                last.form_at as usize + (last.end - last.start) as usize,
            ),
            _ => (0, 0),
        }
    }

    /// Whether the piece spells form position `j` at output position `i`.
    pub(crate) fn aligns(&self, i: u64, j: usize) -> bool {
        let k = self.segments.partition_point(|s| s.end <= i);
        self.segments
            .get(k)
            .is_some_and(|s| s.start <= i && s.form_at as u64 + (i - s.start) == j as u64)
    }
}

/// Whether output byte `o` spells form byte `f` in `family`.
#[inline]
fn same(family: Family, o: u8, f: u8) -> bool {
    o == f
        || match family {
            Family::Base64 => (f == b'+' && o == b'-') || (f == b'/' && o == b'_'),
            Family::Hex => f.is_ascii_lowercase() && o == f.to_ascii_uppercase(),
            Family::Exact | Family::OdC => false,
        }
}

/// Whether spaces on one line may stand between the form's characters `q - 1` and `q`: only
/// between bytes (`hexdump -C` splits a line in two there, `xxd` groups bytes), never inside
/// one, so that a piece is the same whatever comes before it. Line breaks may split a byte
/// (hex wrapped at an odd width).
fn spaced(form: &Form, q: usize) -> bool {
    let text = &form.text;
    form.starts_token(q)
        || (q > 0 && is_separator(text[q - 1]))
        || (q < text.len() && is_separator(text[q]))
}

/// Separators of the hex forms: layout may stand in for them.
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b':' | b',')
}

enum Skip {
    /// The layout ends at this position.
    To(u64),
    /// The layout runs into the end of the data.
    NeedMore,
    No,
}

/// Extends the seed "output position `i` spells form position `j`" both ways.
pub(crate) fn extend(
    hay: &Hay<'_>,
    form: &Form,
    form_id: usize,
    i: u64,
    j: usize,
    last: bool,
) -> Piece {
    let text = &form.text;
    let family = form.family;
    let mut segments = Vec::new();

    // Leftwards from (i, j), exclusive.
    let (mut p, mut q) = (i, j);
    let mut seg_end = i;
    loop {
        if q == 0 || p == hay.origin {
            break;
        }
        let o = hay.byte(p - 1);
        if same(family, o, text[q - 1]) {
            // The output before `p` spells the form, but it may also be the layout that
            // begins a line (indentation, an offset column): read as extending rightwards
            // from the line before reads it (see `line_layout_before`).
            let line_start = match family {
                // The end of an indentation or offset column, or a seed on the space after
                // an offset column (its last digit spelling the digit the form wants).
                Family::Hex => {
                    matches!(o, b' ' | b':') || (o.is_ascii_hexdigit() && hay.byte(p) == b' ')
                }
                Family::OdC => o.is_ascii_hexdigit(),
                Family::Exact | Family::Base64 => false,
            };
            if let Some((to, q2)) = line_start
                .then(|| line_layout_before(hay, form, p, q, last))
                .flatten()
            {
                if p < seg_end {
                    segments.push(Segment {
                        start: p,
                        end: seg_end,
                        form_at: q as u32,
                    });
                }
                p = to;
                q = q2;
                seg_end = p;
                continue;
            }
            p -= 1;
            q -= 1;
            continue;
        }
        let Some((to, q2)) = skip_left(hay, family, text, p, q, spaced(form, q)) else {
            break;
        };
        if p < seg_end {
            segments.push(Segment {
                start: p,
                end: seg_end,
                form_at: q as u32,
            });
        }
        p = to;
        q = q2;
        seg_end = p;
    }
    if p < seg_end {
        segments.push(Segment {
            start: p,
            end: seg_end,
            form_at: q as u32,
        });
    }
    segments.reverse();

    // Rightwards from (i, j). Digits and a `:` after a line break that spell the form's
    // next characters only in part are either an offset column (the form goes on after
    // it) or the form's last bytes followed by other text. The first reading is tried
    // first; if it was taken anywhere, the other is tried too, and the one that spells
    // more of the form wins (or the one still waiting for data): reading the form's own
    // bytes as a column would end the piece short of its run.
    let mut ambiguous = false;
    let first = extend_right(
        hay,
        form,
        segments.clone(),
        i,
        j,
        last,
        false,
        &mut ambiguous,
    );
    let (mut segments, open) = if ambiguous {
        let second = extend_right(hay, form, segments, i, j, last, true, &mut false);
        match (first.open, second.open) {
            (true, _) => (first.segments, true),
            (false, true) => (second.segments, true),
            (false, false) if second.q > first.q => (second.segments, false),
            (false, false) => (first.segments, false),
        }
    } else {
        (first.segments, first.open)
    };
    if family == Family::Hex {
        canonical_separators(hay, text, &mut segments);
    }
    // The piece begins with its first whole byte. A first segment left of layout that spells
    // no whole byte (the last digit of a byte before a space, a separator) carries no byte of
    // the value; it is dropped, so that no piece depends on a lone character before it, which
    // a stream could not know to hold back. (Judged on the whole piece, so that every seed of
    // it finds the same piece.) Separators before the first byte carry none either: they are
    // left out, so that the piece is the same whether a stream's held-back bytes begin before
    // them or after them, or after the line break before them (where `line_layout_before`
    // cannot see the line before). Each may bring the other about, so until neither applies.
    if family == Family::Hex {
        while let Some(first) = segments.first_mut() {
            let mut x = first.form_at as usize;
            while first.start < first.end && x < text.len() && is_separator(text[x]) {
                first.start += 1;
                x += 1;
            }
            first.form_at = x as u32;
            if first.start == first.end {
                segments.remove(0);
                continue;
            }
            if segments.len() > 1 {
                let first = &segments[0];
                let x = first.form_at as usize;
                let (a, b) = form.source_range(x, x + (first.end - first.start) as usize);
                if b <= a {
                    segments.remove(0);
                    continue;
                }
            }
            break;
        }
    }
    Piece {
        form: form_id as u32,
        segments,
        open,
        seed: i,
    }
}

/// Where extending rightwards got to.
struct Right {
    segments: Vec<Segment>,
    /// The form position reached.
    q: usize,
    /// The data ended before the piece did.
    open: bool,
}

/// Extends "output position `i` spells form position `j`" rightwards (inclusive of `i`),
/// after the `segments` found leftwards (the first one found here may join the last).
/// `bytes_first`: digits after a line break that spell the form's next characters in part
/// are read as its bytes, not as an offset column; `ambiguous` is set when that choice
/// came up.
#[allow(clippy::too_many_arguments)] // one call site, two readings of one extension
fn extend_right(
    hay: &Hay<'_>,
    form: &Form,
    mut segments: Vec<Segment>,
    i: u64,
    j: usize,
    last: bool,
    bytes_first: bool,
    ambiguous: &mut bool,
) -> Right {
    let end = hay.end();
    let text = &form.text;
    let family = form.family;
    let (mut p, mut q) = (i, j);
    let (mut seg_start, mut seg_form) = (i, j);
    let mut open = false;
    loop {
        if q == text.len() {
            break;
        }
        if p == end {
            open = !last;
            break;
        }
        if same(family, hay.byte(p), text[q]) {
            p += 1;
            q += 1;
            continue;
        }
        let layout = Layout {
            last,
            spaced: spaced(form, q),
            bytes_first,
        };
        match skip_right(hay, family, text, p, q, layout, ambiguous) {
            Skip::To(to) => {
                push_right(&mut segments, seg_start, p, seg_form);
                p = to;
                // Layout may stand in for the separator the form has here.
                while q < text.len()
                    && is_separator(text[q])
                    && family == Family::Hex
                    && (p == end || !same(family, hay.byte(p), text[q]))
                {
                    q += 1;
                }
                (seg_start, seg_form) = (p, q);
            }
            Skip::NeedMore => {
                open = !last;
                break;
            }
            Skip::No => break,
        }
    }
    push_right(&mut segments, seg_start, p, seg_form);
    Right { segments, q, open }
}

/// How [`skip_right`] reads layout.
#[derive(Clone, Copy)]
struct Layout {
    /// No data comes after the end.
    last: bool,
    /// The form has extra spaces between bytes here (`hexdump -C`).
    spaced: bool,
    /// Ambiguous digits after a line break are the form's bytes ([`extend_right`]).
    bytes_first: bool,
}

/// Gives a hex piece the segments its leftmost seed would give it, whichever seed found it.
/// Where the form has a separator and the output more spaces than one (`hexdump -C`'s
/// double space mid-line, spaces before a line break), extending rightwards reads the first
/// space as the separator and skips the others, but extending leftwards reads the last one
/// as it and skips those before it: the same piece, cut into different segments, so the
/// layout left visible between two masks differed with where a stream's chunks ended (the
/// masks of two seeds of one piece merged over the space). The separator is moved to the
/// segment before the layout, as extending rightwards has it: after a rightward segment the
/// output never spells the form's next character.
fn canonical_separators(hay: &Hay<'_>, text: &[u8], segments: &mut Vec<Segment>) {
    let mut k = 1;
    while k < segments.len() {
        let a = segments[k - 1];
        let b = segments[k];
        let a_form_end = a.form_at as usize + (a.end - a.start) as usize;
        if b.form_at as usize == a_form_end
            && a.end < b.start
            && a_form_end < text.len()
            && is_separator(text[a_form_end])
            && same(Family::Hex, hay.byte(a.end), text[a_form_end])
        {
            segments[k - 1].end += 1;
            segments[k].start += 1;
            segments[k].form_at += 1;
            if segments[k].start == segments[k].end {
                segments.remove(k);
            }
            continue;
        }
        // The layout before the segment does not begin with the separator, but the segment
        // does, with a space: extending rightwards skips every space of the layout (the
        // indentation after a line break, or the spaces mid-line) and lets the layout stand
        // in for the separator, so that space is layout (a seed on the space itself, after
        // a dump line's offset column, read it as the form's).
        if b.form_at as usize == a_form_end
            && a.end < b.start
            && a_form_end < text.len()
            && is_separator(text[a_form_end])
            && hay.byte(b.start) == b' '
            && same(Family::Hex, b' ', text[a_form_end])
        {
            segments[k].start += 1;
            segments[k].form_at += 1;
            if segments[k].start == segments[k].end {
                segments.remove(k);
            }
            continue;
        }
        k += 1;
    }
}

/// Appends the rightward segment `[start, end)`, merging it with the seed's leftward one.
fn push_right(segments: &mut Vec<Segment>, start: u64, end: u64, form_at: usize) {
    if end <= start {
        return;
    }
    if let Some(last) = segments.last_mut()
        && last.end == start
    {
        last.end = end;
        return;
    }
    segments.push(Segment {
        start,
        end,
        form_at: form_at as u32,
    });
}

/// Layout at output position `p` (where the form wanted `text[q]`) that the family skips.
/// (`last`: no data comes after the end.)
fn skip_right(
    hay: &Hay<'_>,
    family: Family,
    text: &[u8],
    p: u64,
    q: usize,
    layout: Layout,
    ambiguous: &mut bool,
) -> Skip {
    let Layout {
        last,
        spaced,
        bytes_first,
    } = layout;
    let end = hay.end();
    let at = |k: u64| (k < end).then(|| hay.byte(k));
    match family {
        Family::Exact => Skip::No,
        Family::Base64 => {
            let mut k = p;
            while at(k) == Some(b'\r') {
                k += 1;
            }
            match at(k) {
                Some(b'\n') => k += 1,
                None if k > p => return Skip::NeedMore,
                _ => return Skip::No,
            }
            indentation(hay, k)
        }
        Family::Hex => {
            let first = hay.byte(p);
            if !matches!(first, b' ' | b'\t' | b'\r' | b'\n') {
                return Skip::No;
            }
            // A line break, with what dump layouts put before it (spaces and an ASCII column)
            // and after it (an offset column).
            let mut k = p;
            while k < end && k - p <= 20 && hay.byte(k) != b'\n' {
                k += 1;
            }
            if k == end {
                return Skip::NeedMore;
            }
            if hay.byte(k) == b'\n' {
                let mut k = k + 1;
                // An offset column: hex digits followed by `:` or a space.
                let digits_from = k;
                while at(k).is_some_and(|b| b.is_ascii_hexdigit()) && k - digits_from < 16 {
                    k += 1;
                }
                match at(k) {
                    // Digits at the very end are bytes, not an offset column, unless more
                    // may come.
                    None if last => k = digits_from,
                    None => return Skip::NeedMore,
                    Some(b':' | b' ') if k - digits_from >= 4 => {
                        // Digits and a `:` may also be the form's own bytes followed by other
                        // text: an offset column only if the bytes go on after it.
                        let mut q = q;
                        while q < text.len() && is_separator(text[q]) {
                            q += 1;
                        }
                        // `None`: the data ends before it tells (a chunk may end right
                        // after the column's `:` or its spaces). The answer then waits for
                        // more data, as a stream holding back the line before it must: a
                        // "no" here would end the piece at the line break and let the
                        // stream write out the line's part of a secret that the next chunk
                        // shows going on (a whole buffer saw it go on and masked both).
                        let goes_on = |k: u64| -> Option<bool> {
                            let mut k = k;
                            while at(k).is_some_and(|b| b == b' ' || b == b'\t')
                                && k - digits_from < 40
                            {
                                k += 1;
                            }
                            match at(k) {
                                None if !last => None,
                                None => Some(false),
                                Some(b) => Some(q < text.len() && same(family, b, text[q])),
                            }
                        };
                        // Digits that spell the form's next characters (four or more of
                        // them, or all that is left of the form) are read as bytes: an offset
                        // column spelling them is one chance in 65,536. Otherwise they are an
                        // offset column if the form goes on after them. Reading the form's
                        // own bytes as an offset column would end the piece short of its run.
                        let (spelled, matched) = {
                            let (mut q, mut matched) = (q, 0u64);
                            for d in digits_from..k {
                                while q < text.len() && is_separator(text[q]) {
                                    q += 1;
                                }
                                if q == text.len() || !same(family, hay.byte(d), text[q]) {
                                    break;
                                }
                                q += 1;
                                matched += 1;
                            }
                            let spelled = matched == k - digits_from
                                || matched >= 4
                                || (matched > 0 && q == text.len());
                            (spelled, matched)
                        };
                        if spelled {
                            k = digits_from;
                        } else {
                            match goes_on(k + 1) {
                                Some(true) if matched > 0 => {
                                    // Both readings hold: see `extend_right`.
                                    *ambiguous = true;
                                    if bytes_first {
                                        k = digits_from;
                                    } else {
                                        k += 1;
                                    }
                                }
                                Some(true) => k += 1,
                                Some(false) => k = digits_from,
                                None => return Skip::NeedMore,
                            }
                        }
                    }
                    _ => k = digits_from,
                }
                return indentation(hay, k);
            }
            // Extra spaces between bytes (`hexdump -C` splits a line in two).
            if !spaced {
                return Skip::No;
            }
            let mut k = p;
            while at(k).is_some_and(|b| b == b' ' || b == b'\t') && k - p < 16 {
                k += 1;
            }
            match at(k) {
                None => Skip::NeedMore,
                Some(b) if k > p && (same(family, b, text[q]) || is_separator(text[q])) => {
                    Skip::To(k)
                }
                Some(_) => Skip::No,
            }
        }
        Family::OdC => {
            let mut k = p;
            while at(k) == Some(b'\r') {
                k += 1;
            }
            match at(k) {
                Some(b'\n') => k += 1,
                None if k > p => return Skip::NeedMore,
                _ => return Skip::No,
            }
            let digits_from = k;
            while at(k).is_some_and(|b| b.is_ascii_hexdigit()) && k - digits_from < 16 {
                k += 1;
            }
            if k == end {
                return Skip::NeedMore;
            }
            Skip::To(k)
        }
    }
}

/// Extending leftwards at output `p` (form `q`), where the output before `p` spells the
/// form's previous character too: if that output is the layout that begins a line (the
/// indentation of `od -An -tx1`, the offset column of `od -tx1`, `xxd` and `hexdump -C` and
/// the spaces after it, `od -c`'s offset) and the line before ends in the form, the position
/// where extending rightwards from that line's end leaves the form, with its form position.
///
/// Extending rightwards meets the line break first and skips the next line's offset column
/// and indentation whole, layout standing in for the form's separator there; extending
/// leftwards met the indentation first and read its last space as the separator (or an
/// offset's last digit as the digit the form wanted), so the same piece was cut into other
/// segments, or ended, with the side of the line break its seed was on: a stream whose
/// held-back bytes began on the line before re-extended from the line after, and masked the
/// indentation that the whole buffer left visible (fuzz seed 77031). The layout reading is
/// taken only where extending rightwards from the line before gives it (so the two agree)
/// and the line before spells at least as much of the form as the line's leading characters
/// read as the form do (so no byte of a run is lost to it); otherwise the output is read as
/// the form, as before.
fn line_layout_before(
    hay: &Hay<'_>,
    form: &Form,
    p: u64,
    q: usize,
    last: bool,
) -> Option<(u64, usize)> {
    let text = &form.text;
    let family = form.family;
    let (c, q2) = skip_left(hay, family, text, p, q, false)?;
    // Extend rightwards from there: the form's characters, then one run of layout, which
    // must end at `p` with the form at `q`.
    let (mut s, mut r) = (c, q2);
    while s < p && r < text.len() && same(family, hay.byte(s), text[r]) {
        s += 1;
        r += 1;
    }
    if s >= p || r == text.len() {
        return None;
    }
    let layout = Layout {
        last,
        spaced: spaced(form, r),
        bytes_first: false,
    };
    let Skip::To(k) = skip_right(hay, family, text, s, r, layout, &mut false) else {
        return None;
    };
    let mut r2 = r;
    while r2 < text.len()
        && family == Family::Hex
        && is_separator(text[r2])
        && (k == hay.end() || !same(family, hay.byte(k), text[r2]))
    {
        r2 += 1;
    }
    // It may also land one space after `p`: a seed on the space after an offset column
    // spells the form's separator there (`canonical_separators` then leaves it to the
    // layout, as here).
    let lands = (k == p && r2 == q)
        || (family == Family::Hex
            && k == p + 1
            && r2 == q + 1
            && hay.byte(p) == b' '
            && same(family, b' ', text[q]));
    if !lands {
        return None;
    }
    // Both readings hold. Read as the form, the line's leading characters may spell bytes
    // that the layout reading loses (digits of other hex before a separated run, read as an
    // offset column: `B9a2 0b 70`, whose `a2` the run needs): the layout reading is taken
    // only if the line before spells at least as much of the form as they do.
    let origin = hay.origin;
    let (mut a, mut x) = (p, q);
    while a > origin
        && x > 0
        && hay.byte(a - 1) != b'\n'
        && same(family, hay.byte(a - 1), text[x - 1])
    {
        a -= 1;
        x -= 1;
    }
    if a > origin && hay.byte(a - 1) != b'\n' {
        let (mut b, mut y) = (s, r);
        while y > x && b > origin && same(family, hay.byte(b - 1), text[y - 1]) {
            b -= 1;
            y -= 1;
        }
        if y > x {
            return None;
        }
    }
    Some((s, r))
}

/// Spaces and tabs after a line break (at most 16): indentation.
fn indentation(hay: &Hay<'_>, mut k: u64) -> Skip {
    let end = hay.end();
    let from = k;
    while k < end && matches!(hay.byte(k), b' ' | b'\t') && k - from < 16 {
        k += 1;
    }
    if k == end {
        Skip::NeedMore
    } else {
        Skip::To(k)
    }
}

/// Layout ending at output position `p` (where the form wanted `text[q - 1]` before it) that
/// the family skips: the new output position and form position.
fn skip_left(
    hay: &Hay<'_>,
    family: Family,
    text: &[u8],
    p: u64,
    q: usize,
    spaced: bool,
) -> Option<(u64, usize)> {
    let origin = hay.origin;
    let before = |k: u64| (k > origin).then(|| hay.byte(k - 1));
    // Whether the output before `c` can go on with the form before `q` (hex separators the
    // layout replaced are skipped in the form).
    let fits = |c: u64| -> Option<(u64, usize)> {
        let o = before(c)?;
        let mut q = q;
        while q > 0
            && family == Family::Hex
            && is_separator(text[q - 1])
            && !same(family, o, text[q - 1])
        {
            q -= 1;
        }
        (q > 0 && same(family, o, text[q - 1])).then_some((c, q))
    };
    // Back over spaces (indentation, or an offset column's padding), an offset column, and
    // the line break before them: the position of the line break.
    let line_break = |digits: bool| -> Option<u64> {
        let mut k = p;
        while matches!(before(k), Some(b' ' | b'\t')) && p - k < 16 {
            k -= 1;
        }
        if digits {
            if before(k) == Some(b':') {
                k -= 1;
            }
            let to = k;
            while before(k).is_some_and(|b| b.is_ascii_hexdigit()) && to - k < 16 {
                k -= 1;
            }
        }
        (before(k) == Some(b'\n')).then(|| k - 1)
    };
    let strip_cr = |mut k: u64| {
        while before(k) == Some(b'\r') {
            k -= 1;
        }
        k
    };
    match family {
        Family::Exact => None,
        Family::Base64 => fits(strip_cr(line_break(false)?)),
        Family::OdC => {
            // The offset column is digits right before the first field.
            let mut k = p;
            while before(k).is_some_and(|b| b.is_ascii_hexdigit()) && p - k < 16 {
                k -= 1;
            }
            if before(k) != Some(b'\n') {
                return None;
            }
            fits(strip_cr(k - 1))
        }
        Family::Hex => {
            if let Some(nl) = line_break(true).or_else(|| line_break(false)) {
                let line_end = strip_cr(nl);
                // The previous line: a `|...|` column, xxd's 16 characters after two spaces,
                // or nothing after its bytes. The columns are tried first: a column's last
                // character can equal the hex digit the form wants (the byte 0x37 is `7` in
                // xxd's column and ends its hex `37`), and reading it as that digit would end
                // the piece at the column.
                // The column's own characters may be `|` (the byte 0x7c, and a space before
                // it): its opening `|` is the farthest one within a column's width that has a
                // space before it, so they are tried farthest first (a nearer one could read
                // a character of the column as the hex digit the form wants).
                if before(line_end) == Some(b'|') {
                    let mut k = line_end.saturating_sub(19).max(origin + 2);
                    while k < line_end {
                        if before(k) == Some(b'|') && hay.byte(k - 2) == b' ' {
                            let mut c = k - 1;
                            while before(c) == Some(b' ') && line_end - c < 24 {
                                c -= 1;
                            }
                            if let Some(found) = fits(c) {
                                return Some(found);
                            }
                        }
                        k += 1;
                    }
                }
                if line_end >= origin + 18 {
                    let k = line_end - 16;
                    if before(k) == Some(b' ') && before(k - 1) == Some(b' ') {
                        let mut k = k - 1;
                        while before(k) == Some(b' ') && line_end - k < 24 {
                            k -= 1;
                        }
                        if let Some(found) = fits(k) {
                            return Some(found);
                        }
                    }
                }
                if let Some(found) = fits(line_end) {
                    return Some(found);
                }
            }
            // Extra spaces between bytes.
            if !spaced {
                return None;
            }
            let mut k = p;
            while matches!(before(k), Some(b' ' | b'\t')) && p - k < 16 {
                k -= 1;
            }
            if k < p {
                return fits(k);
            }
            None
        }
    }
}
