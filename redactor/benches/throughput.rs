//! Redaction throughput on log-like output, streamed in 64 KiB pushes as the agent streams a
//! command's output (each chunk in cache, the output buffer reused), against baselines
//! measured in the same run and interleaved with it: memcpy of the chunks, and an Aho-Corasick
//! automaton
//! (`aho-corasick`, leftmost-longest) over each secret and its plain hex and base64 forms (a
//! far smaller promise than the redactor's, so the baseline gets off lightly). For 1, 10 and
//! 100 secrets it also measures the other engine the redactor could have used: Aho-Corasick
//! over every 12-byte window of each secret in its raw, hex and base64 forms (what
//! enumerating windows as patterns would take; the redactor's index replaces it).
//!
//! `cargo bench -p sealrun-redactor` (GB/s = 10^9 bytes per second). Each scenario runs
//! `ROUNDS` rounds; a round measures every engine once, in turn, so that load from other work
//! on the machine falls on all of them alike; the figures are medians, and the ratios are
//! taken within each round. The load average is printed before and after.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sealrun_redactor::{MASK, Redactor, StreamRedactor};

const MIB: usize = 1 << 20;
const BUFFER: usize = 64 * MIB;
const CHUNK: usize = 64 * 1024;
const ROUNDS: usize = 7;

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

fn automaton(patterns: &[Vec<u8>]) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .build(patterns)
        .unwrap_or_else(|e| panic!("building the automaton: {e}"))
}

