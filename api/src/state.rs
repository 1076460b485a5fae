//! What every request handler shares.

use crate::auth::{AuthCache, FailureThrottle};
use crate::config::Settings;
use crate::db::Db;
use crate::dispatch::{PollWakeups, RunWatchers};
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::watch;

/// Shared server state (behind an `Arc`, cloned into every handler).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) settings: Settings,
    pub(crate) wakeups: PollWakeups,
    pub(crate) watchers: RunWatchers,
    pub(crate) metrics: Metrics,
    pub(crate) failures: FailureThrottle,
    pub(crate) auth: AuthCache,
    /// The Slack integration (sealing key, opened signing secrets, HTTP client).
    pub(crate) slack: crate::slack::Slack,
    /// Becomes `true` when shutdown starts; long polls and log streams end.
    pub(crate) shutdown: watch::Receiver<bool>,
}

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    /// Resolves once shutdown has started.
    pub(crate) async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which also means shutdown.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}
