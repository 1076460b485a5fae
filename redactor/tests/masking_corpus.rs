//! The masking cases of other runners' test suites (Buildkite agent, GitLab Runner, GitHub
//! Actions runner), read at run time from `shared/masking-corpus/cases.json` beside the
//! checkout, and checked per the corpus README: no secret (or, where the case needs value
//! encoders, no encoded form) survives, and all non-secret text survives in order.
//!
//! Secrets shorter than `MIN_SECRET_LEN` are refused when they are set (checked here), so a
//! case that masks them cannot run as written. When the refused secrets do not occur in the
//! input and others remain, the case runs with those; otherwise it runs *scaled*: every byte
//! of its secrets, chunks and expected text repeated `MIN_SECRET_LEN` times, which keeps its
//! overlaps, nesting, adjacency and chunk boundaries (see [`scaled`]).
//!
//! Cases that do not apply are listed with the reason (see the crate README):
//! - short secrets in cases that need value encoders (an encoding of a scaled secret is not
//!   the scaled encoding);
//! - `powershell-ampersand`: specific to PowerShell output;
//! - `utf8-fixup`: GitLab's trace buffer rewrites invalid UTF-8 after masking; the redactor
//!   passes bytes through unchanged;
//! - `multiline-normalisation` cases whose input separates the secret's lines with whitespace
//!   other than `\n`, `\r\n` or a single space (Buildkite matches any whitespace run there).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use sealrun_redactor::{Error, MASK, MIN_SECRET_LEN, RUN_LEN, Redactor, StreamRedactor};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    source: String,
    secrets: Vec<String>,
    chunks: Vec<String>,
    expected: String,
    notes: String,
    tags: Vec<String>,
    #[serde(default)]
    secret_updates: Vec<SecretUpdate>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SecretUpdate {
    before_chunk: usize,
    op: String,
    secrets: Vec<String>,
}

/// What happened to one case.
#[derive(Debug, PartialEq)]
enum Outcome {
    Passed,
    /// Passed once the runs of `RUN_LEN` bytes of a secret that the peer left in its
    /// expected text are masked too (the redactor's guarantee is stronger than the peer's).
    PassedWithRuns,
    /// Passed with every byte repeated [`SCALE`] times (see [`scaled`]); `with_runs` as for
    /// [`Outcome::PassedWithRuns`].
    PassedScaled {
        with_runs: bool,
    },
    NotApplicable(&'static str),
    Failed(String),
}

/// `shared/masking-corpus/cases.json` beside the checkout, or `SEALRUN_MASKING_CORPUS`.
fn corpus_path() -> PathBuf {
    std::env::var_os("SEALRUN_MASKING_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/masking-corpus/cases.json")
        })
}

/// Loads the corpus; `None` (after a loud notice) only outside CI when the file is missing.
fn load() -> Option<Vec<Case>> {
    let path = corpus_path();
    match std::fs::read(&path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} is not a valid corpus: {e}", path.display())),
        ),
        Err(e) => {
            sealrun_testkit::skip_or_fail(&format!(
                "the masking corpus: cannot read {}: {e}; CI expects a copy of shared/ beside the checkout",
                path.display()
            ));
            None
        }
    }
}

