//! Moving an installation from SQLite to PostgreSQL (`sealrun server
//! migrate-store`): every row of every table, in one PostgreSQL
//! transaction, then each org's audit chain verified on the copy and
//! compared with the original's head.

use super::db::{DB_FILE, open_migrated};
use super::pg::{Connector, DatabaseUrl};
use super::pg_engine::off_runtime;
use super::schema::{self, database_error};
use super::sql::Value;
use crate::error::OpenError;
use postgres::types::ToSql;
use rusqlite::OptionalExtension as _;
use sealrun_dirlock::DirLock;
use sealrun_wire::audit::{AuditEntry, ChainVerifier};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What was moved.
#[derive(Debug)]
pub struct StoreMigration {
    /// The SQLite database copied (`from`, or `from/sealrun.db` when `from`
    /// is a data directory).
    pub source: PathBuf,
    /// Rows copied, per table.
    pub rows: BTreeMap<String, u64>,
    /// Each org's audit chain on the copy: (org id, entries, head hash),
    /// verified entry by entry and equal to the original's.
    pub chains: Vec<(i64, u64, String)>,
}

/// Tables not copied: SQLite's own bookkeeping, and `run_counts`, which the
/// copy's triggers rebuild as the runs are inserted.
const SKIPPED: &[&str] = &["sqlite_sequence", "run_counts"];

/// Copies the SQLite database at `from` (a data directory or its
/// `sealrun.db`; migrated to the latest schema first) into the empty
/// PostgreSQL database at `to`.
///
/// The source must be a sealrun installation that no server is using: a
/// path that does not exist is not created, a file that is not sealrun's is
/// neither changed nor copied, and a data directory held by a running
/// server (or another `migrate-store`) is refused, naming its pid.
pub fn migrate_store(from: &Path, to: &DatabaseUrl) -> Result<StoreMigration, OpenError> {
    let connector = Connector::new(to)?;
    let pg_err = |e: postgres::Error| connector.open_error(&e);
    let from = &source_file(from)?;
    // Looked at before the lock, which writes its file beside it: nothing
    // is written next to a file that is not an installation.
    check_installation(from)?;
    // Held until the copy is verified: a server started on the directory
    // meanwhile would write runs the copy never sees.
    let _lock = lock_data_dir(from)?;
    // Both connections live on one thread off any tokio runtime (the
    // synchronous PostgreSQL client runs one of its own).
    off_runtime(|| {
        let sqlite_err = |e: rusqlite::Error| OpenError::Database {
            location: from.display().to_string(),
            message: e.to_string(),
        };
        let src = open_migrated(from)?;
        // One read transaction: a consistent snapshot.
        let src = src.unchecked_transaction().map_err(sqlite_err)?;
        let tables = tables_in_order(&src).map_err(sqlite_err)?;
        let mut conn = connector.connect_sync().map_err(pg_err)?;
        super::pg_schema::migrate(&mut conn, &connector)?;
        let orgs: i64 = conn
            .query_one("SELECT COUNT(*) FROM orgs", &[])
            .map_err(pg_err)?
            .get(0);
        if orgs > 0 {
            return Err(OpenError::Database {
                location: connector.location().to_owned(),
                message:
                    "the target database already holds an installation; migrate into an empty one"
                        .into(),
            });
        }
        let mut rows = BTreeMap::new();
        let mut tx = conn.transaction().map_err(pg_err)?;
        for table in &tables {
            let n = copy_table(&src, &mut tx, table).map_err(|e| OpenError::Database {
                location: connector.location().to_owned(),
                message: format!("copying {table}: {e}"),
            })?;
            rows.insert(table.clone(), n);
        }
        // Identity columns continue after the copied ids.
        for (table, column) in [
            ("orgs", "id"),
            ("pools", "id"),
            ("targets", "id"),
            ("users", "id"),
            ("groups", "id"),
            ("runs", "n"),
        ] {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                                   COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
                ),
                &[],
            )
            .map_err(pg_err)?;
        }
        tx.commit().map_err(pg_err)?;
        let chains = verify_chains(&src, &mut conn).map_err(|message| OpenError::Database {
            location: connector.location().to_owned(),
            message,
        })?;
        Ok(StoreMigration {
            source: from.clone(),
            rows,
            chains,
        })
    })
}

