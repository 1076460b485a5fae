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
    /// The control plane's audit history does not extend what this agent
    /// saw before: rewritten or cut. The agent takes no more work.
    #[error(
        "refusing all work: {0}. Someone changed the control plane's audit trail (or its database) behind its back, or the control plane is not the one this agent saw before; investigate before starting this agent again (its state directory remembers what it saw)"
    )]
    AuditRewritten(sealrun_wire::audit::WitnessError),
}
