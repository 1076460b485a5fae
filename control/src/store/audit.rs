//! The audit trail's rows: appending to and reading an org's hash chain.
//!
//! Appends happen only inside writer jobs (see [`super::Db`]), so they are
//! serialized and an entry is committed together with the change it records:
//! there is no change without its entry and no entry without its change.

use super::db::now_ms;
use super::tx::Tx;
use crate::error::Error;
use rusqlite::{OptionalExtension as _, params};
use sealrun_wire::audit::{AuditEntry, ChainVerifier, GENESIS_HASH};
use serde_json::Value;

/// Appends one entry to `org_id`'s chain. `detail` must be a JSON object and
/// must never hold a secret value.
pub(crate) fn append(
    tx: &Tx<'_>,
    org_id: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: Value,
) -> Result<AuditEntry, Error> {
    let head: Option<(u64, String)> = tx
        .conn
        .prepare_cached("SELECT seq, hash FROM audit WHERE org_id = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row([org_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
    let mut entry = AuditEntry {
        seq: prev_seq + 1,
        at_ms: now_ms(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        detail: detail.to_string(),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    tx.conn.prepare_cached(
        "INSERT INTO audit (org_id, seq, at_ms, actor, action, subject, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        org_id,
        entry.seq,
        entry.at_ms,
        entry.actor,
        entry.action,
        entry.subject,
        entry.detail,
        entry.prev_hash,
        entry.hash
    ])?;
    Ok(entry)
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        subject: r.get(4)?,
        detail: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

const COLUMNS: &str = "seq, at_ms, actor, action, subject, detail, prev_hash, hash";

/// Entries with `seq > after`, at most `limit`, in order.
pub(crate) fn page(
    tx: &Tx<'_>,
    org_id: i64,
    after: u64,
    limit: u32,
) -> Result<Vec<AuditEntry>, Error> {
    let mut stmt = tx.conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE org_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![org_id, after, limit], entry_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Re-checks the org's whole chain, streaming it from the database.
pub(crate) fn verify(tx: &Tx<'_>, org_id: i64) -> Result<ChainVerifier, Error> {
    let mut verifier = ChainVerifier::new();
    let mut stmt = tx.conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE org_id = ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query([org_id])?;
    while let Some(row) = rows.next()? {
        verifier.push(&entry_from_row(row)?);
    }
    Ok(verifier)
}
