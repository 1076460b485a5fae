//! PostgreSQL's side of the statement seam: a transaction's connection,
//! its statement cache, and the translation of its errors.

use super::sql::{self, Value};
use crate::error::{Error, OpenError};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use std::collections::HashMap;

/// A connection and the statements prepared on it (keyed by the SQL the
/// store wrote, before renumbering).
pub(crate) struct PgConn {
    pub(super) client: postgres::Client,
    pub(super) cache: HashMap<String, postgres::Statement>,
}

impl PgConn {
    pub(super) fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client,
            cache: HashMap::new(),
        }
    }

    /// Begins a write transaction holding [`WRITE_LOCK`]: the first
    /// statement of every writer (the writer thread's batches, standalone
    /// transactions), so all of them are one writer.
    pub(super) fn begin_write(&mut self) -> Result<(), postgres::Error> {
        self.client.batch_execute(&BEGIN_WRITE)
    }

    /// A handle for one transaction's statements (the caller has begun it).
    pub(super) fn tx(&mut self) -> PgTx<'_> {
        PgTx {
            client: &mut self.client,
            cache: &mut self.cache,
        }
    }
}

/// What begins a write transaction: `BEGIN`, then [`WRITE_LOCK`].
pub(super) static BEGIN_WRITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"));

/// What a [`Tx`](super::Tx) on PostgreSQL holds.
pub(crate) struct PgTx<'c> {
    client: &'c mut postgres::Client,
    cache: &'c mut HashMap<String, postgres::Statement>,
}

impl PgTx<'_> {
    pub(super) fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(stmt) = self.cache.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(&sql::renumber(sql))?;
        self.cache.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    pub(super) fn execute(
        &mut self,
        stmt: &postgres::Statement,
        values: &[Value<'_>],
    ) -> Result<u64, postgres::Error> {
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        self.client.execute(stmt, &refs)
    }

    pub(super) fn query(
        &mut self,
        stmt: &postgres::Statement,
        values: &[Value<'_>],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        self.client.query(stmt, &refs)
    }

    pub(super) fn each(
        &mut self,
        stmt: &postgres::Statement,
        values: &[Value<'_>],
        mut f: impl FnMut(&postgres::Row) -> sql::Result<bool>,
    ) -> sql::Result<()> {
        use postgres::fallible_iterator::FallibleIterator as _;
        let mut rows = self.client.query_raw(stmt, values.iter())?;
        while let Some(row) = rows.next()? {
            if !f(&row)? {
                break;
            }
        }
        Ok(())
    }

    /// Runs statements without parameters (transaction control, locks).
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.client.batch_execute(sql)
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
            tracing::error!(error = %e, "{message}");
            Error::Unavailable(format!("{message}; retry later"))
        }
        None => Error::internal(format_args!("database: {e}")),
    }
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
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    location: String,
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
        // The parser's message never quotes the URL (it may hold a password).
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
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
        Ok(DatabaseUrl { config, location })
    }
}

impl DatabaseUrl {
    /// The server, user and database, without the password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The connection settings, for the asynchronous client (hints).
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// The key of the transaction-level advisory lock every write transaction
/// takes first ("sealrun" + 2). It makes the replicas' writers one writer,
/// as SQLite's single writer thread is: a read-then-write of one job (the
/// audit chain's head, a quota, a run's state) cannot interleave with
/// another replica's, so every rule the domain keeps on SQLite holds
/// unchanged, and the audit chain cannot fork.
pub(super) const WRITE_LOCK: i64 = 0x7365_616c_7275_6e02;

/// Opens connections to one database.
#[derive(Clone)]
pub(crate) struct Connector {
    config: postgres::Config,
    location: String,
}

impl Connector {
    pub(super) fn new(url: &DatabaseUrl) -> Result<Connector, OpenError> {
        let mut config = postgres::Config::from(url.config.clone());
        config
            .application_name("sealrun")
            .connect_timeout(std::time::Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(30));
        Ok(Connector {
            config,
            location: url.location().to_owned(),
        })
    }

    pub(super) fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn::new(self.config.connect(postgres::NoTls)?))
    }

    pub(super) fn location(&self) -> &str {
        &self.location
    }

    pub(super) fn open_error(&self, e: &postgres::Error) -> OpenError {
        OpenError::Database {
            location: self.location().to_owned(),
            message: e.to_string(),
        }
    }
}
