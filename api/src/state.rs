//! What every request handler shares: the domain and the edge's metrics.

use crate::metrics::Metrics;
use sealrun_control::{Control, Settings};
use std::sync::Arc;

/// The HTTP edge's state (cheap to clone): the control plane's domain and
/// the request metrics. Feature adapters (Slack) keep state of their own
/// and reach this one through `FromRef`.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) control: Arc<Control>,
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    pub(crate) fn settings(&self) -> &Settings {
        self.control.settings()
    }
}
