//! What the redactor looks for: the *values* derived from each secret, and the encoded *forms*
//! of each value under every covered transform.
//!
//! A value is a byte string with a minimum run `W` (`min(len, 12)`): any run of `W`
//! consecutive bytes of it, printed under any covered transform, is masked. A form is the
//! whole value encoded one way (hex with colons, base64 at one alignment, JSON-escaped, ...),
//! together with its *tokens*: which characters of the form encode which bytes of the value.
//! Because every covered transform encodes a value piece by piece, a run of the value printed
//! under a transform is a piece of the form that covers whole tokens, so the scanner looks for
//! pieces of forms (from a sampled 4-byte seed, extended both ways) instead of enumerating
//! every window of every encoding: memory stays linear in the secret's length.
//!
//! Everything here handles secret material, so every buffer of it is a [`SecretBytes`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::{MIN_SECRET_LEN, RUN_LEN as RUN};

/// A buffer holding secret material, wiped when dropped.
///
/// Builders reserve the worst-case size up front: a vector that grows reallocates, and the
/// old allocation would be freed without being wiped.
pub(crate) type SecretBytes = Zeroizing<Vec<u8>>;

/// Readings of a secret other than itself (trailing newlines removed, quotes removed) are
/// added as values of their own only up to this length: beyond it their runs of [`RUN`] bytes
/// are runs of the secret already, and a second full set of forms would double the memory of
/// a large secret for the sake of the last base64 character and its padding.
const READING_MAX: usize = 1024;

/// One string the redactor masks runs of.
pub(crate) struct Value {
    pub(crate) bytes: SecretBytes,
    /// Byte ranges that are public (PEM armor lines and their line breaks), sorted.
    pub(crate) public: Vec<(u32, u32)>,
    /// Non-public bytes a run must cover: `W = min(len, 12)`, or all of them when fewer.
    pub(crate) need: u32,
}

impl Value {
    fn new(bytes: SecretBytes) -> Value {
        let public = pem_armor(&bytes);
        let public_len: usize = public.iter().map(|&(a, b)| (b - a) as usize).sum();
        let (public, nonpublic) = if public_len == bytes.len() {
            // Armor alone is what the secret is: then it is all secret.
            (Vec::new(), bytes.len())
        } else {
            (public, bytes.len() - public_len)
        };
        let min_run = bytes.len().min(RUN) as u32;
        Value {
            need: min_run.min(nonpublic as u32),
            public,
            bytes,
        }
    }

    /// Number of non-public bytes in `[a, b)`.
    pub(crate) fn secret_bytes_in(&self, a: usize, b: usize) -> u32 {
        let mut count = b.saturating_sub(a);
        for &(pa, pb) in &self.public {
            let (lo, hi) = ((pa as usize).max(a), (pb as usize).min(b));
            count -= hi.saturating_sub(lo);
        }
        count as u32
    }
}

/// The values of a secret: the secret itself, its readings, the short lines of a multi-line
/// secret and the values of a structured one.
pub(crate) fn values_of(secret: &[u8]) -> Vec<Value> {
    let mut found: Vec<SecretBytes> = vec![Zeroizing::new(secret.to_vec())];
    let add = |v: &[u8], found: &mut Vec<SecretBytes>| {
        if v.len() < MIN_SECRET_LEN || found.iter().any(|f| **f == *v) {
            return;
        }
        // A run of a longer run of the secret is a run of the secret: nothing to add.
        if v.len() >= RUN && found[0].windows(v.len()).any(|w| w == v) {
            return;
        }
        found.push(Zeroizing::new(v.to_vec()));
    };
    // `$(cat file)` drops trailing newlines; a value may be stored with its quotes.
    let trimmed_len = secret.len()
        - secret
            .iter()
            .rev()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
    let mut readings: Vec<&[u8]> = vec![&secret[..trimmed_len]];
    if let [first @ (b'"' | b'\''), inner @ .., last] = secret
        && first == last
    {
        readings.push(inner);
    }
    for reading in readings {
        // Added even though a substring: its end (base64's last character and padding)
        // differs.
        if reading.len() <= READING_MAX
            && reading.len() != secret.len()
            && reading.len() >= MIN_SECRET_LEN
            && !found.iter().any(|f| **f == *reading)
        {
            found.push(Zeroizing::new(reading.to_vec()));
        }
    }
    // Lines of 8 to 11 bytes are shorter than a run, so they are values of their own (lines
    // of 12 bytes or more are runs of the secret already).
    if secret.contains(&b'\n') {
        for line in secret.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            for l in [line, line.trim_ascii()] {
                if l.len() < RUN && !is_pem_armor(l.trim_ascii()) {
                    add(l, &mut found);
                }
            }
        }
    }
    for v in crate::structured::values(secret, MIN_SECRET_LEN) {
        add(&v, &mut found);
    }
    found.into_iter().map(Value::new).collect()
}