/// The database file `from` names: itself, or `sealrun.db` in it if it is a
/// directory. It must exist: opening a missing one would create it, and the
/// move of a mistyped path would "succeed" with nothing in it.
fn source_file(from: &Path) -> Result<PathBuf, OpenError> {
    let file = if from.is_dir() {
        from.join(DB_FILE)
    } else {
        from.to_owned()
    };
    match std::fs::metadata(&file) {
        Ok(meta) if meta.is_file() => Ok(file),
        Ok(_) => Err(not_installation(&file, "not a file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(not_installation(&file, "no such file"))
        }
        Err(source) => Err(OpenError::DataDir { path: file, source }),
    }
}

/// Locks the data directory holding `file`, as a server on it does.
fn lock_data_dir(file: &Path) -> Result<DirLock, OpenError> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Ok(DirLock::acquire(
        dir,
        "data directory",
        "sealrun server migrate-store",
    )?)
}

/// Looks at `file` read-only before anything writes to it (the schema's
/// migration would otherwise add sealrun's tables to any SQLite database):
/// it must carry sealrun's schema and at least one org. What tells this
/// installation from another: the first audit entry of its first org,
/// which a move copies as it is.
pub(crate) fn check_installation(file: &Path) -> Result<Installation, OpenError> {
    let sqlite_err = |e: rusqlite::Error| database_error(file, &e);
    let conn = rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err)?;
    if schema::schema_version(&conn).map_err(sqlite_err)? == 0 {
        return Err(not_installation(file, "no sealrun schema in it"));
    }
    let orgs: i64 = conn
        .query_row("SELECT COUNT(*) FROM orgs", [], |r| r.get(0))
        .map_err(sqlite_err)?;
    if orgs == 0 {
        return Err(not_installation(file, "it holds no org"));
    }
    let first_entry = conn
        .query_row(
            "SELECT org_id, seq, hash FROM audit ORDER BY org_id, seq LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sqlite_err)?
        .map(|(org_id, seq, hash)| (org_id, u64::try_from(seq).unwrap_or_default(), hash));
    Ok(Installation { first_entry })
}

/// A SQLite installation, as [`check_installation`] found it.
#[derive(Debug)]
pub(crate) struct Installation {
    /// Its first org's first audit entry: org id, `seq`, hash.
    pub(crate) first_entry: Option<(i64, u64, String)>,
}

fn not_installation(file: &Path, reason: &str) -> OpenError {
    OpenError::NotAnInstallation {
        location: file.display().to_string(),
        reason: reason.to_owned(),
    }
}

/// The tables to copy, each after those its foreign keys name.
fn tables_in_order(src: &rusqlite::Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt =
        src.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in names.iter().filter(|n| !SKIPPED.contains(&n.as_str())) {
        let mut fk = src.prepare(&format!(
            "SELECT \"table\" FROM pragma_foreign_key_list('{name}')"
        ))?;
        let refs = fk
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<BTreeSet<_>, _>>()?;
        deps.insert(name.clone(), refs);
    }
    let mut order = Vec::new();
    while !deps.is_empty() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(name, refs)| refs.iter().all(|r| r == *name || !deps.contains_key(r)))
            .map(|(name, _)| name.clone())
            .collect();
        let ready = if ready.is_empty() {
            // A cycle (none today): take the rest as they are.
            deps.keys().cloned().collect()
        } else {
            ready
        };
        for name in ready {
            deps.remove(&name);
            order.push(name);
        }
    }
    Ok(order)
}

