//! sealrun's control plane at the edge: the HTTPS API that operators submit
//! runs to and agents inside private networks long-poll for work, and the
//! Slack integration.
//!
//! This crate is an adapter over the domain crate `sealrun-control` (orgs,
//! tokens, agents, targets, sealed secrets, the run queue, logs, the audit
//! chain and their storage): routing, extractors that parse requests into
//! typed values, TLS, metrics, and the one mapping of a domain error to an
//! HTTP status (`From<sealrun_control::Error> for ApiError`). It holds no SQL
//! and no rule of its own. See `README.md` for the API and
//! `docs/openapi.yaml` for every route.
//!
//! ```
//! use sealrun_api::{Server, ServerConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let token_file = dir.path().join("admin.token");
//! let config = ServerConfig {
//!     data_dir: dir.path().join("data"),
//!     listen: "127.0.0.1:0".parse()?,
//!     admin_token_file: Some(token_file.clone()),
//!     ..ServerConfig::default()
//! };
//! let server = Server::bind(config).await?;
//! let url = format!("https://localhost:{}", server.local_addr().port());
//!
//! // Clients pin the generated CA and use the one-time admin token.
//! let ca = reqwest::Certificate::from_pem(&std::fs::read(server.ca_cert_path().unwrap())?)?;
//! let client = reqwest::Client::builder().add_root_certificate(ca).build()?;
//! let token = std::fs::read_to_string(&token_file)?.trim().to_owned();
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(server.run(async {
//!     let _ = stopped.await;
//! }));
//!
//! let me: sealrun_wire::admin::Whoami = client
//!     .get(format!("{url}/v1/whoami"))
//!     .bearer_auth(&token)
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert_eq!((me.org.as_str(), me.role.as_str()), ("default", "admin"));
//!
//! let _ = stop.send(());
//! running.await??;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod clock;
mod config;
mod connections;
mod console;
mod error;
mod extract;
mod follow;
mod metrics;
mod routes;
mod server;
mod slack;
mod state;
mod tls;

pub use config::{ConnectionLimits, MetricsAccess, ServerConfig, TlsConfig};
pub use error::Error;
pub use sealrun_control::{DatabaseUrl, OpenError, Settings, StoreMigration, migrate_store};
pub use server::Server;
pub use slack::DEFAULT_API_URL as SLACK_API_URL;

/// Creates the org `name` in the data directory `data_dir` and returns its
/// one-time admin token. Works while a server is running on the same
/// directory (SQLite serializes the two writers).
///
/// This is the offline `sealrun server create-org` command; the token is
/// shown only here, the database keeps only its hash.
pub fn create_org(
    data_dir: &std::path::Path,
    database: Option<&sealrun_control::DatabaseUrl>,
    name: &str,
) -> Result<String, Error> {
    Ok(sealrun_control::create_org(data_dir, database, name)?)
}

/// The files every replica of a shared PostgreSQL database must hold alike,
/// made by [`replica_files`].
#[derive(Debug, Clone)]
pub struct ReplicaFiles {
    /// The CA agents and CLIs pin (`--ca-cert`).
    pub ca_cert: std::path::PathBuf,
    /// The CA's key: not for the replicas; kept to issue a new certificate.
    pub ca_key: std::path::PathBuf,
    /// The certificate each replica presents (`tls_cert`).
    pub cert: std::path::PathBuf,
    /// Its key (`tls_key`).
    pub key: std::path::PathBuf,
    /// The key Slack secrets are sealed to, copied into each replica's
    /// data directory.
    pub slack_key: std::path::PathBuf,
}

/// Makes, in `dir`, what the replicas of one control plane must share
/// besides the database (`sealrun server replica-files`): a CA, a server
/// certificate it signed for `localhost`, loopback and `hostnames` (the
/// names clients reach the replicas by: the load balancer's, the Service's),
/// and the Slack key. Run again on the same directory it keeps the CA and
/// the Slack key and issues a new certificate only if the names changed or
/// it is near its end, so clients that pinned the CA go on trusting it.
pub fn replica_files(dir: &std::path::Path, hostnames: &[String]) -> Result<ReplicaFiles, Error> {
    let (cert, key, ca_cert) = tls::self_signed(dir, hostnames)?;
    let slack_key = sealrun_control::ensure_slack_key(dir)?;
    Ok(ReplicaFiles {
        ca_key: dir.join("ca.key"),
        ca_cert,
        cert,
        key,
        slack_key,
    })
}
