//! The tamper-evident audit trail.
//!
//! Each entry commits to its predecessor: `hash = hex(sha256(prev_hash || "\n"
//! || canonical))` where `canonical` is the entry's fields (without `hash`) as
//! compact JSON in field order. The first entry's `prev_hash` is 64 zeros.
//! Anyone holding an export can re-check the chain offline.

use serde::{Deserialize, Serialize};

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the org's chain, from 1.
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who acted: `token:<id>`, `agent:<id>`, `slack:<team>/<user>`, `system`.
    pub actor: String,
    /// What happened, e.g. `run.submitted`, `secret.written`, `auth.failed`.
    pub action: String,
    /// What it happened to, e.g. a run id or `target/secret`.
    pub subject: String,
    /// Compact JSON object with details (never a secret value).
    pub detail: String,
    /// `hash` of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// `GET /v1/audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Entries with `seq > after`, in order.
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` to continue; equal to the last seq returned.
    pub next_after: u64,
}

/// `GET /v1/audit/verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Whether the whole chain checks out.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry (publish it to detect truncation later).
    pub head: String,
    /// First entry that fails, if any.
    pub first_bad_seq: Option<u64>,
    /// What is wrong, if anything.
    pub problem: Option<String>,
}
