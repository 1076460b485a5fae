//! PostgreSQL's side of the statement seam: a transaction's connection,
//! its statement cache, and the translation of its errors.

use super::sql::{self, Value};
use crate::error::{Error, OpenError};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// A connection and the statements prepared on it (keyed by the SQL the
/// store wrote, before renumbering).
///
/// The asynchronous client, driven by its thread's runtime ([`runtime`]:
/// one thread, run only while a call waits), rather than the synchronous
/// client, because only the asynchronous one pipelines: statements sent
/// together cost one round trip (see [`PgTx::execute_later`]).
pub(crate) struct PgConn {
    client: tokio_postgres::Client,
    runtime: Arc<Runtime>,
    cache: HashMap<String, postgres::Statement>,
    /// Org names read on this connection, by id: an org is never renamed
    /// or deleted, and PostgreSQL never hands out an id twice, so a name
    /// once read is the id's forever (a round trip saved on every
    /// submission, whose spec digest covers it).
    org_names: HashMap<i64, String>,
    /// The connection's task: it ends once the client is gone.
    task: tokio::task::JoinHandle<()>,
    /// A statement's error said the connection is gone or going
    /// ([`connection_lost`]): it is replaced before its next use even if
    /// the client has not yet seen it close.
    broken: bool,
}

impl PgConn {
    /// Closes the connection as PostgreSQL expects (`Terminate`), waiting
    /// at most a second: dropped instead, with the runtime dropped before
    /// the task noticed, the server would log an unexpected end of file.
    pub(super) fn close(self) {
        let PgConn {
            client,
            runtime,
            task,
            ..
        } = self;
        drop(client);
        // The timer is made inside the runtime: outside it there is none.
        let _ = runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), task).await
        });
    }

    /// Runs statements without parameters (transaction control, locks).
    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.runtime.block_on(self.client.batch_execute(sql))
    }

    /// Whether the connection is known to be broken.
    pub(super) fn is_closed(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// Begins a write transaction holding [`WRITE_LOCK`]: the first
    /// statement of every writer (the writer thread's batches, standalone
    /// transactions), so all of them are one writer.
    pub(super) fn begin_write(&mut self) -> Result<(), postgres::Error> {
        self.batch_execute(&BEGIN_WRITE)
    }

    /// A handle for one transaction's statements (the caller has begun it).
    pub(super) fn tx(&mut self) -> PgTx<'_> {
        PgTx {
            conn: self,
            later: Vec::new(),
            statements_left: None,
            erred: false,
            lost_control: None,
        }
    }

    /// A handle for one statement outside a transaction: a second fails.
    pub(super) fn tx_of_one_statement(&mut self) -> PgTx<'_> {
        PgTx {
            conn: self,
            later: Vec::new(),
            statements_left: Some(1),
            erred: false,
            lost_control: None,
        }
    }
}

/// The runtime a thread's connections run on: one thread, driven only
/// while a call on one of them waits. Each thread holding connections
/// makes one, before its first connection, and reports failing to
/// (the kernel refusing it an epoll instance: out of file descriptors).
pub(super) fn runtime() -> std::io::Result<Arc<Runtime>> {
    Ok(Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    ))
}

/// `BEGIN`, at the isolation level every write's rules are written for,
/// whatever the database's or role's default: each statement sees what was
/// committed when it began, so a statement after a lock is taken sees what
/// the lock's previous holder committed (a chain's head under
/// [`AUDIT_LOCK`], a submission's idempotency key under its lock).
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// What begins a write transaction: `BEGIN`, then [`WRITE_LOCK`].
pub(super) static BEGIN_WRITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{BEGIN}; SELECT pg_advisory_xact_lock({WRITE_LOCK})"));

/// What begins a write transaction of jobs that may run beside other
/// replicas': `BEGIN`, then [`WRITE_LOCK`] shared.
pub(super) static BEGIN_BESIDE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("{BEGIN}; SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})")
});

/// What a [`Tx`](super::Tx) on PostgreSQL holds.
pub(crate) struct PgTx<'c> {
    conn: &'c mut PgConn,
    /// What is left to be sent with the transaction's next statement, in
    /// order ([`PgTx::execute_later`], [`PgTx::end_job_later`]).
    later: Vec<Later>,
    /// How many more statements may run, if bounded
    /// ([`PgConn::tx_of_one_statement`]).
    statements_left: Option<u32>,
    /// A statement failed since the job began ([`PgTx::begin_job`]).
    erred: bool,
    /// How a job's end sent later failed, until the writer asks
    /// ([`PgTx::take_lost_control`]).
    lost_control: Option<Error>,
}

