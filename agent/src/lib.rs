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
//! - [`control`]: run control: the one [`control::Stop`] type (its variant order
//!   is its precedence) and the [`control::RunControl`] handle through which the
//!   daemon and the uploader stop a run. It imports nothing from the agent, so
//!   the executor and the uploader both use it without importing each other.
//! - [`runtime`]: the trait a container runtime implements; [`docker`] implements
//!   it with bollard and documents the container hardening and how secrets
//!   reach the command (a bundle on stdin, read by the `sealrun-init` shim, never
//!   the container's configuration); [`init`] finds and checks the shim;
//!   [`image`] builds the local base image (`sealrun dev` and the tests use it).
//! - [`output`] and [`upload`]: redaction, batching, the bounded buffer and the
//!   uploader, which together give backpressure instead of loss.
//! - [`client`]: the HTTPS client of the agent protocol; [`backoff`]: its retries;
//!   [`https`]: which servers it trusts (a pinned CA, else the system bundle),
//!   the one rule the `sealrun` CLI's client follows too.
//! - [`state`]: the state directory (identity file and key files).
//!
//! - [`AgentConfig`] and [`Error`] live in their own modules and are re-exported
//!   here, and [`defaults`] holds the one definition of the agent's defaults.
//!
//! No two modules import each other, directly or through others: the
//! workspace test `tests/architecture.rs` reads the module import graph of
//! every crate (`mod` declarations, `use` trees and paths in code) and fails
//! on any cycle.
//!
//! The agent depends on `sealrun-wire` for the protocol and never on the server.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backoff;
pub mod client;
mod config;
pub mod control;
pub mod daemon;
pub mod defaults;
pub mod docker;
mod error;
pub mod executor;
pub mod gate;
pub mod https;
pub mod image;
pub mod init;
pub mod output;
pub mod pool;
pub mod report;
pub mod runtime;
pub mod state;
pub mod upload;
pub mod witness;

pub use config::{AgentConfig, TargetConfig};
pub use error::Error;

use std::future::Future;

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
