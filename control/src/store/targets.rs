//! Rows of `targets`: specs and pinned public keys.

use super::sql::{self, Optional as _, Row};
use super::tx::Tx;
use crate::error::Error;
use sealrun_vault::KeyId;
use sealrun_wire::admin::{PublicKeyView, TargetSpec, TargetView};

const VIEW_COLUMNS: &str = "spec, public_key, key_id, updated_ms, certificate, report_key";

type ViewRow = (
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);

fn view_row(r: &Row<'_>) -> sql::Result<ViewRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn to_view(
    (spec, key, key_id, updated, certificate, report_key): ViewRow,
) -> Result<TargetView, Error> {
    // A key id without the key: re-keyed, awaiting the agent with that key.
    let (public_key, awaiting_key_id) = match (key, key_id) {
        (Some(key), Some(id)) => (
            Some(PublicKeyView {
                key_id: KeyId(id),
                key,
                report_key,
            }),
            None,
        ),
        (None, Some(id)) => (None, Some(KeyId(id))),
        _ => (None, None),
    };
    Ok(TargetView {
        spec: serde_json::from_str(&spec)?,
        public_key,
        awaiting_key_id,
        certificate: certificate.map(|c| serde_json::from_str(&c)).transpose()?,
        updated_at_ms: updated,
    })
}

/// The org's target `name`, as users see it.
pub(crate) fn view(tx: &Tx<'_>, org_id: i64, name: &str) -> Result<Option<TargetView>, Error> {
    tx.prepare_cached(&format!(
        "SELECT {VIEW_COLUMNS} FROM targets WHERE org_id = ?1 AND name = ?2"
    ))?
    .query_row(params![org_id, name], view_row)
    .optional()?
    .map(to_view)
    .transpose()
}

/// The org's targets, by name.
pub(crate) fn list(tx: &Tx<'_>, org_id: i64) -> Result<Vec<TargetView>, Error> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {VIEW_COLUMNS} FROM targets WHERE org_id = ?1 ORDER BY name"
    ))?;
    let rows = stmt
        .query_map(params![org_id], view_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(to_view).collect()
}

/// The id of the org's target `name`.
pub(crate) fn id(tx: &Tx<'_>, org_id: i64, name: &str) -> Result<Option<i64>, Error> {
    Ok(tx
        .prepare_cached("SELECT id FROM targets WHERE org_id = ?1 AND name = ?2")?
        .query_row(params![org_id, name], |r| r.get(0))
        .optional()?)
}

/// The org's target `name`: its id and spec.
pub(crate) fn spec_by_name(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
) -> Result<Option<(i64, TargetSpec)>, Error> {
    let row: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, spec FROM targets WHERE org_id = ?1 AND name = ?2")?
        .query_row(params![org_id, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((id, spec)) => Ok(Some((id, serde_json::from_str(&spec)?))),
        None => Ok(None),
    }
}

/// [`spec_by_name`], with whether a connected agent serves the target (as
/// `agents::served` says, of agents heard from at or after `since`): what
/// a submission needs, in one round trip.
pub(crate) fn spec_by_name_served(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
    since: i64,
) -> Result<Option<(i64, TargetSpec, bool)>, Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT id, spec, ({}) FROM targets WHERE org_id = ?1 AND name = ?2",
            super::agents::served_sql("targets.id", "?3")
        )
    });
    let row: Option<(i64, String, i64)> = tx
        .prepare_cached(&SQL)?
        .query_row(params![org_id, name, since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    match row {
        Some((id, spec, served)) => Ok(Some((id, serde_json::from_str(&spec)?, served > 0))),
        None => Ok(None),
    }
}

/// Target `id`'s certificate (JSON), if an admin certified it.
pub(crate) fn certificate(tx: &Tx<'_>, id: i64) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached("SELECT certificate FROM targets WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))?)
}

/// The org's target `name`: its id, pool and pinned key id (or the key id a
/// re-key awaits).
pub(crate) fn pool_and_key(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
) -> Result<Option<(i64, i64, Option<String>)>, Error> {
    Ok(tx
        .prepare_cached("SELECT id, pool_id, key_id FROM targets WHERE org_id = ?1 AND name = ?2")?
        .query_row(params![org_id, name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

/// Pins target `id`'s public key if it has none: on first sight, or after a
/// re-key that named exactly `key_id`. Whether it pinned it now.
pub(crate) fn pin_key(tx: &Tx<'_>, id: i64, key: &str, key_id: &str) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE targets SET public_key = ?2, key_id = ?3
             WHERE id = ?1 AND public_key IS NULL AND (key_id IS NULL OR key_id = ?3)",
        )?
        .execute(params![id, key, key_id])?
        > 0)
}

/// Target `id`'s report key (`ed25519:...`), if its agent presented one.
pub(crate) fn report_key(tx: &Tx<'_>, id: i64) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached("SELECT report_key FROM targets WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Records target `id`'s report key, presented with its pinned key `key`,
/// if it has none yet (pinned now, or pinned before agents presented one).
pub(crate) fn set_report_key(
    tx: &Tx<'_>,
    id: i64,
    key: &str,
    report_key: &str,
) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE targets SET report_key = ?3
             WHERE id = ?1 AND public_key = ?2 AND report_key IS NULL",
    )?
    .execute(params![id, key, report_key])?;
    Ok(())
}

/// Target `id` accepts only the key `key_id` from now on; its key bytes are
/// pinned when an agent presents that key ([`pin_key`]).
pub(crate) fn rekey(tx: &Tx<'_>, id: i64, key_id: &str, now: i64) -> Result<(), Error> {
    tx.prepare_cached(
            "UPDATE targets SET public_key = NULL, report_key = NULL, key_id = ?2, updated_ms = ?3 WHERE id = ?1",
        )?
        .execute(params![id, key_id, now])?;
    Ok(())
}

/// Declares a target.
pub(crate) fn insert(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
    pool_id: i64,
    spec: &TargetSpec,
    now: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO targets (org_id, name, pool_id, spec, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        org_id,
        name,
        pool_id,
        serde_json::to_string(spec)?,
        now
    ])?;
    Ok(())
}

/// Replaces target `id`'s pool and spec (its key stays pinned).
pub(crate) fn update(
    tx: &Tx<'_>,
    id: i64,
    pool_id: i64,
    spec: &TargetSpec,
    now: i64,
) -> Result<(), Error> {
    tx.prepare_cached("UPDATE targets SET pool_id = ?2, spec = ?3, updated_ms = ?4 WHERE id = ?1")?
        .execute(params![id, pool_id, serde_json::to_string(spec)?, now])?;
    Ok(())
}

/// Removes target `id` (its secrets and agents' links must be gone first).
pub(crate) fn delete(tx: &Tx<'_>, id: i64) -> Result<(), Error> {
    tx.prepare_cached("DELETE FROM targets WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// Stores `certificate` (JSON) as the org's target `name`'s.
pub(crate) fn set_certificate(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
    certificate: &str,
) -> Result<(), Error> {
    tx.prepare_cached("UPDATE targets SET certificate = ?3 WHERE org_id = ?1 AND name = ?2")?
        .execute(params![org_id, name, certificate])?;
    Ok(())
}
