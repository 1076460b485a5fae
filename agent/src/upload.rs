//! Uploads a run's chunks in order, exactly once each, whatever the network does.
//!
//! One request is in flight per run, carrying every chunk waiting in the channel
//! (up to [`BATCH_BYTES`]). A failed request is retried with backoff, unchanged, until
//! the control plane acknowledges it; uploads are idempotent by `seq` on the server,
//! so a retry of a request whose answer was lost stores nothing twice. An
//! acknowledgement that stored only part of a batch makes the uploader resend the
//! rest. While a request is being retried the channel fills up, which is what
//! pushes back on the command (see [`crate::output`]).

use crate::backoff::Backoff;
use crate::client::{ApiError, ControlPlane};
use crate::executor::{RunControl, StopRequest};
use sealrun_wire::log::{LogChunk, LogUploadAck};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// Most raw output bytes sent in one request.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// Where a run's redacted chunks go: the control plane, or anything that speaks
/// its acknowledgement semantics (`next_seq`: every chunk below it is stored).
pub trait LogSink: Send + Sync + 'static {
    /// Stores `chunks` (consecutive `seq`s, ascending); idempotent by `seq`.
    fn upload(
        &self,
        chunks: &[LogChunk],
    ) -> impl Future<Output = Result<LogUploadAck, ApiError>> + Send;
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
    async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, ApiError> {
        self.client.upload_logs(&self.run_id, chunks).await
    }
}

/// What the uploader achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UploadEnd {
    /// Every chunk below this `seq` is acknowledged.
    pub acked: u64,
    /// The control plane hit the run's log cap.
    pub truncated: bool,
    /// The control plane acknowledged less than it had been sent before, and the
    /// missing chunks are no longer held here: the stored log has a gap.
    pub gap: bool,
}

