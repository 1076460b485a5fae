//! sealrun's control plane: the HTTPS API that operators submit runs to and
//! agents inside private networks long-poll for work.
//!
//! It keeps orgs, role-scoped tokens, agent pools, targets, sealed secrets it
//! cannot read, a run queue with leases, redacted run output and a
//! hash-chained audit trail, all in one SQLite database in one data
//! directory. See `README.md` for the API, the run state machine and the
//! trust boundaries, and `docs/openapi.yaml` for every route.
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

mod audit;
mod auth;
mod config;
mod db;
mod dispatch;
mod error;
mod extract;
mod logs;
mod metrics;
mod names;
mod org;
mod queue;
mod routes;
mod schema;
mod server;
mod slack;
mod state;
mod tls;
mod token;

pub use config::{ServerConfig, Settings, TlsConfig};
pub use error::Error;
pub use org::create_org;
pub use server::Server;