/// What a transaction left to be sent with its next statement.
enum Later {
    /// A statement whose outcome the job does not look at
    /// ([`PgTx::execute_later`]).
    Statement(postgres::Statement, Vec<OwnedValue>),
    /// The transaction control ending a job ([`PgTx::end_job_later`]).
    Control(&'static str),
}

/// How sending what a transaction left for later, with a statement, failed.
pub(crate) enum Sent {
    /// A statement left for later failed. If the server said so
    /// (`code()` is set), the transaction is aborted and the statement sent
    /// with it did not run; otherwise (the connection broke, or, though its
    /// parameters were checked when it was left, the client refused to send
    /// it) nothing is known of the statement sent with it.
    Later(postgres::Error),
    /// The statement itself failed.
    Now(postgres::Error),
}

impl PgTx<'_> {
    pub(super) fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(stmt) = self.conn.cache.get(sql) {
            return Ok(stmt.clone());
        }
        // What was left goes first: a `Parse` that fails aborts the
        // transaction, and a job's end left behind it would then fail too,
        // the job before left without its savepoint released.
        if !self.later.is_empty() {
            self.send_later().map_err(Sent::into_error)?;
        }
        let conn = &mut *self.conn;
        let prepared = conn
            .runtime
            .block_on(conn.client.prepare(&sql::renumber(sql)));
        let stmt = prepared.inspect_err(|e| {
            conn.broken |= connection_lost(e);
            self.erred = true;
        })?;
        conn.cache.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Leaves `stmt` with `values` to be sent with the transaction's next
    /// statement, for a caller that does not look at its outcome: the two
    /// cost one round trip instead of two. Its failure fails that statement
    /// (or, at a job's end, the job: see `writer::run_jobs`).
    ///
    /// The parameters are encoded here, once, to be checked: the client
    /// encodes them again when it sends, and one that failed then would
    /// fail on this side, unsent, while the statement sent with it ran (a
    /// `COMMIT`, say). Any such error is the caller's, now, as on SQLite.
    pub(super) fn execute_later(
        &mut self,
        stmt: &postgres::Statement,
        values: &[Value<'_>],
    ) -> Result<(), String> {
        if values.len() != stmt.params().len() {
            return Err(format!(
                "a statement of {} parameters given {}",
                stmt.params().len(),
                values.len()
            ));
        }
        let mut encoded = bytes::BytesMut::new();
        for (value, ty) in values.iter().zip(stmt.params()) {
            encoded.clear();
            value
                .to_sql_checked(ty, &mut encoded)
                .map_err(|e| format!("a parameter of type {ty}: {e}"))?;
        }
        self.later.push(Later::Statement(
            stmt.clone(),
            values.iter().map(OwnedValue::from).collect(),
        ));
        Ok(())
    }

    /// Leaves `control`, the statements ending a job (releasing or rolling
    /// back its savepoint and opening the next one's), to be sent with the
    /// transaction's next statement, if nothing can make them fail but a
    /// lost connection: the job left nothing else to be sent and no
    /// statement of it failed (else the transaction may be aborted, and
    /// the job must fail on them now). `false` if they must be sent now.
    /// The caller sends a statement after them: leaving the `COMMIT` would
    /// leave it unsent.
    ///
    /// A job of one statement whose outcome it reads (a claim) then costs
    /// one round trip instead of two. Should they fail after all, the
    /// failure is kept for [`PgTx::take_lost_control`], whatever the
    /// statement they went with answered: the jobs kept before cannot be
    /// told apart from the rest any more.
    pub(super) fn end_job_later(&mut self, control: &'static str) -> bool {
        let quiet = self.later.is_empty() && !self.erred;
        if quiet {
            self.later.push(Later::Control(control));
        }
        quiet
    }

    /// Whether a statement failed since the job began.
    pub(super) fn erred(&self) -> bool {
        self.erred
    }

    /// A job begins: no statement of it has failed yet.
    pub(super) fn begin_job(&mut self) {
        self.erred = false;
    }

    /// Sends a job's end left for later ([`PgTx::end_job_later`]), if any,
    /// with what was left after it, on their own: before a `COMMIT`, so
    /// that should it fail, nothing sent behind it commits.
    pub(super) fn send_job_end(&mut self) -> Result<(), Sent> {
        if self.later.iter().any(|l| matches!(l, Later::Control(_))) {
            self.send_later()?;
        }
        Ok(())
    }

    /// Sends what was left for later, on its own.
    fn send_later(&mut self) -> Result<(), Sent> {
        self.send_with(|_| std::future::ready(Ok(())))
    }

    /// Sends what was left for later, then the request `now` makes on the
    /// client, pipelined ([`send`]), and notes a failure: of a statement,
    /// since the job began ([`PgTx::erred`]), and of a job's end left for
    /// later ([`PgTx::take_lost_control`]).
    fn send_with<'s, T, F>(
        &'s mut self,
        now: impl FnOnce(&'s tokio_postgres::Client) -> F,
    ) -> Result<T, Sent>
    where
        F: std::future::Future<Output = Result<T, postgres::Error>> + 's,
    {
        let PgTx {
            conn,
            later,
            erred,
            lost_control,
            ..
        } = self;
        let later = std::mem::take(later);
        let PgConn {
            client,
            runtime,
            broken,
            ..
        } = &mut **conn;
        send(runtime, client, broken, &later, now(client)).map_err(|failure| {
            *erred = true;
            match failure {
                Failure::Later(e) => Sent::Later(e),
                Failure::Now(e) => Sent::Now(e),
                // The transaction cannot be trusted to hold the jobs kept
                // before (the end of the last one did not run): the caller
                // fails, and the batch with it (`take_lost_control`).
                Failure::Control(e) => {
                    *lost_control = Some(error(&e));
                    Sent::Later(e)
                }
            }
        })
    }

    /// How a job's end left for later ([`PgTx::end_job_later`]) failed, if
    /// it did: the batch then fails as a whole.
    pub(super) fn take_lost_control(&mut self) -> Option<Error> {
        self.lost_control.take()
    }

    /// The name of org `id`, if read on this connection before.
    pub(super) fn known_org_name(&self, id: i64) -> Option<String> {
        self.conn.org_names.get(&id).cloned()
    }

    /// Remembers that org `id` is named `name` (see [`PgConn`]).
    pub(super) fn know_org_name(&mut self, id: i64, name: &str) {
        self.conn.org_names.insert(id, name.to_owned());
    }

    /// Whether statements were left for later and not sent.
    pub(super) fn has_later(&self) -> bool {
        !self.later.is_empty()
    }

    /// Counts a statement about to run; `false` if no more may.
    pub(super) fn may_run(&mut self) -> bool {
        match &mut self.statements_left {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }

    /// Drops the statements left for later (the job that left them
    /// failed). The end of the job before it, if left, stays: it must
    /// still go before the failed job's savepoint is rolled back to.
    pub(super) fn drop_later(&mut self) {
        self.later.retain(|l| matches!(l, Later::Control(_)));
    }

    pub(super) fn execute(
        &mut self,
        stmt: &postgres::Statement,
        values: &[Value<'_>],
    ) -> Result<u64, postgres::Error> {
        self.send_with(|client| client.execute_raw(stmt, values.iter()))
            .map_err(Sent::into_error)
    }

    pub(super) fn query(
        &mut self,
        stmt: &postgres::Statement,
        values: &[Value<'_>],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        use futures_util::TryStreamExt as _;
        self.send_with(|client| async move {
            client
                .query_raw(stmt, values.iter())
                .await?
                .try_collect()
                .await
        })
        .map_err(Sent::into_error)
    }

    pub(super) fn each(
        &mut self,
        stmt: &postgres::Statement,
        values: &[Value<'_>],
        mut f: impl FnMut(&postgres::Row) -> sql::Result<bool>,
    ) -> sql::Result<()> {
        use futures_util::StreamExt as _;
        let rows = self
            .send_with(|client| client.query_raw(stmt, values.iter()))
            .map_err(Sent::into_error)?;
        let PgConn {
            runtime, broken, ..
        } = &mut *self.conn;
        let erred = &mut self.erred;
        let mut rows = Box::pin(rows);
        let mut wanted = true;
        while let Some(row) = runtime.block_on(rows.next()) {
            let row = row.inspect_err(|e| {
                *broken |= connection_lost(e);
                *erred = true;
            })?;
            // The rows not wanted are read all the same (the server sends
            // them anyway): one may fail, aborting the transaction, and
            // the caller must then fail too, not go on unknowing.
            if wanted && !f(&row)? {
                wanted = false;
            }
        }
        Ok(())
    }

    /// Runs statements without parameters (transaction control), after
    /// what was left for later, in one round trip; says which failed.
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), Sent> {
        self.send_with(|client| client.batch_execute(sql))
    }
}

/// How [`send`] failed.
enum Failure {
    /// A statement left for later failed.
    Later(postgres::Error),
    /// A job's end left for later failed.
    Control(postgres::Error),
    /// The statement sent now failed.
    Now(postgres::Error),
}

impl Sent {
    /// The error, whichever statement failed.
    pub(crate) fn into_error(self) -> postgres::Error {
        match self {
            Sent::Later(e) | Sent::Now(e) => e,
        }
    }
}

/// Sends `later`, then `now`, pipelined: one round trip. The client sends
/// a request when its future is first polled; every pass below polls the
/// futures not yet done in their order, so the first pass sends them in
/// order (which a general-purpose join does not promise). An error saying
/// the connection is gone or going sets `broken` ([`PgConn`]).
fn send<T>(
    runtime: &Runtime,
    client: &tokio_postgres::Client,
    broken: &mut bool,
    later: &[Later],
    now: impl std::future::Future<Output = Result<T, postgres::Error>>,
) -> Result<T, Failure> {
    use futures_util::FutureExt as _;
    use std::future::Future;
    use std::task::Poll;
    type Pending<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), Failure>> + 'a>>;
    let mut sent: Vec<(Pending<'_>, Option<Result<(), Failure>>)> = later
        .iter()
        .map(|later| {
            let future: Pending<'_> = match later {
                Later::Statement(stmt, values) => Box::pin(
                    client
                        .execute_raw(stmt, values.iter().map(OwnedValue::value))
                        .map(|r| r.map(drop).map_err(Failure::Later)),
                ),
                Later::Control(sql) => Box::pin(
                    client
                        .batch_execute(sql)
                        .map(|r| r.map_err(Failure::Control)),
                ),
            };
            (future, None)
        })
        .collect();
    let mut now = std::pin::pin!(now);
    let mut answer = None;
    let answer = runtime.block_on(std::future::poll_fn(|cx| {
        for (future, done) in &mut sent {
            if done.is_none() {
                if let Poll::Ready(result) = future.as_mut().poll(cx) {
                    *done = Some(result);
                }
            }
        }
        if answer.is_none() {
            if let Poll::Ready(result) = now.as_mut().poll(cx) {
                answer = Some(result);
            }
        }
        match answer.take() {
            Some(result) if sent.iter().all(|(_, done)| done.is_some()) => Poll::Ready(result),
            taken => {
                answer = taken;
                Poll::Pending
            }
        }
    }));
    let result = match sent
        .into_iter()
        .find_map(|(_, done)| done.and_then(Result::err))
    {
        Some(failure) => Err(failure),
        None => answer.map_err(Failure::Now),
    };
    if let Err(Failure::Later(e) | Failure::Control(e) | Failure::Now(e)) = &result {
        *broken |= connection_lost(e);
    }
    result
}

/// A [`Value`] kept until it is sent ([`PgTx::execute_later`]).
#[derive(Debug)]
pub(crate) enum OwnedValue {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl OwnedValue {
    fn value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null,
            OwnedValue::Int(i) => Value::Int(*i),
            OwnedValue::Text(t) => Value::Text(t),
            OwnedValue::Blob(b) => Value::Blob(b),
        }
    }
}

impl From<&Value<'_>> for OwnedValue {
    fn from(v: &Value<'_>) -> OwnedValue {
        match v {
            Value::Null => OwnedValue::Null,
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Text(t) => OwnedValue::Text((*t).to_owned()),
            Value::Blob(b) => OwnedValue::Blob(b.to_vec()),
        }
    }
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                ref ty => Err(format!("an integer cannot be bound to a {ty} parameter").into()),
            },
            Value::Text(t) => t.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Whether `e` says the connection is gone or going: closed, no answer
/// from the server (`code()` unset), a connection failure (class 08), the
/// server shutting down (57P01-57P03).
pub(super) fn connection_lost(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(c) => c.code().starts_with("08") || c.code().starts_with("57P0"),
    }
}