/// Every 12-byte window of each secret, of its hex and of its base64 at the three alignments
/// (window = 12 bytes of secret): the patterns an automaton would need for the raw, hex and
/// base64 part of the redactor's guarantee.
fn window_patterns(secrets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut patterns = Vec::new();
    for s in secrets {
        for w in s.windows(12.min(s.len())) {
            patterns.push(w.to_vec());
            patterns.push(
                w.iter()
                    .flat_map(|b| format!("{b:02x}").into_bytes())
                    .collect(),
            );
            for k in 0..3 {
                let mut framed = vec![0u8; k];
                framed.extend_from_slice(w);
                let start = (8 * k).div_ceil(6);
                let end = 8 * (k + w.len()) / 6;
                patterns.push(STANDARD.encode(&framed).as_bytes()[start..end].to_vec());
            }
        }
    }
    patterns.sort();
    patterns.dedup();
    patterns
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn gbps(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e9
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// One engine of a scenario: its name, the bytes one pass covers, one pass.
type Engine<'a> = (&'static str, usize, Box<dyn FnMut() + 'a>);

/// Pushes `window` `STREAM / window.len()` times in 64 KiB chunks through `f`.
fn chunked<'a>(window: &'a [u8], mut f: impl FnMut(&[u8]) + 'a) -> impl FnMut() + 'a {
    move || {
        for _ in 0..STREAM / window.len() {
            for piece in window.chunks(CHUNK) {
                f(black_box(piece));
            }
        }
    }
}

/// What one pass of a streaming engine covers: `WINDOW` bytes of distinct output pushed
/// `STREAM / WINDOW` times in 64 KiB chunks, each chunk in cache as a pipe read leaves it, the
/// output buffer emptied after each push as the agent's uploader does.
const WINDOW: usize = 4 * MIB;
const STREAM: usize = 64 * MIB;

fn scenario(name: &str, secrets: &[Vec<u8>], input: &[u8], window_engine: bool) {
    let started = Instant::now();
    let redactor =
        Arc::new(Redactor::new(secrets).unwrap_or_else(|e| panic!("building the redactor: {e}")));
    let built = started.elapsed();
    let baseline = baseline_patterns(secrets);
    let ac = automaton(&baseline);
    let masks = vec![MASK; baseline.len()];
    println!(
        "\n## {name}: {} secrets -> {} forms, {} index entries, {:.1} MB, stride {}; built in {:.2?}; baseline automaton {} patterns",
        secrets.len(),
        redactor.pattern_count(),
        redactor.index_entries(),
        redactor.heap_bytes() as f64 / 1e6,
        redactor.stride(),
        built,
        baseline.len(),
    );
    let window = &input[..WINDOW.min(input.len())];
    let mut whole_copy = Vec::with_capacity(input.len());
    let mut whole_out = Vec::with_capacity(input.len() + input.len() / 2);
    let mut whole = StreamRedactor::new(Arc::clone(&redactor));
    let mut copy = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(4 * CHUNK);
    let mut out2 = Vec::with_capacity(4 * CHUNK);
    let mut stream = StreamRedactor::new(Arc::clone(&redactor));
    let windows = window_engine.then(|| {
        let patterns = window_patterns(secrets);
        let t = Instant::now();
        let automaton = automaton(&patterns);
        println!(
            "   window automaton: {} patterns, built in {:.2?}",
            patterns.len(),
            t.elapsed()
        );
        (automaton, vec![MASK; patterns.len()])
    });
    let mut engines: Vec<Engine<'_>> = vec![
        (
            "memcpy, 64 KiB chunks",
            STREAM,
            Box::new(chunked(window, |piece| {
                copy[..piece.len()].copy_from_slice(piece);
            })),
        ),
        (
            "sealrun, 64 KiB pushes",
            STREAM,
            Box::new(chunked(window, |piece| {
                stream.push(piece, &mut out);
                out.clear();
            })),
        ),
        (
            "aho-corasick baseline, 64 KiB chunks",
            STREAM,
            Box::new(chunked(window, |piece| {
                ac.replace_all_with_bytes(piece, &mut out2, |m, _, dst| {
                    dst.extend_from_slice(masks[m.pattern().as_usize()]);
                    true
                });
                out2.clear();
            })),
        ),
    ];
    if let Some((automaton, masks)) = &windows {
        let mut out4 = Vec::with_capacity(4 * CHUNK);
        engines.push((
            "aho-corasick over 12-byte windows (4 MiB)",
            WINDOW,
            Box::new(move || {
                for piece in window.chunks(CHUNK) {
                    automaton.replace_all_with_bytes(black_box(piece), &mut out4, |m, _, dst| {
                        dst.extend_from_slice(masks[m.pattern().as_usize()]);
                        true
                    });
                    out4.clear();
                }
            }),
        ));
    }
    // The whole 64 MiB from memory in one push, against memcpy of it: bound by this machine's
    // memory bandwidth more than by either.
    engines.push((
        "memcpy, 64 MiB from memory",
        input.len(),
        Box::new(|| {
            whole_copy.clear();
            whole_copy.extend_from_slice(black_box(input));
        }),
    ));
    engines.push((
        "sealrun, one push of 64 MiB from memory",
        input.len(),
        Box::new(|| {
            whole_out.clear();
            whole.push(black_box(input), &mut whole_out);
            whole.finish(&mut whole_out);
        }),
    ));
    // Warm up (page in the buffers), then interleave.
    for e in &mut engines {
        (e.2)();
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    for _ in 0..ROUNDS {
        for (k, e) in engines.iter_mut().enumerate() {
            let t = Instant::now();
            (e.2)();
            rates[k].push(gbps(e.1, t.elapsed()));
        }
    }
    for (k, e) in engines.iter().enumerate() {
        // Streaming engines against streaming memcpy; the 64 MiB pushes against their memcpy.
        let (reference, ours) = if k + 2 >= engines.len() {
            (engines.len() - 2, engines.len() - 1)
        } else {
            (0, 1)
        };
        println!(
            "   {:<42} {:>7.2} GB/s   {:.3}x memcpy   sealrun = {:.2}x this",
            e.0,
            median(rates[k].clone()),
            median(
                rates[k]
                    .iter()
                    .zip(&rates[reference])
                    .map(|(r, m)| r / m)
                    .collect()
            ),
            median(
                rates[ours]
                    .iter()
                    .zip(&rates[k])
                    .map(|(o, r)| o / r)
                    .collect()
            ),
        );
    }
}

fn build_times() {
    // A run's secrets: 20 of 8 to 200 random printable bytes.
    let mut rng = Rng(99);
    let secrets: Vec<Vec<u8>> = (0..20)
        .map(|_| {
            let len = 8 + rng.below(193);
            (0..len).map(|_| b'!' + rng.below(94) as u8).collect()
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let r = Redactor::new(&secrets).unwrap_or_else(|e| panic!("{e}"));
        times.push(t.elapsed().as_secs_f64() * 1e3);
        black_box(r);
    }
    println!(
        "\n## building: 20 secrets of 8-200 bytes ({} bytes in all): median {:.2} ms (min {:.2})",
        secrets.iter().map(Vec::len).sum::<usize>(),
        median(times.clone()),
        times.iter().cloned().fold(f64::MAX, f64::min)
    );
    // A 64 KiB PEM bundle.
    let der: Vec<u8> = (0..48 * 1024).map(|_| rng.next() as u8).collect();
    let body = STANDARD.encode(&der);
    let mut pem = String::new();
    let mut lines = body.as_bytes().chunks(64);
    while pem.len() + 1500 < 64 * 1024 {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in lines.by_ref().take(20) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let t = Instant::now();
    let r = Redactor::new([&pem]).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "## building: a {} byte PEM bundle: {:.0} ms, {} forms, {} index entries, {:.1} MB ({:.0} bytes per secret byte)",
        pem.len(),
        t.elapsed().as_secs_f64() * 1e3,
        r.pattern_count(),
        r.index_entries(),
        r.heap_bytes() as f64 / 1e6,
        r.heap_bytes() as f64 / pem.len() as f64
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects scenarios by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    println!(
        "# sealrun-redactor throughput; load average at start: {}",
        load()
    );
    if wanted("build") {
        build_times();
    }
    let clean = output(BUFFER, 1, None);
    for (count, seed) in [(1, 3), (10, 5), (100, 7), (10_000, 11)] {
        let name = format!("clean, {count} secrets");
        if wanted(&name) {
            scenario(&name, &secrets(count, seed), &clean, count <= 100);
        }
    }
    if wanted("dense") {
        let secrets = secrets(100, 7);
        scenario(
            "dense (a secret form in every line), 100 secrets",
            &secrets,
            &output(BUFFER, 3, Some(&secrets)),
            false,
        );
    }
    println!("\n# load average at end: {}", load());
}
