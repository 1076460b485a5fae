//! [`Tx`]: the handle every store function takes.

use super::pg::PgTx;
use super::sql::{self, Optional as _, Param, Result, Row, SqlError, bind};
use std::cell::{Cell, RefCell};

/// A transaction of the writer, or a reader's snapshot: what the domain
/// hands to store functions. Only the store modules can reach the
/// connection inside, so only they can say SQL.
pub struct Tx<'c> {
    conn: Conn<'c>,
    /// The head of each org's audit chain as this transaction last appended
    /// it: the next append in the same transaction need not read it back (a
    /// round trip on PostgreSQL). Exact because no other writer can append
    /// while the transaction is open (SQLite's one writer, PostgreSQL's
    /// write lock held exclusively, or `AUDIT_LOCK` while a side-by-side
    /// transaction appends) and because a job rolled back forgets it
    /// ([`Tx::forget_job`]).
    audit_heads: RefCell<Vec<(i64, u64, String)>>,
    /// Whether audit entries are appended when the transaction commits
    /// rather than when a job makes them ([`Tx::defers_appends`]).
    defers: bool,
    /// The entries left for then, in the order the jobs made them.
    deferred: RefCell<Vec<PendingAppend>>,
    /// How many of them the jobs before the running one left.
    job_mark: Cell<usize>,
}

/// An audit entry made by a job of a transaction that appends them as it
/// commits: everything but its place in the chain.
#[derive(Debug)]
pub(super) struct PendingAppend {
    pub(super) org_id: i64,
    pub(super) at_ms: i64,
    pub(super) actor: String,
    pub(super) action: String,
    pub(super) subject: String,
    pub(super) detail: String,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Which database a [`Tx`] runs on, for the few statements whose SQL
/// differs between the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl<'c> Tx<'c> {
    fn new(conn: Conn<'c>, defers: bool) -> Tx<'c> {
        Tx {
            conn,
            audit_heads: RefCell::default(),
            defers,
            deferred: RefCell::default(),
            job_mark: Cell::new(0),
        }
    }

    pub(super) fn sqlite(conn: &'c rusqlite::Connection) -> Tx<'c> {
        Tx::new(Conn::Sqlite(conn), false)
    }

    pub(super) fn postgres(conn: &'c RefCell<PgTx<'c>>) -> Tx<'c> {
        Tx::new(Conn::Postgres(conn), false)
    }

    /// A PostgreSQL transaction that may run beside other replicas' (it
    /// holds [`WRITE_LOCK`](super::pg::WRITE_LOCK) shared): its audit
    /// entries are appended as it commits, under a lock of their own, so
    /// that the chain's head is read and extended by one transaction at a
    /// time while everything before runs side by side (see
    /// `audit::append_deferred`).
    pub(super) fn postgres_beside(conn: &'c RefCell<PgTx<'c>>) -> Tx<'c> {
        Tx::new(Conn::Postgres(conn), true)
    }

    /// The name of org `id` if this connection read it before (PostgreSQL
    /// only: there a read is a round trip, and ids are never reused).
    pub(super) fn known_org_name(&self, id: i64) -> Option<String> {
        match self.conn {
            Conn::Sqlite(_) => None,
            Conn::Postgres(c) => c.borrow().known_org_name(id),
        }
    }

    /// Remembers org `id`'s name for [`Tx::known_org_name`].
    pub(super) fn know_org_name(&self, id: i64, name: &str) {
        if let Conn::Postgres(c) = self.conn {
            c.borrow_mut().know_org_name(id, name);
        }
    }

    /// Whether audit entries wait for the transaction's end
    /// ([`Tx::postgres_beside`]).
    pub(super) fn defers_appends(&self) -> bool {
        self.defers
    }

    /// Leaves `entry` to be appended when the transaction commits.
    pub(super) fn defer_append(&self, entry: PendingAppend) {
        self.deferred.borrow_mut().push(entry);
    }

    /// The entries left to be appended, taken.
    pub(super) fn take_deferred(&self) -> Vec<PendingAppend> {
        self.job_mark.set(0);
        std::mem::take(&mut *self.deferred.borrow_mut())
    }

