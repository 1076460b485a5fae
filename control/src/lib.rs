//! sealrun's control-plane domain: orgs, tokens, pools and agents, targets
//! and their pinned keys, sealed secrets, the run queue and its leases,
//! redacted logs and the hash-chained audit trail.
//!
//! Every operation is a method of [`Control`] that takes the caller's
//! identity ([`User`], [`Member`], [`Agent`], [`Enroller`]), checks it
//! against the one [permission table](permissions::TABLE), and returns a
//! typed [`Error`] (not found, invalid, conflict, forbidden...). This crate
//! knows nothing of HTTP: the `api` crate is an adapter over it (routes,
//! extractors, TLS, the one mapping of [`Error`] to a status code), and so is
//! its Slack integration. All SQL lives in the storage seam, `store`, one
//! module per concern (SQLite today).
//!
//! ```
//! use sealrun_control::{Action, Control, Error, Member, OpenOptions, Settings};
//! use sealrun_wire::admin::{Role, TokenCreate};
//! use sealrun_wire::run::RunRequest;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let token_file = dir.path().join("admin.token");
//! let control = Control::open(OpenOptions {
//!     data_dir: dir.path(),
//!     org_name: "acme",
//!     admin_token_file: Some(&token_file),
//!     settings: Settings::default(),
//!     database: None,
//! })?;
//!
//! // The first start created the org and its one-time admin token.
//! let token = std::fs::read_to_string(&token_file)?;
//! let attempt = sealrun_control::Attempt { method: "GET", path: "/v1/whoami" };
//! let admin = control.authenticate(token.trim(), attempt).await?.into_user()?;
//! assert_eq!(admin.org, "acme");
//!
//! // An auditor may read runs but not submit them; the refusal is typed.
//! let issued = control
//!     .create_token(&admin, TokenCreate { name: "soc".into(), user: None, role: Some(Role::Auditor), expires_in_secs: None })
//!     .await?;
//! let auditor = control.authenticate(&issued.token, attempt).await?.into_user()?;
//! let request = RunRequest {
//!     target: "db".into(),
//!     argv: vec!["true".into()],
//!     env: Default::default(),
//!     secrets: vec![],
//!     timeout_secs: None,
//!     image: None,
//!     require_agent: false,
//!     stdin: false,
//!     break_glass: None,
//!     runbook: None,
//!     signed: None,
//! };
//! let refused = control.submit_run(&Member::from(&auditor), request.clone()).await;
//! assert!(matches!(refused, Err(Error::Forbidden(_))));
//! assert!(!Action::SubmitRuns.allows(Role::Auditor));
//!
//! // An admin may, but there is no target `db` yet.
//! let missing = control.submit_run(&Member::from(&admin), request).await.unwrap_err();
//! assert_eq!(missing.to_string(), "no target named \"db\"");
//! control.close();
//! # Ok(())
//! # }
//! ```
//!
//! **Layering.** `service` (the [`Control`] struct) depends only on modules
//! that know nothing of it (`store`, `settings`, `dispatch`, `credentials`,
//! `slack_keys`, `orgs`); each concern (`admin`, `targets`, `runbooks`, `runs`, `agents`,
//! `audit`, `auth`, `slack`, `leases`) adds its methods to [`Control`] in its
//! own module and calls the rules in `queue` and `logs`, which call `store`.
//! `caller`, `permissions`, `error` and `token` are at the bottom.
//! No two modules import each other: the workspace test
//! `tests/architecture.rs` builds the module import graph of every crate and
//! fails on a cycle.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admin;
mod agents;
mod approval;
mod approvals;
mod audit;
mod auth;
mod caller;
mod credentials;
mod dispatch;
mod error;
mod leases;
mod logs;
mod orgs;
mod passkeys;
mod people;
pub mod permissions;
mod possession;
mod queue;
mod readiness;
mod relay;
mod runbooks;
mod runs;
mod service;
mod sessions;
mod settings;
mod signing;
mod slack;
mod slack_approvals;
mod slack_keys;
mod stdin;
mod store;
mod targets;
mod token;

pub use agents::Dispatched;
pub use approvals::ApprovalFilter;
pub use audit::AuditScope;
pub use auth::Attempt;
pub use caller::{Agent, Enroller, Member, Principal, User};
pub use dispatch::RunWatch;
pub use error::{Cause, Error, Object, OpenError};
pub use leases::Gauges;
pub use logs::Page;
pub use orgs::create_org;
pub use passkeys::OwnPasskey;
pub use permissions::Action;
pub use relay::{FEEDER_GRACE, RELAY_CHUNKS, StdinBroken, StdinStream};
pub use runs::{Cancellation, RunFilter, RunTail, Submitted};
pub use service::{Control, OpenOptions};
pub use sessions::{SESSION_TTL, Session};
#[cfg(any(test, feature = "fault-injection"))]
pub use settings::Faults;
pub use settings::Settings;
pub use slack::{SlackNotice, check_slack_id};
pub use slack_approvals::{ApprovalPost, MAX_POST_ATTEMPTS};
pub use slack_keys::{Workspace, ensure_slack_key};
pub use store::{DB_FILE, DatabaseUrl, MAX_READERS, StoreMigration, migrate_store};
pub use targets::Written;
