//! Waking the right waiters: agents long-polling for a target's runs, and
//! clients following a run's log.
//!
//! Both are in-memory hints layered over the database, which stays the only
//! source of truth: a waiter that is woken re-reads the database, and every
//! wait is bounded, so a lost hint costs latency, never correctness.

use crate::store::Broadcast;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, futures::Notified, watch};

/// One [`Queue`] per target; a queued run wakes exactly one waiting poller.
///
/// `notify_one` (not `notify_waiters`) avoids a thundering herd: with many
/// agents idle on a target, a new run costs one claim attempt, not one per
/// agent. If the woken poller goes away before claiming, tokio hands the
/// wake-up on to the next waiter; if no one waits, it is kept for the next.
///
/// Across replicas the same holds as far as it can: a replica with a poller
/// of the target waiting wakes it and tells the others it did
/// (hint `p`, else `q`); they do not claim at once (each claim but one
/// would find the run gone: a write each for nothing), but look at the
/// queue a moment later in case it was not taken after all
/// (`Control::relay_hints`).
#[derive(Debug, Default)]
pub(crate) struct PollWakeups {
    by_target: Mutex<HashMap<i64, Arc<Queue>>>,
    /// The other replicas of a shared database, told of each queued run.
    broadcast: Option<Broadcast>,
}

/// One target's queue, as its pollers wait on it.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    notify: Notify,
    /// Pollers waiting on it now (see [`Queue::waiting`]).
    waiting: AtomicUsize,
}

impl Queue {
    /// Resolves at the queue's next wake-up (or at once for one not yet
    /// taken); enable it, then look at the database, then wait.
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Counts a poller as waiting on the queue until the guard is dropped:
    /// held from before its look at the database until it stops waiting,
    /// with its `notified` future enabled, so that a run queued in between
    /// is known here to be a wake-up away from a claim.
    pub(crate) fn waiting(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(Arc::clone(self))
    }
}