/// The one translation of a PostgreSQL failure into a domain error, as
/// `From<rusqlite::Error>` is for SQLite: a database that cannot take the
/// request now (unreachable, restarting, out of space, read-only, a lost
/// serialization race) is `Unavailable`, to retry; anything else is
/// `Internal`. Both log the database's own words.
pub(crate) fn error(e: &postgres::Error) -> Error {
    let unavailable = if e.is_closed() {
        Some("the control plane's database connection was lost")
    } else {
        match e.code().map(|c| c.code()) {
            None => Some("the control plane's database is unreachable"),
            Some(c) if c.starts_with("08") => Some("the control plane's database is unreachable"),
            Some("40001" | "40P01" | "55P03") => Some("the control plane's database is busy"),
            Some(c) if c.starts_with("53") => Some(
                "the control plane's database is out of resources (disk, memory or connections)",
            ),
            Some("25006") => Some("the control plane's database is read-only"),
            Some("57P01" | "57P02" | "57P03") => Some("the control plane's database is restarting"),
            _ => None,
        }
    };
    match unavailable {
        Some(message) => {
            tracing::error!(error = %with_causes(e), "{message}");
            Error::Unavailable(format!("{message}; retry later"))
        }
        None => Error::internal(format_args!("database: {e}")),
    }
}