/// `-----BEGIN ...-----` or `-----END ...-----`.
fn is_pem_armor(line: &[u8]) -> bool {
    (line.starts_with(b"-----BEGIN ") || line.starts_with(b"-----END ")) && line.ends_with(b"-----")
}

/// The public byte ranges of a value: each PEM armor line with the line breaks around it.
fn pem_armor(v: &[u8]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut start = 0;
    for line in v.split(|&b| b == b'\n') {
        let end = start + line.len();
        if is_pem_armor(line.trim_ascii()) {
            let lo = if start > 0 { start - 1 } else { start };
            let hi = (end + 1).min(v.len());
            match out.last_mut() {
                Some(last) if last.1 as usize >= lo => last.1 = hi as u32,
                _ => out.push((lo as u32, hi as u32)),
            }
        }
        start = end + 1;
    }
    out
}

/// How the scanner compares output with a form, and what it may skip in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Byte for byte; nothing skipped.
    Exact,
    /// Either alphabet (`+/` or `-_`); line breaks (and the indentation after them) skipped.
    Base64,
    /// Hex digits in either case; line breaks with the offset and ASCII columns of dump
    /// layouts, and extra spaces between bytes, skipped.
    Hex,
    /// `od -c` fields; line breaks with their offset column skipped.
    OdC,
}

/// Where the tokens of a form lie.
pub(crate) enum Geometry {
    /// Token `k` starts at `k * width`; its first `ess` characters carry the byte.
    Fixed { width: u32, ess: u32 },
    /// Token `k` starts at `starts[k]` (`starts[tokens]` is the text's length); its first `ess`
    /// characters carry it (`0`: all of them).
    Table { starts: Vec<u32>, ess: u32 },
    /// Standard base64 of `filler` zero bytes followed by the value, from character
    /// `core_start` on (the first one determined by the value alone); tokens are bytes.
    Base64 { filler: u32, core_start: u32 },
}

/// One value encoded one way.
pub(crate) struct Form {
    pub(crate) value: u32,
    pub(crate) family: Family,
    pub(crate) text: SecretBytes,
    pub(crate) geometry: Geometry,
    /// Number of tokens.
    pub(crate) tokens: u32,
    /// Source offset of each token (`tokens + 1` entries), when token `k` is not byte `k`.
    pub(crate) tok_src: Option<Vec<u32>>,
    /// For a text form other than the value itself: which characters are the value's own
    /// bytes, unescaped (one bit per character). Grams made only of such characters are the
    /// value's own grams, so they are indexed once, at the value itself (see
    /// [`Form::offset_of_source`] and the scanner's companions).
    pub(crate) plain: Option<Vec<u64>>,
    /// The `echo $VAR` form (its spaces stand for the value's whitespace runs).
    pub(crate) echo: bool,
}

impl Form {
    /// Whether text position `q` begins a token (or ends the text): where an encoding's
    /// layout may put spaces between the characters of a form.
    pub(crate) fn starts_token(&self, q: usize) -> bool {
        match &self.geometry {
            Geometry::Fixed { width, .. } => q % (*width as usize).max(1) == 0,
            Geometry::Table { starts, .. } => starts.binary_search(&(q as u32)).is_ok(),
            Geometry::Base64 { .. } => true,
        }
    }

    /// The bytes of the value encoded by the tokens whose significant characters all lie in
    /// `[x, y)` of the text (for base64: every byte with bits there): `(a, b)`, empty when
    /// `b <= a`.
    pub(crate) fn source_range(&self, x: usize, y: usize) -> (usize, usize) {
        let tokens = self.tokens as usize;
        let (k0, k1) = match &self.geometry {
            Geometry::Fixed { width, ess } => {
                let (w, e) = (*width as usize, *ess as usize);
                let k0 = x.div_ceil(w);
                let k1 = if y >= e { (y - e) / w + 1 } else { 0 };
                (k0.min(tokens), k1.min(tokens))
            }
            Geometry::Table { starts, ess } => {
                let k0 = starts[..tokens].partition_point(|&s| (s as usize) < x);
                let k1 = if *ess == 0 {
                    starts[1..=tokens].partition_point(|&s| s as usize <= y)
                } else {
                    starts[..tokens].partition_point(|&s| s as usize + *ess as usize <= y)
                };
                (k0, k1)
            }
            Geometry::Base64 { filler, core_start } => {
                // Every byte with bits in the piece: the characters on either side of a piece,
                // which mix its first and last bytes with the bytes around them, may decode
                // with it into the whole byte (whether they do depends on output the piece
                // does not cover, and may not have arrived: counting the byte keeps the
                // answer the same for every split, and only ever masks more).
                let (f, cs) = (*filler as usize, *core_start as usize);
                let first = ((6 * (x + cs)) / 8).saturating_sub(f);
                let last = (6 * (y + cs)).div_ceil(8).saturating_sub(f);
                (first.min(tokens), last.min(tokens))
            }
        };
        if k1 <= k0 {
            return (0, 0);
        }
        match &self.tok_src {
            Some(src) => (src[k0] as usize, src[k1] as usize),
            None => (k0, k1),
        }
    }

