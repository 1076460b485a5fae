//! Rows of `secrets`: sealed (never plaintext) values, per target.

use super::sql::Optional as _;
use super::tx::Tx;
use crate::error::Error;
use sealrun_vault::{KeyId, SealedSecret};
use sealrun_wire::admin::SecretView;

/// Whether target `target_id` has a secret `name`.
pub(crate) fn exists(tx: &Tx<'_>, target_id: i64, name: &str) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM secrets WHERE target_id = ?1 AND name = ?2")?
        .exists(params![target_id, name])?)
}

/// Target `target_id`'s sealed secret `name`.
pub(crate) fn sealed(
    tx: &Tx<'_>,
    target_id: i64,
    name: &str,
) -> Result<Option<SealedSecret>, Error> {
    let row: Option<String> = tx
        .prepare_cached("SELECT sealed FROM secrets WHERE target_id = ?1 AND name = ?2")?
        .query_row(params![target_id, name], |r| r.get(0))
        .optional()?;
    row.map(|json| serde_json::from_str(&json).map_err(Error::from))
        .transpose()
}

/// The version of target `target_id`'s secret `name`.
pub(crate) fn version(tx: &Tx<'_>, target_id: i64, name: &str) -> Result<Option<u64>, Error> {
    Ok(tx
        .prepare_cached("SELECT version FROM secrets WHERE target_id = ?1 AND name = ?2")?
        .query_row(params![target_id, name], |r| r.get(0))
        .optional()?)
}

/// A secret as written.
#[derive(Debug)]
pub(crate) struct Written<'a> {
    pub(crate) target_id: i64,
    pub(crate) name: &'a str,
    pub(crate) version: u64,
    pub(crate) key_id: &'a str,
    pub(crate) sealed: &'a SealedSecret,
    pub(crate) now: i64,
    pub(crate) by: &'a str,
}

/// Stores (or replaces) a sealed secret.
pub(crate) fn upsert(tx: &Tx<'_>, w: &Written<'_>) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO secrets (target_id, name, version, key_id, sealed, updated_ms, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (target_id, name) DO UPDATE SET version = excluded.version,
                key_id = excluded.key_id, sealed = excluded.sealed,
                updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
    )?
    .execute(params![
        w.target_id,
        w.name,
        w.version,
        w.key_id,
        serde_json::to_string(w.sealed)?,
        w.now,
        w.by
    ])?;
    Ok(())
}

/// Deletes target `target_id`'s secret `name`; returns its version and key id.
pub(crate) fn delete(
    tx: &Tx<'_>,
    target_id: i64,
    name: &str,
) -> Result<Option<(u64, String)>, Error> {
    Ok(tx
        .prepare_cached(
            "DELETE FROM secrets WHERE target_id = ?1 AND name = ?2 RETURNING version, key_id",
        )?
        .query_row(params![target_id, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Deletes every secret of target `target_id`; returns how many.
pub(crate) fn delete_all(tx: &Tx<'_>, target_id: i64) -> Result<usize, Error> {
    Ok(tx
        .prepare_cached("DELETE FROM secrets WHERE target_id = ?1")?
        .execute(params![target_id])?)
}

/// Target `target_id`'s secrets, by name: metadata only.
pub(crate) fn list(tx: &Tx<'_>, target_id: i64) -> Result<Vec<SecretView>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT name, version, key_id, updated_ms, updated_by FROM secrets
         WHERE target_id = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map(params![target_id], |r| {
        Ok(SecretView {
            name: r.get(0)?,
            version: r.get(1)?,
            key_id: KeyId(r.get(2)?),
            updated_at_ms: r.get(3)?,
            updated_by: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
