//! The fuzz logic, shared by the cargo-fuzz target (`stream.rs`) and the stable long test
//! (`tests/fuzz_stable.rs`, which feeds it random bytes for as long as asked).
//!
//! From the input bytes: up to four secrets (8 to 64 bytes), output made of filler and runs of
//! the secrets printed raw, as base64 (any alignment, wrapped at any width of 4 or more, `\n`
//! or `\r\n`), as hex (either case, contiguous, wrapped at 12 or more, byte-separated by
//! spaces, colons or commas and wrapped as `od -An -tx1` does, `\xNN` escapes),
//! percent-encoded or JSON-escaped, and chunk sizes. Checks: the streamed output equals the
//! whole-buffer output, and decoding it raw, as base64 (lines joined, every alignment), as hex
//! (lines joined, both nibble alignments; separators and `\x` skipped too), percent-decoded
//! or JSON-unescaped yields no run of `min(len, 12)` bytes of any secret.

use std::collections::HashSet;
use std::sync::Arc;

use sealrun_redactor::{RUN_LEN, Redactor, StreamRedactor};

/// Reads the input byte by byte; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        (usize::from(self.byte()) << 8 | usize::from(self.byte())) % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8], url: bool, pad: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for group in data.chunks(3) {
        let n = group.len();
        let v = u32::from(group[0]) << 16
            | u32::from(*group.get(1).unwrap_or(&0)) << 8
            | u32::from(*group.get(2).unwrap_or(&0));
        for k in 0..=n {
            let mut c = B64[((v >> (18 - 6 * k)) & 63) as usize];
            if url {
                c = match c {
                    b'+' => b'-',
                    b'/' => b'_',
                    c => c,
                };
            }
            out.push(c);
        }
        if pad {
            out.extend(std::iter::repeat_n(b'=', 3 - n));
        }
    }
    out
}

fn wrap(text: &[u8], width: usize, crlf: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, line) in text.chunks(width).enumerate() {
        if k > 0 {
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        out.extend_from_slice(line);
    }
    out
}

/// One printed run of a secret.
fn print(input: &mut Input<'_>, secret: &[u8], out: &mut Vec<u8>) {
    let run = secret.len().min(RUN_LEN);
    let from = input.below(secret.len() - run + 1);
    let to = from + run + input.below(secret.len() - from - run + 1);
    let piece = &secret[from..to];
    match input.byte() % 7 {
        0 => out.extend_from_slice(piece),
        1 => {
            // Behind 0 to 2 other bytes, at any alignment; wrapped or not.
            let behind = usize::from(input.byte() % 3);
            let mut text = input.bytes(behind);
            text.extend_from_slice(piece);
            let encoded = base64(&text, input.byte() % 2 == 1, input.byte() % 2 == 1);
            let width = 4 + input.below(80);
            if input.byte() % 2 == 0 {
                out.extend_from_slice(&encoded);
            } else {
                out.extend_from_slice(&wrap(&encoded, width, input.byte() % 2 == 1));
            }
        }
        2 => {
            let upper = input.byte() % 2 == 1;
            let hex: Vec<u8> = piece
                .iter()
                .flat_map(|b| {
                    let s = if upper {
                        format!("{b:02X}")
                    } else {
                        format!("{b:02x}")
                    };
                    s.into_bytes()
                })
                .collect();
            if input.byte() % 2 == 0 {
                out.extend_from_slice(&hex);
            } else {
                out.extend_from_slice(&wrap(&hex, 12 + input.below(60), false));
            }
        }
        5 => {
            // Byte-separated hex (`od -An -tx1`, openssl's colon dumps, commas), optionally
            // 8 to 16 bytes a line with `od`'s leading space.
            let upper = input.byte() % 2 == 1;
            let sep = [b' ', b':', b','][input.below(3)];
            let per_line = if input.byte() % 2 == 0 {
                usize::MAX
            } else {
                8 + input.below(9)
            };
            for (k, b) in piece.iter().enumerate() {
                if k > 0 && k % per_line == 0 {
                    out.extend_from_slice(b"\n ");
                } else if k > 0 {
                    out.push(sep);
                }
                let s = if upper {
                    format!("{b:02X}")
                } else {
                    format!("{b:02x}")
                };
                out.extend_from_slice(s.as_bytes());
            }
        }
        6 => {
            // `\xNN` escapes (Python bytes, `printf %q` of binary, C strings).
            for b in piece {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        3 => {
            for &b in piece {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b);
                } else {
                    out.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
        }
        _ => {
            for &b in piece {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    // As Go's encoding/json writes the others.
                    0..=0x1f => out.extend_from_slice(format!("\\u{:04x}", b).as_bytes()),
                    _ => out.push(b),
                }
            }
        }
    }
}

fn has_run(bytes: &[u8], s: &[u8]) -> bool {
    let w = s.len().min(RUN_LEN);
    let windows: HashSet<&[u8]> = s.windows(w).collect();
    bytes.windows(w).any(|x| windows.contains(x))
}

fn b64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    }))
}

