//! Redaction throughput on 64 MiB of log-like output, against baselines measured in the same
//! run: memcpy of the buffer, a naive masker (one memmem pass per pattern, replacing as it
//! goes) and an Aho-Corasick automaton over the same naive pattern list.
//!
//! `cargo bench -p sealrun-redactor` (criterion; GB/s = 10^9 bytes per second). The naive
//! baseline is measured on a prefix of the buffer (its cost per byte does not depend on the
//! length) to keep the run short.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memchr::memmem;
use sealrun_redactor::{MASK, Redactor, StreamRedactor};

const MIB: usize = 1 << 20;
const BUFFER: usize = 64 * MIB;

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
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Random 12-40 byte secrets of printable ASCII (passwords and tokens).
fn secrets(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let len = 12 + rng.below(29);
            (0..len).map(|_| b'!' + rng.below(94) as u8).collect()
        })
        .collect()
}

const WORDS: &[&str] = &[
    "connection",
    "established",
    "to",
    "database",
    "migration",
    "applied",
    "rows",
    "affected",
    "the",
    "user",
    "request",
    "completed",
    "pod",
    "scheduled",
    "on",
    "node",
    "container",
    "started",
    "image",
    "pulled",
    "error",
    "retrying",
    "in",
    "seconds",
    "table",
    "index",
    "created",
    "deployment",
    "rolled",
    "out",
    "successfully",
    "warning",
    "deprecated",
    "option",
    "value",
    "for",
    "key",
    "not",
    "found",
    "using",
    "default",
    "checkpoint",
];

/// One line of plausible job output: timestamps, levels, paths, ids, hashes, JSON.
fn log_line(rng: &mut Rng, line: &mut String) {
    use std::fmt::Write as _;
    let (h, m, s, ms) = (rng.below(24), rng.below(60), rng.below(60), rng.below(1000));
    let level = rng.pick(&["INFO ", "DEBUG", "WARN ", "ERROR", "TRACE"]);
    let _ = write!(line, "2025-11-25T{h:02}:{m:02}:{s:02}.{ms:03}Z {level} ");
    match rng.below(5) {
        0 => {
            let _ = write!(
                line,
                "http: GET /api/v1/jobs/{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}/logs?offset={} 200 OK {}.{}ms",
                rng.next() as u32,
                rng.below(65536),
                rng.below(4096),
                rng.below(4096),
                rng.next() & 0xffff_ffff_ffff,
                rng.below(1 << 20),
                rng.below(100),
                rng.below(10)
            );
        }
        1 => {
            let _ = write!(line, "docker: pulled image registry.local/app@sha256:");
            for _ in 0..4 {
                let _ = write!(line, "{:016x}", rng.next());
            }
            let _ = write!(
                line,
                " in {} ms (layer {}/{})",
                rng.below(5000),
                rng.below(9),
                9
            );
        }
        2 => {
            let _ = write!(
                line,
                "{{\"level\":\"info\",\"ts\":{}.{},\"caller\":\"migrate/run.go:{}\",\"msg\":\"{} {} {}\",\"rows\":{}}}",
                1_700_000_000 + rng.below(10_000_000),
                rng.below(1_000_000),
                rng.below(400),
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.below(100_000)
            );
        }
        _ => {
            let _ = write!(
                line,
                "{}:",
                rng.pick(&["psql", "kubectl", "migrate", "agent", "sh"])
            );
            for _ in 0..(6 + rng.below(12)) {
                line.push(' ');
                let word: &&str = rng.pick(WORDS);
                line.push_str(word);
            }
            if rng.below(3) == 0 {
                let _ = write!(line, " ({} of {})", rng.below(1000), 1000);
            }
        }
    }
    line.push('\n');
}

/// Some forms of a secret, as a program might print it.
fn printed_form(rng: &mut Rng, secret: &[u8]) -> Vec<u8> {
    match rng.below(5) {
        0 => secret.to_vec(),
        1 => STANDARD.encode(secret).into_bytes(),
        2 => secret
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect(),
        3 => serde_json::to_string(&String::from_utf8_lossy(secret))
            .unwrap_or_default()
            .into_bytes(),
        _ => URL_SAFE_NO_PAD.encode(secret).into_bytes(),
    }
}

