//! What the suites that edit the database behind the control plane's back
//! share: reading an audit row as an entry.

use sealrun_wire::audit::AuditEntry;

/// The columns [`audit_entry`] reads, in its order.
pub const AUDIT_COLUMNS: &str = "seq, at_ms, actor, action, subject, detail, prev_hash, hash";

/// An `audit` row selected with [`AUDIT_COLUMNS`].
pub fn audit_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
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