/// The output decoded every way the embedded transforms allow.
fn decodings(out: &[u8]) -> Vec<Vec<u8>> {
    let mut all = vec![out.to_vec()];
    // Runs of base64 and of hex characters, line breaks joined.
    let mut b64_runs = vec![Vec::new()];
    let mut hex_runs = vec![Vec::new()];
    for &c in out {
        if c == b'\r' || c == b'\n' {
            continue;
        }
        match b64_value(c) {
            Some(_) => b64_runs.last_mut().unwrap_or(&mut Vec::new()).push(c),
            None => b64_runs.push(Vec::new()),
        }
        if c.is_ascii_hexdigit() {
            if let Some(run) = hex_runs.last_mut() {
                run.push(c);
            }
        } else {
            hex_runs.push(Vec::new());
        }
    }
    for run in b64_runs {
        for offset in 0..4.min(run.len()) {
            let (mut bits, mut n, mut bytes) = (0u32, 0, Vec::new());
            for &c in &run[offset..] {
                bits = (bits << 6) | b64_value(c).unwrap_or(0);
                n += 6;
                if n >= 8 {
                    n -= 8;
                    bytes.push((bits >> n) as u8);
                    bits &= (1 << n) - 1;
                }
            }
            all.push(bytes);
        }
    }
    // Hex with separators, line breaks and `\x` between bytes skipped.
    let mut k = 0;
    hex_runs.push(Vec::new());
    while k < out.len() {
        let c = out[k];
        if c.is_ascii_hexdigit() {
            if let Some(run) = hex_runs.last_mut() {
                run.push(c);
            }
        } else if c == b'\\' && out.get(k + 1) == Some(&b'x') {
            k += 1;
        } else if !matches!(c, b' ' | b':' | b',' | b'\n' | b'\r') {
            hex_runs.push(Vec::new());
        }
        k += 1;
    }
    for run in hex_runs {
        for offset in 0..2.min(run.len()) {
            all.push(
                run[offset..]
                    .chunks_exact(2)
                    .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
                    .collect(),
            );
        }
    }
    // Percent-decoded; JSON-unescaped.
    let mut percent = Vec::new();
    let mut json = Vec::new();
    let mut k = 0;
    while k < out.len() {
        let hex = |at: usize, n: usize| {
            out.get(at..at + n)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        match (out[k], hex(k + 1, 2)) {
            (b'%', Some(v)) => {
                percent.push(v as u8);
                k += 3;
            }
            (b, _) => {
                percent.push(b);
                k += 1;
            }
        }
    }
    let mut k = 0;
    while k < out.len() {
        if out[k] == b'\\' && k + 1 < out.len() {
            match out[k + 1] {
                b'n' => json.push(b'\n'),
                b'r' => json.push(b'\r'),
                b't' => json.push(b'\t'),
                b'u' => {
                    let v = out
                        .get(k + 2..k + 6)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok());
                    if let Some(v) = v.filter(|&v| v < 0x20) {
                        json.push(v as u8);
                        k += 6;
                        continue;
                    }
                    json.extend_from_slice(b"\\u");
                }
                other => json.push(other),
            }
            k += 2;
        } else {
            json.push(out[k]);
            k += 1;
        }
    }
    all.push(percent);
    all.push(json);
    all
}

/// The secrets, the printed text and the chunk sizes `data` stands for.
pub fn case(data: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>, Vec<usize>) {
    let mut input = Input(data);
    let count = 1 + input.below(4);
    let secrets: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let len = 8 + input.below(57);
            // No `*`: a mask next to other text could spell a run that was not printed.
            input
                .bytes(len)
                .into_iter()
                .map(|b| if b == b'*' { b'+' } else { b })
                .collect()
        })
        .collect();
    let mut text = Vec::new();
    for _ in 0..input.below(12) {
        let filler = input.below(24);
        text.extend(
            input
                .bytes(filler)
                .into_iter()
                .map(|b| if b == b'*' { b'.' } else { b }),
        );
        let k = input.below(secrets.len());
        print(&mut input, &secrets[k], &mut text);
    }
    let mut sizes = Vec::new();
    let mut left = text.len();
    while left > 0 {
        let size = (1 + input.below(300)).min(left);
        sizes.push(size);
        left -= size;
    }
    (secrets, text, sizes)
}

/// Runs the case `data` stands for; panics on a failure.
pub fn run(data: &[u8]) {
    let (secrets, text, sizes) = case(data);
    check(&secrets, &text, &sizes);
}

/// Redacts `text` whole and streamed in chunks of `sizes`; panics unless both give the same
/// output and no decoding of it holds a run of a secret.
pub fn check(secrets: &[Vec<u8>], text: &[u8], sizes: &[usize]) {
    let redactor = Arc::new(Redactor::new(secrets).expect("secrets of accepted lengths"));
    let whole = redactor.redact(text);
    let mut stream = StreamRedactor::new(Arc::clone(&redactor));
    let mut out = Vec::new();
    let mut rest = text;
    for &size in sizes {
        stream.push(&rest[..size], &mut out);
        assert!(stream.pending_len() <= redactor.max_hold_back());
        rest = &rest[size..];
    }
    stream.finish(&mut out);
    assert!(
        out == whole,
        "streamed output differs from whole-buffer output"
    );
    for (n, decoded) in decodings(&whole).iter().enumerate() {
        for secret in secrets {
            assert!(
                !has_run(decoded, secret),
                "a run of a secret survives decoding {n}:\n  secret  {:?}\n  printed {:?}\n  masked  {:?}\n  decoded {:?}",
                String::from_utf8_lossy(secret),
                String::from_utf8_lossy(text),
                String::from_utf8_lossy(&whole),
                String::from_utf8_lossy(decoded)
            );
        }
    }
}
