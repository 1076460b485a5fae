//! Rows of `pools`.

use super::sql::Optional as _;
use super::tx::Tx;
use crate::error::Error;
use sealrun_wire::admin::PoolView;

/// Inserts a pool; returns whether it was new (a pool of that name may exist).
pub(crate) fn insert(tx: &Tx<'_>, org_id: i64, name: &str, now: i64) -> Result<bool, Error> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO pools (org_id, name, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (org_id, name) DO NOTHING",
        )?
        .execute(params![org_id, name, now])?;
    Ok(inserted > 0)
}

/// The id of the org's pool `name`.
pub(crate) fn id(tx: &Tx<'_>, org_id: i64, name: &str) -> Result<Option<i64>, Error> {
    Ok(tx
        .prepare_cached("SELECT id FROM pools WHERE org_id = ?1 AND name = ?2")?
        .query_row(params![org_id, name], |r| r.get(0))
        .optional()?)
}

/// The name of pool `id`.
pub(crate) fn name(tx: &Tx<'_>, id: i64) -> Result<String, Error> {
    Ok(tx
        .prepare_cached("SELECT name FROM pools WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))?)
}

/// The org's pools, by name.
pub(crate) fn list(tx: &Tx<'_>, org_id: i64) -> Result<Vec<PoolView>, Error> {
    let mut stmt =
        tx.prepare_cached("SELECT name, created_ms FROM pools WHERE org_id = ?1 ORDER BY name")?;
    let rows = stmt.query_map(params![org_id], |r| {
        Ok(PoolView {
            name: r.get(0)?,
            created_at_ms: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
