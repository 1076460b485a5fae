//! The derived forms of a secret: every spelling under which a program is likely to print it.
//!
//! A secret rarely leaks verbatim only. Programs print it base64-encoded (HTTP basic auth,
//! Kubernetes `Secret` manifests, JWT segments), percent-encoded (connection URLs), escaped
//! inside JSON or Go `%q` strings (structured logs, error messages), quoted for a shell or an
//! SQL literal (`set -x`, generated scripts, `psql` echo), HTML-escaped, or hex-encoded; and a
//! multi-line secret (a PEM key) is printed through a PTY (`\r\n`), word-split by `echo $VAR`,
//! or one line at a time. [`derived_forms`] lists all of them; the crate docs describe each.
//!
//! Everything here handles secret material, so every buffer is a [`Zeroizing`] vector.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use zeroize::Zeroizing;

/// A buffer holding secret material, wiped when dropped.
///
/// Every encoder below reserves the worst-case size of its output up front: a vector that
/// grows reallocates, and the old allocation would be freed without being wiped.
pub(crate) type SecretBytes = Zeroizing<Vec<u8>>;

/// Width of the lines `base64` (GNU coreutils) and MIME wrap their output at.
const MIME_LINE: usize = 76;
/// Width of the lines `openssl base64` and PEM wrap their output at.
const PEM_LINE: usize = 64;

/// Every form of `secret` that the redactor masks, the secret itself first.
///
/// Forms shorter than `min_len` are dropped: they would mask ordinary text. Duplicates are
/// removed here only within one secret; the pattern set removes them across secrets.
pub(crate) fn derived_forms(secret: &[u8], min_len: usize) -> Vec<SecretBytes> {
    let mut forms = Forms {
        min_len,
        out: Vec::new(),
    };
    for reading in readings(secret) {
        forms.encodings_of(&reading);
        forms.multiline_forms(&reading);
    }
    forms.out
}

/// Collects forms, skipping short ones and duplicates.
struct Forms {
    min_len: usize,
    out: Vec<SecretBytes>,
}

impl Forms {
    fn add(&mut self, form: SecretBytes) {
        if form.len() >= self.min_len && !self.out.iter().any(|f| **f == *form) {
            self.out.push(form);
        }
    }

    fn add_slice(&mut self, form: &[u8]) {
        if form.len() >= self.min_len && !self.out.iter().any(|f| **f == *form) {
            self.out.push(Zeroizing::new(form.to_vec()));
        }
    }

    /// The value itself and all its single-line encodings.
    fn encodings_of(&mut self, v: &[u8]) {
        self.add_slice(v);
        self.base64_forms(v);
        self.add(hex(v, b"0123456789abcdef"));
        self.add(hex(v, b"0123456789ABCDEF"));
        for style in &PERCENT_STYLES {
            self.add(percent_encode(v, style));
        }
        let json = json_escape(v, JsonStyle::Plain);
        self.add(json_escape(&json, JsonStyle::Plain));
        self.add(json);
        self.add(json_escape(v, JsonStyle::EscapedSlash));
        self.add(json_escape(v, JsonStyle::HtmlSafe));
        if let Some(ascii) = json_ensure_ascii(v) {
            self.add(ascii);
        }
        self.add(go_quote(v));
        if v.contains(&b'\'') {
            self.add(replace_byte(v, b'\'', b"'\\''"));
            self.add(replace_byte(v, b'\'', b"'\"'\"'"));
            self.add(replace_byte(v, b'\'', b"''"));
        }
        for style in &HTML_STYLES {
            self.add(html_escape(v, style));
        }
    }

