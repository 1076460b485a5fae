//! The storage seam: every SQL statement of the control plane lives in a
//! module below, one per concern, each a set of functions over a [`Tx`].
//!
//! The domain modules decide *what* happens (rules, state machine, audit
//! entries) and call these functions to read and change rows; they never
//! see a connection. SQLite is the backend today ([`Db`]: one group-committing
//! writer thread plus reader connections). A second backend (PostgreSQL)
//! implements the same functions behind the same [`Tx`] and [`Db`] handles,
//! and neither the domain nor the HTTP edge changes.

mod db;
mod schema;
mod tx;

pub(crate) mod agents;
pub(crate) mod audit;
pub(crate) mod logs;
pub(crate) mod orgs;
pub(crate) mod pools;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod slack;
pub(crate) mod targets;
pub(crate) mod tokens;

pub use db::DB_FILE;
pub(crate) use db::{Db, Standalone, now_ms};
pub use tx::Tx;
