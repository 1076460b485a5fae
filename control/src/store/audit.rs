//! The audit trail's rows: appending to and reading an org's hash chain.
//!
//! Appends happen only inside writer jobs (see [`super::Db`]), so they are
//! serialized and an entry is committed together with the change it records:
//! there is no change without its entry and no entry without its change.
//! On PostgreSQL, a transaction that runs beside other replicas' appends
//! its jobs' entries as it commits, under [`AUDIT_LOCK`]
//! ([`append_deferred`]).

use super::pg::AUDIT_LOCK;
use super::sql::{self, Optional as _, Row};
use super::tx::{PendingAppend, Tx};
use super::writer::now_ms;
use crate::error::Error;
use sealrun_wire::audit::{AuditEntry, AuditLink, GENESIS_HASH};
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
) -> Result<(), Error> {
    let pending = PendingAppend {
        org_id,
        at_ms: now_ms(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        detail: detail.to_string(),
    };
    if tx.defers_appends() {
        tx.defer_append(pending);
        return Ok(());
    }
    let head = head(tx, org_id)?;
    insert(tx, pending, head)
}

/// The head (`seq`, `hash`) of the org's chain, if it has an entry: as
/// this transaction last appended it, or else read.
fn head(tx: &Tx<'_>, org_id: i64) -> sql::Result<Option<(u64, String)>> {
    if let Some(head) = tx.audit_head(org_id) {
        return Ok(Some(head));
    }
    tx.prepare_cached("SELECT seq, hash FROM audit WHERE org_id = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row(params![org_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Appends `pending` after `head` (`None`: the chain is empty), sent with
/// the transaction's next statement.
fn insert(tx: &Tx<'_>, pending: PendingAppend, head: Option<(u64, String)>) -> Result<(), Error> {
    let row = chained(tx, pending, head);
    insert_rows(tx, std::slice::from_ref(&row))
}

/// `pending` as the entry after `head` (`None`: the chain is empty), now
/// the head of its org's chain in this transaction.
fn chained(tx: &Tx<'_>, pending: PendingAppend, head: Option<(u64, String)>) -> (i64, AuditEntry) {
    let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
    let mut entry = AuditEntry {
        seq: prev_seq + 1,
        at_ms: pending.at_ms,
        actor: pending.actor,
        action: pending.action,
        subject: pending.subject,
        detail: pending.detail,
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    tx.remember_audit_head(pending.org_id, entry.seq, &entry.hash);
    (pending.org_id, entry)
}

/// The most rows one `INSERT` of [`insert_rows`] carries: each count up to
/// it is a statement of its own, prepared once per connection.
const ROWS_PER_INSERT: usize = 16;

/// Inserts `rows` (org id, entry), sent with the transaction's next
/// statement: one statement for up to [`ROWS_PER_INSERT`] rows (on
/// PostgreSQL each statement is a message and an answer of its own).
fn insert_rows(tx: &Tx<'_>, rows: &[(i64, AuditEntry)]) -> Result<(), Error> {
    /// The `INSERT` of `n` rows at index `n - 1`, written once.
    static INSERTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (1..=ROWS_PER_INSERT)
            .map(|n| {
                let rows: Vec<String> = (0..n)
                    .map(|row| {
                        // Nine columns a row.
                        let marks: Vec<String> =
                            (1..=9).map(|k| format!("?{}", 9 * row + k)).collect();
                        format!("({})", marks.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO audit (org_id, seq, at_ms, actor, action, subject, detail, prev_hash, hash)
             VALUES {}",
                    rows.join(", ")
                )
            })
            .collect()
    });
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let params: Vec<&dyn sql::Param> = chunk
            .iter()
            .flat_map(|(org_id, e)| {
                [
                    org_id as &dyn sql::Param,
                    &e.seq,
                    &e.at_ms,
                    &e.actor,
                    &e.action,
                    &e.subject,
                    &e.detail,
                    &e.prev_hash,
                    &e.hash,
                ]
            })
            .collect();
        // A chunk holds 1 to `ROWS_PER_INSERT` rows: the index is in range.
        tx.prepare_cached(&INSERTS[chunk.len() - 1])?
            .execute_later(&params)?;
    }
    Ok(())
}

/// Appends the entries the transaction's kept jobs left
/// ([`Tx::defers_appends`]), in the order they made them: takes
/// [`AUDIT_LOCK`] (held to the commit), reads each org's head after it
/// (a statement's snapshot is taken when it starts, under READ COMMITTED,
/// so after the lock is held), and leaves the inserts to be sent with the
/// `COMMIT`. Transactions beside each other thus extend a chain one at a
/// time, each from the head the one before committed: it never forks.
pub(super) fn append_deferred(tx: &Tx<'_>) -> Result<(), Error> {
    let pending = tx.take_deferred();
    if pending.is_empty() {
        return Ok(());
    }
    // Sent with the first head's read: one round trip for both.
    tx.prepare_cached("SELECT pg_advisory_xact_lock(?1)")?
        .execute_later(params![AUDIT_LOCK])?;
    let mut rows = Vec::with_capacity(pending.len());
    for mut entry in pending {
        let head = head(tx, entry.org_id)?;
        // Stamped now, the lock held (it went out with the first head's
        // read): entries then follow each other in time as in the chain,
        // though made by transactions side by side (on one clock; replicas'
        // clocks differ by what NTP leaves).
        entry.at_ms = now_ms();
        rows.push(chained(tx, entry, head));
    }
    insert_rows(tx, &rows)
}

fn entry_from_row(r: &Row<'_>) -> sql::Result<AuditEntry> {
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
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE org_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![org_id, after, limit], entry_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Calls `each` with every entry of the org's chain with `seq > after`, in
/// order, streaming them from the database (a chain of any length is never
/// held in memory).
pub(crate) fn each_after(
    tx: &Tx<'_>,
    org_id: i64,
    after: u64,
    mut each: impl FnMut(&AuditEntry),
) -> Result<(), Error> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE org_id = ?1 AND seq > ?2 ORDER BY seq"
    ))?;
    stmt.each(params![org_id, after], |row| {
        each(&entry_from_row(row)?);
        Ok(true)
    })?;
    Ok(())
}

/// The stored hash of entry `seq`, if that entry exists.
pub(crate) fn hash_at(tx: &Tx<'_>, org_id: i64, seq: u64) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached("SELECT hash FROM audit WHERE org_id = ?1 AND seq = ?2")?
        .query_row(params![org_id, seq], |r| r.get(0))
        .optional()?)
}

