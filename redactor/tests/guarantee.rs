//! The crate's guarantee, checked against the tools real commands use: for every secret `s`
//! and every covered transform `T`, decoding the masked output with `T`'s inverse, at any
//! alignment, yields no run of `min(len(s), 12)` consecutive bytes of `s`.
//!
//! Each test takes random secrets of 8 to 200 bytes, embeds each at a random offset in random
//! text, applies one transform, with the real tool where the host (or busybox) has it
//! (`base64`, `xxd`, `od`, `hexdump`, `iconv`, bash's `printf %q` and `declare -p`, Python's
//! `repr`, `jq`) and in code otherwise, surrounds the result with log lines, streams it through
//! a [`StreamRedactor`] in random chunks, and decodes the masked output with the inverse
//! transform at every alignment. The same decoding of the unmasked output must find a run
//! (the positive control: the transform and its inverse are right, so an absence means
//! something).
//!
//! `SEALRUN_GUARANTEE_CASES` sets the number of secrets per transform (default 16);
//! `SEALRUN_GUARANTEE_SEED` the seed (default: fixed; a failure prints the seed and case).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use sealrun_redactor::{MASK, RUN_LEN, Redactor, StreamRedactor};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// What a secret is made of.
#[derive(Clone, Copy, Debug)]
enum Alphabet {
    /// Printable ASCII: passwords.
    Printable,
    /// Letters, digits, `-_`: tokens.
    Token,
    /// Any byte: keys, binary blobs.
    Binary,
    /// UTF-8 text with non-ASCII characters.
    Text,
}

/// A random secret of 8 to 200 bytes. Never contains `*`: a mask next to other text could
/// otherwise spell a run that was never in the input.
fn secret(rng: &mut Rng, alphabet: Alphabet) -> Vec<u8> {
    let len = rng.range(8, 200);
    let mut s = Vec::with_capacity(len + 4);
    while s.len() < len {
        match alphabet {
            Alphabet::Printable => s.push(b' ' + rng.below(95) as u8),
            Alphabet::Token => {
                const T: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                s.push(T[rng.below(T.len())]);
            }
            Alphabet::Binary => s.push(rng.next() as u8),
            Alphabet::Text => {
                const C: &[&str] = &[
                    "a", "Z", "7", "-", " ", "é", "ß", "ключ", "密", "€", "😀", "\"", "'", "\\",
                    "$", "\n", "\t",
                ];
                s.extend_from_slice(C[rng.below(C.len())].as_bytes());
            }
        }
        s.retain(|&b| b != b'*');
    }
    if matches!(alphabet, Alphabet::Text) {
        // Keep it UTF-8: cut at a character boundary.
        let mut end = s.len().min(200);
        while std::str::from_utf8(&s[..end]).is_err() {
            end -= 1;
        }
        s.truncate(end.max(8));
    } else {
        s.truncate(len);
    }
    s
}

/// Random filler text (no `*`).
fn filler(rng: &mut Rng, max: usize) -> Vec<u8> {
    const F: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 :=/.,-_{}\"'";
    (0..rng.below(max + 1))
        .map(|_| F[rng.below(F.len())])
        .collect()
}

/// Runs `argv` with `input` on stdin; `None` when the program is not installed.
fn tool(argv: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{argv:?} failed");
    Some(out.stdout)
}

/// Whether `bytes` holds a run of `min(len(s), 12)` consecutive bytes of `s`.
fn has_run(bytes: &[u8], s: &[u8]) -> bool {
    let w = s.len().min(RUN_LEN);
    let windows: HashSet<&[u8]> = s.windows(w).collect();
    bytes.windows(w).any(|x| windows.contains(x))
}

/// Streams `input` through a fresh stream in random chunks (1-byte ones included).
fn streamed(redactor: &Arc<Redactor>, input: &[u8], rng: &mut Rng) -> (Vec<u8>, u64) {
    let mut stream = StreamRedactor::new(Arc::clone(redactor));
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let size = match rng.below(4) {
            0 => 1,
            1 => rng.range(1, 16),
            2 => rng.range(16, 300),
            _ => rest.len(),
        }
        .min(rest.len());
        stream.push(&rest[..size], &mut out);
        rest = &rest[size..];
    }
    stream.finish(&mut out);
    (out, stream.masks_written())
}

// --- Inverse transforms ---------------------------------------------------------------------

/// A decoder: the byte streams the masked output decodes to, at every alignment.
type Inverse = fn(&[u8]) -> Vec<Vec<u8>>;