    /// A job begins: what it leaves from here on is its own
    /// ([`Tx::forget_job`]).
    pub(super) fn begin_job(&self) {
        self.job_mark.set(self.deferred.borrow().len());
        if let Conn::Postgres(c) = self.conn {
            c.borrow_mut().begin_job();
        }
    }

    /// The backend this transaction runs on.
    pub(crate) fn backend(&self) -> Backend {
        match self.conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// The head (`seq`, `hash`) of org `org_id`'s audit chain, if this
    /// transaction appended to it (see [`Tx::remember_audit_head`]).
    pub(super) fn audit_head(&self, org_id: i64) -> Option<(u64, String)> {
        self.audit_heads
            .borrow()
            .iter()
            .find(|(org, _, _)| *org == org_id)
            .map(|(_, seq, hash)| (*seq, hash.clone()))
    }

    /// Remembers the entry this transaction just appended to org `org_id`'s
    /// audit chain as its head.
    pub(super) fn remember_audit_head(&self, org_id: i64, seq: u64, hash: &str) {
        let mut heads = self.audit_heads.borrow_mut();
        heads.retain(|(org, _, _)| *org != org_id);
        heads.push((org_id, seq, hash.to_owned()));
    }

    /// Forgets what the transaction remembered of its own writes, and
    /// drops the statements left to be sent ([`Stmt::execute_later`]): a
    /// job's changes were rolled back.
    pub(super) fn forget_job(&self) {
        self.audit_heads.borrow_mut().clear();
        self.deferred.borrow_mut().truncate(self.job_mark.get());
        if let Conn::Postgres(c) = self.conn {
            c.borrow_mut().drop_later();
        }
    }

    /// Prepares `sql` (written with `?N` placeholders), cached per
    /// connection.
    pub(crate) fn prepare_cached(&self, sql: &str) -> sql::Result<Stmt<'c>> {
        match self.conn {
            Conn::Sqlite(c) => Ok(Stmt::Sqlite(c.prepare_cached(sql)?)),
            Conn::Postgres(c) => {
                let stmt = c.borrow_mut().prepare(sql)?;
                Ok(Stmt::Postgres { conn: c, stmt })
            }
        }
    }

    /// Runs one query; its first row, mapped.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn sql::Param],
        f: impl FnOnce(&sql::Row<'_>) -> sql::Result<T>,
    ) -> sql::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// The one translation of a database failure into a domain error. Storage
/// that cannot take a write now (full, read-only, failing, out of file
/// descriptors, locked by another process) is `Unavailable`, with a message
/// saying so, since the request may succeed later and the operator must
/// act; anything else is a bug or an unexpected state, `Internal`. Both log
/// the database's own words, which the caller never sees.
impl From<rusqlite::Error> for crate::error::Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let unavailable = match e.sqlite_error_code() {
            Some(C::DiskFull) => Some(
                "the control plane's storage is full: no change can be recorded until space is freed",
            ),
            Some(C::ReadOnly) => {
                Some("the control plane's storage is read-only: no change can be recorded")
            }
            Some(C::SystemIoFailure) => Some("the control plane's storage failed (I/O error)"),
            Some(C::CannotOpen) => {
                Some("the control plane cannot open its database files (too many open files?)")
            }
            Some(C::DatabaseBusy | C::DatabaseLocked) => {
                Some("the control plane's database is busy")
            }
            _ => None,
        };
        match unavailable {
            Some(message) => {
                tracing::error!(error = %e, "{message}");
                crate::error::Error::Unavailable(format!("{message}; retry later"))
            }
            None => crate::error::Error::internal(format_args!("database: {e}")),
        }
    }
}

impl From<serde_json::Error> for crate::error::Error {
    fn from(e: serde_json::Error) -> Self {
        crate::error::Error::internal(format_args!("stored JSON: {e}"))
    }
}

