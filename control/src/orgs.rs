//! Orgs: the unit of isolation. Creating one also creates its `default` pool
//! and its first admin token.

use crate::caller::SYSTEM;
use crate::credentials::issue;
use crate::error::OpenError;
use crate::store::{self, Standalone, Tx, now_ms};
use crate::token::{self, TokenKind};
use sealrun_wire::admin::Role;
use sealrun_wire::names;
use serde_json::json;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Name of the pool every org starts with.
pub(crate) const DEFAULT_POOL: &str = "default";

/// Name of the user every org starts with (holding the first admin token).
const FIRST_ADMIN: &str = "admin";

/// Creates `dir` (and parents) readable by the owner only, if missing.
pub(crate) fn ensure_data_dir(dir: &Path) -> Result<(), OpenError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| OpenError::DataDir {
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
pub fn create_org(
    data_dir: &Path,
    database: Option<&store::DatabaseUrl>,
    name: &str,
) -> Result<String, OpenError> {
    let mut conn = match database {
        Some(url) => Standalone::open_postgres(url)?,
        None => {
            ensure_data_dir(data_dir)?;
            Standalone::open(&data_dir.join(store::DB_FILE))?
        }
    };
    create_org_in(&mut conn, name)
}

/// Creates an org in one transaction of `conn`; returns its admin token.
fn create_org_in(conn: &mut Standalone, name: &str) -> Result<String, OpenError> {
    names::object("org", name).map_err(|e| OpenError::InvalidName(e.to_string()))?;
    let location = conn.location().to_owned();
    let db_err = database_error(&location);
    let admin = conn.immediate(|tx| {
        if store::orgs::exists(tx, name).map_err(&db_err)? {
            return Err(OpenError::OrgExists(name.to_owned()));
        }
        seed_org(tx, name).map_err(db_err)
    })?;
    tracing::info!(org = name, token_id = %admin.id, "org created");
    Ok(admin.value)
}

/// Inserts the org, its default pool and its first admin token, audited.
fn seed_org(tx: &Tx<'_>, name: &str) -> Result<token::NewToken, crate::error::Error> {
    let now = now_ms();
    let org_id = store::orgs::insert(tx, name, now)?;
    store::pools::insert(tx, org_id, DEFAULT_POOL, now)?;
    store::audit::append(tx, org_id, SYSTEM, "org.created", name, json!({}))?;
    store::audit::append(tx, org_id, SYSTEM, "pool.created", DEFAULT_POOL, json!({}))?;
    // A new org has no user yet, so the name is free.
    let user_id = store::users::insert(tx, org_id, FIRST_ADMIN, Role::Admin, now)?
        .ok_or_else(|| crate::error::Error::Conflict("user admin already exists".into()))?;
    store::audit::append(
        tx,
        org_id,
        SYSTEM,
        "user.created",
        &format!("user:{FIRST_ADMIN}"),
        json!({"role": "admin"}),
    )?;
    let (admin, _) = issue(
        tx,
        &store::tokens::TokenRecord {
            org_id,
            kind: TokenKind::User,
            name: "initial admin",
            role: Some(Role::Admin),
            user_id: Some(user_id),
            pool_id: None,
            agent_id: None,
            expires_ms: None,
            max_uses: None,
            parent_id: None,
        },
        SYSTEM,
        json!({"name": "initial admin", "role": "admin", "user": FIRST_ADMIN}),
    )?;
    Ok(admin)
}

/// On first start (no org yet), creates `org_name` and hands its admin token
/// to the operator: written to `token_file` (mode 0600), or printed once to
/// stderr.
/// A domain error of the database at `location`, as an open error naming it.
fn database_error(location: &str) -> impl Fn(crate::error::Error) -> OpenError + '_ {
    move |e| OpenError::Database {
        location: location.to_owned(),
        message: e.detail(),
    }
}

/// How many orgs the database holds.
pub(crate) fn count(conn: &mut Standalone) -> Result<i64, OpenError> {
    let location = conn.location().to_owned();
    conn.immediate(|tx| store::orgs::count(tx).map_err(database_error(&location)))
}

/// Whether the database holds the audit entry `(org id, seq, hash)`.
pub(crate) fn holds_audit_entry(
    conn: &mut Standalone,
    (org_id, seq, hash): &(i64, u64, String),
) -> Result<bool, OpenError> {
    let location = conn.location().to_owned();
    let found = conn.immediate(|tx| {
        store::audit::hash_at(tx, *org_id, *seq).map_err(database_error(&location))
    })?;
    Ok(found.as_deref() == Some(hash.as_str()))
}

pub(crate) fn bootstrap(
    conn: &mut Standalone,
    org_name: &str,
    token_file: Option<&Path>,
) -> Result<(), OpenError> {
    if count(conn)? > 0 {
        return Ok(());
    }
    let token = match create_org_in(conn, org_name) {
        Ok(token) => token,
        // Another replica of a shared database created it between the
        // count and now: it handed out the token.
        Err(OpenError::OrgExists(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
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

fn write_token_file(file: &Path, token: &str) -> Result<(), OpenError> {
    let err = |source| OpenError::TokenFile {
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
