//! The tamper-evident audit trail.
//!
//! Each entry commits to its predecessor: `hash = hex(sha256(prev_hash || "\n"
//! || canonical))` where `canonical` is the entry's fields (without `hash`) as
//! compact JSON in field order. The first entry's `prev_hash` is 64 zeros.
//! Anyone holding an export can re-check the chain offline, with
//! [`verify_chain`] (or [`ChainVerifier`] for a stream of entries).
//!
//! ```
//! use sealrun_wire::audit::{AuditEntry, GENESIS_HASH, verify_chain};
//!
//! let mut first = AuditEntry {
//!     seq: 1,
//!     at_ms: 1_700_000_000_000,
//!     actor: "system".into(),
//!     action: "org.created".into(),
//!     subject: "acme".into(),
//!     detail: "{}".into(),
//!     prev_hash: GENESIS_HASH.into(),
//!     hash: String::new(),
//! };
//! first.hash = first.compute_hash();
//! assert!(verify_chain(&[first.clone()]).ok);
//!
//! first.subject = "evil".into(); // edited after the fact
//! let check = verify_chain(&[first]);
//! assert!(!check.ok);
//! assert_eq!(check.first_bad_seq, Some(1));
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// `prev_hash` of an org's first entry: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

impl AuditEntry {
    /// The hash this entry must carry: `hex(sha256(prev_hash || "\n" ||
    /// canonical))`, where `canonical` is the compact JSON of every field but
    /// `hash`, in declaration order.
    pub fn compute_hash(&self) -> String {
        /// Field order here *is* the hash definition: never reorder.
        #[derive(Serialize)]
        struct Canonical<'a> {
            seq: u64,
            at_ms: i64,
            actor: &'a str,
            action: &'a str,
            subject: &'a str,
            detail: &'a str,
            prev_hash: &'a str,
        }
        let canonical = Canonical {
            seq: self.seq,
            at_ms: self.at_ms,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            detail: &self.detail,
            prev_hash: &self.prev_hash,
        };
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(b"\n");
        // Serializing integers and strings into a Vec cannot fail.
        let json = serde_json::to_vec(&canonical).expect("integers and strings always serialize");
        hasher.update(&json);
        hex::encode(hasher.finalize())
    }
}

/// Checks a whole chain, from its first entry, in order.
///
/// Detects an edited entry (its hash no longer matches its content), a removed
/// or inserted entry (a gap in `seq`, or a `prev_hash` that does not name its
/// predecessor) and reordered entries. Removing entries from the *end* leaves a
/// valid but shorter chain: compare `head` with one published earlier.
pub fn verify_chain<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> AuditVerification {
    let mut verifier = ChainVerifier::new();
    for entry in entries {
        verifier.push(entry);
    }
    verifier.finish()
}

/// Verifies a chain one entry at a time, so an export of any size can be
/// checked without holding it in memory.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    expected_seq: u64,
    head: String,
    verified_from: u64,
    entries: u64,
    failure: Option<(u64, String)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting the chain's first entry (`seq` 1).
    pub fn new() -> ChainVerifier {
        ChainVerifier::resume(0, GENESIS_HASH)
    }

    /// A verifier expecting the entry after `seq`, whose hash was `hash`
    /// (to check a page fetched with `after = seq`, or to go on from a
    /// checkpoint): its verdict covers the `seq` entries before as well, and
    /// says it re-hashed from `seq + 1`.
    pub fn resume(seq: u64, hash: &str) -> ChainVerifier {
        ChainVerifier {
            expected_seq: seq + 1,
            head: hash.to_owned(),
            verified_from: seq + 1,
            entries: seq,
            failure: None,
        }
    }

    /// Checks the next entry. After the first failure, later entries are only
    /// counted.
    pub fn push(&mut self, entry: &AuditEntry) {
        self.entries += 1;
        if self.failure.is_some() {
            return;
        }
        let problem = if entry.seq != self.expected_seq {
            Some(format!(
                "expected entry {} but found entry {}: entries were removed, inserted or reordered",
                self.expected_seq, entry.seq
            ))
        } else if entry.prev_hash != self.head {
            Some(format!(
                "entry {} does not follow the entry before it (prev_hash mismatch)",
                entry.seq
            ))
        } else if entry.compute_hash() != entry.hash {
            Some(format!(
                "entry {} was altered (its hash does not match its content)",
                entry.seq
            ))
        } else {
            None
        };
        match problem {
            Some(p) => self.failure = Some((entry.seq, p)),
            None => {
                self.expected_seq += 1;
                self.head.clone_from(&entry.hash);
            }
        }
    }

    /// The verdict. `head` is the hash of the last entry that checked out.
    pub fn finish(self) -> AuditVerification {
        let (first_bad_seq, problem) = match self.failure {
            Some((seq, problem)) => (Some(seq), Some(problem)),
            None => (None, None),
        };
        AuditVerification {
            ok: first_bad_seq.is_none(),
            entries: self.entries,
            head: self.head,
            first_bad_seq,
            problem,
            verified_from: self.verified_from,
        }
    }
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
    /// Entries the verdict covers (when intact, the last entry's `seq`).
    pub entries: u64,
    /// Hash of the last entry (publish it to detect truncation later).
    pub head: String,
    /// First entry that fails, if any.
    pub first_bad_seq: Option<u64>,
    /// What is wrong, if anything.
    pub problem: Option<String>,
    /// The first entry this verification re-hashed: 1 when it checked the
    /// whole chain, later when the entries before it were covered by an
    /// earlier verification's checkpoint (`entries + 1`: nothing new).
    #[serde(default = "whole_chain")]
    pub verified_from: u64,
}

