//! Waking the right waiters: agents long-polling for a target's runs, and
//! clients following a run's log.
//!
//! Both are in-memory hints layered over the database, which stays the only
//! source of truth: a waiter that is woken re-reads the database, and every
//! wait is bounded, so a lost hint costs latency, never correctness.

use crate::caller::Agent;
use crate::queue::Claim;
use crate::store::Broadcast;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, futures::Notified, oneshot, watch};

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

/// Pollers of this replica waiting with nothing to do, each offering to
/// be handed a run as it is submitted here.
///
/// A poller woken by a submission would claim in a transaction of its own
/// once the submission's committed: on PostgreSQL a second transaction a
/// run (its round trips, its turn at the audit chain's lock), a wake-up,
/// and as often as not a claim that finds the run taken by a poll that
/// came in meanwhile. A submission that finds a poller of its target
/// waiting here claims *for it* instead, in the submission's own batch
/// ([`Db::write_beside_pair`](crate::store::Db::write_beside_pair)),
/// and hands it the answer.
///
/// That claim is the very claim the poller would have made
/// (`queue::claim`, for its agent, in its poll, `poll_id` included): it
/// takes the oldest run queued for the agent's targets, whichever that
/// is, so a hand-off never jumps the queue, and a run it takes is
/// recorded as handed out in that poll. So nothing is lost if the answer
/// does not reach the agent: the poller, or the agent asking again with
/// the same poll id, gets the run from the database (`Found::Again`).
/// What the poller must never do is end its poll with "nothing" while a
/// claim for it may be under way: it withdraws its offer first
/// ([`Offer::withdraw`]), and if a submission took it, waits for that
/// claim's answer, and looks at the database itself unless it is a run.
#[derive(Debug, Default)]
pub(crate) struct HandOffs {
    state: Mutex<Offers>,
}

#[derive(Debug, Default)]
struct Offers {
    /// The offers of pollers serving each target, oldest first.
    by_target: HashMap<i64, BTreeMap<u64, Arc<Offered>>>,
    next: u64,
    /// Offers not yet dropped, taken or not.
    live: u64,
    /// The target a name of an org stood for when a run was last
    /// submitted to it here: a submission sees a name, pollers offer by
    /// target id. Only a guess (a target renamed since): a wrong one
    /// hands a poller the run its own claim would have found, and the
    /// submitted run is woken for as if no one had been handed anything.
    names: HashMap<(i64, String), i64>,
}

/// Most names [`Offers::names`] remembers before starting over.
const NAMES_KEPT: usize = 4096;

#[derive(Debug)]
struct Offered {
    agent: Arc<Agent>,
    poll_id: String,
    /// Taken by the submission that claims for the poller, or by the
    /// poller withdrawing: whoever takes it first.
    reply: Mutex<Option<oneshot::Sender<Claim>>>,
}

/// A poller's standing offer ([`HandOffs::offer`]); withdrawn from every
/// target's list when dropped.
#[derive(Debug)]
pub(crate) struct Offer {
    handoffs: Arc<HandOffs>,
    key: u64,
    targets: Vec<i64>,
    offered: Arc<Offered>,
    handed: oneshot::Receiver<Claim>,
}

/// An offer a submission took: it claims for `agent` in poll `poll_id`,
/// then [`Taken::hand`]s over what the claim found. Dropped unanswered,
/// it tells the poller to look for itself.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) agent: Arc<Agent>,
    pub(crate) poll_id: String,
    reply: oneshot::Sender<Claim>,
}

impl Taken {
    /// Gives the poller what the claim made for it found.
    pub(crate) fn hand(self, claim: Claim) {
        // A poller gone already ended its poll without it: the run, if
        // any, waits for its agent to ask again with the poll's id.
        let _ = self.reply.send(claim);
    }
}

impl HandOffs {
    /// Offers the poller of `agent`, in poll `poll_id`, to be handed a run
    /// of one of its targets.
    pub(crate) fn offer(self: &Arc<Self>, agent: &Arc<Agent>, poll_id: &str) -> Offer {
        let (reply, handed) = oneshot::channel();
        let offered = Arc::new(Offered {
            agent: Arc::clone(agent),
            poll_id: poll_id.to_owned(),
            reply: Mutex::new(Some(reply)),
        });
        let mut key = 0;
        if let Ok(mut state) = self.state.lock() {
            key = state.next;
            state.next += 1;
            state.live += 1;
            for target in &agent.targets {
                state
                    .by_target
                    .entry(*target)
                    .or_default()
                    .insert(key, Arc::clone(&offered));
            }
        }
        Offer {
            handoffs: Arc::clone(self),
            key,
            targets: agent.targets.clone(),
            offered,
            handed,
        }
    }

    /// Takes the oldest offer of a poller of `target_id`, if one waits.
    pub(crate) fn take(&self, target_id: i64) -> Option<Taken> {
        let mut state = self.state.lock().ok()?;
        let offers = state.by_target.get_mut(&target_id)?;
        while let Some((_, offered)) = offers.pop_first() {
            let reply = offered.reply.lock().ok().and_then(|mut r| r.take());
            if let Some(reply) = reply {
                return Some(Taken {
                    agent: Arc::clone(&offered.agent),
                    poll_id: offered.poll_id.clone(),
                    reply,
                });
            }
        }
        None
    }