/// The seq of the org's last entry (0 for an empty chain).
pub(crate) fn last_seq(tx: &Tx<'_>, org_id: i64) -> Result<u64, Error> {
    Ok(tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM audit WHERE org_id = ?1")?
        .query_row(params![org_id], |r| r.get(0))?)
}

/// What earlier verifications of an org's chain established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The last entry found intact (0: none yet).
    pub(crate) seq: u64,
    /// Its hash ([`GENESIS_HASH`] for 0).
    pub(crate) hash: String,
    /// The first failure found, until a full verification passes.
    pub(crate) failure: Option<(u64, String)>,
}

/// The org's checkpoint, if a verification ever ran.
pub(crate) fn checkpoint(tx: &Tx<'_>, org_id: i64) -> Result<Option<Checkpoint>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT seq, hash, failed_seq, problem FROM audit_checkpoints WHERE org_id = ?1",
        )?
        .query_row(params![org_id], |r| {
            let failed: Option<u64> = r.get(2)?;
            let problem: Option<String> = r.get(3)?;
            Ok(Checkpoint {
                seq: r.get(0)?,
                hash: r.get(1)?,
                failure: failed.map(|seq| (seq, problem.unwrap_or_default())),
            })
        })
        .optional()?)
}

/// Moves the org's checkpoint forward to entry `seq` with `hash` (never
/// back: verifications may finish out of order).
pub(crate) fn advance_checkpoint(
    tx: &Tx<'_>,
    org_id: i64,
    seq: u64,
    hash: &str,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO audit_checkpoints (org_id, seq, hash, verified_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (org_id) DO UPDATE
                SET seq = excluded.seq, hash = excluded.hash, verified_ms = excluded.verified_ms
                WHERE excluded.seq >= audit_checkpoints.seq",
    )?
    .execute(params![org_id, seq, hash, now_ms()])?;
    Ok(())
}

/// Records that entry `seq` failed verification (keeping the earliest
/// failure recorded), so that later verifications keep reporting it.
pub(crate) fn record_failure(
    tx: &Tx<'_>,
    org_id: i64,
    seq: u64,
    problem: &str,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO audit_checkpoints (org_id, seq, hash, verified_ms, failed_seq, problem)
             VALUES (?1, 0, ?2, ?3, ?4, ?5)
             ON CONFLICT (org_id) DO UPDATE
                SET failed_seq = excluded.failed_seq, problem = excluded.problem,
                    verified_ms = excluded.verified_ms
                WHERE audit_checkpoints.failed_seq IS NULL
                   OR excluded.failed_seq < audit_checkpoints.failed_seq",
    )?
    .execute(params![org_id, GENESIS_HASH, now_ms(), seq, problem])?;
    Ok(())
}

/// Forgets a recorded failure (a full verification found the chain intact).
pub(crate) fn clear_failure(tx: &Tx<'_>, org_id: i64) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE audit_checkpoints SET failed_seq = NULL, problem = NULL WHERE org_id = ?1",
    )?
    .execute(params![org_id])?;
    Ok(())
}

/// The links (seq and hashes) of org `org_id`'s chain from entry `from` on
/// (inclusive), at most `limit`.
pub(crate) fn links(
    tx: &Tx<'_>,
    org_id: i64,
    from: u64,
    limit: u32,
) -> Result<Vec<AuditLink>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, prev_hash, hash FROM audit WHERE org_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![org_id, from, limit], |r| {
        Ok(AuditLink {
            seq: r.get(0)?,
            prev_hash: r.get(1)?,
            hash: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
