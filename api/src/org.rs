//! Orgs: the unit of isolation. Creating one also creates its `default` pool
//! and its first admin token.

use crate::audit;
use crate::db::{self, now_ms};
use crate::error::Error;
use crate::names::check_name;
use crate::token::{self, TokenKind};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use serde_json::json;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The database file inside the data directory.
pub(crate) const DB_FILE: &str = "sealrun.db";

/// Name of the pool every org starts with.
pub(crate) const DEFAULT_POOL: &str = "default";

/// Creates `dir` (and parents) readable by the owner only, if missing.
pub(crate) fn ensure_data_dir(dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::DataDir {
            path: dir.to_owned(),
            source,
        })
}

/// Creates the org `name` in the data directory `data_dir` and returns its
/// one-time admin token. Works while a server is running on the same
/// directory (SQLite serializes the two writers).
///
/// This is the offline `sealrun server create-org` command; the token is
/// shown only here, the database keeps only its hash.
pub fn create_org(data_dir: &Path, name: &str) -> Result<String, Error> {
    ensure_data_dir(data_dir)?;
    let path = data_dir.join(DB_FILE);
    let mut conn = db::open_migrated(&path)?;
    create_org_in(&mut conn, &path, name)
}

/// Creates an org on an open connection; returns its admin token.
pub(crate) fn create_org_in(
    conn: &mut Connection,
    path: &Path,
    name: &str,
) -> Result<String, Error> {
    check_name("org", name).map_err(Error::InvalidName)?;
    let db_err = |source| Error::Database {
        path: path.to_owned(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let exists = tx
        .query_row("SELECT 1 FROM orgs WHERE name = ?1", [name], |_| Ok(()))
        .optional()
        .map_err(db_err)?
        .is_some();
    if exists {
        return Err(Error::OrgExists(name.to_owned()));
    }
    let now = now_ms();
    tx.execute(
        "INSERT INTO orgs (name, created_ms) VALUES (?1, ?2)",
        params![name, now],
    )
    .map_err(db_err)?;
    let org_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO pools (org_id, name, created_ms) VALUES (?1, ?2, ?3)",
        params![org_id, DEFAULT_POOL, now],
    )
    .map_err(db_err)?;
    let admin = token::mint(TokenKind::User);
    tx.execute(
        "INSERT INTO tokens (id, org_id, kind, role, name, secret_sha256, created_ms)
         VALUES (?1, ?2, 'user', 'admin', 'initial admin', ?3, ?4)",
        params![admin.id, org_id, admin.secret_sha256.as_slice(), now],
    )
    .map_err(db_err)?;
    audit::append(&tx, org_id, audit::SYSTEM, "org.created", name, json!({})).map_err(db_err)?;
    audit::append(
        &tx,
        org_id,
        audit::SYSTEM,
        "pool.created",
        DEFAULT_POOL,
        json!({}),
    )
    .map_err(db_err)?;
    audit::append(
        &tx,
        org_id,
        audit::SYSTEM,
        "token.issued",
        &format!("token:{}", admin.id),
        json!({"name": "initial admin", "role": "admin"}),
    )
    .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    tracing::info!(org = name, token_id = %admin.id, "org created");
    Ok(admin.value)
}

/// On first start (no org yet), creates `org_name` and hands its admin token
/// to the operator: written to `token_file` (mode 0600), or printed once to
/// stderr.
pub(crate) fn bootstrap(
    conn: &mut Connection,
    path: &Path,
    org_name: &str,
    token_file: Option<&PathBuf>,
) -> Result<(), Error> {
    let orgs: i64 = conn
        .query_row("SELECT COUNT(*) FROM orgs", [], |r| r.get(0))
        .map_err(|source| Error::Database {
            path: path.to_owned(),
            source,
        })?;
    if orgs > 0 {
        return Ok(());
    }
    let token = create_org_in(conn, path, org_name)?;
    match token_file {
        Some(file) => write_token_file(file, &token),
        None => {
            // The one and only time this token is visible; stderr so it
            // does not end up in a JSON log stream on stdout.
            eprintln!(
                "sealrun: created org {org_name:?}; its admin token (shown only this once):\n{token}"
            );
            Ok(())
        }
    }
}

fn write_token_file(file: &Path, token: &str) -> Result<(), Error> {
    let err = |source| Error::TokenFile {
        path: file.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .map_err(err)?;
    // `mode` applies only to a file created now; tighten an existing one too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    writeln!(f, "{token}").map_err(err)?;
    f.sync_all().map_err(err)
}