fn identity(out: &[u8]) -> Vec<Vec<u8>> {
    vec![out.to_vec()]
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    } as u32)
}

/// base64 in either alphabet, lines joined (indentation after a line break skipped), from
/// each of the four character alignments of every run.
fn base64_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    let mut runs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut k = 0;
    while k < out.len() {
        let c = out[k];
        if c == b'\r' || c == b'\n' {
            k += 1;
            if c == b'\n' {
                while k < out.len() && (out[k] == b' ' || out[k] == b'\t') {
                    k += 1;
                }
            }
            continue;
        }
        if b64_value(c).is_some() {
            runs.last_mut().unwrap().push(c);
        } else {
            runs.push(Vec::new());
        }
        k += 1;
    }
    let mut decoded = Vec::new();
    for run in runs {
        for offset in 0..4.min(run.len()) {
            let (mut bits, mut n, mut bytes) = (0u32, 0, Vec::new());
            for &c in &run[offset..] {
                bits = (bits << 6) | b64_value(c).unwrap();
                n += 6;
                if n >= 8 {
                    n -= 8;
                    bytes.push((bits >> n) as u8);
                    bits &= (1 << n) - 1;
                }
            }
            decoded.push(bytes);
        }
    }
    decoded
}

/// Hex digits in either case, separators (spaces, `:`, `,`, `\x`) skipped, at both nibble
/// alignments; `parts` has already cut dump layouts down to their hex columns.
fn hex_decode(parts: &[u8]) -> Vec<Vec<u8>> {
    let mut runs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut k = 0;
    while k < parts.len() {
        let c = parts[k];
        if c.is_ascii_hexdigit() {
            runs.last_mut().unwrap().push(c);
        } else if c == b'\\' && parts.get(k + 1) == Some(&b'x') {
            k += 1;
        } else if !matches!(c, b' ' | b':' | b',' | b'\n' | b'\r' | b'\t') {
            runs.push(Vec::new());
        }
        k += 1;
    }
    let mut decoded = Vec::new();
    for run in runs {
        for offset in 0..2.min(run.len()) {
            decoded.push(
                run[offset..]
                    .chunks_exact(2)
                    .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
                    .collect(),
            );
        }
    }
    decoded
}

fn hex_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    hex_decode(out)
}

/// The hex columns of dump lines (`xxd`, `hexdump -C`, `od -tx1`, with or without offsets),
/// joined; other lines as they are.
fn dump_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    for line in out.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let rest = &line[digits..];
        let hex: &[u8] = if digits >= 6 && rest.starts_with(b": ") {
            // xxd: the hex column ends at two spaces.
            let rest = &rest[2..];
            let end = rest
                .windows(2)
                .position(|w| w == b"  ")
                .unwrap_or(rest.len());
            &rest[..end]
        } else if digits >= 6 && rest.starts_with(b"  ") {
            // hexdump -C: the hex column ends at `|`.
            let end = rest.iter().position(|&b| b == b'|').unwrap_or(rest.len());
            &rest[..end]
        } else if digits >= 6 {
            // od: an offset, then the bytes.
            rest
        } else {
            line
        };
        parts.extend_from_slice(hex);
        // A line break joins the bytes of two dump lines.
        parts.push(b' ');
    }
    hex_decode(&parts)
}