/// `e` and the errors that caused it, one after the other: the driver's
/// "error performing TLS handshake" alone does not say that the server's
/// certificate was signed by an unknown CA.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        error(&e)
    }
}

/// Where the control plane's PostgreSQL database is: a `postgres://` URL
/// (`database_url`, `SEALRUN_DATABASE_URL`). Its password is a secret: the
/// URL is never shown; [`DatabaseUrl::location`] names the server, user and
/// database without it.
///
/// Its `sslmode` and `sslrootcert` (libpq's names) say how connections are
/// secured: none given or `disable`, no TLS (a database on this host or a
/// trusted network); `verify-full` (or `require`, `verify-ca`), TLS, the
/// server's certificate checked against the CA certificates of the PEM file
/// `sslrootcert` names, and its name against the URL's host, whatever the
/// mode (libpq's `require` checks neither: here no connection trusts a
/// server it has not verified). `prefer` and `allow`, which fall back to
/// a connection in the clear unseen, are refused.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    tls: PgTls,
    location: String,
}

/// The stream a [`PgTls`] connection runs over.
pub(super) type PgTlsStream =
    <PgTls as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// What secures a connection to PostgreSQL: TLS trusting the URL's
/// `sslrootcert` only, when the URL asks for TLS (its `ssl_mode` is then
/// `Require`); otherwise nothing (`Disable`).
#[derive(Clone)]
pub(super) struct PgTls {
    rustls: tokio_postgres_rustls::MakeRustlsConnect,
    on: bool,
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for PgTls
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Stream;
    type TlsConnect = <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::TlsConnect;
    type Error =
        <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, name: &str) -> Result<Self::TlsConnect, Self::Error> {
        // The driver asks for a connector on every connection, before it
        // looks at `ssl_mode`, and with an empty name for a Unix socket or a
        // bare `hostaddr`, which rustls refuses. Without TLS the connector is
        // never used (no handshake starts), so any valid name will do.
        let name = if self.on { name } else { "localhost" };
        tokio_postgres::tls::MakeTlsConnect::<S>::make_tls_connect(&mut self.rustls, name)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.location).finish()
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<DatabaseUrl, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("a database URL must start with postgres:// (or postgresql://)".into());
        }
        let (url, roots) = take_tls(url)?;
        // The parser's message never quotes the URL (it may hold a password).
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        let on = roots.is_some();
        if on {
            if let Some(dir) = config.get_hosts().iter().find_map(|h| match h {
                tokio_postgres::config::Host::Unix(dir) => Some(dir),
                tokio_postgres::config::Host::Tcp(_) => None,
            }) {
                return Err(format!(
                    "TLS is not available over a Unix socket ({}): write sslmode=disable \
                     for a socket, or name the server's host",
                    dir.display()
                ));
            }
            if config.get_hosts().is_empty() {
                return Err(
                    "TLS checks the database server's certificate against its name: \
                     write host=<that name> beside hostaddr"
                        .into(),
                );
            }
        }
        config.ssl_mode(if on {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Disable
        });
        let tls = PgTls {
            rustls: tokio_postgres_rustls::MakeRustlsConnect::new(client_config(
                roots.unwrap_or_else(rustls::RootCertStore::empty),
            )?),
            on,
        };
        let Some(dbname) = config.get_dbname().map(str::to_owned) else {
            return Err(
                "the database URL names no database (postgres://user@host/DATABASE)".into(),
            );
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("");
        let location = format!("postgres://{user}@{}:{port}/{dbname}", hosts.join(","));
        Ok(DatabaseUrl {
            config,
            tls,
            location,
        })
    }
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query (the driver reads
/// `sslmode` its own way, and knows no `sslrootcert`): the rest of the URL,
/// and the CA certificates to verify the server with when the mode asks
/// for TLS.
fn take_tls(url: &str) -> Result<(String, Option<rustls::RootCertStore>), String> {
    // Where the driver's parser finds the query: after the credentials,
    // which end at the first `@` (a password may hold a `?`).
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let after_credentials = url[after_scheme..]
        .find('@')
        .map_or(after_scheme, |i| after_scheme + i + 1);
    let (base, query) = match url[after_credentials..].find('?') {
        Some(i) => url.split_at(after_credentials + i),
        None => (url, ""),
    };
    let query = query.strip_prefix('?').unwrap_or(query);
    // The rest of a password holding an `@` would be read as the host (and
    // the path), and shown in every message naming the database.
    if base[after_credentials..].contains('@') {
        return Err(
            "the database URL has more than one '@' before its host: percent-encode an \
             '@' in the user name or password as %40"
                .into(),
        );
    }
    // A URL with no user whose query holds an `@` (a path to the CA, say)
    // is read by the driver as a user up to that `@`: its parameters, TLS
    // ones included, would be lost unseen into the user and host names.
    if ["sslmode=", "sslrootcert=", "password="]
        .iter()
        .any(|key| base.contains(key))
    {
        return Err(
            "the database URL's parameters would be read as its user and host: percent-encode \
             each '@' after the host as %40"
                .into(),
        );
    }
    let decoded = |text: &str, what: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|v| v.into_owned())
            .map_err(|_| format!("the database URL's {what} is not UTF-8"))
    };
    let (mut mode, mut root_cert, mut rest) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Decoded as the driver decodes it: `ssl%6Dode` is `sslmode`.
        match decoded(key, "query")?.as_str() {
            "sslmode" => mode = Some(decoded(value, "sslmode")?),
            "sslrootcert" => root_cert = Some(decoded(value, "sslrootcert")?),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let verify = match mode.as_deref() {
        None | Some("disable") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(fallback @ ("prefer" | "allow")) => {
            return Err(format!(
                "sslmode={fallback} is refused: it falls back to a connection in the clear \
                 unseen; write sslmode=verify-full with sslrootcert=<the CA's PEM file>, or \
                 sslmode=disable for a database on this host or a trusted network"
            ));
        }
        // Not quoted: a malformed URL could make it part of a password.
        Some(_) => {
            return Err(
                "unknown sslmode (write disable, require, verify-ca or verify-full)".into(),
            );
        }
    };
    if !verify {
        if root_cert.is_some() {
            return Err(
                "the database URL names an sslrootcert but asks for no TLS: write \
                 sslmode=verify-full"
                    .into(),
            );
        }
        return Ok((url, None));
    }
    let Some(path) = root_cert else {
        return Err(format!(
            "sslmode={} needs sslrootcert=<path>: the PEM file of the CA certificates the \
             database server's certificate is checked against",
            mode.unwrap_or_default()
        ));
    };
    if path == "system" {
        return Err(
            "sslrootcert=system is not supported: name the PEM file of the CA that signed \
             the database server's certificate"
                .into(),
        );
    }
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("sslrootcert {path} is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {path}: a certificate is unusable: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {path} holds no certificate"));
    }
    Ok((url, Some(roots)))
}

