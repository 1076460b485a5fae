//! Waking the right waiters: agents long-polling for a target's runs, and
//! clients following a run's log; and handing a run submitted here to an
//! agent's poll waiting here.
//!
//! Wake-ups are in-memory hints layered over the database, which stays the
//! only source of truth: a waiter that is woken re-reads the database, and
//! every wait is bounded, so a lost hint costs latency, never correctness.
//! A hand-off ([`HandOffs`]) is more than a hint: a claim made for a poll,
//! in the database, under the poll's id; what a poll must do about it is
//! said there.

use crate::caller::Agent;
use crate::error::Error;
use crate::store::Broadcast;
use sealrun_wire::agent::Assignment;
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

/// What a claim attempt found (`queue::claim`), or a claim made for a
/// poll ([`HandOffs`]) found for it.
#[derive(Debug)]
pub(crate) enum Claim {
    /// A run, now `running` and leased to the agent; with how long it queued.
    Assigned(Box<Assignment>, u64),
    /// No queued run for the agent's targets.
    Empty,
    /// The agent may not take a run now (every slot busy, or not connected).
    Busy,
}

/// Pollers of this replica waiting with nothing to do, each offering to
/// be handed a run as it is submitted here; `T` is what a poller is
/// handed (a [`Claim`]; generic so that its tests need no run).
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
/// does not reach the agent: the agent asks again with the same poll id
/// and gets the run from the database (`Found::Again`). What the poller
/// must never do is end its poll with "nothing" while a claim for it may
/// be under way: it withdraws its offer first ([`Offer::withdraw`]), and
/// if a submission took it, waits for that claim's answer: a run, nothing
/// (then it may end), a failure (answered as its own failed claim: the
/// agent asks again with the same id), or no claim made (it looks).
#[derive(Debug)]
pub(crate) struct HandOffs<T> {
    state: Mutex<Offers<T>>,
}

impl<T> Default for HandOffs<T> {
    fn default() -> Self {
        HandOffs {
            state: Mutex::new(Offers {
                by_target: HashMap::new(),
                next: 0,
                live: 0,
                names: HashMap::new(),
            }),
        }
    }
}

#[derive(Debug)]
struct Offers<T> {
    /// The offers of pollers serving each target, oldest first.
    by_target: HashMap<i64, BTreeMap<u64, Arc<Offered<T>>>>,
    next: u64,
    /// Offers not yet dropped, taken or not.
    live: u64,
    /// The target a name of an org stood for when a run was last
    /// submitted to it here or an agent connected here serving it: a
    /// submission sees a name, pollers offer by target id. Only a guess (a
    /// target renamed since): a wrong one hands a poller the run its own
    /// claim would have found, and the submitted run is woken for as if no
    /// one had been handed anything.
    names: HashMap<(i64, String), i64>,
}

/// Most names [`Offers::names`] remembers before starting over.
const NAMES_KEPT: usize = 4096;

/// What a poller is told of the claim a submission made for it.
#[derive(Debug)]
pub(crate) enum Handed<T> {
    /// The claim's answer, committed.
    Answer(T),
    /// The claim failed, and may have committed all the same (its answer
    /// was lost): the poll answers this error, as its own claim's, and
    /// the agent asks again with the same poll id.
    Failed(Error),
}

#[derive(Debug)]
struct Offered<T> {
    agent: Arc<Agent>,
    poll_id: String,
    /// Taken by the submission that claims for the poller, or by the
    /// poller withdrawing: whoever takes it first.
    reply: Mutex<Option<oneshot::Sender<Handed<T>>>>,
}