    /// Base64 in both alphabets at the three byte alignments a secret can take inside a
    /// longer encoded text, plus the wrapped lines of a long encoding.
    fn base64_forms(&mut self, v: &[u8]) {
        for (engine, standard) in [(&STANDARD, true), (&URL_SAFE, false)] {
            for k in 0..3 {
                // Encode behind `k` filler bytes: the characters from `core_start` on depend on
                // the secret alone, whatever bytes really precede it.
                let mut framed = Zeroizing::new(vec![0u8; k]);
                framed.extend_from_slice(v);
                let encoded = Zeroizing::new(engine.encode(&*framed).into_bytes());
                let core_start = (8 * k).div_ceil(6);
                let core_end = (8 * (k + v.len())) / 6;
                let unpadded_end = encoded
                    .iter()
                    .rposition(|&c| c != b'=')
                    .map_or(0, |p| p + 1);
                if core_start < core_end {
                    // Secret followed by more bytes: only the characters fully determined by it.
                    self.add_slice(&encoded[core_start..core_end]);
                }
                if core_start < unpadded_end {
                    // Secret at the end of the encoded text: the last partial character is
                    // determined too (zero fill), and `=` padding would reveal the length mod 3.
                    self.add_slice(&encoded[core_start..unpadded_end]);
                    self.add_slice(&encoded[core_start..]);
                }
                if k == 0 && standard {
                    self.wrapped_lines(&encoded);
                }
            }
        }
    }

    /// `base64` and `openssl base64` wrap long output; each wrapped line is masked on its own.
    fn wrapped_lines(&mut self, encoded: &[u8]) {
        for width in [MIME_LINE, PEM_LINE] {
            if encoded.len() > width {
                for line in encoded.chunks(width) {
                    self.add_slice(line);
                }
            }
        }
    }

    /// Forms of a value containing newlines (or whitespace runs).
    fn multiline_forms(&mut self, v: &[u8]) {
        if v.contains(&b'\n') {
            for line in v.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                // PEM armor names the key type, which is public; masking it on its own would
                // garble every other key or certificate the job prints.
                if is_pem_armor(line.trim_ascii()) {
                    continue;
                }
                self.add_slice(line);
                self.add_slice(line.trim_ascii());
            }
            // Printed through a PTY, every `\n` becomes `\r\n`.
            let mut pty = Zeroizing::new(Vec::with_capacity(2 * v.len()));
            for (i, &b) in v.iter().enumerate() {
                if b == b'\n' && (i == 0 || v[i - 1] != b'\r') {
                    pty.push(b'\r');
                }
                pty.push(b);
            }
            self.add(pty);
        }
        // `echo $VAR` word-splits: every whitespace run becomes one space, and leading and
        // trailing whitespace disappear.
        let mut words = Zeroizing::new(Vec::with_capacity(v.len()));
        for word in v
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
        {
            if !words.is_empty() {
                words.push(b' ');
            }
            words.extend_from_slice(word);
        }
        self.add(words);
    }
}

/// `-----BEGIN ...-----` or `-----END ...-----`.
fn is_pem_armor(line: &[u8]) -> bool {
    (line.starts_with(b"-----BEGIN ") || line.starts_with(b"-----END ")) && line.ends_with(b"-----")
}

/// The values a secret may be read as before any encoding: itself, without trailing newlines
/// (`$(cat file)` strips them) and without surrounding quotes.
fn readings(secret: &[u8]) -> Vec<SecretBytes> {
    let mut out: Vec<SecretBytes> = vec![Zeroizing::new(secret.to_vec())];
    let mut push = |v: &[u8]| {
        if !v.is_empty() && !out.iter().any(|o| **o == *v) {
            out.push(Zeroizing::new(v.to_vec()));
        }
    };
    let trimmed_len = secret.len()
        - secret
            .iter()
            .rev()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
    push(&secret[..trimmed_len]);
    if let [first @ (b'"' | b'\''), inner @ .., last] = secret {
        if first == last {
            push(inner);
        }
    }
    out
}