/// Uploads everything `rx` yields, in order, until the channel closes.
///
/// Sets `truncated` when the control plane reports the log cap was hit, and raises
/// stop requests on `control`: `Cancel` when an acknowledgement carries a cancel,
/// `Abandon` when the run is no longer ours (`404`/`409`), `Fail` when an upload is
/// refused outright. After such a refusal, or once the run is abandoned, it keeps
/// draining `rx` without uploading so that the producer never blocks.
pub async fn upload_all<S: LogSink>(
    sink: &S,
    mut rx: mpsc::Receiver<LogChunk>,
    control: &RunControl,
    truncated: &AtomicBool,
) -> UploadEnd {
    let mut end = UploadEnd::default();
    let mut stop = control.subscribe();
    let mut batch: Vec<LogChunk> = Vec::new();
    let mut backoff = Backoff::default();
    let mut uploading = true;

    while let Some(first) = rx.recv().await {
        if !uploading || stop.borrow().is_abandon() {
            uploading = false;
            continue;
        }
        let mut bytes = first.data.0.len();
        batch.push(first);
        while bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(chunk) => {
                    bytes += chunk.data.0.len();
                    batch.push(chunk);
                }
                Err(_) => break,
            }
        }

        while !batch.is_empty() && uploading {
            match sink.upload(&batch).await {
                Ok(ack) => {
                    backoff.reset();
                    if ack.cancel {
                        control.request(StopRequest::Cancel);
                    }
                    if ack.truncated {
                        end.truncated = true;
                        truncated.store(true, Ordering::Relaxed);
                    }
                    let first_seq = batch[0].seq;
                    if ack.next_seq < first_seq {
                        tracing::error!(
                            acked = ack.next_seq,
                            first_seq,
                            "control plane lost chunks it had acknowledged; the stored log has a gap"
                        );
                        end.gap = true;
                    }
                    end.acked = end.acked.max(ack.next_seq);
                    // Keep whatever the acknowledgement does not cover, and resend it.
                    batch.retain(|c| c.seq >= ack.next_seq);
                    if ack.truncated {
                        // Nothing more will be stored: no point resending.
                        batch.clear();
                    }
                }
                Err(e) if e.is_run_gone() => {
                    tracing::warn!(error = %e, "control plane no longer holds this run; abandoning it");
                    control.request(StopRequest::Abandon);
                    uploading = false;
                }
                Err(e) if e.is_retryable() => {
                    let delay = backoff.next_delay();
                    tracing::debug!(error = %e, ?delay, "log upload failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(StopRequest::is_abandon) => uploading = false,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "log upload refused");
                    control.request(StopRequest::Fail(format!("log upload refused: {e}")));
                    uploading = false;
                }
            }
        }
        batch.clear();
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

    /// Stores like the control plane: idempotent by seq, no gaps. Fails the first
    /// `fail` calls with `error`, and can drop an acknowledgement after storing.
    struct Store {
        stored: Mutex<Vec<LogChunk>>,
        calls: Mutex<u32>,
        fail: u32,
        error: fn() -> ApiError,
        lose_answer_of_call: Option<u32>,
    }

    impl Store {
        fn new(fail: u32, error: fn() -> ApiError) -> Store {
            Store {
                stored: Mutex::new(Vec::new()),
                calls: Mutex::new(0),
                fail,
                error,
                lose_answer_of_call: None,
            }
        }
    }

    impl LogSink for Store {
        async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, ApiError> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            if call <= self.fail {
                return Err((self.error)());
            }
            let mut stored = self.stored.lock().unwrap();
            for c in chunks {
                if c.seq == stored.len() as u64 {
                    stored.push(c.clone());
                }
            }
            if self.lose_answer_of_call == Some(call) {
                return Err(ApiError::Transport("connection reset".into()));
            }
            Ok(LogUploadAck {
                next_seq: stored.len() as u64,
                truncated: false,
                cancel: false,
            })
        }
    }

    fn chunk(seq: u64) -> LogChunk {
        LogChunk {
            seq,
            stream: StreamKind::Stdout,
            data: Base64Bytes(format!("line {seq}\n").into_bytes()),
        }
    }

    async fn run(store: &Store, n: u64) -> (UploadEnd, RunControl) {
        let (tx, rx) = mpsc::channel(4);
        let control = RunControl::new();
        let producer = tokio::spawn(async move {
            for seq in 0..n {
                tx.send(chunk(seq)).await.unwrap();
            }
        });
        let end = upload_all(store, rx, &control, &AtomicBool::new(false)).await;
        producer.await.unwrap();
        (end, control)
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_and_every_chunk_is_stored_once_in_order() {
        let store = Store::new(3, || ApiError::Status {
            status: 503,
            message: "down".into(),
        });
        let (end, control) = run(&store, 50).await;
        assert_eq!(end.acked, 50);
        let seqs: Vec<u64> = store.stored.lock().unwrap().iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (0..50).collect::<Vec<_>>());
        assert_eq!(control.current(), StopRequest::None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_acknowledgement_does_not_duplicate_chunks() {
        let mut store = Store::new(0, || unreachable!());
        store.lose_answer_of_call = Some(1);
        let (end, _) = run(&store, 10).await;
        assert_eq!(end.acked, 10);
        assert_eq!(store.stored.lock().unwrap().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_the_control_plane_no_longer_holds_is_abandoned_and_drained() {
        let store = Store::new(u32::MAX, || ApiError::Status {
            status: 409,
            message: "lost".into(),
        });
        let (end, control) = run(&store, 20).await;
        assert_eq!(end.acked, 0);
        assert_eq!(control.current(), StopRequest::Abandon);
        assert_eq!(*store.calls.lock().unwrap(), 1, "a 409 is never retried");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_upload_fails_the_run_without_retrying() {
        let store = Store::new(u32::MAX, || ApiError::Status {
            status: 413,
            message: "too big".into(),
        });
        let (_, control) = run(&store, 5).await;
        assert!(matches!(control.current(), StopRequest::Fail(m) if m.contains("413")));
        assert_eq!(*store.calls.lock().unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_in_an_acknowledgement_reaches_the_run() {
        struct Cancels;
        impl LogSink for Cancels {
            async fn upload(&self, chunks: &[LogChunk]) -> Result<LogUploadAck, ApiError> {
                let next_seq = chunks.last().unwrap().seq + 1;
                Ok(LogUploadAck {
                    next_seq,
                    truncated: false,
                    cancel: true,
                })
            }
        }
        let (tx, rx) = mpsc::channel(4);
        tx.send(chunk(0)).await.unwrap();
        drop(tx);
        let control = RunControl::new();
        upload_all(&Cancels, rx, &control, &AtomicBool::new(false)).await;
        assert_eq!(control.current(), StopRequest::Cancel);
    }
}