    /// The text offset of the token encoding source byte `k`, if a token starts there.
    pub(crate) fn offset_of_source(&self, k: usize) -> Option<usize> {
        let token = match &self.tok_src {
            Some(src) => {
                let t = src[..self.tokens as usize].partition_point(|&s| s as usize <= k);
                (t > 0 && src[t - 1] as usize == k).then(|| t - 1)?
            }
            None => k,
        };
        if token >= self.tokens as usize {
            return None;
        }
        Some(match &self.geometry {
            Geometry::Fixed { width, .. } => token * *width as usize,
            Geometry::Table { starts, .. } => starts[token] as usize,
            Geometry::Base64 { .. } => return None,
        })
    }

    /// The shortest piece of the text that covers `need` bytes of the value (ignoring public
    /// bytes, which only make a qualifying piece longer): what sets the sampling stride.
    pub(crate) fn shortest_run(&self, need: usize) -> usize {
        let tokens = self.tokens as usize;
        if let Geometry::Base64 { .. } = self.geometry {
            // Touching `need` bytes takes more than `8 * (need - 2)` bits.
            return (8 * need.saturating_sub(2)) / 6 + 1;
        }
        let start = |k: usize| match &self.geometry {
            Geometry::Fixed { width, .. } => k * *width as usize,
            Geometry::Table { starts, .. } => starts[k] as usize,
            Geometry::Base64 { .. } => 0,
        };
        let end = |k: usize| match &self.geometry {
            Geometry::Fixed { width, ess } => k * *width as usize + *ess as usize,
            Geometry::Table { starts, ess: 0 } => starts[k + 1] as usize,
            Geometry::Table { starts, ess } => starts[k] as usize + *ess as usize,
            Geometry::Base64 { .. } => 0,
        };
        let src = |k: usize| self.tok_src.as_ref().map_or(k, |s| s[k] as usize);
        let mut best = usize::MAX;
        let mut k1 = 0;
        for k0 in 0..tokens {
            if k1 < k0 {
                k1 = k0;
            }
            while k1 < tokens && src(k1) - src(k0) < need {
                k1 += 1;
            }
            if src(k1) - src(k0) < need {
                break;
            }
            best = best.min(end(k1 - 1) - start(k0));
        }
        best
    }
}

/// Every form of every value, the value's index recorded in each.
pub(crate) fn forms_of(values: &[Value]) -> Vec<Form> {
    let mut forms = Vec::new();
    for (index, value) in values.iter().enumerate() {
        let before = forms.len();
        value_forms(index as u32, &value.bytes, &mut forms);
        // The same text reached by two styles is kept once.
        let mut k = before;
        while k < forms.len() {
            let duplicate = (before..k)
                .any(|e| forms[e].family == forms[k].family && *forms[e].text == *forms[k].text);
            if duplicate {
                forms.remove(k);
            } else {
                k += 1;
            }
        }
    }
    for form in &mut forms {
        mark_plain(form, &values[form.value as usize].bytes);
    }
    forms
}

/// For text forms other than the value itself: marks the characters that are single-byte
/// tokens equal to their source byte.
fn mark_plain(form: &mut Form, v: &[u8]) {
    // Not the value itself, nor the echoed form, whose tokens are characters (see
    // `echo_words`): its characters do not line up with the value's bytes.
    if form.family != Family::Exact || form.echo || form.text.len() == v.len() && *form.text == *v {
        return;
    }
    let tokens = form.tokens as usize;
    let start = |k: usize| match &form.geometry {
        Geometry::Fixed { width, .. } => k * *width as usize,
        Geometry::Table { starts, .. } => starts[k] as usize,
        Geometry::Base64 { .. } => 0,
    };
    let src = |k: usize| form.tok_src.as_ref().map_or(k, |s| s[k] as usize);
    let mut bits = vec![0u64; form.text.len().div_ceil(64)];
    let mut any = false;
    for k in 0..tokens {
        let (c, len) = (start(k), start(k + 1) - start(k));
        if len == 1 && src(k + 1) == src(k) + 1 && form.text[c] == v[src(k)] {
            bits[c / 64] |= 1 << (c % 64);
            any = true;
        }
    }
    form.plain = any.then_some(bits);
}

/// Accumulates one form token by token.
struct Build {
    text: SecretBytes,
    starts: Vec<u32>,
    src: Vec<u32>,
    identity: bool,
}

impl Build {
    /// `expansion`: the most characters a source byte can take in this form.
    fn new(len: usize, expansion: usize) -> Build {
        Build {
            text: Zeroizing::new(Vec::with_capacity(len * expansion + 16)),
            starts: Vec::with_capacity(len + 1),
            src: Vec::with_capacity(len + 1),
            identity: true,
        }
    }

    fn token(&mut self, src: usize, encoded: &[u8]) {
        if src != self.src.len() {
            self.identity = false;
        }
        self.starts.push(self.text.len() as u32);
        self.src.push(src as u32);
        self.text.extend_from_slice(encoded);
    }