/// `verified_from` of an answer that does not say (a whole-chain check).
fn whole_chain() -> u64 {
    1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn link(seq: u64, prev: &str, hash: &str) -> AuditLink {
        AuditLink {
            seq,
            prev_hash: prev.into(),
            hash: hash.into(),
        }
    }

    #[test]
    fn a_first_witness_remembers_the_last_link_it_is_shown() {
        let shown = [link(41, "a", "b"), link(42, "b", "c")];
        assert_eq!(witness(None, &shown, 42), Ok(Some(link(42, "b", "c"))));
        assert_eq!(witness(None, &[], 0), Ok(None));
    }

    #[test]
    fn a_trail_that_did_not_grow_is_accepted_as_it_was() {
        let seen = link(7, "a", "b");
        assert_eq!(
            witness(Some(&seen), std::slice::from_ref(&seen), 7),
            Ok(Some(seen))
        );
    }

    #[test]
    fn a_trail_cut_before_the_seen_entry_is_truncation() {
        let seen = link(7, "a", "b");
        assert_eq!(
            witness(Some(&seen), &[], 5),
            Err(WitnessError::Truncated { seen: 7, head: 5 })
        );
        // The seen entry missing from what is shown is no better.
        assert_eq!(
            witness(Some(&seen), &[], 7),
            Err(WitnessError::Broken { seq: 7 })
        );
    }

    #[test]
    fn links_that_do_not_chain_are_broken() {
        let seen = link(7, "a", "b");
        let gap = [link(7, "a", "b"), link(9, "b", "c")];
        assert_eq!(
            witness(Some(&seen), &gap, 9),
            Err(WitnessError::Broken { seq: 9 })
        );
        let spliced = [link(7, "a", "b"), link(8, "z", "c")];
        assert_eq!(
            witness(Some(&seen), &spliced, 8),
            Err(WitnessError::Broken { seq: 8 })
        );
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
                    seq,
                    at_ms: 1_000 + seq as i64,
                    actor: "token:abc".into(),
                    action: "run.submitted".into(),
                    subject: format!("run_{seq}"),
                    detail: r#"{"target":"db"}"#.into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.compute_hash();
                prev.clone_from(&e.hash);
                e
            })
            .collect()
    }

    #[test]
    fn the_hash_is_sha256_of_prev_hash_newline_and_compact_json_in_field_order() {
        let e = &chain(1)[0];
        let canonical = format!(
            r#"{{"seq":1,"at_ms":1001,"actor":"token:abc","action":"run.submitted","subject":"run_1","detail":"{{\"target\":\"db\"}}","prev_hash":"{GENESIS_HASH}"}}"#
        );
        let expected = hex::encode(Sha256::digest(format!("{GENESIS_HASH}\n{canonical}")));
        assert_eq!(e.hash, expected);
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let c = chain(5);
        let v = verify_chain(&c);
        assert!(v.ok, "{v:?}");
        assert_eq!(v.entries, 5);
        assert_eq!(v.head, c[4].hash);
    }

    #[test]
    fn an_empty_chain_verifies_with_the_genesis_head() {
        let v = verify_chain(&[]);
        assert!(v.ok);
        assert_eq!(v.head, GENESIS_HASH);
    }

    #[test]
    fn an_edited_entry_is_detected() {
        let mut c = chain(5);
        c[2].detail = r#"{"target":"other"}"#.into();
        let v = verify_chain(&c);
        assert!(!v.ok);
        assert_eq!(v.first_bad_seq, Some(3));
        assert!(v.problem.unwrap().contains("altered"));
    }

    #[test]
    fn an_edited_entry_with_a_recomputed_hash_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].actor = "token:someone-else".into();
        c[2].hash = c[2].compute_hash();
        let v = verify_chain(&c);
        assert_eq!(v.first_bad_seq, Some(4));
    }

    #[test]
    fn a_removed_entry_is_detected() {
        let mut c = chain(5);
        c.remove(1);
        let v = verify_chain(&c);
        assert_eq!(v.first_bad_seq, Some(3));
        assert!(v.problem.unwrap().contains("expected entry 2"));
    }

    #[test]
    fn swapped_entries_are_detected() {
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify_chain(&c).first_bad_seq, Some(3));
    }

    #[test]
    fn a_page_can_be_verified_from_where_the_previous_one_ended() {
        let c = chain(6);
        let mut v = ChainVerifier::resume(3, &c[2].hash);
        for e in &c[3..] {
            v.push(e);
        }
        let v = v.finish();
        assert!(v.ok);
        assert_eq!((v.entries, v.verified_from), (6, 4));
        assert_eq!(verify_chain(&c).verified_from, 1);
    }
}

