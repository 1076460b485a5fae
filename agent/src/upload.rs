//! Uploads a run's chunks, each stored exactly once, whatever the network does.
//!
//! Chunks are sent in batches of up to [`BATCH_BYTES`], with up to
//! [`MAX_IN_FLIGHT`] requests at once so that the control plane can commit
//! several in one disk sync. A failed request is retried with backoff,
//! unchanged, until it is answered; uploads are idempotent by `seq` on the
//! server, so a retry of a request whose answer was lost stores nothing twice.
//!
//! The protocol promises only that every chunk below an acknowledgement's
//! `next_seq` is stored. So sent chunks are kept until `next_seq` passes them,
//! and no more than [`WINDOW_BYTES`] of output is ever sent but unconfirmed;
//! once the command's output ends, whatever is still unconfirmed is sent again.
//! While the window is full or a request is being retried, the channel from
//! the pump fills up, and that is what pushes back on the command (see
//! [`crate::output`]).

use crate::backoff::Backoff;
use crate::client::{CallError, ControlPlane};
use crate::control::{RunControl, Stop, is_abandoned};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use sealrun_wire::log::{LogChunk, LogUploadAck};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, watch};

/// Most raw output bytes sent in one request (the body is about 4/3 of it).
pub const BATCH_BYTES: usize = 1024 * 1024;
/// Most requests in flight for one run.
pub const MAX_IN_FLIGHT: usize = 4;
/// Most output sent but not yet confirmed stored (kept for resending).
pub const WINDOW_BYTES: usize = 8 * 1024 * 1024;
/// How many times the unconfirmed tail is resent at the end before giving up.
const RESEND_ROUNDS: u32 = 5;

/// Where a run's redacted chunks go: the control plane, or anything that speaks
/// its acknowledgement semantics (`next_seq`: every chunk below it is stored).
pub trait LogSink: Send + Sync + 'static {
    /// Stores `chunks` (ascending `seq`s); idempotent by `seq`.
    fn upload(
        &self,
        chunks: &[LogChunk],
    ) -> impl Future<Output = Result<LogUploadAck, CallError>> + Send;
}

/// The control plane as the sink of one run's output.
#[derive(Debug, Clone)]
pub struct ControlPlaneSink {
    client: Arc<ControlPlane>,
    run_id: String,
}

impl ControlPlaneSink {
    /// Uploads to `POST /v1/agent/runs/{run_id}/logs`.
    pub fn new(client: Arc<ControlPlane>, run_id: String) -> ControlPlaneSink {
        ControlPlaneSink { client, run_id }
    }
}

impl LogSink for ControlPlaneSink {
    async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, CallError> {
        self.client.upload_logs(&self.run_id, chunks).await
    }
}

/// What the uploader achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UploadEnd {
    /// Every chunk below this `seq` is confirmed stored.
    pub acked: u64,
    /// The control plane hit the run's log cap.
    pub truncated: bool,
    /// Some chunks could not be confirmed stored: the stored log has a gap.
    pub gap: bool,
}

/// Why one batch's upload ended without an acknowledgement.
enum BatchError {
    Api(CallError),
    Abandoned,
}

/// Sends one batch until it is answered: retryable failures are retried with
/// backoff until the run is abandoned.
async fn send_batch<S: LogSink>(
    sink: &S,
    batch: Arc<[LogChunk]>,
    mut stop: watch::Receiver<Option<Stop>>,
) -> Result<LogUploadAck, BatchError> {
    let mut backoff = Backoff::default();
    loop {
        match sink.upload(&batch).await {
            Ok(ack) => return Ok(ack),
            Err(e) if e.is_retryable() => {
                let delay = backoff.next_delay();
                tracing::debug!(error = %e, ?delay, "log upload failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(is_abandoned) => return Err(BatchError::Abandoned),
                }
            }
            Err(e) => return Err(BatchError::Api(e)),
        }
    }
}

fn batch_bytes(batch: &[LogChunk]) -> usize {
    batch.iter().map(|c| c.data.0.len()).sum()
}