    fn form(self, value: u32, family: Family, source_len: usize, ess: u32) -> Form {
        let Build {
            text,
            mut starts,
            mut src,
            identity,
        } = self;
        let tokens = starts.len() as u32;
        starts.push(text.len() as u32);
        src.push(source_len as u32);
        let identity = identity && source_len == tokens as usize;
        // Exactly sized, so that the reserved worst case is not held for the redactor's life;
        // the oversized buffer is wiped when it is dropped here.
        let mut exact = Zeroizing::new(Vec::with_capacity(text.len()));
        exact.extend_from_slice(&text);
        let fixed = starts
            .get(1)
            .map(|&w| w as usize)
            .filter(|&w| w > 0 && starts.iter().enumerate().all(|(k, &s)| s as usize == k * w));
        let geometry = match fixed {
            Some(width) if identity && (ess == 0 || ess as usize <= width) => Geometry::Fixed {
                width: width as u32,
                ess: if ess == 0 { width as u32 } else { ess },
            },
            _ => Geometry::Table { starts, ess },
        };
        Form {
            value,
            family,
            text: exact,
            geometry,
            tokens,
            tok_src: (!identity).then_some(src),
            plain: None,
            echo: false,
        }
    }
}

const LOWER: &[u8; 16] = b"0123456789abcdef";
const UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// A byte-wise form: each byte encoded by `enc` (into a small buffer).
fn bytewise(
    value: u32,
    v: &[u8],
    family: Family,
    expansion: usize,
    ess: u32,
    mut enc: impl FnMut(usize, u8, &mut Vec<u8>),
) -> Form {
    let mut build = Build::new(v.len(), expansion);
    let mut buf = Zeroizing::new(Vec::with_capacity(16));
    for (k, &b) in v.iter().enumerate() {
        buf.clear();
        enc(k, b, &mut buf);
        build.token(k, &buf);
    }
    build.form(value, family, v.len(), ess)
}

/// A character-wise form of a UTF-8 value: each character (or invalid byte) encoded by `enc`,
/// which gets the character (`None` for an invalid byte) and its bytes.
fn charwise(
    value: u32,
    v: &[u8],
    family: Family,
    expansion: usize,
    mut enc: impl FnMut(Option<char>, &[u8], &mut Vec<u8>),
) -> Form {
    let mut build = Build::new(v.len(), expansion);
    let mut buf = Zeroizing::new(Vec::with_capacity(32));
    let mut at = 0;
    while at < v.len() {
        let (c, n) = match utf8_char_len(&v[at..]) {
            Some(n) => (
                std::str::from_utf8(&v[at..at + n])
                    .ok()
                    .and_then(|s| s.chars().next()),
                n,
            ),
            None if v[at].is_ascii() => (Some(char::from(v[at])), 1),
            None => (None, 1),
        };
        buf.clear();
        enc(c, &v[at..at + n], &mut buf);
        build.token(at, &buf);
        at += n;
    }
    build.form(value, family, v.len(), 0)
}

/// Length of the multi-byte UTF-8 character at the start of `s`, if it is a valid one.
fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let n = match s.first()? {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let head = s.get(..n)?;
    std::str::from_utf8(head).ok().map(|_| n)
}

fn push_hex2(out: &mut Vec<u8>, b: u8, digits: &[u8; 16]) {
    out.push(digits[usize::from(b >> 4)]);
    out.push(digits[usize::from(b & 0xf)]);
}

fn push_u_escape(out: &mut Vec<u8>, unit: u32) {
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(LOWER[((unit >> shift) & 0xf) as usize]);
    }
}

fn push_octal3(out: &mut Vec<u8>, b: u8) {
    out.push(b'0' + (b >> 6));
    out.push(b'0' + ((b >> 3) & 7));
    out.push(b'0' + (b & 7));
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Json {
    /// What every JSON encoder writes: `\"`, `\\`, `\n`-style escapes and `\u00XX`.
    Plain,
    /// PHP's `json_encode` (and some Java encoders) also write `\/`.
    Slash,
    /// Go's `encoding/json`: `\u0008` and `\u000c` for backspace and form feed, and `<`,
    /// `>` and `&` as `\u003c`, `\u003e`, `\u0026`.
    HtmlSafe,
    /// Go's `encoding/json` with HTML escaping off (and other encoders that write every
    /// control byte but `\n`, `\r`, `\t` as `\u00XX`).
    GoPlain,
}

fn json_byte(b: u8, style: Json, out: &mut Vec<u8>) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 | 0x0c if matches!(style, Json::HtmlSafe | Json::GoPlain) => {
            push_u_escape(out, u32::from(b))
        }
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'/' if style == Json::Slash => out.extend_from_slice(b"\\/"),
        b'<' | b'>' | b'&' if style == Json::HtmlSafe => push_u_escape(out, u32::from(b)),
        0..=0x1f => push_u_escape(out, u32::from(b)),
        _ => out.push(b),
    }
}