impl From<SqlError> for crate::error::Error {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Sqlite(e) => e.into(),
            SqlError::Postgres(e) => super::pg::error(&e),
            SqlError::NoRow => crate::error::Error::internal("database: no row"),
            SqlError::Conversion(m) => crate::error::Error::internal(format_args!("database: {m}")),
            SqlError::Misuse(m) => crate::error::Error::internal(format_args!("database: {m}")),
        }
    }
}

/// The connection a [`Tx`](super::Tx) runs on.
pub(crate) enum Conn<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(&'c RefCell<PgTx<'c>>),
}

/// A prepared statement of either backend.
pub(crate) enum Stmt<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres {
        conn: &'c RefCell<PgTx<'c>>,
        stmt: postgres::Statement,
    },
}

impl Stmt<'_> {
    /// Runs the statement; the number of rows changed.
    pub(crate) fn execute(&mut self, params: &[&dyn Param]) -> Result<usize> {
        let values = bind(params)?;
        match self {
            Stmt::Sqlite(s) => Ok(s.execute(rusqlite::params_from_iter(values.iter()))?),
            Stmt::Postgres { conn, stmt } => {
                counted(conn)?;
                let n = conn.borrow_mut().execute(stmt, &values)?;
                usize::try_from(n).map_err(|_| SqlError::Conversion("row count".into()))
            }
        }
    }

    /// Runs the statement for a caller that does not look at its outcome:
    /// on PostgreSQL it is sent with the transaction's next statement, one
    /// round trip for both, and its failure is that statement's (or, when
    /// it is the job's last, the job's: see `writer::run_jobs`). For the
    /// writes of a job that only add or change what it has decided (an
    /// audit entry, a new run); never for one whose failure the caller
    /// would tell apart.
    pub(crate) fn execute_later(&mut self, params: &[&dyn Param]) -> Result<()> {
        let values = bind(params)?;
        match self {
            Stmt::Sqlite(s) => {
                s.execute(rusqlite::params_from_iter(values.iter()))?;
            }
            Stmt::Postgres { conn, stmt } => {
                counted(conn)?;
                conn.borrow_mut()
                    .execute_later(stmt, &values)
                    .map_err(SqlError::Conversion)?;
            }
        }
        Ok(())
    }

    /// The first row, mapped; [`SqlError::NoRow`] if none.
    pub(crate) fn query_row<T>(
        &mut self,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = bind(params)?;
        match self {
            Stmt::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(values.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(SqlError::NoRow),
                }
            }
            Stmt::Postgres { conn, stmt } => {
                counted(conn)?;
                let rows = conn.borrow_mut().query(stmt, &values)?;
                match rows.first() {
                    Some(r) => f(&Row::Postgres(r)),
                    None => Err(SqlError::NoRow),
                }
            }
        }
    }

    /// Every row, mapped.
    pub(crate) fn query_map<T>(
        &mut self,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let mut out = Vec::new();
        self.each(params, |r| {
            out.push(f(r));
            Ok(true)
        })?;
        Ok(out.into_iter())
    }

    /// Calls `f` with every row, in order, without holding them all, until
    /// it returns `false`.
    pub(crate) fn each(
        &mut self,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row<'_>) -> Result<bool>,
    ) -> Result<()> {
        let values = bind(params)?;
        match self {
            Stmt::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(r) = rows.next()? {
                    if !f(&Row::Sqlite(r))? {
                        break;
                    }
                }
                Ok(())
            }
            Stmt::Postgres { conn, stmt } => {
                counted(conn)?;
                conn.borrow_mut()
                    .each(stmt, &values, |r| f(&Row::Postgres(r)))
            }
        }
    }

    /// Whether the query returns a row.
    pub(crate) fn exists(&mut self, params: &[&dyn Param]) -> Result<bool> {
        self.query_row(params, |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
    }
}

/// Counts a statement about to run on `conn` ([`PgTx::may_run`]).
fn counted(conn: &RefCell<PgTx<'_>>) -> Result<()> {
    if conn.borrow_mut().may_run() {
        Ok(())
    } else {
        Err(SqlError::Misuse(
            "a read of one statement ran a second (use Db::read)",
        ))
    }
}