/// A poller counted as waiting on a queue ([`Queue::waiting`]).
#[derive(Debug)]
pub(crate) struct Waiting(Arc<Queue>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PollWakeups {
    /// The queue of `target_id`.
    pub(crate) fn notifier(&self, target_id: i64) -> Arc<Queue> {
        match self.by_target.lock() {
            Ok(mut map) => Arc::clone(map.entry(target_id).or_default()),
            // A poisoned map only loses hints; polls still time out and retry.
            Err(_) => Arc::default(),
        }
    }

    /// A run for `target_id` was queued (and committed). The other
    /// replicas are told `q:<target>`, or `p:<target>` if a poller here
    /// waited for it (and is woken).
    pub(crate) fn run_queued(&self, target_id: i64) {
        let queue = self.notifier(target_id);
        let here = queue.waiting.load(Ordering::SeqCst) > 0;
        queue.notify.notify_one();
        if let Some(b) = &self.broadcast {
            b.send(&format!("{}:{target_id}", if here { "p" } else { "q" }));
        }
    }

    /// How many pollers of this replica wait on `target_id`'s queue.
    pub(crate) fn waiting(&self, target_id: i64) -> usize {
        self.by_target.lock().map_or(0, |map| {
            map.get(&target_id)
                .map_or(0, |q| q.waiting.load(Ordering::SeqCst))
        })
    }

    /// Wakes a poller of this replica only (another replica's hint).
    pub(crate) fn run_queued_here(&self, target_id: i64) {
        self.notifier(target_id).notify.notify_one();
    }

    /// Wakes every waiting poller (hints may have been missed): each looks
    /// at the queue again.
    pub(crate) fn wake_all(&self) {
        if let Ok(map) = self.by_target.lock() {
            for q in map.values() {
                q.notify.notify_waiters();
            }
        }
    }

    /// Wake-ups that also reach the other replicas through `broadcast`.
    pub(crate) fn new(broadcast: Option<Broadcast>) -> PollWakeups {
        PollWakeups {
            by_target: Mutex::default(),
            broadcast,
        }
    }
}

/// Per-run change counters that log followers wait on. An entry exists only
/// while someone follows the run.
#[derive(Debug, Default, Clone)]
pub(crate) struct RunWatchers {
    by_run: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    /// The other replicas of a shared database, told of each change.
    broadcast: Option<Broadcast>,
}

impl RunWatchers {
    /// Starts watching `run_id` for new output or its end.
    pub(crate) fn watch(&self, run_id: &str) -> RunWatch {
        let rx = match self.by_run.lock() {
            Ok(mut map) => map
                .entry(run_id.to_owned())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            Err(_) => watch::channel(0).1,
        };
        RunWatch {
            rx: Some(rx),
            run_id: run_id.to_owned(),
            watchers: self.clone(),
        }
    }

    /// `run_id` has new output or changed state.
    pub(crate) fn touch(&self, run_id: &str) {
        self.touch_here(run_id);
        if let Some(b) = &self.broadcast {
            b.send(&format!("r:{run_id}"));
        }
    }

    /// Wakes this replica's followers of `run_id` only (another replica's
    /// hint).
    pub(crate) fn touch_here(&self, run_id: &str) {
        if let Ok(map) = self.by_run.lock() {
            if let Some(tx) = map.get(run_id) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every follower (hints may have been missed).
    pub(crate) fn touch_all(&self) {
        if let Ok(map) = self.by_run.lock() {
            for tx in map.values() {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Watchers whose changes also reach the other replicas.
    pub(crate) fn new(broadcast: Option<Broadcast>) -> RunWatchers {
        RunWatchers {
            by_run: Arc::default(),
            broadcast,
        }
    }
}

/// A follower's subscription to one run's changes; unsubscribes when
/// dropped.
#[derive(Debug)]
pub struct RunWatch {
    rx: Option<watch::Receiver<u64>>,
    run_id: String,
    watchers: RunWatchers,
}

impl RunWatch {
    /// Waits for the next change (returns at once if one happened since the
    /// last call).
    pub async fn changed(&mut self) {
        match self.rx.as_mut() {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // Sender gone: nothing will ever wake us; the caller's
                    // periodic re-check takes over.
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl Drop for RunWatch {
    fn drop(&mut self) {
        // Drop our receiver first, then remove the entry if it was the last;
        // both under the lock `watch` subscribes under, so no subscriber can
        // be left holding a channel that is no longer in the map.
        if let Ok(mut map) = self.watchers.by_run.lock() {
            self.rx = None;
            if map
                .get(&self.run_id)
                .is_some_and(|tx| tx.receiver_count() == 0)
            {
                map.remove(&self.run_id);
            }
        }
    }
}

/// The cue that an approval request may need its Slack message posted or
/// updated: the adapter's outbox worker waits on it (and also looks every
/// few seconds). Cued on every replica of a shared database.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    notify: Notify,
    broadcast: Option<Broadcast>,
}

impl Outbox {
    pub(crate) fn new(broadcast: Option<Broadcast>) -> Outbox {
        Outbox {
            notify: Notify::new(),
            broadcast,
        }
    }

    /// Cues the outbox here and on the other replicas.
    pub(crate) fn cue(&self) {
        self.cue_here();
        if let Some(b) = &self.broadcast {
            b.send("s");
        }
    }

    /// Cues this replica's outbox only (another replica's hint).
    pub(crate) fn cue_here(&self) {
        self.notify.notify_one();
    }

    /// Resolves at the next cue (or at once for one not yet taken).
    pub(crate) async fn cued(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_follower_is_woken_by_a_touch_and_unsubscribes_on_drop() {
        let watchers = RunWatchers::default();
        let mut w = watchers.watch("run_1");
        watchers.touch("run_1");
        let woke = tokio::time::timeout(Duration::from_secs(1), w.changed()).await;
        assert!(woke.is_ok());
        drop(w);
        assert!(
            watchers
                .by_run
                .lock()
                .map(|m| m.is_empty())
                .unwrap_or(false)
        );
    }

    #[tokio::test]
    async fn a_run_queued_with_a_poller_waiting_here_wakes_it_and_tells_the_others_it_did() {
        let (broadcast, mut sent) = Broadcast::to_test();
        let wakeups = PollWakeups::new(Some(broadcast));
        let queue = wakeups.notifier(7);
        let waiting = queue.waiting();
        let notified = queue.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        wakeups.run_queued(7);
        assert_eq!(sent.try_recv().ok().as_deref(), Some("p:7"));
        let woke = tokio::time::timeout(Duration::from_secs(1), notified).await;
        assert!(woke.is_ok());
        // Once it stops waiting, the next run is the other replicas' to
        // claim (positive control for the letter).
        drop(waiting);
        wakeups.run_queued(7);
        assert_eq!(sent.try_recv().ok().as_deref(), Some("q:7"));
    }

    #[tokio::test]
    async fn a_wakeup_with_no_waiter_is_kept_for_the_next_poller() {
        let wakeups = PollWakeups::default();
        wakeups.run_queued(7);
        let n = wakeups.notifier(7);
        let woke = tokio::time::timeout(Duration::from_secs(1), n.notified()).await;
        assert!(woke.is_ok());
    }
}