/// Go's `strconv.Quote` (what `%q` prints) of one character, without the quotes.
fn go_char(c: Option<char>, bytes: &[u8], out: &mut Vec<u8>) {
    match c {
        Some('"') => out.extend_from_slice(b"\\\""),
        Some('\\') => out.extend_from_slice(b"\\\\"),
        Some('\x07') => out.extend_from_slice(b"\\a"),
        Some('\x08') => out.extend_from_slice(b"\\b"),
        Some('\x0c') => out.extend_from_slice(b"\\f"),
        Some('\n') => out.extend_from_slice(b"\\n"),
        Some('\r') => out.extend_from_slice(b"\\r"),
        Some('\t') => out.extend_from_slice(b"\\t"),
        Some('\x0b') => out.extend_from_slice(b"\\v"),
        Some(c) if (c as u32) < 0x20 || c == '\x7f' => {
            out.extend_from_slice(b"\\x");
            push_hex2(out, c as u8, LOWER);
        }
        // C1 controls are not printable: Go writes them as `\u0080`..`\u009f`.
        Some(c) if (0x80..0xa0).contains(&(c as u32)) => push_u_escape(out, c as u32),
        Some(_) => out.extend_from_slice(bytes),
        None => {
            out.extend_from_slice(b"\\x");
            push_hex2(out, bytes[0], LOWER);
        }
    }
}

