//! Lease expiry and the control plane's health, run in the background or
//! asked by monitoring.

use crate::error::Error;
use crate::queue;
use crate::service::Control;
use crate::settings::millis;
use crate::store::{self, now_ms};
use sealrun_wire::run::RunStatus;

/// Since when the control plane has been able to hear from agents without
/// interruption. A lease is judged only once that has lasted a whole lease:
/// leases keep their wall-clock expiry while the control plane is down (a
/// crash, a stopped process, a disk that cannot write), and judging them
/// before agents could heartbeat again would lose every healthy run.
#[derive(Debug)]
struct Hearing {
    /// The start, or the end of the latest stall.
    since: i64,
    /// When the previous sweep ran (Unix ms).
    last_sweep: i64,
    /// Sweeps further apart than this mean the control plane itself
    /// stalled (stopped, suspended, its writer blocked): one heartbeat
    /// interval past the sweep interval, since a lease outlasts two
    /// heartbeats, so shorter stalls cost an agent at most the one heartbeat
    /// a lease is sized to survive.
    max_gap: i64,
    /// The lease.
    lease: i64,
}

impl Hearing {
    fn new(now: i64, max_gap: i64, lease: i64) -> Hearing {
        Hearing {
            since: now,
            last_sweep: now,
            max_gap,
            lease,
        }
    }

    /// Whether leases may be judged at `now`, a sweep; `writable_since`:
    /// since when the store has made every write durable (`None`: it does
    /// not now), as heartbeats that could not be written were not heard.
    fn may_judge(&mut self, now: i64, writable_since: Option<i64>) -> bool {
        if now.saturating_sub(self.last_sweep) > self.max_gap {
            self.since = now;
        }
        self.last_sweep = now;
        let Some(writable) = writable_since else {
            return false;
        };
        now >= self.since.max(writable).saturating_add(self.lease)
    }
}

/// What `/metrics` shows of the database (org-agnostic counts only).
#[derive(Debug, Default)]
pub struct Gauges {
    /// Runs in each status, every status listed.
    pub runs_by_status: Vec<(&'static str, u64)>,
    /// Agents connected now.
    pub connected_agents: u64,
    /// Agents' polls held open on this replica with an offer to be handed
    /// a run submitted here (standing, or taken and about to be answered).
    pub polls_waiting: u64,
}

impl Control {
    /// Turns runs whose lease lapsed into `lost`, and runs queued past the
    /// queue TTL or waiting for approval past their request's expiry into
    /// `expired`, every `lease_sweep_interval`, until
    /// shutdown starts. Leases are judged only while the control plane has
    /// been able to hear from agents for a whole lease: not in the first
    /// lease after it starts, after it stalled for longer than a heartbeat
    /// interval, or after its store could not write.
    pub async fn sweep_leases(&self) {
        let mut tick = tokio::time::interval(self.settings.lease_sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let hearing = std::sync::Arc::new(std::sync::Mutex::new(Hearing::new(
            now_ms(),
            millis(self.settings.heartbeat_interval + self.settings.lease_sweep_interval),
            millis(self.settings.lease_ttl),
        )));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shutting_down() => return,
            }
            // One writer job (one commit, one fsync) for both sweeps. The
            // stall check runs inside it, when the writer gets to it: a
            // writer that was blocked stalled the control plane too.
            let queue_ttl = self.settings.queue_ttl;
            let writable_since = self.db.writable_since();
            let hearing = std::sync::Arc::clone(&hearing);
            let swept = self
                .db
                .write(move |tx| {
                    let now = now_ms();
                    // A poisoned lock judges nothing: losing no run is the
                    // safe side.
                    let judge = hearing
                        .lock()
                        .is_ok_and(|mut h| h.may_judge(now, writable_since));
                    let lost = if judge {
                        queue::expire_leases(tx, now)?
                    } else {
                        Vec::new()
                    };
                    let mut expired = queue::expire_queued(tx, now, queue_ttl)?;
                    expired.extend(crate::approval::expire_pending(tx, now)?);
                    // No write beside it: the run counts can be folded up.
                    store::runs::compact_counts(tx)?;
                    Ok((lost, expired))
                })
                .await;
            match swept {
                Ok((lost, expired)) => {
                    for run in &lost {
                        tracing::warn!(run = %run, "lease expired: run lost");
                        self.watchers.touch(run);
                    }
                    for run in &expired {
                        tracing::warn!(run = %run, "no agent took it (or no one approved it) in time: run expired");
                        self.watchers.touch(run);
                    }
                }
                Err(e) => tracing::error!(error = %e, "lease and queue sweep failed"),
            }
            self.prune_stdin_relays().await;
        }
    }

