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
            match self.db.write(|tx| queue::expire_leases(tx, now_ms())).await {
                Ok(lost) => {
                    for run in &lost {
                        tracing::warn!(run = %run, "lease expired: run lost");
                        self.watchers.touch(run);
                    }
                }
                Err(e) => tracing::error!(error = %e, "lease sweep failed"),
            }
            let ttl = i64::try_from(self.settings.queue_ttl.as_millis()).unwrap_or(i64::MAX);
            match self
                .db
                .write(move |tx| queue::expire_queued(tx, now_ms(), ttl))
                .await
            {
                Ok(expired) => {
                    for run in &expired {
                        tracing::warn!(run = %run, "no agent took it in time: run expired");
                        self.watchers.touch(run);
                    }
                }
                Err(e) => tracing::error!(error = %e, "queue expiry sweep failed"),
            }
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
        let window =
            i64::try_from(self.settings.connected_window().as_millis()).unwrap_or(i64::MAX);
        self.db
            .read(move |tx| {
                let counts = store::runs::count_by_status(tx)?;
                let runs_by_status = RunStatus::ALL
                    .iter()
                    .map(|s| (s.as_str(), counts.get(s.as_str()).copied().unwrap_or(0)))
                    .collect();
                let connected_agents =
                    store::agents::connected(tx, now_ms().saturating_sub(window))?;
                Ok(Gauges {
                    runs_by_status,
                    connected_agents,
                })
            })
            .await
    }
}
