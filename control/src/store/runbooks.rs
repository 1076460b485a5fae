//! Rows of `runbooks`: every version of every runbook, never rewritten.

use super::sql::{self, Optional as _};
use super::tx::Tx;
use crate::error::Error;
use sealrun_wire::runbook::{RunbookSpec, RunbookView};

type Row = (String, u64, i64, String, Option<String>);

fn row(r: &sql::Row<'_>) -> sql::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_view(
    (spec, version, created_ms, created_by, certificate): Row,
) -> Result<RunbookView, Error> {
    Ok(RunbookView {
        spec: serde_json::from_str::<RunbookSpec>(&spec)?,
        version,
        created_at_ms: created_ms,
        created_by,
        certificate: certificate.map(|c| serde_json::from_str(&c)).transpose()?,
    })
}

/// The latest version of the org's runbook `name`.
pub(crate) fn latest(tx: &Tx<'_>, org_id: i64, name: &str) -> Result<Option<RunbookView>, Error> {
    tx.prepare_cached(
        "SELECT spec, version, created_ms, created_by, certificate FROM runbooks
             WHERE org_id = ?1 AND name = ?2 ORDER BY version DESC LIMIT 1",
    )?
    .query_row(params![org_id, name], row)
    .optional()?
    .map(to_view)
    .transpose()
}

/// Version `version` of the org's runbook `name`.
pub(crate) fn version(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
    version: u64,
) -> Result<Option<RunbookView>, Error> {
    tx.prepare_cached(
        "SELECT spec, version, created_ms, created_by, certificate FROM runbooks
             WHERE org_id = ?1 AND name = ?2 AND version = ?3",
    )?
    .query_row(params![org_id, name, version], row)
    .optional()?
    .map(to_view)
    .transpose()
}

/// The latest version of each of the org's runbooks, by name.
pub(crate) fn list_latest(tx: &Tx<'_>, org_id: i64) -> Result<Vec<RunbookView>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT spec, version, created_ms, created_by, certificate FROM runbooks r
         WHERE org_id = ?1
           AND version = (SELECT MAX(version) FROM runbooks WHERE org_id = r.org_id AND name = r.name)
         ORDER BY name",
    )?;
    let rows = stmt
        .query_map(params![org_id], row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(to_view).collect()
}

/// Stores `certificate` (JSON) as version `version` of the org's runbook
/// `name`'s.
pub(crate) fn set_certificate(
    tx: &Tx<'_>,
    org_id: i64,
    name: &str,
    version: u64,
    certificate: &str,
) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE runbooks SET certificate = ?4 WHERE org_id = ?1 AND name = ?2 AND version = ?3",
    )?
    .execute(params![org_id, name, version, certificate])?;
    Ok(())
}

/// The certificate (JSON) of the runbook version run `run_id` calls, if
/// it calls one and an admin certified that version.
pub(crate) fn certificate_of_run(tx: &Tx<'_>, run_id: &str) -> Result<Option<String>, Error> {
    Ok(tx.prepare_cached(
            "SELECT b.certificate FROM runs r
             JOIN runbooks b ON b.org_id = r.org_id AND b.name = r.runbook AND b.version = r.runbook_version
             WHERE r.id = ?1",
        )?
        .query_row(params![run_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Stores a new version of a runbook.
pub(crate) fn insert(
    tx: &Tx<'_>,
    org_id: i64,
    spec: &RunbookSpec,
    version: u64,
    now: i64,
    by: &str,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO runbooks (org_id, name, version, spec, created_ms, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        org_id,
        spec.name,
        version,
        serde_json::to_string(spec)?,
        now,
        by
    ])?;
    Ok(())
}