/// TLS for PostgreSQL with the workspace's provider (`ring`), trusting
/// `roots` only.
fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

impl DatabaseUrl {
    /// The server, user and database, without the password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The connection settings as parsed (a [`Connector`] adds its own).
    #[cfg(test)]
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// What secures a connection: every connection, made by a
    /// [`Connector`], goes through it (see [`PgTls`]).
    pub(super) fn tls(&self) -> PgTls {
        self.tls.clone()
    }
}

/// The key of the transaction-level advisory lock every write transaction
/// takes first ("sealrun" + 2). Held exclusively, it makes the replicas'
/// writers one writer, as SQLite's single writer thread is: a
/// read-then-write of one job (the audit chain's head, a quota, a run's
/// state) cannot interleave with another replica's, so every rule the
/// domain keeps on SQLite holds unchanged. Held shared, by a batch of jobs
/// written to run beside each other (`Db::write_beside`: submitting,
/// claiming and finishing runs), it lets those run side by side while
/// keeping every other write away from them; their audit entries wait for
/// [`AUDIT_LOCK`].
pub(super) const WRITE_LOCK: i64 = 0x7365_616c_7275_6e02;

/// The key of the advisory lock a transaction holding [`WRITE_LOCK`]
/// shared takes to append its audit entries, as it commits ("sealrun" +
/// 3): one such transaction at a time reads and extends the chains, so
/// they never fork (see `audit::append_deferred`).
pub(super) const AUDIT_LOCK: i64 = 0x7365_616c_7275_6e03;

