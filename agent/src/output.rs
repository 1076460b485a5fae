//! From container output to sequenced, redacted log chunks.
//!
//! ```text
//! runtime output ──▶ StreamRedactor (stdout) ─┐
//!                └─▶ StreamRedactor (stderr) ─┴─▶ Batcher ──▶ bounded channel ──▶ uploader
//! ```
//!
//! Each stream has its own [`StreamRedactor`], so a secret split across two writes
//! of one stream is still masked, and bytes of one stream can never complete a
//! match begun in the other. The [`Batcher`] cuts the redacted bytes into chunks
//! of one stream each, at most `max_chunk_bytes` long, numbered from 0 across both
//! streams; a chunk is closed when it is full, when the other stream writes, or
//! [`FLUSH_INTERVAL`] after its first byte, so a slow trickle of output still
//! shows up promptly.
//!
//! The channel to the uploader is bounded. When the control plane is slow or
//! unreachable, sending into it waits, the pump stops reading the runtime's
//! output, and the command blocks on its next write: output is delayed, never
//! dropped, and the agent's memory stays flat.
//!
//! Ordering between the two streams is the order in which redacted bytes leave
//! their redactors: a redactor holds back a tail that could still begin a secret,
//! so that tail may land after output the other stream wrote later.

use crate::runtime::{OutputStream, RuntimeError};
use futures_util::StreamExt as _;
use sealrun_redactor::{Redactor, StreamRedactor};
use sealrun_wire::Base64Bytes;
use sealrun_wire::log::{LogChunk, StreamKind};
use sealrun_wire::run::Redactions;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest time a byte of output waits in a partly filled chunk.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How long a stream may be silent before its redactor writes out what it
/// holds back. A redactor holds the end of every line that could begin a
/// wrapped encoding of a secret (the last characters and the line break,
/// until the next line shows whether it goes on), so without this the last
/// line of a command that then waits (a prompt, "waiting for lock...")
/// would show only when it prints again or ends. After this much silence
/// the stream is judged as ended so far (complete secrets still masked)
/// and a new one begins: tools print an encoding in one go, so only a
/// command that pauses a second in the middle of printing a secret would
/// have it judged in two parts, which is deliberate evasion, out of scope.
pub const HOLD_IDLE: Duration = Duration::from_secs(1);

/// Cuts redacted output into sequenced chunks of one stream each.
#[derive(Debug)]
pub struct Batcher {
    max_chunk_bytes: usize,
    next_seq: u64,
    pending: Option<(StreamKind, Vec<u8>)>,
}

impl Batcher {
    /// A batcher whose first chunk gets `seq` 0.
    pub fn new(max_chunk_bytes: usize) -> Batcher {
        Batcher {
            max_chunk_bytes: max_chunk_bytes.max(1),
            next_seq: 0,
            pending: None,
        }
    }