/// Copies one table's rows; how many.
fn copy_table(
    src: &rusqlite::Connection,
    tx: &mut postgres::Transaction<'_>,
    table: &str,
) -> Result<u64, String> {
    let mut info = src
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .map_err(|e| e.to_string())?;
    let columns: Vec<String> = info
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(|e| e.to_string())?;
    let list = columns.join(", ");
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = tx
        .prepare(&format!(
            "INSERT INTO {table} ({list}) VALUES ({})",
            placeholders.join(", ")
        ))
        .map_err(|e| e.to_string())?;
    let mut select = src
        .prepare(&format!("SELECT {list} FROM {table}"))
        .map_err(|e| e.to_string())?;
    let mut rows = select.query([]).map_err(|e| e.to_string())?;
    let mut copied = 0;
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            use rusqlite::types::ValueRef as V;
            values.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                V::Null => Value::Null,
                V::Integer(n) => Value::Int(n),
                V::Text(t) => Value::Text(std::str::from_utf8(t).map_err(|e| e.to_string())?),
                V::Blob(b) => Value::Blob(b),
                V::Real(r) => {
                    return Err(format!("column {column} holds a real number ({r})"));
                }
            });
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        tx.execute(&insert, &refs).map_err(|e| e.to_string())?;
        copied += 1;
    }
    Ok(copied)
}

/// Verifies each org's chain on the copy, entry by entry, and compares its
/// length and head with the original's.
fn verify_chains(
    src: &rusqlite::Connection,
    conn: &mut postgres::Client,
) -> Result<Vec<(i64, u64, String)>, String> {
    let mut orgs = src
        .prepare("SELECT id FROM orgs ORDER BY id")
        .map_err(|e| e.to_string())?;
    let orgs: Vec<i64> = orgs
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(|e| e.to_string())?;
    let mut chains = Vec::new();
    for org in orgs {
        let original: (i64, Option<String>) = src
            .query_row(
                "SELECT COUNT(*), (SELECT hash FROM audit WHERE org_id = ?1 ORDER BY seq DESC LIMIT 1)
                 FROM audit WHERE org_id = ?1",
                [org],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| e.to_string())?;
        let mut verifier = ChainVerifier::new();
        let rows = conn
            .query(
                "SELECT seq, at_ms, actor, action, subject, detail, prev_hash, hash
                 FROM audit WHERE org_id = $1 ORDER BY seq",
                &[&org],
            )
            .map_err(|e| e.to_string())?;
        for r in &rows {
            let seq: i64 = r.get(0);
            verifier.push(&AuditEntry {
                seq: u64::try_from(seq).map_err(|_| format!("org {org}: audit seq {seq}"))?,
                at_ms: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                subject: r.get(4),
                detail: r.get(5),
                prev_hash: r.get(6),
                hash: r.get(7),
            });
        }
        let verdict = verifier.finish();
        if !verdict.ok {
            return Err(format!(
                "org {org}: the copied audit chain does not verify: {}",
                verdict.problem.unwrap_or_default()
            ));
        }
        let head = rows.last().map(|r| r.get::<_, String>(7));
        if (rows.len() as i64, head.clone()) != original {
            return Err(format!(
                "org {org}: the copied audit chain ({} entries) differs from the original ({} entries)",
                rows.len(),
                original.0
            ));
        }
        chains.push((org, rows.len() as u64, head.unwrap_or_default()));
    }
    Ok(chains)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL nothing answers at: the source is refused before any
    /// connection.
    fn nowhere() -> DatabaseUrl {
        "postgres://u:p@127.0.0.1:1/nowhere".parse().expect("a URL")
    }

    #[test]
    fn another_program_s_database_is_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().expect("a directory");
        let other = dir.path().join("notes.db");
        rusqlite::Connection::open(&other)
            .and_then(|c| {
                c.execute_batch(
                    "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');",
                )
            })
            .expect("another program's database");
        let before = std::fs::read(&other).expect("its bytes");
        let err = migrate_store(&other, &nowhere()).expect_err("refused");
        assert!(
            matches!(&err, OpenError::NotAnInstallation { reason, .. } if reason.contains("no sealrun schema")),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&other).expect("its bytes"),
            before,
            "it changed"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("the directory")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(left, ["notes.db"], "something was written beside it");
    }

    #[test]
    fn an_installation_with_no_org_is_refused() {
        let dir = tempfile::tempdir().expect("a directory");
        let db = dir.path().join(DB_FILE);
        // Positive control for the schema check: sealrun's schema, no org.
        drop(open_migrated(&db).expect("a migrated database"));
        let err = migrate_store(&db, &nowhere()).expect_err("refused");
        assert!(
            matches!(&err, OpenError::NotAnInstallation { reason, .. } if reason.contains("no org")),
            "{err}"
        );
    }
}
