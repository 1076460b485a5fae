//! What every request handler shares: the domain, the edge's metrics and
//! what `/health` and `/metrics` need.

use crate::connections::Registry;
use crate::error::ApiError;
use crate::metrics::{Metrics, MetricsToken};
use sealrun_control::{Control, Settings};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The HTTP edge's state (cheap to clone): the control plane's domain and
/// the request metrics. Feature adapters (Slack) keep state of their own
/// and reach this one through `FromRef`.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) control: Arc<Control>,
    pub(crate) metrics: Arc<Metrics>,
    /// Each listener's connections, by name (`api`, `metrics`).
    pub(crate) listeners: Arc<Vec<(&'static str, Arc<Registry>)>>,
    /// The token `/metrics` on the API address demands; `None`: it is not
    /// served there.
    pub(crate) metrics_token: Option<Arc<MetricsToken>>,
    pub(crate) readiness: Arc<Readiness>,
}

impl AppState {
    pub(crate) fn settings(&self) -> &Settings {
        self.control.settings()
    }
}

/// How long a readiness verdict is reused: `/health` is unauthenticated and
/// each check writes, so callers share one check a second however many ask.
const READINESS_TTL: Duration = Duration::from_secs(1);

/// The latest readiness verdict and when it was reached.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    latest: tokio::sync::Mutex<Option<(Instant, Result<(), ApiError>)>>,
}

impl Readiness {
    /// Whether the control plane is ready (reads and writes), checked at
    /// most once per [`READINESS_TTL`]; concurrent callers wait for the one
    /// check in progress.
    pub(crate) async fn check(&self, control: &Control) -> Result<(), ApiError> {
        let mut latest = self.latest.lock().await;
        if let Some((at, verdict)) = latest.as_ref() {
            if at.elapsed() < READINESS_TTL {
                return verdict.clone();
            }
        }
        let verdict = control.ready().await.map_err(ApiError::from);
        *latest = Some((Instant::now(), verdict.clone()));
        verdict
    }
}
