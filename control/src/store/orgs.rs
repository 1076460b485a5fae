//! Rows of `orgs`.

use super::tx::Tx;
use crate::error::Error;
use rusqlite::{OptionalExtension as _, params};

/// How many orgs exist.
/// The distinct signers (`ed25519:...`) of the org's target, user and
/// runbook certificates.
pub(crate) fn certifiers(tx: &Tx<'_>, org_id: i64) -> Result<Vec<String>, Error> {
    let mut stmt = tx.conn.prepare_cached(
        "SELECT json_extract(certificate, '$.signer') AS signer FROM targets
             WHERE org_id = ?1 AND certificate IS NOT NULL
         UNION SELECT json_extract(certificate, '$.signer') FROM users
             WHERE org_id = ?1 AND certificate IS NOT NULL
         UNION SELECT json_extract(certificate, '$.signer') FROM runbooks
             WHERE org_id = ?1 AND certificate IS NOT NULL
         ORDER BY signer",
    )?;
    let rows = stmt
        .query_map([org_id], |r| r.get::<_, Option<String>>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows.into_iter().flatten().collect())
}

pub(crate) fn count(tx: &Tx<'_>) -> Result<i64, Error> {
    Ok(tx
        .conn
        .query_row("SELECT COUNT(*) FROM orgs", [], |r| r.get(0))?)
}

/// Whether an org is named `name`.
pub(crate) fn exists(tx: &Tx<'_>, name: &str) -> Result<bool, Error> {
    Ok(tx
        .conn
        .query_row("SELECT 1 FROM orgs WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Inserts an org; returns its id.
pub(crate) fn insert(tx: &Tx<'_>, name: &str, now: i64) -> Result<i64, Error> {
    tx.conn.execute(
        "INSERT INTO orgs (name, created_ms) VALUES (?1, ?2)",
        params![name, now],
    )?;
    Ok(tx.conn.last_insert_rowid())
}