/// One link of an org's audit chain, without the entry's content: what a
/// witness (an agent, a CLI) remembers and is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLink {
    /// The entry's position.
    pub seq: u64,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// The entry's hash.
    pub hash: String,
}

impl From<&AuditEntry> for AuditLink {
    fn from(e: &AuditEntry) -> AuditLink {
        AuditLink {
            seq: e.seq,
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// Why the chain shown to a witness does not extend what it saw before:
/// history was rewritten or cut since. Every later hash changes when an
/// entry is edited (the chain commits each entry to its predecessor), so
/// editing any entry up to the one a witness remembers, and recomputing
/// every hash after it, still changes the hash the witness remembers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The trail now ends before the entry the witness saw.
    #[error(
        "the audit trail was cut: entry {seen} was seen before, the trail now ends at entry {head}"
    )]
    Truncated {
        /// The entry the witness remembers.
        seen: u64,
        /// The last entry now.
        head: u64,
    },
    /// The entry the witness saw has another hash now.
    #[error(
        "the audit history was rewritten: entry {seq} had hash {seen} and has hash {shown} now"
    )]
    Rewritten {
        /// The entry.
        seq: u64,
        /// The hash the witness remembers.
        seen: String,
        /// The hash shown now.
        shown: String,
    },
    /// The links shown do not chain (a gap, or a `prev_hash` that is not
    /// its predecessor's hash).
    #[error("the audit chain shown is broken at entry {seq}")]
    Broken {
        /// The first entry that does not chain.
        seq: u64,
    },
}

/// What a witness that saw `seen` (nothing yet: `None`) makes of `links`,
/// the chain from `seen`'s entry on (inclusive, oldest first, as many as
/// were sent) of a trail whose last entry is `head_seq`: the newest link it
/// may now remember, or why the chain does not extend what it saw.
///
/// ```
/// use sealrun_wire::audit::{AuditLink, WitnessError, witness};
///
/// let link = |seq: u64, prev: &str, hash: &str| AuditLink {
///     seq,
///     prev_hash: prev.into(),
///     hash: hash.into(),
/// };
/// let seen = link(7, "a", "b");
/// // The trail grew: the witness moves on to entry 8.
/// let grown = [link(7, "a", "b"), link(8, "b", "c")];
/// assert_eq!(witness(Some(&seen), &grown, 8), Ok(Some(grown[1].clone())));
/// // Entry 7 was edited and every later hash recomputed: caught.
/// let rewritten = [link(7, "a", "x"), link(8, "x", "y")];
/// assert!(matches!(
///     witness(Some(&seen), &rewritten, 8),
///     Err(WitnessError::Rewritten { seq: 7, .. })
/// ));
/// ```
pub fn witness(
    seen: Option<&AuditLink>,
    links: &[AuditLink],
    head_seq: u64,
) -> Result<Option<AuditLink>, WitnessError> {
    if let Some(seen) = seen {
        if head_seq < seen.seq {
            return Err(WitnessError::Truncated {
                seen: seen.seq,
                head: head_seq,
            });
        }
        let Some(first) = links.first() else {
            return Err(WitnessError::Broken { seq: seen.seq });
        };
        if first.seq != seen.seq {
            return Err(WitnessError::Broken { seq: seen.seq });
        }
        if first.hash != seen.hash {
            return Err(WitnessError::Rewritten {
                seq: seen.seq,
                seen: seen.hash.clone(),
                shown: first.hash.clone(),
            });
        }
    }
    for pair in links.windows(2) {
        if pair[1].seq != pair[0].seq + 1 || pair[1].prev_hash != pair[0].hash {
            return Err(WitnessError::Broken { seq: pair[1].seq });
        }
    }
    if let Some(last) = links.last() {
        if last.seq > head_seq {
            return Err(WitnessError::Broken { seq: last.seq });
        }
    }
    Ok(links.last().or(seen).cloned())
}
