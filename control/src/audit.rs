//! The audit trail as users read it: pages, and verification that re-hashes
//! what was appended since the last one (or, asked to, everything).

use crate::caller::User;
use crate::error::Error;
use crate::permissions::Action;
use crate::service::Control;
use crate::store;
use sealrun_wire::audit::{AuditPage, AuditVerification, ChainVerifier, GENESIS_HASH};
use serde_json::Value;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

impl Control {
    /// Entries with `seq > after`, at most `limit` (default 100, at most
    /// 1000), in order.
    pub async fn audit_page(
        &self,
        user: &User,
        after: u64,
        limit: Option<u32>,
    ) -> Result<AuditPage, Error> {
        user.require(Action::ReadAudit)?;
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let org_id = user.org_id;
        let entries = self
            .db
            .read(move |tx| store::audit::page(tx, org_id, after, limit))
            .await?;
        let next_after = entries.last().map_or(after, |e| e.seq);
        Ok(AuditPage {
            entries,
            next_after,
        })
    }

    /// Verifies the org's chain: with [`AuditScope::SinceCheckpoint`], only
    /// the entries appended since the last verification that found the
    /// chain intact (its checkpoint), after checking that the checkpoint's
    /// entry still exists with the hash it had; with [`AuditScope::Full`],
    /// every entry from the first, also checking it against the checkpoint.
    ///
    /// What each finds (the checkpoint is kept in the database, so whoever
    /// can edit the database can move it too; keep exported heads elsewhere):
    ///
    /// - both: edits, insertions, removals and reorderings among the entries
    ///   they re-hash; a chain rewritten consistently through the
    ///   checkpoint's entry (its hash changed); entries removed from the end
    ///   back past the checkpoint;
    /// - only `Full`: an entry at or before the checkpoint edited in place
    ///   (with or without its own hash recomputed) while the checkpoint's
    ///   entry kept its hash.
    ///
    /// A failure, once found, is reported by every later verification until
    /// a full one finds the chain intact again (the database restored).
    pub async fn audit_verify(
        &self,
        user: &User,
        scope: AuditScope,
    ) -> Result<AuditVerification, Error> {
        user.require(Action::ReadAudit)?;
        let org_id = user.org_id;
        let (verdict, before) = self
            .db
            .read(move |tx| {
                let checkpoint = store::audit::checkpoint(tx, org_id)?;
                let verdict = verify(tx, org_id, checkpoint.as_ref(), scope)?;
                Ok((verdict, checkpoint))
            })
            .await?;
        // Remember what was found, unless it is what was known already. A
        // failure to remember is logged: the verdict stands either way.
        let remember = match (&verdict, &before) {
            (v, Some(cp)) if v.ok => {
                v.entries > cp.seq || (scope == AuditScope::Full && cp.failure.is_some())
            }
            (v, None) if v.ok => true,
            (v, Some(cp)) => cp.failure.as_ref().map(|(seq, _)| *seq) != v.first_bad_seq,
            (_, None) => true,
        };
        if remember {
            let found = verdict.clone();
            let saved = self
                .db
                .write(move |tx| match (found.first_bad_seq, found.problem) {
                    (Some(seq), Some(problem)) => {
                        store::audit::record_failure(tx, org_id, seq, &problem)
                    }
                    _ => {
                        store::audit::advance_checkpoint(tx, org_id, found.entries, &found.head)?;
                        if scope == AuditScope::Full {
                            store::audit::clear_failure(tx, org_id)?;
                        }
                        Ok(())
                    }
                })
                .await;
            if let Err(e) = saved {
                tracing::warn!(error = %e, "cannot record the audit verification's checkpoint");
            }
        }
        Ok(verdict)
    }
}

/// How much of a chain [`Control::audit_verify`] re-hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditScope {
    /// The entries appended since the last verification that found the
    /// chain intact (all of them the first time).
    #[default]
    SinceCheckpoint,
    /// Every entry, from the first.
    Full,
}

/// The verification itself, in one read transaction (one snapshot).
fn verify(
    tx: &store::Tx<'_>,
    org_id: i64,
    checkpoint: Option<&store::audit::Checkpoint>,
    scope: AuditScope,
) -> Result<AuditVerification, Error> {
    let last = store::audit::last_seq(tx, org_id)?;
    let failed = |seq: u64, problem: String, head: &str, verified_from: u64| AuditVerification {
        ok: false,
        entries: last,
        head: head.to_owned(),
        first_bad_seq: Some(seq),
        problem: Some(problem),
        verified_from,
    };
    let Some(cp) = checkpoint else {
        let mut chain = ChainVerifier::new();
        store::audit::each_after(tx, org_id, 0, |e| chain.push(e))?;
        return Ok(chain.finish());
    };
    if scope == AuditScope::SinceCheckpoint {
        if let Some((seq, problem)) = &cp.failure {
            let problem = format!(
                "{problem} (found by an earlier verification; reported until a full verification finds the chain intact)"
            );
            return Ok(failed(*seq, problem, &cp.hash, last + 1));
        }
        if cp.seq > 0 {
            match store::audit::hash_at(tx, org_id, cp.seq)? {
                None => {
                    return Ok(failed(cp.seq, gone(cp.seq, last), GENESIS_HASH, cp.seq));
                }
                Some(hash) if hash != cp.hash => {
                    return Ok(failed(cp.seq, rewritten(cp.seq), GENESIS_HASH, cp.seq));
                }
                Some(_) => {}
            }
        }
        let mut chain = ChainVerifier::resume(cp.seq, &cp.hash);
        store::audit::each_after(tx, org_id, cp.seq, |e| chain.push(e))?;
        return Ok(chain.finish());
    }
    // Full: the chain from its first entry, and the checkpoint's entry
    // must be the one found before.
    let mut chain = ChainVerifier::new();
    let mut differs = false;
    store::audit::each_after(tx, org_id, 0, |e| {
        chain.push(e);
        differs |= e.seq == cp.seq && e.hash != cp.hash;
    })?;
    let verdict = chain.finish();
    if !verdict.ok || cp.seq == 0 {
        return Ok(verdict);
    }
    if last < cp.seq {
        return Ok(failed(cp.seq, gone(cp.seq, last), &verdict.head, 1));
    }
    if differs {
        return Ok(failed(cp.seq, rewritten(cp.seq), &verdict.head, 1));
    }
    Ok(verdict)
}

fn gone(seq: u64, last: u64) -> String {
    format!(
        "entry {seq}, found intact by an earlier verification, is gone (the trail now ends at entry {last}): entries were removed"
    )
}

fn rewritten(seq: u64) -> String {
    format!(
        "entry {seq} no longer has the hash an earlier verification found: the trail was rewritten"
    )
}

/// An entry about something refused, to append outside any other change.
pub(crate) struct Refused {
    pub(crate) org_id: i64,
    pub(crate) actor: String,
    pub(crate) action: &'static str,
    pub(crate) subject: String,
    pub(crate) detail: Value,
}

impl Control {
    /// Appends an entry about a refused request. A failure to write it is
    /// logged, not answered: the request is refused either way.
    pub(crate) async fn audit_refusal(&self, entry: Refused) {
        let action = entry.action;
        let written = self
            .db
            .write(move |tx| {
                store::audit::append(
                    tx,
                    entry.org_id,
                    &entry.actor,
                    entry.action,
                    &entry.subject,
                    entry.detail,
                )
                .map(drop)
            })
            .await;
        if let Err(e) = written {
            tracing::error!(error = %e, action, "cannot audit a refused request");
        }
    }
}