/// One `od -c` field.
fn od_field(f: &[u8]) -> Option<u8> {
    match f {
        [b' ', b' ', b' ', c] => Some(*c),
        [b' ', b' ', b'\\', e] => Some(match e {
            b'0' => 0,
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 11,
            _ => return None,
        }),
        [b' ', a, b, c] if [a, b, c].iter().all(|d| (b'0'..=b'7').contains(d)) => {
            Some((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'))
        }
        _ => None,
    }
}

fn od_fields(piece: &[u8], align: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for f in piece.get(align..).unwrap_or_default().chunks(4) {
        match od_field(f) {
            Some(b) => bytes.push(b),
            None => break,
        }
    }
    bytes
}

/// `od -c` lines: fields after the offset, each piece between masks at every alignment, and
/// runs of pieces continued across line breaks.
fn od_c_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    let mut decoded = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for line in out.split(|&b| b == b'\n') {
        let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
        let content = if digits >= 6 { &line[digits..] } else { line };
        let pieces: Vec<&[u8]> = split_masks(content);
        for (n, piece) in pieces.iter().enumerate() {
            for align in 0..4 {
                decoded.push(od_fields(piece, align));
            }
            if n == 0 {
                current.extend(od_fields(piece, 0));
            } else {
                decoded.push(std::mem::take(&mut current));
                let align = piece.len() % 4;
                current = od_fields(piece, align);
            }
        }
    }
    decoded.push(current);
    decoded
}

fn split_masks(text: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.windows(MASK.len()).position(|w| w == MASK) {
        pieces.push(&rest[..at]);
        rest = &rest[at + MASK.len()..];
    }
    pieces.push(rest);
    pieces
}

/// UTF-16 in both byte orders and at both byte alignments, back to UTF-8.
fn utf16_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    let mut decoded = Vec::new();
    for big_endian in [false, true] {
        for align in 0..2 {
            let units: Vec<u16> = out[align.min(out.len())..]
                .chunks_exact(2)
                .map(|p| {
                    if big_endian {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        u16::from_le_bytes([p[0], p[1]])
                    }
                })
                .collect();
            let mut bytes = Vec::new();
            for c in char::decode_utf16(units) {
                let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            decoded.push(bytes);
        }
    }
    decoded
}

/// Backslash escapes as C-like languages write them: JSON, Go `%q`, Python `repr`, bash
/// `printf %q`, `$'...'` and `declare -p` (`\n`, `\xNN`, `\uNNNN`, `\UNNNNNNNN`, `\NNN`,
/// `\` before any other character).
fn unescape_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    // `\xNN` is a byte in Go, C, bash and Python `bytes`, a code point in a Python `str`.
    vec![unescape(out, false), unescape(out, true)]
}

fn unescape(out: &[u8], x_is_code_point: bool) -> Vec<u8> {
    fn hex(s: &[u8]) -> Option<u32> {
        u32::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
    }
    let mut bytes = Vec::new();
    let mut k = 0;
    let mut high: Option<u32> = None;
    while k < out.len() {
        if out[k] != b'\\' || k + 1 == out.len() {
            bytes.push(out[k]);
            k += 1;
            continue;
        }
        let e = out[k + 1];
        k += 2;
        let code = |n: usize, k: &mut usize| -> Option<u32> {
            let v = hex(out.get(*k..*k + n)?)?;
            *k += n;
            Some(v)
        };
        let ch = match e {
            b'n' => Some(10),
            b't' => Some(9),
            b'r' => Some(13),
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'v' => Some(11),
            b'e' | b'E' => Some(27),
            b'x' if x_is_code_point => code(2, &mut k),
            b'x' => code(2, &mut k).map(|v| {
                bytes.push(v as u8);
                u32::MAX
            }),
            b'u' => code(4, &mut k),
            b'U' => code(8, &mut k),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    if let Some(&d @ b'0'..=b'7') = out.get(k) {
                        v = v * 8 + u32::from(d - b'0');
                        k += 1;
                    }
                }
                bytes.push(v as u8);
                Some(u32::MAX)
            }
            other => Some(u32::from(other)),
        };
        match ch {
            Some(u32::MAX) => {}
            Some(u) if (0xd800..0xdc00).contains(&u) => high = Some(u),
            Some(u) => {
                let c = match (high.take(), u) {
                    (Some(h), l) if (0xdc00..0xe000).contains(&l) => {
                        char::from_u32(0x10000 + ((h - 0xd800) << 10) + (l - 0xdc00))
                    }
                    _ => char::from_u32(u),
                };
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(
                    c.unwrap_or(char::REPLACEMENT_CHARACTER)
                        .encode_utf8(&mut buf)
                        .as_bytes(),
                );
            }
            None => bytes.extend_from_slice(&[b'\\', e]),
        }
    }
    bytes
}

fn percent_once(s: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < s.len() {
        match s[k] {
            b'%' if k + 2 < s.len() + 1
                && s.get(k + 1..k + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                out.push(
                    u8::from_str_radix(std::str::from_utf8(&s[k + 1..k + 3]).unwrap(), 16).unwrap(),
                );
                k += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                k += 1;
            }
            b => {
                out.push(b);
                k += 1;
            }
        }
    }
    out
}

fn percent_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    let mut decoded = Vec::new();
    for plus in [false, true] {
        let once = percent_once(out, plus);
        decoded.push(percent_once(&once, plus));
        decoded.push(once);
    }
    decoded
}

