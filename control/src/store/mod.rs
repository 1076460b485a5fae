//! The storage seam: every SQL statement of the control plane lives in a
//! module below, one per concern, each a set of functions over a [`Tx`].
//!
//! The domain modules decide *what* happens (rules, state machine, audit
//! entries) and call these functions to read and change rows; they never
//! see a connection. SQLite is the backend today ([`Db`]: one group-committing
//! writer thread plus reader connections; each domain operation is one
//! closure run in one transaction).
//!
//! What a second backend (PostgreSQL) takes: `Tx` becomes a handle over
//! either connection kind (an enum, or a trait object with a method per
//! function below), each function here gets its PostgreSQL statement next to
//! its SQLite one, and `Db` runs the same closures in a PostgreSQL
//! transaction (a client driven off the server's runtime, on the
//! writer's and readers' threads, or the closures made async). The domain modules and the HTTP edge do not change: they see
//! only these functions' signatures, which speak domain types, never SQL
//! types.

/// The parameters of one statement, as rusqlite's `params!` (each argument
/// is borrowed, so temporaries live to the end of the call).
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::sql::Param]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::store::sql::Param),+] as &[&dyn $crate::store::sql::Param]
    };
}

mod broadcast;
mod copy;
mod db;
mod pg;
mod pg_engine;
mod pg_schema;
mod schema;
mod sql;
mod tx;
mod writer;

#[cfg(test)]
mod migration_tests;

pub(crate) mod agents;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod health;
pub(crate) mod inputs;
pub(crate) mod logs;
pub(crate) mod orgs;
pub(crate) mod passkeys;
pub(crate) mod pools;
pub(crate) mod runbooks;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod slack;
pub(crate) mod targets;
pub(crate) mod tokens;
pub(crate) mod users;

pub(crate) use broadcast::{Broadcast, Heard};
pub(crate) use copy::check_installation;
pub use copy::{StoreMigration, migrate_store};
pub use db::DB_FILE;
pub(crate) use db::{Db, Standalone, now_ms};
pub use pg::DatabaseUrl;
pub use tx::Tx;
pub use writer::MAX_READERS;