fn hex(v: &[u8], digits: &[u8; 16]) -> SecretBytes {
    let mut out = Zeroizing::new(Vec::with_capacity(v.len() * 2));
    for &b in v {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
    out
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

const UPPER: &[u8; 16] = b"0123456789ABCDEF";
const LOWER: &[u8; 16] = b"0123456789abcdef";

/// The URL encoders in common use, strictest first.
const PERCENT_STYLES: [PercentStyle; 6] = [
    // RFC 3986 strict: .NET `Uri.EscapeDataString`, Go `url.PathEscape` for most bytes,
    // Python `quote(safe="")`, `curl --data-urlencode`.
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

fn percent_encode(v: &[u8], style: &PercentStyle) -> SecretBytes {
    let mut out = Zeroizing::new(Vec::with_capacity(v.len() * 3));
    for &b in v {
        let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        if b == b' ' && style.space_plus {
            out.push(b'+');
        } else if (unreserved && !style.encode.contains(&b)) || style.keep.contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                style.digits[usize::from(b >> 4)],
                style.digits[usize::from(b & 0xf)],
            ]);
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonStyle {
    /// What every JSON encoder writes: `\"`, `\\`, `\n`-style escapes and `\u00XX`.
    Plain,
    /// PHP's `json_encode` (and some Java encoders) also write `\/`.
    EscapedSlash,
    /// Go's `encoding/json` also escapes `<`, `>` and `&` (HTML-safe output).
    HtmlSafe,
}

fn json_escape(v: &[u8], style: JsonStyle) -> SecretBytes {
    let mut out = Zeroizing::new(Vec::with_capacity(6 * v.len()));
    for &b in v {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'/' if style == JsonStyle::EscapedSlash => out.extend_from_slice(b"\\/"),
            b'<' | b'>' | b'&' if style == JsonStyle::HtmlSafe => {
                push_u_escape(&mut out, u32::from(b))
            }
            0..=0x1f => push_u_escape(&mut out, u32::from(b)),
            _ => out.push(b),
        }
    }
    out
}

/// Python's `json.dumps` default (`ensure_ascii=True`): non-ASCII characters become `\uXXXX`
/// (UTF-16, surrogate pairs). `None` for ASCII-only or non-UTF-8 values.
fn json_ensure_ascii(v: &[u8]) -> Option<SecretBytes> {
    if v.is_ascii() {
        return None;
    }
    let text = std::str::from_utf8(v).ok()?;
    let mut out = Zeroizing::new(Vec::with_capacity(6 * v.len()));
    let mut utf16 = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            let mut one = [0u8; 4];
            out.extend_from_slice(&json_escape(
                c.encode_utf8(&mut one).as_bytes(),
                JsonStyle::Plain,
            ));
        } else {
            for &unit in c.encode_utf16(&mut utf16).iter() {
                push_u_escape(&mut out, u32::from(unit));
            }
        }
    }
    Some(out)
}

fn push_u_escape(out: &mut Vec<u8>, unit: u32) {
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(LOWER[((unit >> shift) & 0xf) as usize]);
    }
}

/// Go's `strconv.Quote` (what `%q` prints), without the surrounding quotes.
fn go_quote(v: &[u8]) -> SecretBytes {
    let mut out = Zeroizing::new(Vec::with_capacity(4 * v.len()));
    let mut rest = v;
    while let Some(&b) = rest.first() {
        let step = match b {
            b'"' => {
                out.extend_from_slice(b"\\\"");
                1
            }
            b'\\' => {
                out.extend_from_slice(b"\\\\");
                1
            }
            0x07 => {
                out.extend_from_slice(b"\\a");
                1
            }
            0x08 => {
                out.extend_from_slice(b"\\b");
                1
            }
            0x0c => {
                out.extend_from_slice(b"\\f");
                1
            }
            b'\n' => {
                out.extend_from_slice(b"\\n");
                1
            }
            b'\r' => {
                out.extend_from_slice(b"\\r");
                1
            }
            b'\t' => {
                out.extend_from_slice(b"\\t");
                1
            }
            0x0b => {
                out.extend_from_slice(b"\\v");
                1
            }
            0..=0x1f | 0x7f => {
                push_x_escape(&mut out, b);
                1
            }
            0x20..=0x7e => {
                out.push(b);
                1
            }
            _ => match utf8_char_len(rest) {
                // C1 controls are not printable: Go writes them as `\u0080`..`\u009f`.
                Some(2) if b == 0xc2 && rest[1] < 0xa0 => {
                    push_u_escape(&mut out, u32::from(rest[1]));
                    2
                }
                Some(n) => {
                    out.extend_from_slice(&rest[..n]);
                    n
                }
                // Bytes that are not UTF-8 are written as `\xNN`.
                None => {
                    push_x_escape(&mut out, b);
                    1
                }
            },
        };
        rest = &rest[step..];
    }
    out
}

