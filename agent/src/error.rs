//! [`Error`]: why the agent could not start or had to stop.

use crate::{client, init, runtime, state};

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The state directory or identity file.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// A target's key file.
    #[error("key of target {target}: {source}")]
    Key {
        /// The target.
        target: String,
        /// The cause.
        source: sealrun_vault::Error,
    },
    /// The container engine.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The `sealrun-init` shim is missing or unusable.
    #[error(transparent)]
    Init(#[from] init::InitError),
    /// The HTTPS client could not be built.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The control plane refused a call that cannot be retried.
    #[error("{during}: {source}")]
    Api {
        /// The call (`register`, `connect`, `poll`).
        during: &'static str,
        /// The refusal.
        source: client::CallError,
    },
    /// The control plane no longer accepts the agent's token.
    #[error("{0}")]
    Revoked(String),
}