/// Opens connections to one database.
#[derive(Clone)]
pub(crate) struct Connector {
    config: tokio_postgres::Config,
    tls: PgTls,
    location: String,
    /// Sent on every new connection first ([`SESSION_SETTINGS`]).
    setup: String,
}

/// What every session asks of PostgreSQL, once connected:
/// - a session idle inside a transaction for 15 s is ended. Every
///   transaction of the store sends its statements back to back, so only a
///   replica that stopped mid-transaction (paused, frozen, its host cut off
///   without a reset) is ever that idle, and until PostgreSQL ends its
///   session it holds the write lock and its rows: every other replica's
///   writes would wait behind it for as long as it stays stopped;
/// - the server probes a silent connection after 30 s, every 10 s, and
///   drops it after 3 unanswered probes: a replica whose host vanished
///   mid-statement lets go of its locks within about a minute, not the
///   kernel's two hours.
///
/// Sent as `SET`s rather than as the startup packet's `options`, which
/// poolers (PgBouncer) refuse; a setting the URL's own `options` names is
/// left to it.
const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("idle_in_transaction_session_timeout", "15000"),
    ("tcp_keepalives_idle", "30"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "3"),
];

/// The `SET`s of [`SESSION_SETTINGS`] a session with `config` needs.
fn session_setup(config: &tokio_postgres::Config) -> String {
    let own = config.get_options().unwrap_or_default();
    SESSION_SETTINGS
        .iter()
        .filter(|(name, _)| !own.contains(name))
        .map(|(name, value)| format!("SET {name} = {value}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Connector {
    pub(super) fn new(url: &DatabaseUrl) -> Result<Connector, OpenError> {
        let mut config = url.config.clone();
        config
            .application_name("sealrun")
            .connect_timeout(std::time::Duration::from_secs(5))
            // The same on this side: a database host that vanished is
            // noticed within about a minute.
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(30))
            .keepalives_interval(std::time::Duration::from_secs(10))
            .keepalives_retries(3);
        Ok(Connector {
            setup: session_setup(&config),
            config,
            tls: url.tls(),
            location: url.location().to_owned(),
        })
    }

    /// A connection for the store's transactions (see [`PgConn`]), driven
    /// by `runtime`, the calling thread's (see [`runtime`]).
    pub(super) fn connect(&self, runtime: &Arc<Runtime>) -> Result<PgConn, postgres::Error> {
        let (client, connection) = runtime.block_on(self.config.connect(self.tls.clone()))?;
        // Ends with the connection: broken, or closed once the client is
        // dropped (driven by the thread's next call, or `PgConn::close`).
        let task = runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a PostgreSQL connection ended");
            }
        });
        runtime.block_on(client.batch_execute(&self.setup))?;
        Ok(PgConn {
            client,
            runtime: Arc::clone(runtime),
            cache: HashMap::new(),
            org_names: HashMap::new(),
            task,
            broken: false,
        })
    }

    /// A thread's [`runtime`] for its connections to this database, or
    /// why there is none, as an open error.
    pub(super) fn runtime(&self) -> Result<Arc<Runtime>, OpenError> {
        runtime().map_err(|e| OpenError::Database {
            location: self.location.clone(),
            message: format!("cannot start the database connection's runtime: {e}"),
        })
    }

    /// A connection driven by the caller's runtime (the replicas' hint
    /// listener), with the same settings as the store's but for
    /// [`setup`](Connector::setup), which the caller sends once it drives
    /// the connection.
    pub(super) async fn connect_here(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, PgTlsStream>,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }

    /// The `SET`s a new connection sends first ([`SESSION_SETTINGS`]).
    pub(super) fn setup(&self) -> &str {
        &self.setup
    }

    /// A synchronous client, for what runs once, off the hot path
    /// (migrations, `migrate-store`).
    pub(super) fn connect_sync(&self) -> Result<postgres::Client, postgres::Error> {
        let mut client = postgres::Config::from(self.config.clone()).connect(self.tls.clone())?;
        client.batch_execute(&self.setup)?;
        Ok(client)
    }

    pub(super) fn location(&self) -> &str {
        &self.location
    }

    pub(super) fn open_error(&self, e: &postgres::Error) -> OpenError {
        OpenError::Database {
            location: self.location().to_owned(),
            message: with_causes(e),
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::DatabaseUrl;
    use tokio_postgres::config::SslMode;

    fn parsed(url: &str) -> Result<DatabaseUrl, String> {
        url.parse()
    }

    /// A PEM file of one CA certificate, in `dir`.
    fn ca_file(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("ca file.pem");
        sealrun_testkit::unrelated_ca(&path);
        path
    }

    #[test]
    fn a_password_holding_an_unencoded_at_sign_is_refused_and_never_shown() {
        for url in [
            "postgres://sealrun:p@ss@db/sealrun",
            "postgres://sealrun:p@s/s@db/sealrun",
        ] {
            let e = parsed(url).err().unwrap();
            assert!(e.contains("percent-encode"), "{e}");
            assert!(!e.contains("@db"), "{e}");
        }
        // Positive control: encoded, it is the password, and the location
        // names only the user and the host.
        let url = parsed("postgres://sealrun:p%40ss@db/sealrun").unwrap();
        assert_eq!(url.config().get_password(), Some(&b"p@ss"[..]));
        assert_eq!(url.location(), "postgres://sealrun@db:5432/sealrun");
    }

    #[test]
    fn a_session_idle_in_a_transaction_is_ended_unless_the_url_says_otherwise() {
        let connector = |url: &str| super::Connector::new(&parsed(url).unwrap()).unwrap();
        let ours = connector("postgres://u@h/db");
        assert!(
            ours.setup()
                .contains("SET idle_in_transaction_session_timeout = 15000"),
            "{}",
            ours.setup()
        );
        // Not in the startup packet, which poolers refuse.
        assert_eq!(ours.config.get_options(), None);
        // A setting the URL's own options name is left to them.
        let theirs =
            connector("postgres://u@h/db?options=-c%20idle_in_transaction_session_timeout%3D1000");
        assert!(
            !theirs
                .setup()
                .contains("idle_in_transaction_session_timeout")
                && theirs.setup().contains("SET tcp_keepalives_idle = 30"),
            "{}",
            theirs.setup()
        );
        assert_eq!(
            theirs.config.get_options(),
            Some("-c idle_in_transaction_session_timeout=1000")
        );
    }

    #[test]
    fn a_url_without_sslmode_connects_in_the_clear() {
        for url in ["postgres://u@h/db", "postgres://u@h/db?sslmode=disable"] {
            assert_eq!(
                parsed(url).unwrap().config().get_ssl_mode(),
                SslMode::Disable
            );
        }
    }

    #[test]
    fn verify_full_with_a_ca_file_asks_for_tls_and_keeps_the_other_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(dir.path());
        // The path percent-encoded, as in any URL (its space).
        let encoded = ca.display().to_string().replace(' ', "%20");
        for mode in ["verify-full", "verify-ca", "require"] {
            let url = format!(
                "postgres://u@h/db?connect_timeout=7&sslmode={mode}&sslrootcert={encoded}\
                 &application_name=x"
            );
            let url = parsed(&url).unwrap();
            let config = url.config();
            assert_eq!(config.get_ssl_mode(), SslMode::Require, "{mode}");
            assert_eq!(
                config.get_connect_timeout(),
                Some(&std::time::Duration::from_secs(7))
            );
            assert_eq!(config.get_application_name(), Some("x"));
        }
    }

    #[test]
    fn tls_without_an_sslrootcert_is_refused_naming_it() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let e = parsed(&format!("postgres://u@h/db?sslmode={mode}"))
                .err()
                .unwrap();
            assert!(e.contains("needs sslrootcert=<path>"), "{e}");
        }
    }

    #[test]
    fn modes_falling_back_to_the_clear_are_refused() {
        for mode in ["prefer", "allow"] {
            let e = parsed(&format!("postgres://u@h/db?sslmode={mode}"))
                .err()
                .unwrap();
            assert!(e.contains(&format!("sslmode={mode} is refused")), "{e}");
        }
    }

    #[test]
    fn an_sslrootcert_without_sslmode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(dir.path());
        let e = parsed(&format!("postgres://u@h/db?sslrootcert={}", ca.display()))
            .err()
            .unwrap();
        assert!(e.contains("write sslmode=verify-full"), "{e}");
    }

    #[test]
    fn an_sslrootcert_that_is_missing_or_holds_no_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, says) in [(&empty, "holds no certificate"), (&missing, "cannot read")] {
            let url = format!(
                "postgres://u@h/db?sslmode=verify-full&sslrootcert={}",
                path.display()
            );
            let e = parsed(&url).err().unwrap();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn an_unknown_sslmode_is_refused_without_showing_the_password() {
        let e = parsed("postgres://u:hunter2@h/db?sslmode=bogus")
            .err()
            .unwrap();
        assert!(e.contains("unknown sslmode"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_question_mark_in_the_password_is_part_of_the_password() {
        // The driver reads the credentials up to the first `@`, so the
        // query begins at the first `?` after it.
        let url = parsed("postgres://u:a?b=c@h/db").unwrap();
        assert_eq!(url.config().get_password(), Some(&b"a?b=c"[..]));
        assert_eq!(url.config().get_ssl_mode(), SslMode::Disable);
        // Asking for TLS after such a password is not dropped unseen.
        let e = parsed("postgres://u:p?w@h/db?sslmode=require")
            .err()
            .unwrap();
        assert!(e.contains("needs sslrootcert"), "{e}");
    }

    #[test]
    fn a_percent_encoded_key_is_read_as_the_driver_reads_it() {
        let e = parsed("postgres://u@h/db?ssl%6Dode=require").err().unwrap();
        assert!(e.contains("needs sslrootcert"), "{e}");
    }

    #[test]
    fn tls_over_a_unix_socket_or_to_a_bare_address_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(dir.path());
        let tls = format!("sslmode=verify-full&sslrootcert={}", ca.display());
        let e = parsed(&format!("postgres://u@%2Frun%2Fpg/db?{tls}"))
            .err()
            .unwrap();
        assert!(e.contains("Unix socket (/run/pg)"), "{e}");
        let e = parsed(&format!("postgres://u@/db?hostaddr=127.0.0.1&{tls}"))
            .err()
            .unwrap();
        assert!(e.contains("write host="), "{e}");
        // Positive control: the same places without TLS.
        for url in [
            "postgres://u@%2Frun%2Fpg/db",
            "postgres://u@/db?hostaddr=127.0.0.1",
        ] {
            assert_eq!(
                parsed(url).unwrap().config().get_ssl_mode(),
                SslMode::Disable
            );
        }
    }

    #[test]
    fn an_at_sign_in_a_parameter_of_a_url_without_user_is_refused() {
        // The driver would read `h/db?sslrootcert=/a` as the user and `b`
        // as the host: no TLS, unseen.
        let e = parsed("postgres://h/db?sslrootcert=/a@b/ca.pem&sslmode=verify-full")
            .err()
            .unwrap();
        assert!(e.contains("percent-encode"), "{e}");
        // Positive control: encoded, the path is read whole.
        let e = parsed("postgres://h/db?sslrootcert=/a%40b/ca.pem&sslmode=verify-full")
            .err()
            .unwrap();
        assert!(e.contains("cannot read sslrootcert /a@b/ca.pem"), "{e}");
    }
}