fn push_x_escape(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[
        b'\\',
        b'x',
        LOWER[usize::from(b >> 4)],
        LOWER[usize::from(b & 0xf)],
    ]);
}

/// Length of the UTF-8 character at the start of `s`, if it is a valid one.
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

fn replace_byte(v: &[u8], needle: u8, with: &[u8]) -> SecretBytes {
    let mut out = Zeroizing::new(Vec::with_capacity(with.len().max(1) * v.len()));
    for &b in v {
        if b == needle {
            out.extend_from_slice(with);
        } else {
            out.push(b);
        }
    }
    out
}

/// How one HTML/XML escaper spells the five special characters.
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

fn html_escape(v: &[u8], style: &HtmlStyle) -> SecretBytes {
    let mut out = Zeroizing::new(Vec::with_capacity(6 * v.len()));
    for &b in v {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(style.quot),
            b'\'' => out.extend_from_slice(style.apos),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
        derived_forms(secret, 8)
            .into_iter()
            .map(|f| f.to_vec())
            .collect()
    }

    fn has(secret: &[u8], form: &[u8]) -> bool {
        forms(secret).iter().any(|f| f == form)
    }

    #[test]
    fn the_secret_itself_comes_first() {
        assert_eq!(forms(b"hunter2hunter2")[0], b"hunter2hunter2");
    }

    #[test]
    fn base64_padded_and_unpadded_in_both_alphabets() {
        // base64("secret?>secret") = "c2VjcmV0Pz5zZWNyZXQ=" (no '+' or '/': same in both alphabets)
        assert!(has(b"secret?>secret", b"c2VjcmV0Pz5zZWNyZXQ="));
        assert!(has(b"secret?>secret", b"c2VjcmV0Pz5zZWNyZXQ"));
        // base64("\xfb\xff\xbf\xfb\xff\xbf\xfb\xff") uses '+' and '/' in the standard alphabet.
        let s = b"\xfb\xff\xbf\xfb\xff\xbf\xfb\xff";
        assert!(has(s, b"+/+/+/+/+/8="));
        assert!(has(s, b"-_-_-_-_-_8="));
    }

    #[test]
    fn base64_cores_cover_every_alignment() {
        let secret = b"Password123!";
        for prefix in [&b""[..], b"a", b"ab", b"abc", b"abcd"] {
            for suffix in [&b""[..], b"x", b"xy", b"xyz"] {
                let mut text = prefix.to_vec();
                text.extend_from_slice(secret);
                text.extend_from_slice(suffix);
                let encoded = STANDARD.encode(&text);
                assert!(
                    forms(secret).iter().any(|f| encoded
                        .as_bytes()
                        .windows(f.len())
                        .any(|w| w == f.as_slice())),
                    "no form found in base64 of {prefix:?}+secret+{suffix:?}"
                );
            }
        }
    }

    #[test]
    fn percent_encodings_of_common_encoders() {
        assert!(has(b"Pass word 123!", b"Pass%20word%20123%21"));
        assert!(has(b"Pass word 123!", b"Pass+word+123%21"));
        assert!(has(b"Pass word 123!", b"Pass%20word%20123!"));
        assert!(has(b"p@ss/w:rd~x", b"p%40ss/w%3Ard~x"));
        assert!(has(b"p@ss/w:rd~x", b"p%40ss%2Fw%3Ard%7Ex"));
        assert!(has(b"p@ss/w:rd~x", b"p%40ss%2fw%3ard~x"));
    }

    #[test]
    fn json_escapes() {
        assert!(has(b"Pass\"word\"123!", b"Pass\\\"word\\\"123!"));
        assert!(has(
            b"line one\nline two\x01",
            b"line one\\nline two\\u0001"
        ));
        assert!(has(b"a/b/c<d>&e", b"a\\/b\\/c<d>&e"));
        assert!(has(b"a/b/c<d>&e", b"a/b/c\\u003cd\\u003e\\u0026e"));
        assert!(has("pässwörd".as_bytes(), b"p\\u00e4ssw\\u00f6rd"));
        // JSON inside JSON (e.g. kubectl's last-applied-configuration annotation).
        assert!(has(b"say \"hi\" now", b"say \\\\\\\"hi\\\\\\\" now"));
    }

    #[test]
    fn go_quote_escapes() {
        assert!(has(
            b"bell\x07\x1bdel\x7f\xff",
            b"bell\\a\\x1bdel\\x7f\\xff"
        ));
    }

    #[test]
    fn quoting_for_shells_and_sql() {
        assert!(has(b"it's a secret", b"it'\\''s a secret"));
        assert!(has(b"it's a secret", b"it'\"'\"'s a secret"));
        assert!(has(b"it's a secret", b"it''s a secret"));
    }

    #[test]
    fn html_and_xml_escapes() {
        assert!(has(b"Pass<word>123!", b"Pass&lt;word&gt;123!"));
        assert!(has(b"it's \"x\" & y", b"it&apos;s &quot;x&quot; &amp; y"));
        assert!(has(b"it's \"x\" & y", b"it&#39;s &#34;x&#34; &amp; y"));
        assert!(has(b"it's \"x\" & y", b"it&#x27;s &quot;x&quot; &amp; y"));
    }

    #[test]
    fn hex_lower_and_upper() {
        assert!(has(b"\xde\xad\xbe\xef", b"deadbeef"));
        assert!(has(b"\xde\xad\xbe\xef", b"DEADBEEF"));
    }

    #[test]
    fn multiline_secret_forms() {
        let key = b"-----BEGIN KEY-----\nabcdefgh\nxyz\n-----END KEY-----\n";
        assert!(!has(key, b"-----BEGIN KEY-----"), "PEM armor is public");
        assert!(!has(key, b"-----END KEY-----"), "PEM armor is public");
        assert!(has(key, b"abcdefgh"));
        assert!(
            !has(key, b"xyz"),
            "lines shorter than the minimum are not masked on their own"
        );
        assert!(has(
            key,
            b"-----BEGIN KEY-----\r\nabcdefgh\r\nxyz\r\n-----END KEY-----\r\n"
        ));
        assert!(has(
            key,
            b"-----BEGIN KEY----- abcdefgh xyz -----END KEY-----"
        ));
        assert!(has(
            key,
            b"-----BEGIN KEY-----\nabcdefgh\nxyz\n-----END KEY-----"
        ));
        assert!(has(
            key,
            b"-----BEGIN KEY-----\r\nabcdefgh\r\nxyz\r\n-----END KEY-----"
        ));
    }

    #[test]
    fn quoted_secret_is_also_masked_unquoted() {
        assert!(has(b"\"Password123!!\"", b"Password123!!"));
    }

    #[test]
    fn long_base64_is_also_masked_line_by_line() {
        let secret = vec![b'k'; 100];
        let encoded = STANDARD.encode(&secret);
        for line in encoded.as_bytes().chunks(76) {
            assert!(has(&secret, line));
        }
        for line in encoded.as_bytes().chunks(64) {
            assert!(has(&secret, line));
        }
    }

    #[test]
    fn forms_shorter_than_the_minimum_are_dropped() {
        assert!(forms(b"\"short1\"").iter().all(|f| f.len() >= 8));
    }
}