/// Python's `repr` (or, with `ascii`, `ascii()`) of one character of a `str`, inside quotes
/// of kind `quote`.
fn python_char(c: char, bytes: &[u8], quote: u8, ascii: bool, out: &mut Vec<u8>) {
    let code = c as u32;
    match c {
        '\\' => out.extend_from_slice(b"\\\\"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\t' => out.extend_from_slice(b"\\t"),
        c if c as u32 == u32::from(quote) => {
            out.push(b'\\');
            out.push(quote);
        }
        _ if (code < 0x20 || code == 0x7f) || (code >= 0x80 && (ascii || code < 0xa0)) => {
            if code <= 0xff {
                out.extend_from_slice(b"\\x");
                push_hex2(out, code as u8, LOWER);
            } else if code <= 0xffff {
                push_u_escape(out, code);
            } else {
                out.extend_from_slice(b"\\U");
                for shift in (0..8).rev() {
                    out.push(LOWER[((code >> (4 * shift)) & 0xf) as usize]);
                }
            }
        }
        _ => out.extend_from_slice(bytes),
    }
}

/// bash's `printf %q` and `declare -p` for values with control characters: ANSI-C quoting
/// (`$'...'`), without the quotes.
fn ansi_c_char(c: Option<char>, bytes: &[u8], out: &mut Vec<u8>) {
    match c {
        Some('\\') => out.extend_from_slice(b"\\\\"),
        Some('\'') => out.extend_from_slice(b"\\'"),
        Some('\x07') => out.extend_from_slice(b"\\a"),
        Some('\x08') => out.extend_from_slice(b"\\b"),
        Some('\x1b') => out.extend_from_slice(b"\\E"),
        Some('\x0c') => out.extend_from_slice(b"\\f"),
        Some('\n') => out.extend_from_slice(b"\\n"),
        Some('\r') => out.extend_from_slice(b"\\r"),
        Some('\t') => out.extend_from_slice(b"\\t"),
        Some('\x0b') => out.extend_from_slice(b"\\v"),
        Some(c) if (c as u32) < 0x20 || c == '\x7f' => {
            out.push(b'\\');
            push_octal3(out, c as u8);
        }
        Some(_) => out.extend_from_slice(bytes),
        None => {
            out.push(b'\\');
            push_octal3(out, bytes[0]);
        }
    }
}

/// bash's `printf %q` for values without control characters: a backslash before each byte
/// the shell would interpret (`~` and `#` only start a word, so they are left alone here).
fn bash_backslash(b: u8, out: &mut Vec<u8>) {
    if b" \t\"$\\'!&*,^{}`|;<>?[]()".contains(&b) {
        out.push(b'\\');
    }
    out.push(b);
}

/// How one URL encoder spells a value.
struct PercentStyle {
    /// Bytes left as they are besides the RFC 3986 unreserved set (`A-Za-z0-9-._~`).
    keep: &'static [u8],
    /// Bytes encoded although unreserved (Java's `URLEncoder` encodes `~`).
    encode: &'static [u8],
    /// Space becomes `+` (HTML form encoding) instead of `%20`.
    space_plus: bool,
    digits: &'static [u8; 16],
}

/// The URL encoders in common use, strictest first.
const PERCENT_STYLES: [PercentStyle; 6] = [
    // RFC 3986 strict: .NET `Uri.EscapeDataString`, Python `quote(safe="")`, curl.
    PercentStyle {
        keep: b"",
        encode: b"",
        space_plus: false,
        digits: UPPER,
    },
    // Form encoding: Go `url.QueryEscape`, Python `quote_plus`.
    PercentStyle {
        keep: b"",
        encode: b"",
        space_plus: true,
        digits: UPPER,
    },
    // JavaScript `encodeURIComponent`.
    PercentStyle {
        keep: b"!'()*",
        encode: b"",
        space_plus: false,
        digits: UPPER,
    },
    // Python `urllib.parse.quote` with its default `safe="/"`.
    PercentStyle {
        keep: b"/",
        encode: b"",
        space_plus: false,
        digits: UPPER,
    },
    // Java `URLEncoder.encode`.
    PercentStyle {
        keep: b"*",
        encode: b"~",
        space_plus: true,
        digits: UPPER,
    },
    // Encoders that write lower-case hex digits.
    PercentStyle {
        keep: b"",
        encode: b"",
        space_plus: false,
        digits: LOWER,
    },
];

fn percent_byte(b: u8, style: &PercentStyle, out: &mut Vec<u8>) {
    let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if b == b' ' && style.space_plus {
        out.push(b'+');
    } else if (unreserved && !style.encode.contains(&b)) || style.keep.contains(&b) {
        out.push(b);
    } else {
        out.push(b'%');
        push_hex2(out, b, style.digits);
    }
}

/// How one HTML/XML escaper spells the quotes.
struct HtmlStyle {
    quot: &'static [u8],
    apos: &'static [u8],
}

const HTML_STYLES: [HtmlStyle; 3] = [
    // XML (.NET `SecurityElement.Escape`, most XML writers).
    HtmlStyle {
        quot: b"&quot;",
        apos: b"&apos;",
    },
    // Go `html.EscapeString` and `html/template`.
    HtmlStyle {
        quot: b"&#34;",
        apos: b"&#39;",
    },
    // Python `html.escape`.
    HtmlStyle {
        quot: b"&quot;",
        apos: b"&#x27;",
    },
];

fn html_byte(b: u8, style: &HtmlStyle, out: &mut Vec<u8>) {
    match b {
        b'&' => out.extend_from_slice(b"&amp;"),
        b'<' => out.extend_from_slice(b"&lt;"),
        b'>' => out.extend_from_slice(b"&gt;"),
        b'"' => out.extend_from_slice(style.quot),
        b'\'' => out.extend_from_slice(style.apos),
        _ => out.push(b),
    }
}

/// The separators of the hex styles printed on one line.
const HEX_SEPARATORS: [&[u8]; 3] = [b" ", b":", b","];

/// `od -c`'s field for one byte: four characters, right-aligned.
fn od_c_byte(b: u8, out: &mut Vec<u8>) {
    let escape = match b {
        0 => Some(b'0'),
        0x07 => Some(b'a'),
        0x08 => Some(b'b'),
        0x0c => Some(b'f'),
        b'\n' => Some(b'n'),
        b'\r' => Some(b'r'),
        b'\t' => Some(b't'),
        0x0b => Some(b'v'),
        _ => None,
    };
    match escape {
        Some(c) => out.extend_from_slice(&[b' ', b' ', b'\\', c]),
        None if (0x20..0x7f).contains(&b) => out.extend_from_slice(&[b' ', b' ', b' ', b]),
        None => {
            out.push(b' ');
            push_octal3(out, b);
        }
    }
}

/// All forms of one value (duplicates are removed by the caller).
fn value_forms(value: u32, v: &[u8], forms: &mut Vec<Form>) {
    use Family::{Base64, Exact, Hex, OdC};
    let utf8 = std::str::from_utf8(v).is_ok();

    // --- Text: the value itself and its escapings --------------------------------------
    forms.push(bytewise(value, v, Exact, 1, 0, |_, b, o| o.push(b)));
    if v.contains(&b'\n') {
        // Printed through a PTY, `\n` becomes `\r\n`.
        forms.push(bytewise(value, v, Exact, 2, 0, |k, b, o| {
            if b == b'\n' && (k == 0 || v[k - 1] != b'\r') {
                o.push(b'\r');
            }
            o.push(b);
        }));
    }
    if v.iter().any(u8::is_ascii_whitespace) {
        forms.push(echo_words(value, v));
    }
    for style in [Json::Plain, Json::Slash, Json::HtmlSafe, Json::GoPlain] {
        forms.push(bytewise(value, v, Exact, 6, 0, |_, b, o| {
            json_byte(b, style, o)
        }));
    }
    // JSON inside JSON (kubectl's last-applied-configuration, logs of logs).
    forms.push(bytewise(value, v, Exact, 7, 0, |_, b, o| {
        let mut once = Zeroizing::new(Vec::with_capacity(8));
        json_byte(b, Json::Plain, &mut once);
        for &c in once.iter() {
            json_byte(c, Json::Plain, o);
        }
    }));
    if utf8 && !v.is_ascii() {
        // Python's `json.dumps` (`ensure_ascii`): non-ASCII as `\uXXXX`, surrogate pairs.
        forms.push(charwise(value, v, Exact, 12, |c, bytes, o| match c {
            Some(c) if !c.is_ascii() => {
                let mut units = [0u16; 2];
                for &unit in c.encode_utf16(&mut units).iter() {
                    push_u_escape(o, u32::from(unit));
                }
            }
            _ => json_byte(bytes[0], Json::Plain, o),
        }));
    }
    forms.push(charwise(value, v, Exact, 6, go_char));
    if utf8 {
        for ascii in [false, true] {
            for quote in [b'\'', b'"'] {
                forms.push(charwise(value, v, Exact, 10, |c, bytes, o| {
                    // A valid UTF-8 value has no invalid bytes.
                    let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                    python_char(c, bytes, quote, ascii, o)
                }));
            }
        }
    }
    // Python `bytes` repr: printable ASCII as is, the rest as `\xNN`.
    for quote in [b'\'', b'"'] {
        forms.push(bytewise(value, v, Exact, 4, 0, |_, b, o| match b {
            b'\\' => o.extend_from_slice(b"\\\\"),
            b'\n' => o.extend_from_slice(b"\\n"),
            b'\r' => o.extend_from_slice(b"\\r"),
            b'\t' => o.extend_from_slice(b"\\t"),
            b if b == quote => o.extend_from_slice(&[b'\\', quote]),
            0x20..=0x7e => o.push(b),
            _ => {
                o.extend_from_slice(b"\\x");
                push_hex2(o, b, LOWER);
            }
        }));
    }
    // bash: `printf %q` and `declare -p`, in both of their quoting styles.
    forms.push(bytewise(value, v, Exact, 2, 0, |_, b, o| {
        bash_backslash(b, o)
    }));
    forms.push(charwise(value, v, Exact, 4, ansi_c_char));
    forms.push(bytewise(value, v, Exact, 2, 0, |_, b, o| {
        if b"\"$\\`".contains(&b) {
            o.push(b'\\');
        }
        o.push(b);
    }));
    if v.contains(&b'\'') {
        for with in [&b"'\\''"[..], b"'\"'\"'", b"''"] {
            forms.push(bytewise(value, v, Exact, 5, 0, |_, b, o| {
                if b == b'\'' {
                    o.extend_from_slice(with)
                } else {
                    o.push(b)
                }
            }));
        }
    }
    if v.iter().any(|b| b"&<>\"'".contains(b)) {
        for style in &HTML_STYLES {
            forms.push(bytewise(value, v, Exact, 6, 0, |_, b, o| {
                html_byte(b, style, o)
            }));
        }
    }
    for style in &PERCENT_STYLES {
        forms.push(bytewise(value, v, Exact, 3, 0, |_, b, o| {
            percent_byte(b, style, o)
        }));
    }
    // Percent-encoded twice (a URL inside a URL).
    forms.push(bytewise(value, v, Exact, 5, 0, |_, b, o| {
        let mut once = Zeroizing::new(Vec::with_capacity(4));
        percent_byte(b, &PERCENT_STYLES[0], &mut once);
        for &c in once.iter() {
            percent_byte(c, &PERCENT_STYLES[0], o);
        }
    }));
    if utf8 {
        for big_endian in [false, true] {
            forms.push(charwise(value, v, Exact, 4, |c, _, o| {
                let mut units = [0u16; 2];
                let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                for &unit in c.encode_utf16(&mut units).iter() {
                    let pair = if big_endian {
                        unit.to_be_bytes()
                    } else {
                        unit.to_le_bytes()
                    };
                    o.extend_from_slice(&pair);
                }
            }));
        }
    }

    // --- Base64 at the three alignments -------------------------------------------------
    for filler in 0..3usize {
        let mut framed = Zeroizing::new(Vec::with_capacity(filler + v.len()));
        framed.resize(filler, 0);
        framed.extend_from_slice(v);
        let mut encoded = Zeroizing::new(vec![0u8; (framed.len()).div_ceil(3) * 4]);
        // The buffer is sized for the padded encoding, which cannot fail to fit.
        let written = STANDARD
            .encode_slice(&*framed, &mut encoded[..])
            .unwrap_or(0);
        encoded.truncate(written);
        let core_start = (8 * filler).div_ceil(6);
        let mut text = Zeroizing::new(Vec::with_capacity(encoded.len() - core_start));
        text.extend_from_slice(&encoded[core_start..]);
        forms.push(Form {
            value,
            family: Base64,
            text,
            geometry: Geometry::Base64 {
                filler: filler as u32,
                core_start: core_start as u32,
            },
            tokens: v.len() as u32,
            tok_src: None,
            plain: None,
            echo: false,
        });
    }

    // --- Hex ----------------------------------------------------------------------------
    forms.push(bytewise(value, v, Hex, 2, 2, |_, b, o| {
        push_hex2(o, b, LOWER)
    }));
    for sep in HEX_SEPARATORS {
        forms.push(bytewise(value, v, Hex, 3, 2, |_, b, o| {
            push_hex2(o, b, LOWER);
            o.extend_from_slice(sep);
        }));
    }
    forms.push(bytewise(value, v, Hex, 4, 4, |_, b, o| {
        o.extend_from_slice(b"\\x");
        push_hex2(o, b, LOWER);
    }));
    // xxd groups two bytes; the value may start on either byte of a group.
    for parity in 0..2 {
        forms.push(bytewise(value, v, Hex, 3, 2, |k, b, o| {
            push_hex2(o, b, LOWER);
            if (k + parity) % 2 == 1 {
                o.push(b' ');
            }
        }));
    }
    forms.push(bytewise(value, v, OdC, 4, 4, |_, b, o| od_c_byte(b, o)));
}

/// `echo $VAR`: every whitespace run becomes one space; leading and trailing whitespace go.
/// Its tokens are its characters (see the end).
fn echo_words(value: u32, v: &[u8]) -> Form {
    let mut build = Build::new(v.len(), 1);
    let mut k = 0;
    while k < v.len() && v[k].is_ascii_whitespace() {
        k += 1;
    }
    while k < v.len() {
        if v[k].is_ascii_whitespace() {
            let run = k;
            while k < v.len() && v[k].is_ascii_whitespace() {
                k += 1;
            }
            if k < v.len() {
                build.token(run, b" ");
            }
        } else {
            build.token(k, &v[k..=k]);
            k += 1;
        }
    }
    let mut form = build.form(value, Family::Exact, v.len(), 0);
    // A run counts characters here, not the bytes of the whitespace runs they stand for: a
    // piece of the echoed form is never shorter than the run it reveals, so the sampling
    // stride stays the value's own (the public PEM armor is then counted by characters too).
    form.tok_src = None;
    form.echo = true;
    form
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(secret: &[u8]) -> Vec<Vec<u8>> {
        let values = values_of(secret);
        forms_of(&values[..1])
            .into_iter()
            .map(|f| f.text.to_vec())
            .collect()
    }

    fn has(secret: &[u8], text: &[u8]) -> bool {
        texts(secret).iter().any(|t| t == text)
    }

    #[test]
    fn the_value_itself_is_the_first_form() {
        assert_eq!(texts(b"hunter2hunter2")[0], b"hunter2hunter2");
    }

    #[test]
    fn escapings_of_common_languages() {
        assert!(has(b"a\"b\\c\nd\x01", b"a\\\"b\\\\c\\nd\\u0001"));
        assert!(has(b"it's $x", b"it\\'s\\ \\$x"));
        assert!(has(b"it's $x\n", b"it\\'s $x\\n"));
        assert!(has(b"say \"$HOME\"`", b"say \\\"\\$HOME\\\"\\`"));
        assert!(has("caf\u{e9}\u{1}".as_bytes(), b"caf\\xe9\\x01"));
        assert!(has(b"p@ss word/", b"p%40ss+word%2F"));
        assert!(has(b"p@ss word/", b"p%2540ss%2520word%252F"));
    }

    #[test]
    fn hex_forms_of_one_line_layouts() {
        assert!(has(b"\xde\xad\xbe\xef", b"deadbeef"));
        assert!(has(b"\xde\xad\xbe\xef", b"de:ad:be:ef:"));
        assert!(has(b"\xde\xad\xbe\xef", b"\\xde\\xad\\xbe\\xef"));
        assert!(has(b"\xde\xad\xbe\xef", b"dead beef "));
        assert!(has(b"\xde\xad\xbe\xef", b"de adbe ef"));
    }

    #[test]
    fn od_c_fields() {
        assert!(has(b"ab\n\xff\\", b"   a   b  \\n 377   \\"));
    }

    #[test]
    fn source_ranges_cover_whole_tokens_only() {
        let values = values_of(b"\xde\xad\xbe\xef");
        let forms = forms_of(&values);
        let colon = forms.iter().find(|f| *f.text == *b"de:ad:be:ef:").unwrap();
        // "ad:be" covers bytes 1 and 2; "d:be:e" only byte 2.
        assert_eq!(colon.source_range(3, 8), (1, 3));
        assert_eq!(colon.source_range(1, 10), (1, 3));
    }

    #[test]
    fn base64_source_ranges_count_whole_bytes() {
        let values = values_of(b"0123456789ab");
        let forms = forms_of(&values);
        let b64 = forms
            .iter()
            .find(|f| matches!(f.geometry, Geometry::Base64 { filler: 0, .. }))
            .unwrap();
        assert_eq!(b64.source_range(0, 16), (0, 12));
        // Character 1 holds bits 6..12: byte 0 is touched.
        assert_eq!(b64.source_range(1, 16), (0, 12));
        assert_eq!(b64.source_range(2, 15), (1, 12));
        assert_eq!(b64.shortest_run(12), 14);
    }

    #[test]
    fn short_lines_of_a_multiline_secret_are_values_and_armor_is_public() {
        let key = b"-----BEGIN KEY-----\nabcdefghij\nxyz\n-----END KEY-----\n";
        let values = values_of(key);
        assert!(values.iter().any(|v| *v.bytes == *b"abcdefghij"));
        assert!(!values.iter().any(|v| *v.bytes == *b"xyz"));
        assert_eq!(values[0].secret_bytes_in(0, key.len()), 14);
    }
}
