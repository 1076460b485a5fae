//! Lease expiry and the control plane's health, run in the background or
//! asked by monitoring.

use crate::error::Error;
use crate::queue;
use crate::service::Control;
use crate::store::{self, now_ms};
use sealrun_wire::run::RunStatus;

/// What `/metrics` shows of the database (org-agnostic counts only).
#[derive(Debug, Default)]
pub struct Gauges {
    /// Runs in each status, every status listed.
    pub runs_by_status: Vec<(&'static str, u64)>,
    /// Agents connected now.
    pub connected_agents: u64,
}

impl Control {
    /// Turns runs whose lease lapsed into `lost`, and runs queued past the
    /// queue TTL into `expired`, every `lease_sweep_interval`, until
    /// shutdown starts.
    pub async fn sweep_leases(&self) {
        let mut tick = tokio::time::interval(self.settings.lease_sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shutting_down() => return,
            }
            // One writer job (one commit, one fsync) for both sweeps.
            let queue_ttl = self.settings.queue_ttl;
            let swept = self
                .db
                .write(move |tx| {
                    let now = now_ms();
                    let lost = queue::expire_leases(tx, now)?;
                    let expired = queue::expire_queued(tx, now, queue_ttl)?;
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
                        tracing::warn!(run = %run, "no agent took it in time: run expired");
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
                })
            })
            .await
    }
}