    /// `Ok` once the database answers a read.
    pub async fn health(&self) -> Result<(), Error> {
        self.db
            .read(|tx| store::orgs::count(tx).map(drop))
            .await
            .map_err(|_| Error::Unavailable("the database does not answer".into()))
    }

    /// Counts for monitoring.
    pub async fn gauges(&self) -> Result<Gauges, Error> {
        let since = self.settings.connected_since(now_ms());
        let polls_waiting = self.handoffs.waiting();
        self.db
            .read(move |tx| {
                let counts = store::runs::count_by_status(tx)?;
                let runs_by_status = RunStatus::ALL
                    .iter()
                    .map(|s| (s.as_str(), counts.get(s.as_str()).copied().unwrap_or(0)))
                    .collect();
                let connected_agents = store::agents::connected(tx, since)?;
                Ok(Gauges {
                    runs_by_status,
                    connected_agents,
                    polls_waiting,
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::Hearing;

    const GAP: i64 = 10_000;
    const LEASE: i64 = 60_000;
    const SWEEP: i64 = 1_000;

    /// Sweeps every second from `from` to `to` (inclusive); the first that
    /// may judge leases.
    fn first_judging(
        h: &mut Hearing,
        from: i64,
        to: i64,
        writable: impl Fn(i64) -> Option<i64>,
    ) -> Option<i64> {
        let mut first = None;
        for now in (from..=to).step_by(SWEEP as usize) {
            if h.may_judge(now, writable(now)) {
                first.get_or_insert(now);
            }
        }
        first
    }

    #[test]
    fn leases_are_not_judged_in_the_first_lease_after_a_start() {
        let mut h = Hearing::new(0, GAP, LEASE);
        assert_eq!(
            first_judging(&mut h, SWEEP, 2 * LEASE, |_| Some(0)),
            Some(LEASE)
        );
    }

    #[test]
    fn a_stall_longer_than_a_heartbeat_interval_gives_a_whole_lease_again() {
        let mut h = Hearing::new(0, GAP, LEASE);
        assert_eq!(
            first_judging(&mut h, SWEEP, LEASE, |_| Some(0)),
            Some(LEASE)
        );
        // Stopped for 90 s: nothing is judged until a lease after it.
        let back = LEASE + 90_000;
        assert_eq!(
            first_judging(&mut h, back, back + 2 * LEASE, |_| Some(0)),
            Some(back + LEASE)
        );
    }

    #[test]
    fn a_stall_of_a_heartbeat_interval_is_not_an_outage() {
        let mut h = Hearing::new(0, GAP, LEASE);
        assert_eq!(
            first_judging(&mut h, SWEEP, LEASE, |_| Some(0)),
            Some(LEASE)
        );
        assert!(h.may_judge(LEASE + GAP, Some(0)));
    }

    #[test]
    fn leases_are_judged_a_whole_lease_after_the_store_writes_again() {
        let mut h = Hearing::new(0, GAP, LEASE);
        assert_eq!(
            first_judging(&mut h, SWEEP, LEASE, |_| Some(0)),
            Some(LEASE)
        );
        let (failing, recovered) = (LEASE + SWEEP, LEASE + 5 * SWEEP);
        let writable = |now: i64| (now >= recovered).then_some(recovered);
        assert_eq!(
            first_judging(&mut h, failing, recovered + 2 * LEASE, writable),
            Some(recovered + LEASE)
        );
    }
}