fn html_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    let mut text = out.to_vec();
    for (entity, b) in [
        (&b"&lt;"[..], b'<'),
        (b"&gt;", b'>'),
        (b"&quot;", b'"'),
        (b"&apos;", b'\''),
        (b"&#34;", b'"'),
        (b"&#39;", b'\''),
        (b"&#x27;", b'\''),
        (b"&amp;", b'&'),
    ] {
        let mut next = Vec::new();
        let mut k = 0;
        while k < text.len() {
            if text[k..].starts_with(entity) {
                next.push(b);
                k += entity.len();
            } else {
                next.push(text[k]);
                k += 1;
            }
        }
        text = next;
    }
    vec![text]
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < text.len() {
        if text[k..].starts_with(from) {
            out.extend_from_slice(to);
            k += from.len();
        } else {
            out.push(text[k]);
            k += 1;
        }
    }
    out
}

/// Shell single quotes (`'\''`, `'"'"'`) and SQL doubling (`''`), undone.
fn quote_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    vec![
        replace(out, b"'\\''", b"'"),
        replace(out, b"'\"'\"'", b"'"),
        replace(out, b"''", b"'"),
    ]
}

fn pty_inverse(out: &[u8]) -> Vec<Vec<u8>> {
    vec![replace(out, b"\r\n", b"\n")]
}

// --- The check ------------------------------------------------------------------------------