    /// Appends redacted bytes of `stream`, moving every chunk this completes to `out`.
    pub fn push(&mut self, stream: StreamKind, mut data: &[u8], out: &mut Vec<LogChunk>) {
        if matches!(&self.pending, Some((s, _)) if *s != stream) {
            out.extend(self.flush());
        }
        while !data.is_empty() {
            let max = self.max_chunk_bytes;
            let (_, buf) = self
                .pending
                .get_or_insert_with(|| (stream, Vec::with_capacity(max.min(64 * 1024))));
            let take = (max - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if buf.len() >= max {
                out.extend(self.flush());
            }
        }
    }

    /// Closes the chunk in progress, if any.
    pub fn flush(&mut self) -> Option<LogChunk> {
        let (stream, data) = self.pending.take()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(LogChunk {
            seq,
            stream,
            data: Base64Bytes(data),
        })
    }

    /// Whether a chunk is in progress.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// `seq` of the next chunk: the number of chunks produced so far.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// Redacts `message` with `redactor` as a whole: for every string the agent
/// reports about a run (errors included), not only the command's output.
pub fn redact_message(redactor: &Arc<Redactor>, message: &str) -> String {
    String::from_utf8_lossy(&redactor.redact(message.as_bytes())).into_owned()
}

/// How the pump ended.
#[derive(Debug, Default)]
pub struct PumpEnd {
    /// Number of chunks produced (`seq` of the next one).
    pub next_seq: u64,
    /// Set when the output stream failed before its end.
    pub error: Option<RuntimeError>,
    /// The first line of stderr, unredacted, when the init shim wrote it: it
    /// began with the run's signature ([`sealrun_init::ShimNonce`]), which
    /// the command cannot know, and goes on as [`sealrun_init::ERROR_PREFIX`]
    /// does. Shown here (and in the run's output) with the plain prefix.
    pub init_error: Option<String>,
    /// Masks the redactors wrote in each stream (`***`s of the output).
    pub redactions: Redactions,
}

/// The longest first line of stderr kept to look for the shim's error.
const FIRST_LINE_MAX: usize = 1024;

/// Watches the start of stderr for the shim's signed error line
/// (`sealrun-init[<nonce>]: error: ...`): holds back the bytes that could
/// still be the signature, passes on everything else unchanged, replaces a
/// complete signature with the shim's plain name (so the nonce never reaches
/// the run's output), and keeps that one line.
///
/// Only the very start of stderr can be the shim's: it signs a line only
/// when the command never started, so nothing precedes it.
struct ShimLine {
    /// `sealrun-init[<nonce in hex>]`.
    signature: zeroize::Zeroizing<String>,
    /// Bytes of stderr's start that match the signature so far.
    held: usize,
    state: ShimLineState,
    /// The signed line, with the plain name, while and after it is read.
    line: zeroize::Zeroizing<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShimLineState {
    /// Stderr so far is a prefix of the signature.
    Signature,
    /// The signature matched: reading the rest of its line.
    Line,
    /// Nothing more to look for: everything passes.
    Done,
}

impl ShimLine {
    fn new(nonce: &sealrun_init::ShimNonce) -> ShimLine {
        ShimLine {
            signature: nonce.signature(),
            held: 0,
            state: ShimLineState::Signature,
            line: zeroize::Zeroizing::new(Vec::new()),
        }
    }

    /// Whether every further byte passes unchanged.
    fn done(&self) -> bool {
        self.state == ShimLineState::Done
    }

    /// Takes the next bytes of stderr; appends to `out` what the run's
    /// output gets.
    fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        if self.state == ShimLineState::Signature {
            let signature = self.signature.as_bytes();
            let take = (signature.len() - self.held).min(data.len());
            if data[..take] != signature[self.held..self.held + take] {
                // Not the shim's: what was held back was output after all.
                out.extend_from_slice(&signature[..self.held]);
                out.extend_from_slice(data);
                self.held = 0;
                self.state = ShimLineState::Done;
                return;
            }
            self.held += take;
            data = &data[take..];
            if self.held < signature.len() {
                return;
            }
            out.extend_from_slice(sealrun_init::SHIM_NAME.as_bytes());
            self.line
                .extend_from_slice(sealrun_init::SHIM_NAME.as_bytes());
            self.state = ShimLineState::Line;
        }
        if self.state == ShimLineState::Line {
            let room = FIRST_LINE_MAX.saturating_sub(self.line.len());
            let (take, ends) = match data.iter().position(|&b| b == b'\n') {
                Some(at) if at <= room => (at, true),
                _ => (data.len().min(room), data.len() >= room),
            };
            self.line.extend_from_slice(&data[..take]);
            if ends {
                self.state = ShimLineState::Done;
            }
        }
        out.extend_from_slice(data);
    }

    /// At the end of stderr: releases what is still held back into `out`,
    /// and returns the signed line if there was one.
    fn finish(self, out: &mut Vec<u8>) -> Option<String> {
        if self.state == ShimLineState::Signature {
            out.extend_from_slice(&self.signature.as_bytes()[..self.held]);
            return None;
        }
        self.line
            .starts_with(sealrun_init::ERROR_PREFIX.as_bytes())
            .then(|| String::from_utf8_lossy(&self.line).into_owned())
    }
}

/// Reads `output` to its end, redacting and batching it into `tx`.
///
/// Once `truncated` is set (the control plane stored all it will store) the pump
/// keeps reading, so the command is never blocked, but produces no more chunks. If
/// the receiver goes away it likewise only drains.
///
/// `nonce` is the run's: a first line of stderr signed with it is the init
/// shim's ([`PumpEnd::init_error`]), and reaches the output unsigned.
pub async fn pump(
    mut output: OutputStream,
    redactor: Arc<Redactor>,
    tx: mpsc::Sender<LogChunk>,
    max_chunk_bytes: usize,
    truncated: Arc<AtomicBool>,
    nonce: sealrun_init::ShimNonce,
) -> PumpEnd {
    let mut stdout = StreamRedactor::new(Arc::clone(&redactor));
    let mut stderr = StreamRedactor::new(redactor);
    let mut batcher = Batcher::new(max_chunk_bytes);
    let mut redacted = Vec::new();
    let mut ready = Vec::new();
    let mut flush_at: Option<Instant> = None;
    let mut receiver_gone = false;
    let mut error = None;
    let mut shim_line = ShimLine::new(&nonce);
    drop(nonce);
    let mut unsigned = Vec::new();

    // When the redactors, holding bytes back, last saw output.
    let mut idle_at: Option<Instant> = None;
    loop {
        let wake = match (flush_at, idle_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let next = match wake {
            Some(deadline) => tokio::select! {
                biased;
                next = output.next() => next,
                () = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    if idle_at.is_some_and(|at| at <= now) {
                        idle_at = None;
                        if !truncated.load(Ordering::Relaxed) && !receiver_gone {
                            write_out_held(
                                [&mut stdout, &mut stderr],
                                &mut batcher,
                                &mut redacted,
                                &mut ready,
                            );
                        }
                    }
                    if flush_at.is_some_and(|at| at <= now) || idle_at.is_none() {
                        ready.extend(batcher.flush());
                        flush_at = None;
                    }
                    receiver_gone |= send_all(&tx, &mut ready, receiver_gone).await;
                    continue;
                }
            },
            None => output.next().await,
        };
        let frame = match next {
            None => break,
            Some(Err(e)) => {
                error = Some(e);
                break;
            }
            Some(Ok(frame)) => frame,
        };
        let mut data = &frame.data[..];
        if frame.stream == StreamKind::Stderr && !shim_line.done() {
            unsigned.clear();
            shim_line.push(data, &mut unsigned);
            data = &unsigned;
        }
        if truncated.load(Ordering::Relaxed) || receiver_gone {
            continue;
        }
        redacted.clear();
        match frame.stream {
            StreamKind::Stderr => stderr.push(data, &mut redacted),
            _ => stdout.push(data, &mut redacted),
        }
        batcher.push(frame.stream, &redacted, &mut ready);
        idle_at =
            (stdout.pending_len() + stderr.pending_len() > 0).then(|| Instant::now() + HOLD_IDLE);
        flush_at = match (batcher.has_pending(), flush_at) {
            (false, _) => None,
            (true, None) => Some(Instant::now() + FLUSH_INTERVAL),
            (true, keep) => keep,
        };
        receiver_gone |= send_all(&tx, &mut ready, receiver_gone).await;
    }

    // Bytes held back as a possible signature that never completed are output.
    unsigned.clear();
    let init_error = shim_line.finish(&mut unsigned);
    // What the redactors still hold back is output too: the command has ended, so
    // it can no longer become part of a secret.
    if !truncated.load(Ordering::Relaxed) && !receiver_gone {
        if !unsigned.is_empty() {
            redacted.clear();
            stderr.push(&unsigned, &mut redacted);
            batcher.push(StreamKind::Stderr, &redacted, &mut ready);
        }
        write_out_held(
            [&mut stdout, &mut stderr],
            &mut batcher,
            &mut redacted,
            &mut ready,
        );
        ready.extend(batcher.flush());
        send_all(&tx, &mut ready, receiver_gone).await;
    }
    PumpEnd {
        next_seq: batcher.next_seq(),
        error,
        init_error,
        redactions: Redactions {
            stdout: stdout.masks_written(),
            stderr: stderr.masks_written(),
        },
    }
}

/// Writes out what the stdout and stderr redactors hold back, judged as if
/// both streams ended here (complete secrets still masked); each then starts
/// over as a new stream. Used when the command ends and after [`HOLD_IDLE`]
/// of silence.
fn write_out_held(
    [stdout, stderr]: [&mut StreamRedactor; 2],
    batcher: &mut Batcher,
    redacted: &mut Vec<u8>,
    ready: &mut Vec<LogChunk>,
) {
    for (kind, redactor) in [(StreamKind::Stdout, stdout), (StreamKind::Stderr, stderr)] {
        if redactor.pending_len() > 0 {
            redacted.clear();
            redactor.finish(redacted);
            batcher.push(kind, redacted, ready);
        }
    }
}

/// Sends every ready chunk, waiting for room (this wait is the backpressure).
/// Returns true if the receiver is gone.
async fn send_all(tx: &mpsc::Sender<LogChunk>, ready: &mut Vec<LogChunk>, gone: bool) -> bool {
    if gone {
        ready.clear();
        return true;
    }
    let mut gone = false;
    for chunk in ready.drain(..) {
        // After a failed send the remaining chunks are dropped with the drain.
        if !gone && tx.send(chunk).await.is_err() {
            gone = true;
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NONCE: [u8; sealrun_init::NONCE_LEN] = [0x5a; sealrun_init::NONCE_LEN];
    const SIGNED: &str = "sealrun-init[5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a]: error: ";

    /// What the run's stderr shows and the shim line found, for these frames.
    fn shim_line(frames: &[&[u8]]) -> (String, Option<String>) {
        let mut line = ShimLine::new(&sealrun_init::ShimNonce::from_bytes(NONCE));
        let mut out = Vec::new();
        for f in frames {
            line.push(f, &mut out);
        }
        let found = line.finish(&mut out);
        (String::from_utf8(out).unwrap(), found)
    }

    #[test]
    fn the_shims_signed_line_is_kept_and_shown_unsigned_even_when_split_across_frames() {
        let (shown, found) = shim_line(&[
            b"sealrun-init[5a5a",
            b"5a5a5a5a5a5a5a5a5a5a5a5a5a5a]: error: cannot",
            b" execute x\nmore\n",
        ]);
        assert_eq!(
            found.as_deref(),
            Some("sealrun-init: error: cannot execute x")
        );
        assert_eq!(shown, "sealrun-init: error: cannot execute x\nmore\n");
        let whole = format!("{SIGNED}no newline");
        let (shown, found) = shim_line(&[whole.as_bytes()]);
        assert_eq!(found.as_deref(), Some("sealrun-init: error: no newline"));
        assert_eq!(shown, "sealrun-init: error: no newline");
    }

    #[test]
    fn the_signature_is_the_one_the_shim_exports() {
        let nonce = sealrun_init::ShimNonce::from_bytes(NONCE);
        assert_eq!(&*nonce.signed_error_prefix(), SIGNED);
    }

    #[test]
    fn an_unsigned_shim_line_is_the_commands_output() {
        let line = "sealrun-init: error: printed by the command\n";
        assert_eq!(shim_line(&[line.as_bytes()]), (line.to_owned(), None));
    }

    #[test]
    fn a_line_signed_with_another_nonce_is_the_commands_output() {
        let forged = "sealrun-init[00000000000000000000000000000000]: error: x\n";
        assert_eq!(shim_line(&[forged.as_bytes()]), (forged.to_owned(), None));
    }

    #[test]
    fn any_other_stderr_passes_byte_for_byte() {
        for frames in [
            &[&b"warning: x\n"[..], SIGNED.as_bytes()][..],
            &[b"seal", b"ant\n"],
            &[b"sealrun-init["],
            &[b""],
        ] {
            let expected: Vec<u8> = frames.concat();
            let (shown, found) = shim_line(frames);
            assert_eq!(shown.as_bytes(), &expected[..], "{frames:?}");
            assert_eq!(found, None, "{frames:?}");
        }
    }

    fn chunks(b: &mut Batcher, pushes: &[(StreamKind, &[u8])]) -> Vec<LogChunk> {
        let mut out = Vec::new();
        for (s, d) in pushes {
            b.push(*s, d, &mut out);
        }
        out.extend(b.flush());
        out
    }

    #[test]
    fn chunks_never_exceed_the_maximum_and_keep_every_byte_in_order() {
        let mut b = Batcher::new(4);
        let out = chunks(
            &mut b,
            &[
                (StreamKind::Stdout, b"abcdefghij"),
                (StreamKind::Stdout, b"k"),
            ],
        );
        let sizes: Vec<usize> = out.iter().map(|c| c.data.0.len()).collect();
        assert_eq!(sizes, [4, 4, 3]);
        let all: Vec<u8> = out.iter().flat_map(|c| c.data.0.clone()).collect();
        assert_eq!(all, b"abcdefghijk");
    }

    #[test]
    fn sequence_numbers_start_at_zero_and_run_across_streams() {
        let mut b = Batcher::new(100);
        let out = chunks(
            &mut b,
            &[
                (StreamKind::Stdout, b"out1"),
                (StreamKind::Stderr, b"err1"),
                (StreamKind::Stdout, b"out2"),
            ],
        );
        let seqs: Vec<u64> = out.iter().map(|c| c.seq).collect();
        let streams: Vec<StreamKind> = out.iter().map(|c| c.stream).collect();
        assert_eq!(seqs, [0, 1, 2]);
        assert_eq!(
            streams,
            [StreamKind::Stdout, StreamKind::Stderr, StreamKind::Stdout]
        );
        assert_eq!(b.next_seq(), 3);
    }

    #[test]
    fn consecutive_writes_of_one_stream_share_a_chunk() {
        let mut b = Batcher::new(100);
        let out = chunks(
            &mut b,
            &[(StreamKind::Stdout, b"a"), (StreamKind::Stdout, b"b")],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.0, b"ab");
    }

    #[test]
    fn empty_writes_produce_no_chunk() {
        let mut b = Batcher::new(100);
        assert!(chunks(&mut b, &[(StreamKind::Stdout, b"")]).is_empty());
        assert_eq!(b.next_seq(), 0);
    }

    /// Output frames, then a command that stays silent and never ends.
    fn silent_after(frames: &[&'static [u8]]) -> crate::runtime::OutputStream {
        let frames: Vec<Result<crate::runtime::OutputFrame, RuntimeError>> = frames
            .iter()
            .map(|d| {
                Ok(crate::runtime::OutputFrame {
                    stream: StreamKind::Stdout,
                    data: bytes::Bytes::from_static(d),
                })
            })
            .collect();
        futures_util::stream::iter(frames)
            .chain(futures_util::stream::pending())
            .boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_last_line_held_back_is_written_after_a_second_of_silence_and_secrets_stay_masked() {
        let redactor = Arc::new(Redactor::new(&[b"s3cr3t-t0ken-value".to_vec()]).unwrap());
        let (tx, mut rx) = mpsc::channel(16);
        let output = silent_after(&[b"token s3cr3t-t0ken-value\nready\n"]);
        let pump = tokio::spawn(pump(
            output,
            redactor,
            tx,
            1 << 16,
            Arc::new(AtomicBool::new(false)),
            sealrun_init::ShimNonce::from_bytes(NONCE),
        ));
        let mut shown = Vec::new();
        // Before the silence has lasted HOLD_IDLE, the line's end is held back (the
        // control: without the idle write-out, this is all a follower would see).
        tokio::time::sleep(HOLD_IDLE / 2).await;
        while let Ok(chunk) = rx.try_recv() {
            shown.extend_from_slice(&chunk.data.0);
        }
        assert_eq!(String::from_utf8_lossy(&shown), "token ***\nread");
        tokio::time::sleep(HOLD_IDLE).await;
        while let Ok(chunk) = rx.try_recv() {
            shown.extend_from_slice(&chunk.data.0);
        }
        assert_eq!(String::from_utf8_lossy(&shown), "token ***\nready\n");
        pump.abort();
    }
}