    /// Polls of this replica waiting with an offer standing.
    pub(crate) fn waiting(&self) -> u64 {
        self.state.lock().map_or(0, |state| state.live)
    }

    /// The target `name` of org `org_id` was when last submitted to here.
    pub(crate) fn target_named(&self, org_id: i64, name: &str) -> Option<i64> {
        let state = self.state.lock().ok()?;
        state.names.get(&(org_id, name.to_owned())).copied()
    }

    /// Remembers that `name` of org `org_id` is target `target_id`.
    pub(crate) fn learn(&self, org_id: i64, name: &str, target_id: i64) {
        if let Ok(mut state) = self.state.lock() {
            if state.names.len() >= NAMES_KEPT {
                state.names.clear();
            }
            state.names.insert((org_id, name.to_owned()), target_id);
        }
    }
}

impl Offer {
    /// What a submission's claim for this poller found; `None` if the
    /// submission dropped the offer without claiming (or its claim
    /// failed): look for yourself. Pending while no one took the offer.
    pub(crate) async fn handed(&mut self) -> Option<Claim> {
        (&mut self.handed).await.ok()
    }

    /// Withdraws the offer: `true` if no submission took it (none will
    /// now), `false` if one did, whose answer must then be awaited
    /// ([`Offer::handed`]) before the poll may end.
    pub(crate) fn withdraw(&self) -> bool {
        self.offered
            .reply
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .is_some()
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        if let Ok(mut state) = self.handoffs.state.lock() {
            state.live = state.live.saturating_sub(1);
            for target in &self.targets {
                if let Some(offers) = state.by_target.get_mut(target) {
                    offers.remove(&self.key);
                    if offers.is_empty() {
                        state.by_target.remove(target);
                    }
                }
            }
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

    fn agent(id: &str, targets: &[i64]) -> Arc<Agent> {
        Arc::new(Agent {
            org_id: 1,
            org: "acme".into(),
            id: id.into(),
            name: id.into(),
            pool_id: 1,
            online: true,
            targets: targets.to_vec(),
            verified_at: 0,
        })
    }

    #[test]
    fn offers_are_taken_oldest_first_and_each_once() {
        let handoffs = Arc::new(HandOffs::default());
        let first = handoffs.offer(&agent("a", &[7]), "p1");
        let second = handoffs.offer(&agent("b", &[7, 8]), "p2");
        let taken = handoffs
            .take(7)
            .map(|t| (t.agent.id.clone(), t.poll_id.clone()));
        assert_eq!(taken, Some(("a".into(), "p1".into())));
        // Taken through target 7, `b`'s offer is gone from target 8 too.
        assert_eq!(
            handoffs.take(8).map(|t| t.agent.id.clone()),
            Some("b".into())
        );
        assert!(handoffs.take(7).is_none());
        assert!(handoffs.take(8).is_none());
        drop((first, second));
    }

    #[test]
    fn a_withdrawn_offer_is_never_taken_and_a_taken_one_cannot_be_withdrawn() {
        let handoffs = Arc::new(HandOffs::default());
        let withdrawn = handoffs.offer(&agent("a", &[7]), "p1");
        let kept = handoffs.offer(&agent("b", &[7]), "p2");
        assert!(withdrawn.withdraw());
        let taken = handoffs.take(7).map(|t| t.agent.id.clone());
        // The next offer is taken instead (positive control: one was there
        // to take).
        assert_eq!(taken, Some("b".into()));
        assert!(!kept.withdraw(), "taken, so its answer must be awaited");
    }

    #[test]
    fn a_dropped_offer_leaves_nothing_behind() {
        let handoffs = Arc::new(HandOffs::default());
        drop(handoffs.offer(&agent("a", &[7, 8]), "p1"));
        assert!(handoffs.take(7).is_none());
        assert!(handoffs.take(8).is_none());
        let empty = handoffs.state.lock().map(|s| s.by_target.is_empty());
        assert_eq!(empty.ok(), Some(true));
    }

    #[tokio::test]
    async fn a_taken_offer_answers_its_poller_with_the_claim_or_tells_it_to_look() {
        let handoffs = Arc::new(HandOffs::default());
        let mut answered = handoffs.offer(&agent("a", &[7]), "p1");
        let taken = handoffs.take(7);
        assert!(taken.is_some());
        if let Some(taken) = taken {
            taken.hand(Claim::Empty);
        }
        assert!(matches!(answered.handed().await, Some(Claim::Empty)));
        // Dropped unanswered (its claim failed): the poller looks itself.
        let mut dropped = handoffs.offer(&agent("b", &[7]), "p2");
        drop(handoffs.take(7));
        assert!(dropped.handed().await.is_none());
    }

    #[test]
    fn a_name_is_guessed_as_the_target_it_last_was_in_its_org() {
        let handoffs = HandOffs::default();
        assert_eq!(handoffs.target_named(1, "db"), None);
        handoffs.learn(1, "db", 7);
        handoffs.learn(2, "db", 9);
        assert_eq!(handoffs.target_named(1, "db"), Some(7));
        handoffs.learn(1, "db", 8);
        assert_eq!(handoffs.target_named(1, "db"), Some(8));
        assert_eq!(handoffs.target_named(2, "db"), Some(9));
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
