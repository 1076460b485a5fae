//! The in-memory relay behind a run's input (see `stdin.rs` for the
//! operations): one bounded channel per run between the submitter's request
//! (the feeder) and the agent's (the reader), taken once each, with an
//! explicit end so that a feeder that breaks off is told apart from one that
//! finished. Knows nothing of who may feed or read: `stdin.rs` checks that.

use bytes::Bytes;
use futures_util::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks held between feeder and reader, at most. With the CLI's 64 KiB
/// reads that is at most 512 KiB of one run's input in memory.
pub const RELAY_CHUNKS: usize = 8;

/// How long an agent that takes a run's input waits for the submitter to
/// start sending it before the input counts as broken (the submitter died
/// between submitting and sending). The CLI sends right after submitting.
pub const FEEDER_GRACE: Duration = Duration::from_secs(60);

/// One message from feeder to reader.
#[derive(Debug)]
pub(crate) enum Piece {
    Data(Bytes),
    End,
}

/// One run's relay: the halves not yet taken, and what passed through.
#[derive(Debug)]
struct Slot {
    feeder: Option<mpsc::Sender<Piece>>,
    reader: Option<mpsc::Receiver<Piece>>,
    /// Whether the feeder has attached (for the reader's [`FEEDER_GRACE`]).
    fed: Arc<AtomicBool>,
    /// Bytes handed to the reader.
    delivered: Arc<AtomicU64>,
    /// The reader passes the input on to another replica, which counts
    /// what its agent read ([`StdinRelays::take_reader_to_pass_on`]).
    forwarded: bool,
}

impl Slot {
    fn new() -> Slot {
        let (tx, rx) = mpsc::channel(RELAY_CHUNKS);
        Slot {
            feeder: Some(tx),
            reader: Some(rx),
            fed: Arc::new(AtomicBool::new(false)),
            delivered: Arc::new(AtomicU64::new(0)),
            forwarded: false,
        }
    }
}

/// The relays of the runs being given input, by run id.
#[derive(Debug, Default)]
pub(crate) struct StdinRelays {
    by_run: Mutex<HashMap<String, Slot>>,
}

impl StdinRelays {
    fn with_slot<T>(&self, run_id: &str, f: impl FnOnce(&mut Slot) -> T) -> T {
        // A panic while holding this lock cannot leave a slot half-updated in
        // a way that matters: every field is taken or read whole.
        let mut map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(run_id.to_owned()).or_insert_with(Slot::new))
    }

    /// The feeder's half of `run_id`'s relay, once; marks the run fed.
    pub(crate) fn take_feeder(&self, run_id: &str) -> Option<mpsc::Sender<Piece>> {
        self.with_slot(run_id, |slot| {
            let tx = slot.feeder.take()?;
            slot.fed.store(true, Ordering::Relaxed);
            Some(tx)
        })
    }

    /// The reader's half of `run_id`'s relay, once, as a stream that gives up
    /// after [`FEEDER_GRACE`] if the submitter never starts sending.
    pub(crate) fn take_reader(&self, run_id: &str) -> Option<StdinStream> {
        let (rx, fed, delivered) = self.with_slot(run_id, |slot| {
            let rx = slot.reader.take()?;
            Some((rx, Arc::clone(&slot.fed), Arc::clone(&slot.delivered)))
        })?;
        Some(StdinStream::reading(rx, fed, delivered))
    }

    /// The reader's half of `run_id`'s relay, once, to pass on to another
    /// replica, which counts what its agent reads: this relay's count is
    /// then not recorded ([`StdinRelays::finish`] says `None`). `None` if the
    /// relay is gone (its run ended) or its reader's half was taken.
    pub(crate) fn take_reader_to_pass_on(&self, run_id: &str) -> Option<StdinStream> {
        let mut map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = map.get_mut(run_id)?;
        let rx = slot.reader.take()?;
        slot.forwarded = true;
        Some(StdinStream::reading(
            rx,
            Arc::clone(&slot.fed),
            Arc::clone(&slot.delivered),
        ))
    }

    /// Bytes relayed for `run_id` so far, and forgets its relay.
    /// `None` if it had none here, or passed it on to another replica.
    pub(crate) fn finish(&self, run_id: &str) -> Option<u64> {
        let mut map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(run_id)
            .filter(|slot| !slot.forwarded)
            .map(|slot| slot.delivered.load(Ordering::Relaxed))
    }

    /// Ids of the runs with a relay.
    pub(crate) fn runs(&self) -> Vec<String> {
        let map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        map.keys().cloned().collect()
    }
}

/// Why a run's input stream ended early. Carries no input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StdinBroken(String);

impl StdinBroken {
    pub(crate) fn new(why: impl Into<String>) -> StdinBroken {
        StdinBroken(why.into())
    }
}