impl<T> Offered<T> {
    /// Takes the way to answer the poller, if no one has. A poisoned lock
    /// is taken all the same: the `Option` in it is whole either way, and
    /// a poller must never wait on a sender no one can reach.
    fn take_reply(&self) -> Option<oneshot::Sender<Handed<T>>> {
        self.reply
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// A poller's standing offer ([`HandOffs::offer`]); withdrawn from every
/// target's list when dropped.
#[derive(Debug)]
pub(crate) struct Offer<T> {
    handoffs: Arc<HandOffs<T>>,
    key: u64,
    targets: Vec<i64>,
    offered: Arc<Offered<T>>,
    handed: oneshot::Receiver<Handed<T>>,
}

/// An offer a submission took: it claims for `agent` in poll `poll_id`,
/// then hands over what the claim found ([`Taken::hand`]) or that it
/// failed ([`Taken::fail`]). Dropped unanswered, it tells the poller that
/// no claim was made.
#[derive(Debug)]
pub(crate) struct Taken<T> {
    pub(crate) agent: Arc<Agent>,
    pub(crate) poll_id: String,
    reply: oneshot::Sender<Handed<T>>,
}

impl<T> Taken<T> {
    /// Gives the poller what the claim made for it found.
    pub(crate) fn hand(self, answer: T) {
        // A poller gone already ended its poll without it: a run, if one
        // was claimed, waits for its agent to ask again with the poll's id.
        let _ = self.reply.send(Handed::Answer(answer));
    }

    /// Tells the poller the claim made for it failed with `error`.
    pub(crate) fn fail(self, error: Error) {
        let _ = self.reply.send(Handed::Failed(error));
    }
}

impl<T> HandOffs<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, Offers<T>> {
        // Every change to the maps is a single insert or remove: whole
        // whatever panicked while the lock was held.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Offers the poller of `agent`, in poll `poll_id`, to be handed a run
    /// of one of its targets.
    pub(crate) fn offer(self: &Arc<Self>, agent: &Arc<Agent>, poll_id: &str) -> Offer<T> {
        let (reply, handed) = oneshot::channel();
        let offered = Arc::new(Offered {
            agent: Arc::clone(agent),
            poll_id: poll_id.to_owned(),
            reply: Mutex::new(Some(reply)),
        });
        let mut state = self.state();
        let key = state.next;
        state.next += 1;
        state.live += 1;
        for target in &agent.targets {
            state
                .by_target
                .entry(*target)
                .or_default()
                .insert(key, Arc::clone(&offered));
        }
        drop(state);
        Offer {
            handoffs: Arc::clone(self),
            key,
            targets: agent.targets.clone(),
            offered,
            handed,
        }
    }

    /// Takes the oldest offer of a poller of `target_id`, if one waits.
    pub(crate) fn take(&self, target_id: i64) -> Option<Taken<T>> {
        let mut state = self.state();
        let offers = state.by_target.get_mut(&target_id)?;
        while let Some((_, offered)) = offers.pop_first() {
            if let Some(reply) = offered.take_reply() {
                return Some(Taken {
                    agent: Arc::clone(&offered.agent),
                    poll_id: offered.poll_id.clone(),
                    reply,
                });
            }
        }
        None
    }

    /// Offers standing or taken and not yet dropped: polls of this replica
    /// waiting, or about to be answered by a claim made for them.
    pub(crate) fn waiting(&self) -> u64 {
        self.state().live
    }

    /// The target `name` of org `org_id` was when last seen here.
    pub(crate) fn target_named(&self, org_id: i64, name: &str) -> Option<i64> {
        self.state().names.get(&(org_id, name.to_owned())).copied()
    }

    /// Remembers that `name` of org `org_id` is target `target_id`.
    pub(crate) fn learn(&self, org_id: i64, name: &str, target_id: i64) {
        let mut state = self.state();
        if state.names.len() >= NAMES_KEPT {
            state.names.clear();
        }
        state.names.insert((org_id, name.to_owned()), target_id);
    }
}

impl<T> Offer<T> {
    /// What became of the claim a submission made for this poller; `None`
    /// if none was made (the submission queued nothing, or went away
    /// before). Pending while no one took the offer. Not to be awaited
    /// again once it answered.
    pub(crate) async fn handed(&mut self) -> Option<Handed<T>> {
        (&mut self.handed).await.ok()
    }

    /// Withdraws the offer: `true` if no submission took it (none will
    /// now), `false` if one did, whose answer must then be awaited
    /// ([`Offer::handed`]) before the poll may end.
    pub(crate) fn withdraw(&self) -> bool {
        self.offered.take_reply().is_some()
    }
}

impl<T> Drop for Offer<T> {
    fn drop(&mut self) {
        let mut state = self.handoffs.state();
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
        let handoffs: Arc<HandOffs<&str>> = Arc::default();
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
        let handoffs: Arc<HandOffs<&str>> = Arc::default();
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
        let handoffs: Arc<HandOffs<&str>> = Arc::default();
        drop(handoffs.offer(&agent("a", &[7, 8]), "p1"));
        assert!(handoffs.take(7).is_none());
        assert!(handoffs.take(8).is_none());
        let empty = handoffs.state.lock().map(|s| s.by_target.is_empty());
        assert_eq!(empty.ok(), Some(true));
    }

    #[tokio::test]
    async fn a_taken_offer_answers_its_poller_with_the_claim_its_failure_or_that_none_was_made() {
        let handoffs: Arc<HandOffs<&str>> = Arc::default();
        let mut answered = handoffs.offer(&agent("a", &[7]), "p1");
        let taken = handoffs.take(7);
        assert!(taken.is_some());
        if let Some(taken) = taken {
            taken.hand("nothing queued");
        }
        assert!(matches!(
            answered.handed().await,
            Some(Handed::Answer("nothing queued"))
        ));
        // Failed, the poller is told so (the claim may have committed).
        let mut failed = handoffs.offer(&agent("c", &[7]), "p3");
        if let Some(taken) = handoffs.take(7) {
            taken.fail(Error::Unavailable("lost".into()));
        }
        assert!(matches!(failed.handed().await, Some(Handed::Failed(_))));
        // Dropped unanswered (its claim failed): the poller looks itself.
        let mut dropped = handoffs.offer(&agent("b", &[7]), "p2");
        drop(handoffs.take(7));
        assert!(dropped.handed().await.is_none());
    }

    #[test]
    fn a_name_is_guessed_as_the_target_it_last_was_in_its_org() {
        let handoffs = HandOffs::<&str>::default();
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
