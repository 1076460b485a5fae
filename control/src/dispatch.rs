//! Waking the right waiters: agents long-polling for a target's runs, and
//! clients following a run's log.
//!
//! Both are in-memory hints layered over the database, which stays the only
//! source of truth: a waiter that is woken re-reads the database, and every
//! wait is bounded, so a lost hint costs latency, never correctness.

use crate::store::Broadcast;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};

/// One [`Notify`] per target; a queued run wakes exactly one waiting poller.
///
/// `notify_one` (not `notify_waiters`) avoids a thundering herd: with many
/// agents idle on a target, a new run costs one claim attempt, not one per
/// agent. If the woken poller goes away before claiming, tokio hands the
/// wake-up on to the next waiter; if no one waits, it is kept for the next.
#[derive(Debug, Default)]
pub(crate) struct PollWakeups {
    by_target: Mutex<HashMap<i64, Arc<Notify>>>,
    /// The other replicas of a shared database, told of each queued run.
    broadcast: Option<Broadcast>,
}

impl PollWakeups {
    /// The notifier of `target_id`'s queue.
    pub(crate) fn notifier(&self, target_id: i64) -> Arc<Notify> {
        match self.by_target.lock() {
            Ok(mut map) => Arc::clone(map.entry(target_id).or_default()),
            // A poisoned map only loses hints; polls still time out and retry.
            Err(_) => Arc::new(Notify::new()),
        }
    }

    /// A run for `target_id` was queued (and committed).
    pub(crate) fn run_queued(&self, target_id: i64) {
        self.run_queued_here(target_id);
        if let Some(b) = &self.broadcast {
            b.send(&format!("q:{target_id}"));
        }
    }

    /// Wakes a poller of this replica only (another replica's hint).
    pub(crate) fn run_queued_here(&self, target_id: i64) {
        self.notifier(target_id).notify_one();
    }

    /// Wakes every waiting poller (hints may have been missed): each looks
    /// at the queue again.
    pub(crate) fn wake_all(&self) {
        if let Ok(map) = self.by_target.lock() {
            for n in map.values() {
                n.notify_waiters();
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
    async fn a_wakeup_with_no_waiter_is_kept_for_the_next_poller() {
        let wakeups = PollWakeups::default();
        wakeups.run_queued(7);
        let n = wakeups.notifier(7);
        let woke = tokio::time::timeout(Duration::from_secs(1), n.notified()).await;
        assert!(woke.is_ok());
    }
}
