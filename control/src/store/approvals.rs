//! Approval requests: the approval columns of `runs` (the spec digest, the
//! rule that applied, the expiry, a break-glass reason) and the
//! `approvals` table (one decision per person and run).
//!
//! Every transition is a conditional `UPDATE ... WHERE status = <expected>`,
//! like those of `runs`, so an approval and an expiry can never both apply.

use super::sql::Arg;
use super::sql::{self, Optional as _};
use super::tx::Tx;
use crate::error::Error;
use sealrun_wire::approval::{ApprovalGiven, Rejection};
use std::collections::BTreeMap;

/// The org's name (part of every run's spec digest).
pub(crate) fn org_name(tx: &Tx<'_>, org_id: i64) -> Result<String, Error> {
    if let Some(name) = tx.known_org_name(org_id) {
        return Ok(name);
    }
    let name: String = tx
        .prepare_cached("SELECT name FROM orgs WHERE id = ?1")?
        .query_row(params![org_id], |r| r.get(0))?;
    tx.know_org_name(org_id, &name);
    Ok(name)
}

/// `queued -> pending_approval` for run `run_id`, just inserted, under
/// `rule` (JSON) until `expires_ms`.
pub(crate) fn hold(tx: &Tx<'_>, run_id: &str, rule: &str, expires_ms: i64) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE runs SET status = 'pending_approval', approval_rule = ?2, approval_expires_ms = ?3
             WHERE id = ?1 AND status = 'queued'",
    )?
    .execute(params![run_id, rule, expires_ms])?;
    Ok(())
}

/// Records that run `run_id`, just inserted, skipped the approval `rule`
/// (JSON) demanded, for `reason`.
pub(crate) fn set_break_glass(
    tx: &Tx<'_>,
    run_id: &str,
    rule: &str,
    reason: &str,
) -> Result<(), Error> {
    tx.prepare_cached("UPDATE runs SET approval_rule = ?2, break_glass = ?3 WHERE id = ?1")?
        .execute(params![run_id, rule, reason])?;
    Ok(())
}

/// What an approval decision and view need of a run, beyond its `RunView`.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) target_id: i64,
    pub(crate) env: BTreeMap<String, String>,
    /// `None` for runs submitted before digests existed.
    pub(crate) digest: Option<String>,
    pub(crate) submitter_user_id: Option<i64>,
    /// The rule that applied, as JSON.
    pub(crate) rule: Option<String>,
    pub(crate) expires_ms: Option<i64>,
    pub(crate) break_glass: Option<String>,
}

/// The approval side of the org's run `run_id`.
pub(crate) fn request(tx: &Tx<'_>, org_id: i64, run_id: &str) -> Result<Option<Request>, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT target_id, env, spec_digest, submitter_user_id, approval_rule,
                    approval_expires_ms, break_glass
             FROM runs WHERE org_id = ?1 AND id = ?2",
        )?
        .query_row(params![org_id, run_id], |r| {
            let env: String = r.get(1)?;
            Ok(Request {
                target_id: r.get(0)?,
                env: serde_json::from_str(&env)
                    .map_err(|e| sql::SqlError::Conversion(format!("column 1: {e}")))?,
                digest: r.get(2)?,
                submitter_user_id: r.get(3)?,
                rule: r.get(4)?,
                expires_ms: r.get(5)?,
                break_glass: r.get(6)?,
            })
        })
        .optional()?)
}

/// A decision on a run: `approved` or `rejected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
        }
    }
}

/// One person's decision, to record.
#[derive(Debug)]
pub(crate) struct NewDecision<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) user_id: i64,
    pub(crate) user: &'a str,
    pub(crate) actor: &'a str,
    pub(crate) decision: Decision,
    pub(crate) digest: &'a str,
    /// The approval's comment, or the rejection's reason.
    pub(crate) comment: Option<&'a str>,
    pub(crate) now: i64,
}

/// Records a decision; `false` if this person already approved the run
/// (each person counts once). A rejection replaces the person's approval,
/// if they gave one: the run is rejected whatever they said before (the
/// audit trail keeps both).
pub(crate) fn insert_decision(tx: &Tx<'_>, d: &NewDecision<'_>) -> Result<bool, Error> {
    let on_conflict = match d.decision {
        Decision::Approved => "DO NOTHING",
        Decision::Rejected => {
            "DO UPDATE SET decision = excluded.decision, actor = excluded.actor,
                digest = excluded.digest, comment = excluded.comment, at_ms = excluded.at_ms"
        }
    };
    Ok(tx.prepare_cached(&format!(
            "INSERT INTO approvals (run_id, user_id, user_name, actor, decision, digest, comment, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (run_id, user_id) {on_conflict}"
        ))?
        .execute(params![
            d.run_id,
            d.user_id,
            d.user,
            d.actor,
            d.decision.as_str(),
            d.digest,
            d.comment,
            d.now,
        ])?
        > 0)
}