/// The number of secrets per transform.
fn cases() -> usize {
    std::env::var("SEALRUN_GUARANTEE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16)
}

fn seed() -> u64 {
    std::env::var("SEALRUN_GUARANTEE_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x5EA1_2014)
}

/// How a transform prints a text holding a secret (`None`: the tool is missing).
type Apply = fn(&[u8], &[u8], &mut Rng) -> Option<Vec<u8>>;

/// One transform: how it prints `text` (a secret with filler around it; `None`: the tool
/// is missing), which secrets it takes, and its inverse.
struct Transform {
    name: &'static str,
    alphabets: &'static [Alphabet],
    /// Gets the text and the secret in it.
    apply: Apply,
    inverse: Inverse,
    /// The tool prints whole lines (a dump): its output starts a line, as it would.
    lines: bool,
}

/// Checks one transform over `cases()` random secrets; returns how many ran (0 when the
/// tool is missing).
fn check(t: &Transform) -> usize {
    let mut rng = Rng(seed() ^ fnv(t.name));
    let mut ran = 0;
    for case in 0..cases() {
        let alphabet = t.alphabets[case % t.alphabets.len()];
        let s = secret(&mut rng, alphabet);
        let text = [filler(&mut rng, 40), s.clone(), filler(&mut rng, 40)].concat();
        let Some(printed) = (t.apply)(&text, &s, &mut rng) else {
            sealrun_testkit::skip_or_fail(&format!("{}: the tool is not installed", t.name));
            return 0;
        };
        let newline: &[u8] = if t.lines { b"\n" } else { b"" };
        let input = [
            b"2025-11-25T10:00:00Z INFO starting\n".as_slice(),
            &filler(&mut rng, 30),
            newline,
            &printed,
            &filler(&mut rng, 30),
            b"\n2025-11-25T10:00:01Z INFO done\n",
        ]
        .concat();
        // The positive control: the inverse finds the secret in what was printed.
        assert!(
            (t.inverse)(&input).iter().any(|d| has_run(d, &s)),
            "{} case {case} (seed {}): the inverse does not find the secret in the unmasked output: {:?}",
            t.name,
            seed(),
            String::from_utf8_lossy(&input)
        );
        let redactor = Arc::new(Redactor::new([&s]).unwrap());
        let (out, masks) = streamed(&redactor, &input, &mut rng);
        for decoded in (t.inverse)(&out).iter().chain(&identity(&out)) {
            assert!(
                !has_run(decoded, &s),
                "{} case {case} (seed {}, {alphabet:?}, {} bytes): a run survives\n  printed: {:?}\n  masked:  {:?}",
                t.name,
                seed(),
                s.len(),
                String::from_utf8_lossy(&input),
                String::from_utf8_lossy(&out)
            );
        }
        assert!(masks > 0, "{}: nothing was masked", t.name);
        ran += 1;
    }
    ran
}

fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

const ANY: &[Alphabet] = &[
    Alphabet::Printable,
    Alphabet::Token,
    Alphabet::Binary,
    Alphabet::Text,
];
const TEXTUAL: &[Alphabet] = &[Alphabet::Printable, Alphabet::Token, Alphabet::Text];
const PRINTABLE: &[Alphabet] = &[Alphabet::Printable, Alphabet::Token];

fn run_all(transforms: &[Transform]) {
    for t in transforms {
        check(t);
    }
}

fn wrap(text: &[u8], width: usize, eol: &[u8], indent: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.chunks(width.max(1)) {
        out.extend_from_slice(indent);
        out.extend_from_slice(line);
        out.extend_from_slice(eol);
    }
    out
}

// --- Raw ------------------------------------------------------------------------------------

#[test]
fn any_run_of_twelve_bytes_of_a_secret_is_masked_raw() {
    run_all(&[Transform {
        name: "raw substring",
        alphabets: ANY,
        // A prefix, a truncation or a middle piece of the secret: at least 12 bytes of it.
        apply: |_, secret, rng| {
            let run = secret.len().min(RUN_LEN);
            let from = rng.below(secret.len() - run + 1);
            let to = rng.range(from + run, secret.len());
            Some(secret[from..to].to_vec())
        },
        inverse: identity,
        lines: false,
    }]);
}

// --- Base64 ---------------------------------------------------------------------------------

#[test]
fn base64_at_every_alignment_and_wrap_width_is_masked() {
    run_all(&[
        Transform {
            name: "base64 (coreutils, 76 columns)",
            alphabets: ANY,
            apply: |text, _, _| tool(&["base64"], text),
            inverse: base64_inverse,
            lines: false,
        },
        Transform {
            name: "base64 -w N (any width)",
            alphabets: ANY,
            apply: |text, _, rng| {
                let width = rng.range(4, 100).to_string();
                tool(&["base64", "-w", &width], text)
            },
            inverse: base64_inverse,
            lines: false,
        },
        Transform {
            name: "base64 -w 0",
            alphabets: ANY,
            apply: |text, _, _| tool(&["base64", "-w", "0"], text),
            inverse: base64_inverse,
            lines: false,
        },
        Transform {
            name: "busybox base64",
            alphabets: ANY,
            apply: |text, _, _| tool(&["/bin/busybox", "base64"], text),
            inverse: base64_inverse,
            lines: false,
        },
        Transform {
            name: "base64 wrapped at 64 with CRLF",
            alphabets: ANY,
            apply: |text, _, _| Some(wrap(STANDARD.encode(text).as_bytes(), 64, b"\r\n", b"")),
            inverse: base64_inverse,
            lines: false,
        },
        Transform {
            name: "base64 indented in YAML",
            alphabets: ANY,
            apply: |text, _, rng| {
                let width = rng.range(16, 80);
                Some(wrap(
                    STANDARD.encode(text).as_bytes(),
                    width,
                    b"\n",
                    b"    ",
                ))
            },
            inverse: base64_inverse,
            lines: false,
        },
        Transform {
            name: "base64url, padded or not",
            alphabets: ANY,
            apply: |text, _, rng| {
                let encoded = if rng.below(2) == 0 {
                    URL_SAFE.encode(text)
                } else {
                    URL_SAFE_NO_PAD.encode(text)
                };
                Some(encoded.into_bytes())
            },
            inverse: base64_inverse,
            lines: false,
        },
    ]);
}

// --- Hex ------------------------------------------------------------------------------------

#[test]
fn hex_dumps_of_real_tools_are_masked() {
    run_all(&[
        Transform {
            name: "xxd",
            alphabets: ANY,
            apply: |text, _, _| tool(&["xxd"], text),
            inverse: dump_inverse,
            lines: true,
        },
        Transform {
            name: "xxd -u",
            alphabets: ANY,
            apply: |text, _, _| tool(&["xxd", "-u"], text),
            inverse: dump_inverse,
            lines: true,
        },
        Transform {
            name: "xxd -p",
            alphabets: ANY,
            apply: |text, _, _| tool(&["xxd", "-p"], text),
            inverse: hex_inverse,
            lines: false,
        },
        Transform {
            name: "busybox xxd",
            alphabets: ANY,
            apply: |text, _, _| tool(&["/bin/busybox", "xxd"], text),
            inverse: dump_inverse,
            lines: true,
        },
        Transform {
            name: "hexdump -C",
            alphabets: ANY,
            apply: |text, _, _| tool(&["hexdump", "-C"], text),
            inverse: dump_inverse,
            lines: true,
        },
        Transform {
            name: "busybox hexdump -C",
            alphabets: ANY,
            apply: |text, _, _| tool(&["/bin/busybox", "hexdump", "-C"], text),
            inverse: dump_inverse,
            lines: true,
        },
        Transform {
            name: "od -An -tx1",
            alphabets: ANY,
            apply: |text, _, _| tool(&["od", "-An", "-tx1"], text),
            inverse: dump_inverse,
            lines: true,
        },
        Transform {
            name: "od -tx1",
            alphabets: ANY,
            apply: |text, _, _| tool(&["od", "-tx1"], text),
            inverse: dump_inverse,
            lines: true,
        },
        Transform {
            name: "busybox od -tx1",
            alphabets: ANY,
            apply: |text, _, _| tool(&["/bin/busybox", "od", "-tx1"], text),
            inverse: dump_inverse,
            lines: true,
        },
    ]);
}

fn hex_string(text: &[u8], upper: bool, before: &str, after: &str) -> Vec<u8> {
    let mut out = String::new();
    for (k, b) in text.iter().enumerate() {
        out.push_str(before);
        if upper {
            out.push_str(&format!("{b:02X}"));
        } else {
            out.push_str(&format!("{b:02x}"));
        }
        if k + 1 < text.len() {
            out.push_str(after);
        }
    }
    out.into_bytes()
}

#[test]
fn hex_in_either_case_contiguous_separated_or_escaped_is_masked() {
    run_all(&[
        Transform {
            name: "hex, lower or upper case",
            alphabets: ANY,
            apply: |text, _, rng| Some(hex_string(text, rng.below(2) == 0, "", "")),
            inverse: hex_inverse,
            lines: false,
        },
        Transform {
            name: "hex separated by spaces, colons or commas",
            alphabets: ANY,
            apply: |text, _, rng| {
                let sep = [" ", ":", ","][rng.below(3)];
                Some(hex_string(text, rng.below(2) == 0, "", sep))
            },
            inverse: hex_inverse,
            lines: false,
        },
        Transform {
            name: "\\x escapes",
            alphabets: ANY,
            apply: |text, _, rng| Some(hex_string(text, rng.below(2) == 0, "\\x", "")),
            inverse: hex_inverse,
            lines: false,
        },
        Transform {
            name: "openssl-style colon dump (15 bytes a line, indented)",
            alphabets: ANY,
            apply: |text, _, _| {
                let mut out = Vec::new();
                for line in text.chunks(15) {
                    out.extend_from_slice(b"        ");
                    out.extend_from_slice(&hex_string(line, false, "", ":"));
                    out.extend_from_slice(b":\n");
                }
                Some(out)
            },
            inverse: hex_inverse,
            lines: false,
        },
    ]);
}

// --- od -c ----------------------------------------------------------------------------------

#[test]
fn od_c_character_dumps_are_masked() {
    run_all(&[
        Transform {
            name: "od -c",
            alphabets: ANY,
            apply: |text, _, _| tool(&["od", "-c"], text),
            inverse: od_c_inverse,
            lines: true,
        },
        Transform {
            name: "od -An -c",
            alphabets: ANY,
            apply: |text, _, _| tool(&["od", "-An", "-c"], text),
            inverse: od_c_inverse,
            lines: true,
        },
        Transform {
            name: "busybox od -c",
            alphabets: ANY,
            apply: |text, _, _| tool(&["/bin/busybox", "od", "-c"], text),
            inverse: od_c_inverse,
            lines: true,
        },
    ]);
}

// --- Percent --------------------------------------------------------------------------------

fn percent(text: &[u8], plus: bool, lower: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in text {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else if b == b' ' && plus {
            out.push(b'+');
        } else if lower {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

#[test]
fn percent_encoding_single_double_and_form_is_masked() {
    run_all(&[
        Transform {
            name: "percent-encoding",
            alphabets: ANY,
            apply: |text, _, rng| Some(percent(text, false, rng.below(2) == 0)),
            inverse: percent_inverse,
            lines: false,
        },
        Transform {
            name: "form encoding (+ for space)",
            alphabets: ANY,
            apply: |text, _, _| Some(percent(text, true, false)),
            inverse: percent_inverse,
            lines: false,
        },
        Transform {
            name: "percent-encoding twice",
            alphabets: ANY,
            apply: |text, _, _| Some(percent(&percent(text, false, false), false, false)),
            inverse: percent_inverse,
            lines: false,
        },
    ]);
}

// --- Language escapes -----------------------------------------------------------------------

fn python(expr: &str, text: &[u8]) -> Option<Vec<u8>> {
    let program = format!(
        "import sys,json; d=sys.stdin.buffer.read(); s=d.decode('utf-8','surrogateescape'); sys.stdout.write({expr})"
    );
    tool(&["python3", "-c", &program], text)
}

fn bash(script: &str, text: &[u8]) -> Option<Vec<u8>> {
    // The value comes in on stdin, whole (a trailing newline included).
    let program = format!("IFS= read -r -d '' v; {script}");
    let mut out = tool(&["bash", "-c", &program], text)?;
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    Some(out)
}

/// Go's `strconv.Quote`, written out here (there is no Go on the host).
fn go_quote(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\x07' => out.extend_from_slice(b"\\a"),
                '\x08' => out.extend_from_slice(b"\\b"),
                '\x0c' => out.extend_from_slice(b"\\f"),
                '\x0b' => out.extend_from_slice(b"\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    out.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes())
                }
                c if (0x80..0xa0).contains(&(c as u32)) => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => out.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        for b in chunk.invalid() {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
    out
}

#[test]
fn escaped_strings_of_common_languages_are_masked() {
    run_all(&[
        Transform {
            name: "JSON (serde_json)",
            alphabets: TEXTUAL,
            apply: |text, _, _| {
                Some(
                    serde_json::to_string(std::str::from_utf8(text).ok()?)
                        .ok()?
                        .into_bytes(),
                )
            },
            inverse: unescape_inverse,
            lines: false,
        },
        Transform {
            name: "JSON with ensure_ascii (python3 json.dumps)",
            alphabets: TEXTUAL,
            apply: |text, _, _| python("json.dumps(s)", text),
            inverse: unescape_inverse,
            lines: false,
        },
        Transform {
            name: "Go %q",
            alphabets: ANY,
            apply: |text, _, _| Some(go_quote(text)),
            inverse: unescape_inverse,
            lines: false,
        },
        Transform {
            name: "python3 repr(str)",
            alphabets: TEXTUAL,
            apply: |text, _, _| python("repr(s)", text),
            inverse: unescape_inverse,
            lines: false,
        },
        Transform {
            name: "python3 ascii(str)",
            alphabets: TEXTUAL,
            apply: |text, _, _| python("ascii(s)", text),
            inverse: unescape_inverse,
            lines: false,
        },
        Transform {
            name: "python3 repr(bytes)",
            alphabets: ANY,
            apply: |text, _, _| python("repr(d)", text),
            inverse: unescape_inverse,
            lines: false,
        },
        Transform {
            name: "bash printf %q",
            alphabets: TEXTUAL,
            apply: |text, _, _| bash("printf '%q' \"$v\"", text),
            inverse: unescape_inverse,
            lines: false,
        },
        Transform {
            name: "bash declare -p",
            alphabets: TEXTUAL,
            apply: |text, _, _| bash("declare -p v", text),
            inverse: unescape_inverse,
            lines: false,
        },
        Transform {
            name: "shell single quotes and SQL literals",
            alphabets: PRINTABLE,
            apply: |text, _, rng| {
                let with: &[u8] = [&b"'\\''"[..], b"'\"'\"'", b"''"][rng.below(3)];
                Some(replace(text, b"'", with))
            },
            inverse: quote_inverse,
            lines: false,
        },
        Transform {
            name: "HTML/XML escaping",
            alphabets: PRINTABLE,
            apply: |text, _, rng| {
                let mut out = replace(text, b"&", b"&amp;");
                out = replace(&out, b"<", b"&lt;");
                out = replace(&out, b">", b"&gt;");
                let (q, a): (&[u8], &[u8]) = [
                    (&b"&quot;"[..], &b"&apos;"[..]),
                    (b"&#34;", b"&#39;"),
                    (b"&quot;", b"&#x27;"),
                ][rng.below(3)];
                out = replace(&out, b"\"", q);
                Some(replace(&out, b"'", a))
            },
            inverse: html_inverse,
            lines: false,
        },
        Transform {
            name: "printed through a PTY (\\n as \\r\\n)",
            alphabets: TEXTUAL,
            apply: |text, _, _| Some(replace(text, b"\n", b"\r\n")),
            inverse: pty_inverse,
            lines: false,
        },
    ]);
}

// --- UTF-16 ---------------------------------------------------------------------------------

#[test]
fn utf16_in_either_byte_order_with_or_without_bom_is_masked() {
    run_all(&[
        Transform {
            name: "iconv -t UTF-16LE",
            alphabets: TEXTUAL,
            apply: |text, _, _| tool(&["iconv", "-f", "UTF-8", "-t", "UTF-16LE"], text),
            inverse: utf16_inverse,
            lines: false,
        },
        Transform {
            name: "iconv -t UTF-16BE",
            alphabets: TEXTUAL,
            apply: |text, _, _| tool(&["iconv", "-f", "UTF-8", "-t", "UTF-16BE"], text),
            inverse: utf16_inverse,
            lines: false,
        },
        Transform {
            name: "iconv -t UTF-16 (with a BOM)",
            alphabets: TEXTUAL,
            apply: |text, _, _| tool(&["iconv", "-f", "UTF-8", "-t", "UTF-16"], text),
            inverse: utf16_inverse,
            lines: false,
        },
    ]);
}

// --- Structured secrets ---------------------------------------------------------------------

fn token(rng: &mut Rng, lo: usize, hi: usize) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..rng.range(lo, hi))
        .map(|_| char::from(T[rng.below(T.len())]))
        .collect()
}

fn sh(script: &str, input: &[u8]) -> Option<Vec<u8>> {
    tool(&["/bin/busybox", "sh", "-c", script], input)
}

/// A structured secret, the fields a command extracts from it with a real tool, and what the
/// command prints.
struct Extraction {
    document: Vec<u8>,
    values: Vec<Vec<u8>>,
    printed: Vec<u8>,
}

fn extract(rng: &mut Rng, kind: usize) -> Option<Extraction> {
    // Values of 8 to 11 bytes (shorter than a run) and longer ones, one with escapes.
    let (a, b) = (token(rng, 8, 11), token(rng, 12, 60));
    let c = format!(
        "{}\"q\\{}\n{}",
        token(rng, 4, 8),
        token(rng, 4, 8),
        token(rng, 4, 8)
    );
    Some(match kind % 4 {
        0 => {
            let document = serde_json::json!({
                "type": "service_account",
                "project_id": a,
                "private_key_id": b,
                "private_key": c,
            })
            .to_string()
            .into_bytes();
            // `jq -r` prints each value decoded, one a line; `| base64` encodes them.
            let fields = tool(
                &["jq", "-r", ".project_id, .private_key_id, .private_key"],
                &document,
            )?;
            let printed = if rng.below(2) == 0 {
                fields
            } else {
                tool(&["base64"], &fields)?
            };
            Extraction {
                document,
                values: vec![a.into_bytes(), b.into_bytes(), c.into_bytes()],
                printed,
            }
        }
        1 => {
            let document = format!("# app\nDB_USER=app\nDB_PASS={a}\nexport API_TOKEN=\"{b}\"\n");
            let printed = sh(
                "grep -E 'PASS|TOKEN' | cut -d= -f2 | tr -d '\"'",
                document.as_bytes(),
            )?;
            Extraction {
                document: document.into_bytes(),
                values: vec![a.into_bytes(), b.into_bytes()],
                printed,
            }
        }
        2 => {
            let document = format!(
                "apiVersion: v1\nusers:\n- name: admin\n  user:\n    token: {a}\n    client-key-data: '{b}'\n"
            );
            let printed = sh(
                "sed -n -e \"s/^ *token: //p\" -e \"s/^ *client-key-data: '\\(.*\\)'/\\1/p\"",
                document.as_bytes(),
            )?;
            Extraction {
                document: document.into_bytes(),
                values: vec![a.into_bytes(), b.into_bytes()],
                printed,
            }
        }
        _ => {
            let document =
                format!("[database]\nhost = db.internal\npassword = {a}\n[api]\nkey: {b}\n");
            let printed = sh(
                "awk -F' *[=:] *' '/password|key/ {print $2}'",
                document.as_bytes(),
            )?;
            Extraction {
                document: document.into_bytes(),
                values: vec![a.into_bytes(), b.into_bytes()],
                printed,
            }
        }
    })
}

#[test]
fn a_field_extracted_from_a_structured_secret_is_masked() {
    let mut rng = Rng(seed() ^ fnv("structured"));
    for case in 0..cases() {
        let Some(e) = extract(&mut rng, case) else {
            sealrun_testkit::skip_or_fail("jq or busybox is not installed");
            return;
        };
        let input = [b"$ extract\n".as_slice(), &e.printed, b"done\n"].concat();
        let inverse = |out: &[u8]| -> Vec<Vec<u8>> {
            let mut all = identity(out);
            all.extend(base64_inverse(out));
            all
        };
        for v in &e.values {
            assert!(
                inverse(&input).iter().any(|d| has_run(d, v)),
                "case {case}: the extraction does not print the value"
            );
        }
        let redactor = Arc::new(Redactor::new([&e.document]).unwrap());
        let (out, _) = streamed(&redactor, &input, &mut rng);
        for v in &e.values {
            for decoded in inverse(&out) {
                assert!(
                    !has_run(&decoded, v),
                    "case {case} (seed {}): a value survives\n  secret:  {:?}\n  printed: {:?}\n  masked:  {:?}",
                    seed(),
                    String::from_utf8_lossy(&e.document),
                    String::from_utf8_lossy(&input),
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
}