fn bytes_of(case: &Case, text: &str) -> Vec<u8> {
    match case.encoding.as_deref() {
        Some("hex") => (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect(),
        _ => text.as_bytes().to_vec(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `text` with every run of consecutive masks written as one (peers differ on whether adjacent
/// matches get one token or several).
fn collapse_masks(text: &[u8]) -> Vec<u8> {
    let double = [MASK, MASK].concat();
    let mut text = text.to_vec();
    while let Some(at) = text.windows(double.len()).position(|w| w == double) {
        text.drain(at..at + MASK.len());
    }
    text
}

/// The text between masks.
fn segments(text: &[u8]) -> Vec<Vec<u8>> {
    let mut segments = vec![Vec::new()];
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with(MASK) {
            segments.push(Vec::new());
            rest = &rest[MASK.len()..];
        } else {
            segments.last_mut().unwrap().push(rest[0]);
            rest = &rest[1..];
        }
    }
    segments
}

/// Compares per the corpus README. `slack` is how many characters next to a mask the redactor
/// may mask beyond the peer (base64 characters that mix a secret's bits with others), and
/// `trim` ignores whitespace next to masks (Buildkite leaves a multi-line secret's trailing
/// newline out of the match).
fn same_text(out: &[u8], expected: &[u8], slack: usize, trim: bool) -> bool {
    let (out, expected) = (
        segments(&collapse_masks(out)),
        segments(&collapse_masks(expected)),
    );
    if out.len() != expected.len() {
        return false;
    }
    let last = out.len() - 1;
    out.iter().zip(&expected).enumerate().all(|(i, (o, e))| {
        let (mut o, mut e) = (o.as_slice(), e.as_slice());
        if trim {
            if i > 0 {
                o = o.trim_ascii_start();
                e = e.trim_ascii_start();
            }
            if i < last {
                o = o.trim_ascii_end();
                e = e.trim_ascii_end();
            }
        }
        // `o` must be `e` less at most `slack` characters at each end that touches a mask.
        let head = if i > 0 { slack } else { 0 };
        let tail = if i < last { slack } else { 0 };
        (0..=head.min(e.len()))
            .any(|h| (0..=tail.min(e.len() - h)).any(|t| e[h..e.len() - t] == *o))
    })
}

/// The expected text with every run of at least `min(len, RUN_LEN)` bytes of a secret in the
/// input masked as well: what the redactor promises on top of the peer. The peer's masks are
/// placed on the input by finding the expected text's unmasked pieces in it, in order.
fn with_runs_masked(
    input: &[u8],
    expected: &[u8],
    epochs: &[(usize, Vec<Vec<u8>>)],
) -> Option<Vec<u8>> {
    let pieces = segments(expected);
    let mut secret = vec![true; input.len()];
    let mut at = 0;
    for (n, piece) in pieces.iter().enumerate() {
        let found = if n == 0 {
            input.starts_with(piece).then_some(0)
        } else if n == pieces.len() - 1 {
            (input.len() >= at + piece.len() && input.ends_with(piece))
                .then(|| input.len() - piece.len())
        } else {
            input[at..]
                .windows(piece.len().max(1))
                .position(|w| piece.is_empty() || w == piece.as_slice())
                .map(|k| at + k)
        }?;
        secret[found..found + piece.len()]
            .iter_mut()
            .for_each(|b| *b = false);
        at = found + piece.len();
    }
    // Each set of secrets applies from where it was set (a new stream) to the next.
    for (n, (from, secrets)) in epochs.iter().enumerate() {
        let to = epochs.get(n + 1).map_or(input.len(), |e| e.0);
        for k in *from..to {
            for s in secrets {
                let run = s.len().min(RUN_LEN);
                if k + run <= to && s.windows(run).any(|w| w == &input[k..k + run]) {
                    secret[k..k + run].iter_mut().for_each(|b| *b = true);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (k, &b) in input.iter().enumerate() {
        if !secret[k] {
            out.push(b);
        } else if k == 0 || !secret[k - 1] {
            out.extend_from_slice(MASK);
        }
    }
    Some(out)
}

/// Runs the chunks through streams, switching to a new stream (and secret set) where the case
/// changes its secrets mid-stream.
fn run(case: &Case, secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut current: Vec<Vec<u8>> = secrets.to_vec();
    let mut stream = StreamRedactor::new(Arc::new(Redactor::new(&current).unwrap()));
    let mut out = Vec::new();
    for (k, chunk) in case.chunks.iter().enumerate() {
        for update in case.secret_updates.iter().filter(|u| u.before_chunk == k) {
            let added: Vec<Vec<u8>> = update.secrets.iter().map(|s| bytes_of(case, s)).collect();
            if update.op == "reset" {
                current = added;
            } else {
                current.extend(added);
            }
            // New secrets apply to what is written from now on: the old stream's tail is
            // written out under the old set.
            stream.finish(&mut out);
            stream = StreamRedactor::new(Arc::new(Redactor::new(&current).unwrap()));
        }
        stream.push(&bytes_of(case, chunk), &mut out);
    }
    stream.finish(&mut out);
    out
}

/// Whether the input prints the lines of a multi-line secret joined the ways the redactor
/// knows (`\n`, `\r\n`, or a single space).
fn joins_lines_known_ways(secret: &[u8], input: &[u8]) -> bool {
    let lines: Vec<&[u8]> = secret
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .collect();
    [&b"\n"[..], b"\r\n", b" "]
        .iter()
        .any(|sep| contains(input, &lines.join(*sep)))
}

/// How many times [`scaled`] repeats each byte: enough for any secret to reach
/// `MIN_SECRET_LEN`.
const SCALE: usize = MIN_SECRET_LEN;

/// The case with every byte of secrets, chunks and expected text repeated [`SCALE`] times
/// (masks excepted). Repeating bytes maps occurrences to occurrences and keeps overlaps,
/// nesting, adjacency and chunk boundaries as they are, so a case written for short secrets
/// still checks the same matching rules with secrets the redactor accepts.
fn scaled(case: &Case) -> Case {
    let scale = |text: &String| -> String {
        text.chars()
            .flat_map(|c| std::iter::repeat_n(c, SCALE))
            .collect()
    };
    let mask = std::str::from_utf8(MASK).unwrap();
    Case {
        source: case.source.clone(),
        secrets: case
            .secrets
            .iter()
            .filter(|s| !s.is_empty())
            .map(scale)
            .collect(),
        chunks: case.chunks.iter().map(scale).collect(),
        expected: case
            .expected
            .split(mask)
            .map(|part| scale(&part.to_string()))
            .collect::<Vec<_>>()
            .join(mask),
        notes: case.notes.clone(),
        tags: case.tags.clone(),
        secret_updates: case
            .secret_updates
            .iter()
            .map(|u| SecretUpdate {
                before_chunk: u.before_chunk,
                op: u.op.clone(),
                secrets: u.secrets.iter().map(scale).collect(),
            })
            .collect(),
        encoding: case.encoding.clone(),
    }
}

fn check(case: &Case) -> Outcome {
    if case.tags.iter().any(|t| t == "powershell-ampersand") {
        return Outcome::NotApplicable(
            "powershell-ampersand: PowerShell-specific output rewriting",
        );
    }
    if case.tags.iter().any(|t| t == "utf8-fixup") {
        return Outcome::NotApplicable("utf8-fixup: the trace buffer's UTF-8 repair, not masking");
    }
    let input: Vec<u8> = case.chunks.iter().flat_map(|c| bytes_of(case, c)).collect();
    let all: Vec<Vec<u8>> = case.secrets.iter().map(|s| bytes_of(case, s)).collect();
    let updates: Vec<Vec<u8>> = case
        .secret_updates
        .iter()
        .flat_map(|u| u.secrets.iter().map(|s| bytes_of(case, s)))
        .collect();

    // Short secrets are refused when they are set...
    let (short, secrets): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        all.into_iter().partition(|s| s.len() < MIN_SECRET_LEN);
    for s in short
        .iter()
        .chain(updates.iter().filter(|s| s.len() < MIN_SECRET_LEN))
    {
        match Redactor::new([s]) {
            Err(Error::TooShort { len, min }) if len == s.len() && min == MIN_SECRET_LEN => {}
            other => {
                return Outcome::Failed(format!(
                    "a {}-byte secret was not refused: {other:?}",
                    s.len()
                ));
            }
        }
    }
    // ...so the case only runs without them: not when they occur in the input (an empty
    // secret occurs nowhere), nor when every secret was refused yet masks are expected (they
    // then come from encoded forms of the refused secrets).
    let expects_masks = contains(&bytes_of(case, &case.expected), MASK);
    if short.iter().any(|s| contains(&input, s))
        || (secrets.is_empty() && !short.is_empty() && expects_masks)
        || updates.iter().any(|s| s.len() < MIN_SECRET_LEN)
    {
        // Encoded forms of a scaled secret are not the scaled encoded forms.
        if case.encoding.is_some() || case.tags.iter().any(|t| t == "requires-value-encoders") {
            return Outcome::NotApplicable("needs a secret shorter than MIN_SECRET_LEN");
        }
        return match check(&scaled(case)) {
            Outcome::Passed => Outcome::PassedScaled { with_runs: false },
            Outcome::PassedWithRuns => Outcome::PassedScaled { with_runs: true },
            other => other,
        };
    }

    let multiline = case.tags.iter().any(|t| t == "multiline-normalisation");
    if multiline && !secrets.iter().all(|s| joins_lines_known_ways(s, &input)) {
        return Outcome::NotApplicable(
            "multiline-normalisation: lines joined by other whitespace runs",
        );
    }

    let out = run(case, &secrets);
    let expected = bytes_of(case, &case.expected);
    for secret in &secrets {
        if contains(&out, secret) {
            return Outcome::Failed(format!(
                "a secret survived: {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
    }
    // Base64 shift cases: the characters that mix a secret's bits with others' may be masked
    // (2), and a third where another secret of the case (`"Password123!!"`, quoted) shares
    // the run and its piece starts one character earlier.
    let slack = if case.notes.contains("Base64 shift variants") {
        3
    } else {
        0
    };
    // The secrets in force over each part of the input, as `run` applies them.
    let mut epochs = vec![(0, secrets.clone())];
    let mut offset = 0;
    for (k, chunk) in case.chunks.iter().enumerate() {
        for update in case.secret_updates.iter().filter(|u| u.before_chunk == k) {
            let added: Vec<Vec<u8>> = update.secrets.iter().map(|s| bytes_of(case, s)).collect();
            let mut current = if update.op == "reset" {
                Vec::new()
            } else {
                epochs.last().map(|e| e.1.clone()).unwrap_or_default()
            };
            current.extend(added);
            epochs.push((offset, current));
        }
        offset += bytes_of(case, chunk).len();
    }
    if same_text(&out, &expected, slack, multiline) {
        Outcome::Passed
    } else if with_runs_masked(&input, &expected, &epochs)
        .is_some_and(|runs| same_text(&out, &runs, slack, multiline))
    {
        Outcome::PassedWithRuns
    } else {
        Outcome::Failed(format!(
            "got {:?}, expected {:?}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected)
        ))
    }
}

#[test]
fn every_applicable_peer_case_passes() {
    let Some(cases) = load() else { return };
    assert_eq!(
        cases.len(),
        89,
        "the corpus changed: review the cases and the counts below"
    );
    let mut not_applicable: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    let mut failed = Vec::new();
    let (mut passed, mut passed_scaled, mut with_runs) = (0, Vec::new(), Vec::new());
    for (index, case) in cases.iter().enumerate() {
        match check(case) {
            Outcome::Passed => passed += 1,
            Outcome::PassedWithRuns => {
                passed += 1;
                with_runs.push(index);
            }
            Outcome::PassedScaled { with_runs: runs } => {
                passed_scaled.push(index);
                if runs {
                    with_runs.push(index);
                }
            }
            Outcome::NotApplicable(reason) => not_applicable.entry(reason).or_default().push(index),
            Outcome::Failed(why) => failed.push(format!("case {index} ({}): {why}", case.source)),
        }
    }
    let applicable = passed + passed_scaled.len() + failed.len();
    eprintln!(
        "masking corpus: {passed} passed as written, {} passed scaled {passed_scaled:?}, {} not applicable:",
        passed_scaled.len(),
        cases.len() - applicable
    );
    eprintln!(
        "  of those, runs of {RUN_LEN} bytes the peer leaves were masked too in cases {with_runs:?}"
    );
    for (reason, indices) in &not_applicable {
        eprintln!("  {reason}: cases {indices:?}");
    }
    assert!(
        failed.is_empty(),
        "{} applicable cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    // Pinned, so that a change in what applies is noticed and explained in the README.
    assert_eq!(
        (passed, passed_scaled.len()),
        (34, 41),
        "the number of passing cases changed; update the crate README"
    );
}