/// `len` bytes of log lines; with `secrets`, every line also prints one of them in some form.
fn output(len: usize, seed: u64, secrets: Option<&[Vec<u8>]>) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 4096);
    let mut line = String::new();
    while out.len() < len {
        line.clear();
        log_line(&mut rng, &mut line);
        if let Some(secrets) = secrets {
            line.pop();
            line.push_str(" token=");
            out.extend_from_slice(line.as_bytes());
            let secret = rng.pick(secrets);
            out.extend_from_slice(&printed_form(&mut rng, secret));
            out.push(b'\n');
        } else {
            out.extend_from_slice(line.as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// The pattern list of the baselines: each secret, its hex, and its base64 at three alignments
/// in both alphabets (a subset of the redactor's forms, so the baselines get off lightly).
fn baseline_patterns(secrets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut patterns = Vec::new();
    for s in secrets {
        patterns.push(s.clone());
        patterns.push(
            s.iter()
                .flat_map(|b| format!("{b:02x}").into_bytes())
                .collect(),
        );
        for k in 0..3 {
            let mut framed = vec![0u8; k];
            framed.extend_from_slice(s);
            let start = (8 * k).div_ceil(6);
            let end = 8 * (k + s.len()) / 6;
            patterns.push(STANDARD.encode(&framed).as_bytes()[start..end].to_vec());
            patterns.push(URL_SAFE_NO_PAD.encode(&framed).as_bytes()[start..end].to_vec());
        }
    }
    patterns.sort();
    patterns.dedup();
    patterns
}

/// Replace each pattern in turn over the whole buffer, the way simple maskers do.
fn naive_redact(patterns: &[Vec<u8>], input: &[u8]) -> Vec<u8> {
    let mut text = input.to_vec();
    for pattern in patterns {
        let finder = memmem::Finder::new(pattern);
        let mut matches = finder.find_iter(&text).peekable();
        if matches.peek().is_none() {
            continue;
        }
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        for m in matches {
            if m >= at {
                out.extend_from_slice(&text[at..m]);
                out.extend_from_slice(MASK);
                at = m + pattern.len();
            }
        }
        out.extend_from_slice(&text[at..]);
        text = out;
    }
    text
}

fn automaton(patterns: &[Vec<u8>]) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .build(patterns)
        .unwrap_or_else(|e| panic!("building the automaton: {e}"))
}

fn built(secrets: &[Vec<u8>]) -> Redactor {
    let started = Instant::now();
    let redactor = Redactor::new(secrets).unwrap_or_else(|e| panic!("building the redactor: {e}"));
    eprintln!(
        "{} secrets -> {} patterns (longest {} bytes), built in {:.2?}; baselines use {} patterns",
        secrets.len(),
        redactor.pattern_count(),
        redactor.max_pattern_len(),
        started.elapsed(),
        baseline_patterns(secrets).len()
    );
    redactor
}

fn bench_memcpy(c: &mut Criterion) {
    let input = output(BUFFER, 1, None);
    let mut out = Vec::with_capacity(BUFFER);
    let mut group = c.benchmark_group("memcpy");
    group.throughput(Throughput::BytesDecimal(BUFFER as u64));
    group.bench_function("64MiB", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&input));
        })
    });
    group.finish();
}

/// Streams `input` through `stream` in `chunk`-byte pushes into `out` (cleared first, so no
/// page faults from fresh allocations are measured).
fn stream_into(stream: &mut StreamRedactor, input: &[u8], chunk: usize, out: &mut Vec<u8>) {
    out.clear();
    for piece in input.chunks(chunk) {
        stream.push(piece, out);
    }
    stream.finish(out);
}

/// One scenario: the redactor over the whole buffer (one push into a reused output buffer, as
/// the agent does with its own buffers; and through the allocating `redact`), streamed in
/// 64 KiB and 4 KiB chunks, Aho-Corasick, and the naive masker on a `naive_len` prefix.
fn scenario(c: &mut Criterion, name: &str, secrets: &[Vec<u8>], input: &[u8], naive_len: usize) {
    let redactor = std::sync::Arc::new(built(secrets));
    let baseline = baseline_patterns(secrets);
    let mut stream = StreamRedactor::new(redactor.clone());
    let mut out = Vec::with_capacity(input.len() + input.len() / 2);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::BytesDecimal(input.len() as u64));
    group.bench_function("sealrun", |b| {
        b.iter(|| stream_into(&mut stream, black_box(input), input.len(), &mut out))
    });
    group.bench_function("sealrun_64KiB_chunks", |b| {
        b.iter(|| stream_into(&mut stream, black_box(input), 64 * 1024, &mut out))
    });
    // Small pushes (terminal-sized writes) show the fixed cost of a push.
    group.bench_function("sealrun_4KiB_chunks", |b| {
        b.iter(|| stream_into(&mut stream, black_box(input), 4 * 1024, &mut out))
    });
    group.bench_function("sealrun_redact_alloc", |b| {
        b.iter(|| redactor.redact(black_box(input)))
    });
    let ac = automaton(&baseline);
    let masks = vec![MASK; baseline.len()];
    group.bench_function("aho_corasick", |b| {
        b.iter(|| {
            out.clear();
            ac.replace_all_with_bytes(black_box(input), &mut out, |m, _, dst| {
                dst.extend_from_slice(masks[m.pattern().as_usize()]);
                true
            })
        })
    });
    let naive_input = &input[..naive_len];
    group.throughput(Throughput::BytesDecimal(naive_len as u64));
    group.bench_function("naive", |b| {
        b.iter(|| naive_redact(&baseline, black_box(naive_input)))
    });
    group.finish();
}

fn bench_clean_100(c: &mut Criterion) {
    let secrets = secrets(100, 7);
    scenario(
        c,
        "clean_100_secrets",
        &secrets,
        &output(BUFFER, 1, None),
        4 * MIB,
    );
}

fn bench_clean_10000(c: &mut Criterion) {
    let secrets = secrets(10_000, 11);
    scenario(
        c,
        "clean_10000_secrets",
        &secrets,
        &output(BUFFER, 1, None),
        64 * 1024,
    );
}

fn bench_dense_100(c: &mut Criterion) {
    let secrets = secrets(100, 7);
    scenario(
        c,
        "dense_100_secrets",
        &secrets,
        &output(BUFFER, 3, Some(&secrets)),
        4 * MIB,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_memcpy, bench_clean_100, bench_clean_10000, bench_dense_100
}
criterion_main!(benches);
