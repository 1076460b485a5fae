//! sealrun's agent: lives inside a private network, dials out to the control
//! plane over HTTPS, and runs each command it is assigned in a fresh, hardened
//! container that is destroyed afterwards, streaming the command's output through
//! the redactor before a byte of it leaves the host.
//!
//! The binary (`sealrun agent`) builds an [`AgentConfig`] and calls [`run`] with a
//! future that resolves on SIGINT/SIGTERM:
//!
//! ```
//! use sealrun_agent::{AgentConfig, TargetConfig};
//! use std::time::Duration;
//!
//! let mut config = AgentConfig::new("https://sealrun.internal:8443", "/var/lib/sealrun-agent", "db-agent-1");
//! config.ca_cert = Some("/etc/sealrun/ca.pem".into());
//! config.enrollment_token = Some("sr_enroll_...".into());
//! config.targets.push(TargetConfig::new("prod-db"));
//! assert_eq!(config.concurrency, 4);
//! assert_eq!(config.shutdown_grace, Duration::from_secs(30));
//! assert!(config.validate().is_ok());
//!
//! # async fn start(config: AgentConfig) -> Result<(), sealrun_agent::Error> {
//! // In the binary: runs until the future resolves, then drains and deregisters.
//! sealrun_agent::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! # Layout
//!
//! - [`daemon`]: enrollment, connection, the poll loop, heartbeats, shutdown.
//! - [`executor`]: one run from assignment to outcome; policy (timeouts, cancel,
//!   what to report).
//! - [`runtime`]: the trait a container runtime implements; [`docker`] implements
//!   it with bollard and documents the container hardening and how secrets
//!   reach the command (a bundle on stdin, read by the `sealrun-init` shim, never
//!   the container's configuration); [`init`] finds and checks the shim;
//!   [`image`] builds the local base image (`sealrun dev` and the tests use it).
//! - [`output`] and [`upload`]: redaction, batching, the bounded buffer and the
//!   uploader, which together give backpressure instead of loss.
//! - [`client`]: the HTTPS client of the agent protocol; [`backoff`]: its retries.
//! - [`state`]: the state directory (identity file and key files).
//!
//! The agent depends on `sealrun-wire` for the protocol and never on the server.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backoff;
pub mod client;
pub mod daemon;
pub mod docker;
pub mod executor;
pub mod image;
pub mod init;
pub mod output;
pub mod runtime;
pub mod state;
pub mod upload;

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// A target this agent serves, with where its keypair lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// Target name, as declared on the control plane.
    pub name: String,
    /// Key file; `None` means `<state_dir>/keys/<name>.key`. Generated (mode 0600)
    /// on first start if absent.
    pub key_file: Option<PathBuf>,
}

impl TargetConfig {
    /// A target whose key lives in the state directory.
    pub fn new(name: impl Into<String>) -> TargetConfig {
        TargetConfig {
            name: name.into(),
            key_file: None,
        }
    }
}

/// How to run the agent.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `https://host:port` of the control plane.
    pub server_url: String,
    /// CA certificate (PEM) to pin; when given it is the only one trusted. Without
    /// it the system's CA bundle is used.
    pub ca_cert: Option<PathBuf>,
    /// Holds `agent.json` (agent id and token, mode 0600) and `keys/<target>.key`.
    pub state_dir: PathBuf,
    /// Needed only while `state_dir` holds no identity yet.
    pub enrollment_token: Option<String>,
    /// Agent name shown to admins (unique in the org).
    pub name: String,
    /// Targets served.
    pub targets: Vec<TargetConfig>,
    /// Runs executed at once.
    pub concurrency: u32,
    /// Docker endpoint (`unix:///path` or `tcp://host:port`); `None` means the
    /// local socket.
    pub docker_host: Option<String>,
    /// On shutdown: how long runs in progress get to finish before they are killed.
    pub shutdown_grace: Duration,
    /// Agent-side cap on any run's timeout.
    pub max_run_timeout: Option<Duration>,
    /// The static `sealrun-init` shim every run container starts with (a path on
    /// the Docker engine's host); `None` searches next to the current executable,
    /// then [`init::SEARCH_PATHS`]. The agent refuses to start without a usable one.
    pub init_binary: Option<PathBuf>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server_url", &self.server_url)
            .field("ca_cert", &self.ca_cert)
            .field("state_dir", &self.state_dir)
            .field(
                "enrollment_token",
                &self.enrollment_token.as_ref().map(|_| "***"),
            )
            .field("name", &self.name)
            .field("targets", &self.targets)
            .field("concurrency", &self.concurrency)
            .field("docker_host", &self.docker_host)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_run_timeout", &self.max_run_timeout)
            .field("init_binary", &self.init_binary)
            .finish()
    }
}

impl AgentConfig {
    /// A configuration with defaults: no pinned CA, no enrollment token, no
    /// targets, 4 runs at once, the local Docker socket, 30 s of shutdown grace,
    /// no timeout cap, the shim found in the default places.
    pub fn new(
        server_url: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        name: impl Into<String>,
    ) -> AgentConfig {
        AgentConfig {
            server_url: server_url.into(),
            ca_cert: None,
            state_dir: state_dir.into(),
            enrollment_token: None,
            name: name.into(),
            targets: Vec::new(),
            concurrency: 4,
            docker_host: None,
            shutdown_grace: Duration::from_secs(30),
            max_run_timeout: None,
            init_binary: None,
        }
    }

    /// Checks what can be checked without touching disk or network.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.name.trim().is_empty() {
            return bad("the agent name is empty".into());
        }
        if self.targets.is_empty() {
            return bad("the agent serves no target: name at least one".into());
        }
        let mut seen = HashSet::new();
        for t in &self.targets {
            if !seen.insert(t.name.as_str()) {
                return bad(format!("target {} is listed twice", t.name));
            }
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        Ok(())
    }
}

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
        source: client::ApiError,
    },
    /// The control plane no longer accepts the agent's token.
    #[error("{0}")]
    Revoked(String),
}

/// Runs the agent until `shutdown` resolves (or a fatal error), then stops
/// polling, gives running commands `shutdown_grace` to finish, kills and reports
/// the rest, removes their containers and deregisters.
///
/// Errors are returned for what an operator must fix: bad configuration, an
/// unreadable state directory, a missing or unusable `sealrun-init` shim, no
/// Docker engine, an enrollment refused, a
/// revoked token. An unreachable control plane is not an error: the agent retries
/// with backoff until it answers or `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    daemon::run(config, shutdown).await
}