/// Records the signed form (JSON of a `SignedApproval`) of user
/// `user_id`'s approval of run `run_id`, just recorded.
pub(crate) fn set_signed(
    tx: &Tx<'_>,
    run_id: &str,
    user_id: i64,
    signed: &str,
) -> Result<(), Error> {
    tx.prepare_cached("UPDATE approvals SET signed = ?3 WHERE run_id = ?1 AND user_id = ?2")?
        .execute(params![run_id, user_id, signed])?;
    Ok(())
}

/// The signed approvals of run `run_id` (JSON of each `SignedApproval`).
pub(crate) fn signed(tx: &Tx<'_>, run_id: &str) -> Result<Vec<String>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT signed FROM approvals
         WHERE run_id = ?1 AND decision = 'approved' AND signed IS NOT NULL
         ORDER BY at_ms, user_id",
    )?;
    let rows = stmt.query_map(params![run_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The decisions on run `run_id`, oldest first: approvals, and the
/// rejection if any.
pub(crate) fn decisions(
    tx: &Tx<'_>,
    run_id: &str,
) -> Result<(Vec<ApprovalGiven>, Option<Rejection>), Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT decision, user_id, user_name, digest, comment, at_ms
         FROM approvals WHERE run_id = ?1 ORDER BY at_ms, user_id",
    )?;
    let (mut approved, mut rejected) = (Vec::new(), None);
    stmt.each(params![run_id], |r| {
        let decision: String = r.get(0)?;
        if decision == Decision::Rejected.as_str() {
            let reason: Option<String> = r.get(4)?;
            rejected = Some(Rejection {
                user: r.get(2)?,
                reason: reason.unwrap_or_default(),
                at_ms: r.get(5)?,
            });
        } else {
            approved.push(ApprovalGiven {
                user_id: r.get(1)?,
                user: r.get(2)?,
                digest: r.get(3)?,
                comment: r.get(4)?,
                at_ms: r.get(5)?,
            });
        }
        Ok(true)
    })?;
    Ok((approved, rejected))
}

/// `pending_approval -> queued` at `now` (the queue TTL counts from then);
/// whether it applied.
pub(crate) fn release(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET status = 'queued', queued_ms = ?2
             WHERE id = ?1 AND status = 'pending_approval'",
        )?
        .execute(params![run_id, now])?
        > 0)
}

/// `pending_approval -> rejected`; whether it applied.
pub(crate) fn reject(tx: &Tx<'_>, run_id: &str, error: &str, now: i64) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET status = 'rejected', error = ?2, finished_ms = ?3
             WHERE id = ?1 AND status = 'pending_approval'",
        )?
        .execute(params![run_id, error, now])?
        > 0)
}

/// `pending_approval -> expired` for every request whose time ran out
/// before `now`; returns (run id, org id) of each.
pub(crate) fn expire_pending(
    tx: &Tx<'_>,
    now: i64,
    error: &str,
) -> Result<Vec<(String, i64)>, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET status = 'expired', finished_ms = ?1, error = ?2
             WHERE status = 'pending_approval' AND approval_expires_ms < ?1
             RETURNING id, org_id",
        )?
        .query_map(params![now, error], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Which approval requests a listing wants.
#[derive(Debug)]
pub(crate) struct Filter {
    /// Only runs in this status (its wire name).
    pub(crate) status: Option<&'static str>,
    /// Only runs that skipped approval by break-glass (else only runs that
    /// needed approval).
    pub(crate) break_glass: bool,
    pub(crate) limit: u32,
}

/// The ids of the org's runs that needed (or skipped) approval, newest
/// first.
pub(crate) fn list(tx: &Tx<'_>, org_id: i64, filter: &Filter) -> Result<Vec<String>, Error> {
    let mut sql = String::from("SELECT id FROM runs WHERE org_id = ?");
    let mut args = vec![Arg::Int(org_id)];
    sql.push_str(if filter.break_glass {
        " AND break_glass IS NOT NULL"
    } else {
        " AND approval_rule IS NOT NULL AND break_glass IS NULL"
    });
    if let Some(status) = filter.status {
        sql.push_str(" AND status = ?");
        args.push(Arg::Text(status.to_owned()));
    }
    sql.push_str(" ORDER BY n DESC LIMIT ?");
    args.push(Arg::Int(i64::from(filter.limit)));
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(&sql::args(&args), |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<String>, _>>()?)
}
