//! The JSON types spoken over HTTPS between sealrun's control plane (`api`),
//! its agents (`agent`) and its clients (the `sealrun` CLI, Slack).
//!
//! This crate is the only thing the agent and the server share, which is what
//! keeps the dependency arrow pointing one way: `agent -> wire <- api`.
//! It holds data and (de)serialisation only, no I/O, and the few pure rules
//! that every side must apply identically, so that each is written once:
//! [`names`] (object names, labels, environment variable names), [`image`]
//! (image references and which ones a target allows), [`shell`]
//! (splitting typed command lines into words, quoting an argv for display) and
//! [`text`] (showing untrusted text to a person without a terminal or chat
//! client obeying the control characters in it).
//!
//! Modules import one another only downwards (`slack -> admin -> agent -> run`,
//! `admin -> role`, `approval -> role, run, names`, `log -> bytes`, `log -> run`,
//! `shell -> text`) and never the crate root, so
//! there is no import cycle (checked by reading the `crate::` paths of
//! `src/*.rs`, as the agent's `tests/layering.rs` does for the agent).
//!
//! ```
//! use sealrun_wire::run::RunRequest;
//!
//! let req: RunRequest = serde_json::from_str(
//!     r#"{"target": "prod-db", "argv": ["psql", "-c", "select 1"]}"#,
//! ).unwrap();
//! assert_eq!(req.target, "prod-db");
//! assert!(req.secrets.is_empty());
//! // Where a run comes from is the server's to say, not the client's.
//! let claimed = r#"{"target": "prod-db", "argv": ["true"], "source": "slack"}"#;
//! assert!(serde_json::from_str::<RunRequest>(claimed).is_err());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod agent;
pub mod approval;
pub mod audit;
pub mod authority;
pub mod bytes;
pub mod error;
pub mod image;
pub mod log;
pub mod names;
pub mod passkey;
pub mod people;
pub mod report;
pub mod role;
pub mod rule;
pub mod run;
pub mod runbook;
pub mod shell;
pub mod slack;
pub mod target;
pub mod text;
pub mod trust;

pub use bytes::Base64Bytes;
pub use error::ErrorBody;

/// Header an agent uses to send its protocol version; the server refuses
/// versions it does not speak with `426 Upgrade Required`.
pub const PROTOCOL_VERSION_HEADER: &str = "x-sealrun-protocol";

/// The protocol version this crate describes.
pub const PROTOCOL_VERSION: u32 = 1;