/// A run's input as it arrives from another replica (see `stdin.rs`).
pub(crate) type Relayed = Pin<Box<dyn Stream<Item = Result<Bytes, StdinBroken>> + Send>>;

/// A run's input as the agent reads it: the submitter's bytes in order, then
/// the end; or [`StdinBroken`] if the submitter broke off (or never came).
pub struct StdinStream {
    rx: mpsc::Receiver<Piece>,
    fed: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    /// Armed while the submitter has not started sending.
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Where the input comes from instead of `rx`
    /// ([`StdinStream::relayed`]).
    relayed: Option<Relayed>,
    /// Told the bytes given once the stream is dropped
    /// ([`StdinStream::on_drop`]).
    on_drop: Option<Box<dyn FnOnce(u64) + Send>>,
    done: bool,
}

impl Drop for StdinStream {
    fn drop(&mut self) {
        if let Some(tell) = self.on_drop.take() {
            tell(self.delivered.load(Ordering::Relaxed));
        }
    }
}

impl std::fmt::Debug for StdinStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinStream")
            .field("relayed", &self.relayed.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl StdinStream {
    /// The reader's half of a relay, giving up after [`FEEDER_GRACE`] if
    /// the submitter has not started sending.
    fn reading(
        rx: mpsc::Receiver<Piece>,
        fed: Arc<AtomicBool>,
        delivered: Arc<AtomicU64>,
    ) -> StdinStream {
        let grace =
            (!fed.load(Ordering::Relaxed)).then(|| Box::pin(tokio::time::sleep(FEEDER_GRACE)));
        StdinStream {
            rx,
            fed,
            delivered,
            grace,
            relayed: None,
            on_drop: None,
            done: false,
        }
    }

    /// A stream reading what `from` makes of this one (which may use it,
    /// or read another replica's relay instead): the bytes it gives are
    /// counted as this relay's, for the run's record, and this one's own
    /// count goes nowhere.
    pub(crate) fn relayed(mut self, from: impl FnOnce(StdinStream) -> Relayed) -> StdinStream {
        let delivered = std::mem::take(&mut self.delivered);
        let fed = Arc::clone(&self.fed);
        let on_drop = self.on_drop.take();
        StdinStream {
            // Never read: `relayed` is.
            rx: mpsc::channel(1).1,
            fed,
            delivered,
            grace: None,
            relayed: Some(from(self)),
            on_drop,
            done: false,
        }
    }

    /// This stream, calling `tell` with the bytes it gave once it is
    /// dropped (its reader is done with it, whether or not it ended).
    pub(crate) fn on_drop(mut self, tell: impl FnOnce(u64) + Send + 'static) -> StdinStream {
        self.on_drop = Some(Box::new(tell));
        self
    }
}

impl Stream for StdinStream {
    type Item = Result<Bytes, StdinBroken>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        if let Some(relayed) = this.relayed.as_mut() {
            let next = relayed.as_mut().poll_next(cx);
            match &next {
                Poll::Ready(Some(Ok(bytes))) => {
                    this.delivered
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Err(_)) | None) => this.done = true,
                Poll::Pending => {}
            }
            return next;
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Piece::Data(bytes))) => {
                self.grace = None;
                self.delivered
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Piece::End)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(StdinBroken(
                    "the submitter's input broke off before its end".into(),
                ))))
            }
            Poll::Pending => {
                if self.fed.load(Ordering::Relaxed) {
                    self.grace = None;
                }
                if let Some(grace) = self.grace.as_mut() {
                    if grace.as_mut().poll(cx).is_ready() {
                        self.done = true;
                        return Poll::Ready(Some(Err(StdinBroken(format!(
                            "the submitter did not start sending the input within {} s",
                            FEEDER_GRACE.as_secs()
                        )))));
                    }
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_passed_on_to_another_replica_is_not_counted_as_read_here() {
        let relays = StdinRelays::default();
        let _feeder = relays.take_feeder("run_passed");
        assert!(relays.take_reader_to_pass_on("run_passed").is_some());
        assert_eq!(relays.finish("run_passed"), None);
        // Positive control: a relay read here is counted.
        let _feeder = relays.take_feeder("run_read");
        assert!(relays.take_reader("run_read").is_some());
        assert_eq!(relays.finish("run_read"), Some(0));
    }

    #[test]
    fn passing_on_a_relay_that_is_gone_does_not_bring_it_back() {
        let relays = StdinRelays::default();
        let _feeder = relays.take_feeder("run_gone");
        relays.finish("run_gone");
        assert!(relays.take_reader_to_pass_on("run_gone").is_none());
        assert!(relays.runs().is_empty(), "{:?}", relays.runs());
    }
}