/// Uploads everything `rx` yields until the channel closes and every chunk is
/// confirmed stored (or the run is stopped).
///
/// Sets `truncated` when the control plane reports the log cap was hit, and raises
/// stop requests on `control`: `Cancel` when an acknowledgement carries a cancel,
/// `Abandon` when the run is no longer ours (`404`/`409`), `Fail` when an upload is
/// refused outright. After such a refusal, once the run is abandoned, or once the
/// log is truncated, it keeps draining `rx` without uploading so that the
/// producer never blocks.
pub async fn upload_all<S: LogSink>(
    sink: &S,
    mut rx: mpsc::Receiver<LogChunk>,
    control: &RunControl,
    truncated: &AtomicBool,
) -> UploadEnd {
    let mut end = UploadEnd::default();
    // One receiver to notice abandonment here, one cloned into every batch job.
    let mut abandoned = control.subscribe();
    let stop = control.subscribe();
    let mut in_flight = FuturesUnordered::new();
    // Sent batches not yet wholly below the confirmed prefix, in seq order.
    let mut unconfirmed: VecDeque<Arc<[LogChunk]>> = VecDeque::new();
    let mut unconfirmed_bytes = 0usize;
    // One past the last chunk received from the pump.
    let mut produced = 0u64;
    let mut channel_open = true;
    let mut uploading = true;
    let mut resends = 0u32;

    loop {
        if !channel_open && in_flight.is_empty() {
            if !uploading || end.acked >= produced {
                break;
            }
            // Everything was answered, yet the confirmed prefix stops short: the
            // control plane kept less than it was sent. Send the rest again.
            resends += 1;
            if resends > RESEND_ROUNDS {
                tracing::error!(
                    acked = end.acked,
                    produced,
                    "chunks could not be confirmed stored; the stored log has a gap"
                );
                end.gap = true;
                break;
            }
            let rest: Vec<LogChunk> = unconfirmed
                .iter()
                .flat_map(|b| b.iter())
                .filter(|c| c.seq >= end.acked)
                .cloned()
                .collect();
            if rest.is_empty() {
                end.gap = true;
                break;
            }
            in_flight.push(send_batch(sink, rest.into(), stop.clone()));
        }
        let may_send =
            uploading && in_flight.len() < MAX_IN_FLIGHT && unconfirmed_bytes < WINDOW_BYTES;
        tokio::select! {
            biased;
            _ = abandoned.wait_for(is_abandoned), if uploading => {
                uploading = false;
                in_flight.clear();
            }
            Some(result) = in_flight.next(), if !in_flight.is_empty() => match result {
                Ok(ack) => {
                    if ack.cancel {
                        control.request(Stop::Cancel);
                    }
                    end.acked = end.acked.max(ack.next_seq);
                    while unconfirmed.front().is_some_and(|b| b.last().is_none_or(|c| c.seq < end.acked)) {
                        if let Some(b) = unconfirmed.pop_front() {
                            unconfirmed_bytes -= batch_bytes(&b);
                        }
                    }
                    if ack.truncated {
                        // Nothing more will be stored, and what was sent counts as taken.
                        end.truncated = true;
                        truncated.store(true, Ordering::Relaxed);
                        uploading = false;
                        in_flight.clear();
                        unconfirmed.clear();
                        unconfirmed_bytes = 0;
                        end.acked = end.acked.max(produced);
                    }
                }
                Err(BatchError::Abandoned) => {
                    uploading = false;
                    in_flight.clear();
                }
                Err(BatchError::Api(e)) if e.is_run_gone() => {
                    tracing::warn!(error = %e, "control plane no longer holds this run; abandoning it");
                    control.request(Stop::Abandon);
                    uploading = false;
                    in_flight.clear();
                }
                Err(BatchError::Api(e)) => {
                    tracing::error!(error = %e, "log upload refused");
                    control.request(Stop::Fail(format!("log upload refused: {e}")));
                    uploading = false;
                    in_flight.clear();
                }
            },
            next = rx.recv(), if channel_open && (may_send || !uploading) => match next {
                None => channel_open = false,
                Some(_) if !uploading => {}
                Some(first) => {
                    let mut bytes = first.data.0.len();
                    let mut batch = vec![first];
                    while bytes < BATCH_BYTES {
                        match rx.try_recv() {
                            Ok(chunk) => {
                                bytes += chunk.data.0.len();
                                batch.push(chunk);
                            }
                            Err(_) => break,
                        }
                    }
                    produced = batch.last().map_or(produced, |c| c.seq + 1);
                    let batch: Arc<[LogChunk]> = batch.into();
                    unconfirmed_bytes += bytes;
                    unconfirmed.push_back(Arc::clone(&batch));
                    in_flight.push(send_batch(sink, batch, stop.clone()));
                }
            },
        }
    }
    end
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sealrun_wire::Base64Bytes;
    use sealrun_wire::log::StreamKind;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Stores like a control plane: idempotent by seq. `contiguous_only` keeps
    /// only the chunk that extends the stored prefix (the strictest reading of
    /// the protocol); otherwise out-of-order chunks are kept too, as the real
    /// server does. Fails the first `fail` calls with `error`; answers call `n`
    /// after `delay(n)`; can lose the answer of one call after storing.
    struct Store {
        stored: Mutex<std::collections::BTreeMap<u64, LogChunk>>,
        calls: Mutex<u32>,
        chunks_sent: Mutex<u64>,
        fail: u32,
        error: fn() -> CallError,
        lose_answer_of_call: Option<u32>,
        contiguous_only: bool,
        delay: fn(u32) -> Duration,
    }

    impl Store {
        fn new(fail: u32, error: fn() -> CallError) -> Store {
            Store {
                stored: Mutex::default(),
                calls: Mutex::new(0),
                chunks_sent: Mutex::new(0),
                fail,
                error,
                lose_answer_of_call: None,
                contiguous_only: true,
                delay: |_| Duration::ZERO,
            }
        }

        fn prefix(&self) -> u64 {
            let stored = self.stored.lock().unwrap();
            (0..).find(|s| !stored.contains_key(s)).unwrap()
        }

        fn seqs(&self) -> Vec<u64> {
            self.stored.lock().unwrap().keys().copied().collect()
        }
    }

    impl LogSink for Store {
        async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, CallError> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            *self.chunks_sent.lock().unwrap() += chunks.len() as u64;
            tokio::time::sleep((self.delay)(call)).await;
            if call <= self.fail {
                return Err((self.error)());
            }
            for c in chunks {
                let extends = c.seq == self.prefix();
                if extends || !self.contiguous_only {
                    self.stored
                        .lock()
                        .unwrap()
                        .entry(c.seq)
                        .or_insert_with(|| c.clone());
                }
            }
            if self.lose_answer_of_call == Some(call) {
                return Err(CallError::Transport("connection reset".into()));
            }
            Ok(LogUploadAck {
                next_seq: self.prefix(),
                truncated: false,
                cancel: false,
            })
        }
    }

    fn chunk(seq: u64, len: usize) -> LogChunk {
        LogChunk {
            seq,
            stream: StreamKind::Stdout,
            data: Base64Bytes(vec![b'x'; len]),
        }
    }

    /// Feeds `n` chunks of `len` bytes through a channel of `capacity`.
    async fn run_with(
        store: &Store,
        n: u64,
        len: usize,
        capacity: usize,
    ) -> (UploadEnd, RunControl) {
        let (tx, rx) = mpsc::channel(capacity);
        let control = RunControl::new();
        let producer = tokio::spawn(async move {
            for seq in 0..n {
                tx.send(chunk(seq, len)).await.unwrap();
            }
        });
        let end = upload_all(store, rx, &control, &AtomicBool::new(false)).await;
        producer.await.unwrap();
        (end, control)
    }

    async fn run(store: &Store, n: u64) -> (UploadEnd, RunControl) {
        run_with(store, n, 10, 4).await
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_and_every_chunk_is_stored_once_in_order() {
        let store = Store::new(3, || CallError::Status {
            status: 503,
            message: "down".into(),
        });
        let (end, control) = run(&store, 50).await;
        assert_eq!(end.acked, 50);
        assert_eq!(store.seqs(), (0..50).collect::<Vec<_>>());
        assert!(!end.gap);
        assert_eq!(control.current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_acknowledgement_does_not_duplicate_chunks() {
        let mut store = Store::new(0, || unreachable!());
        store.lose_answer_of_call = Some(1);
        let (end, _) = run(&store, 10).await;
        assert_eq!(end.acked, 10);
        assert_eq!(store.seqs(), (0..10).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_answered_out_of_order_store_every_chunk() {
        // 64 chunks of 256 KiB: batches of 4 chunks, several in flight, the later
        // ones answered first.
        let mut store = Store::new(0, || unreachable!());
        store.contiguous_only = false;
        store.delay = |call| Duration::from_millis(u64::from(100 - (call % 7) * 10));
        let (end, _) = run_with(&store, 64, 256 * 1024, 8).await;
        assert_eq!(end.acked, 64);
        assert_eq!(store.seqs(), (0..64).collect::<Vec<_>>());
        assert!(*store.calls.lock().unwrap() >= 16 / MAX_IN_FLIGHT as u32);
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_a_strict_store_dropped_out_of_order_are_sent_again() {
        // The store keeps only what extends its prefix, so batches that overtake
        // an earlier one are dropped; the unconfirmed tail must be resent.
        let mut store = Store::new(0, || unreachable!());
        store.delay = |call| Duration::from_millis(if call == 1 { 500 } else { 10 });
        let (end, _) = run_with(&store, 32, 256 * 1024, 8).await;
        assert_eq!(end.acked, 32);
        assert!(!end.gap);
        assert!(
            *store.chunks_sent.lock().unwrap() > 32,
            "nothing was dropped, so nothing was resent"
        );
        assert_eq!(store.seqs(), (0..32).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn unconfirmed_output_is_bounded_by_the_window() {
        // A store that answers but never confirms anything: the uploader must stop
        // taking output once the window is full, which blocks the producer.
        struct Forgetful(Mutex<u64>);
        impl LogSink for Forgetful {
            async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, CallError> {
                *self.0.lock().unwrap() += chunks.len() as u64;
                Ok(LogUploadAck {
                    next_seq: 0,
                    truncated: false,
                    cancel: false,
                })
            }
        }
        let sink = Forgetful(Mutex::new(0));
        let (tx, rx) = mpsc::channel(1);
        let sent = Arc::new(Mutex::new(0u64));
        let counter = Arc::clone(&sent);
        let producer = tokio::spawn(async move {
            for seq in 0..100 {
                if tx.send(chunk(seq, 1024 * 1024)).await.is_err() {
                    return;
                }
                *counter.lock().unwrap() += 1;
            }
        });
        let control = RunControl::new();
        let flag = AtomicBool::new(false);
        let uploading = upload_all(&sink, rx, &control, &flag);
        assert!(
            tokio::time::timeout(Duration::from_secs(10), uploading)
                .await
                .is_err()
        );
        let accepted = *sent.lock().unwrap();
        let window = (WINDOW_BYTES / (1024 * 1024)) as u64;
        assert!(
            accepted <= window + 2,
            "took {accepted} MiB with a {window} MiB window"
        );
        producer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_the_control_plane_no_longer_holds_is_abandoned_and_drained() {
        let store = Store::new(u32::MAX, || CallError::Status {
            status: 409,
            message: "lost".into(),
        });
        let (end, control) = run(&store, 20).await;
        assert_eq!(end.acked, 0);
        assert_eq!(control.current(), Some(Stop::Abandon));
        assert_eq!(*store.calls.lock().unwrap(), 1, "a 409 is never retried");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_upload_fails_the_run_without_retrying() {
        let store = Store::new(u32::MAX, || CallError::Status {
            status: 413,
            message: "too big".into(),
        });
        let (_, control) = run(&store, 5).await;
        assert!(matches!(control.current(), Some(Stop::Fail(m)) if m.contains("413")));
        assert_eq!(*store.calls.lock().unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_in_an_acknowledgement_reaches_the_run() {
        struct Cancels;
        impl LogSink for Cancels {
            async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, CallError> {
                let next_seq = chunks.last().unwrap().seq + 1;
                Ok(LogUploadAck {
                    next_seq,
                    truncated: false,
                    cancel: true,
                })
            }
        }
        let (tx, rx) = mpsc::channel(4);
        tx.send(chunk(0, 10)).await.unwrap();
        drop(tx);
        let control = RunControl::new();
        upload_all(&Cancels, rx, &control, &AtomicBool::new(false)).await;
        assert_eq!(control.current(), Some(Stop::Cancel));
    }

    #[tokio::test(start_paused = true)]
    async fn once_truncated_the_uploader_stops_sending_but_keeps_draining() {
        struct Capped(Mutex<u32>);
        impl LogSink for Capped {
            async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, CallError> {
                *self.0.lock().unwrap() += 1;
                Ok(LogUploadAck {
                    next_seq: chunks.last().unwrap().seq + 1,
                    truncated: true,
                    cancel: false,
                })
            }
        }
        let sink = Capped(Mutex::new(0));
        let (tx, rx) = mpsc::channel(1);
        let producer = tokio::spawn(async move {
            for seq in 0..50 {
                tx.send(chunk(seq, 10)).await.unwrap();
            }
        });
        let flag = AtomicBool::new(false);
        let end = upload_all(&sink, rx, &RunControl::new(), &flag).await;
        producer.await.unwrap();
        assert!(end.truncated && flag.load(Ordering::Relaxed));
        assert!(*sink.0.lock().unwrap() <= MAX_IN_FLIGHT as u32);
    }
}
