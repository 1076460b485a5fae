//! Four-eyes approval of runs: which runs wait for approval, who may
//! approve them, and the transitions of a request.
//!
//! ```text
//! submit ──rule applies──> pending_approval ──N distinct eligible approvals──> queued
//!   │                        ├──an eligible approver rejects (reason)──> rejected
//!   │                        ├──not approved within the rule's expires_in──> expired
//!   │                        └──cancel──> canceled
//!   └──rule applies, --break-glass by a role the rule lists──> queued (run.break_glass)
//! ```
//!
//! An approval binds the run's spec digest (`sealrun_wire::approval`): the
//! approver sends the digest of the spec they were shown, and a different
//! one is refused. People are told apart by user id, so a second token of
//! the submitter, or their linked Slack account, is still the submitter.
//! Every function here runs inside a writer job and audits what it changes.

use crate::error::{Error, Object};
use crate::permissions::Action;
use crate::store::{self, Tx};
use sealrun_wire::admin::Role;
use sealrun_wire::approval::{
    APPROVAL_EXPIRED, ApprovalRule, ApprovalView, BreakGlass, RunSpec, RunbookRef,
};
use sealrun_wire::authority::{ApprovalStatement, PasskeyApproval};
use sealrun_wire::run::{ApprovalProgress, RunStatus};
use sealrun_wire::trust::Signed;
use serde_json::json;

/// Longest comment or rejection reason (characters).
const MAX_TEXT_CHARS: usize = 2000;

/// Checks a rule when a target (or runbook) declaring it is applied: what
/// [`ApprovalRule::check`] checks, and that every role it names as
/// approvers may approve runs at all. Groups need not exist yet: they may
/// be created after the target, and a request whose groups have no members
/// simply waits, then expires (`approvals show` names the groups).
pub(crate) fn check_rule(rule: &ApprovalRule) -> Result<(), Error> {
    rule.check().map_err(|e| Error::Invalid(e.0))?;
    for role in &rule.from_roles {
        if !Action::ApproveRuns.allows(*role) {
            return Err(Error::Invalid(format!(
                "approval.from_roles: role {role} cannot approve runs"
            )));
        }
    }
    for role in &rule.break_glass_roles {
        if !Action::SubmitRuns.allows(*role) {
            return Err(Error::Invalid(format!(
                "approval.break_glass_roles: role {role} cannot submit runs"
            )));
        }
    }
    Ok(())
}

/// A run just inserted (as `queued`), as the approval rules see it.
pub(crate) struct Submission<'a> {
    pub(crate) org_id: i64,
    pub(crate) run_id: &'a str,
    /// Everything its digest covers (see [`digest`]).
    pub(crate) spec: RunSpec,
    /// What approvals bind ([`digest`]), stored with the run.
    pub(crate) digest: &'a str,
    /// The target's rule, if it has one.
    pub(crate) target_rule: Option<&'a ApprovalRule>,
    /// The runbook's own rule, if the run calls a runbook that has one
    /// (it replaces the target's for the runbook's runs).
    pub(crate) runbook_rule: Option<&'a ApprovalRule>,
    pub(crate) role: Role,
    pub(crate) actor: &'a str,
    /// `--break-glass`'s reason, if given.
    pub(crate) break_glass: Option<&'a str>,
    pub(crate) now: i64,
}

/// What the rules made of a submission: its status, and how far its
/// approval is when it waits for one.
pub(crate) struct Admitted {
    pub(crate) status: RunStatus,
    pub(crate) approval: Option<ApprovalProgress>,
}

/// What approvals of a run bind, stored with it: the digest of its intent
/// if its submitter signed one or one was stated for it (a Slack command),
/// else of `spec` (whose org's name is filled in here).
pub(crate) fn digest(
    tx: &Tx<'_>,
    org_id: i64,
    spec: &mut RunSpec,
    intent_digest: Option<&str>,
) -> Result<String, Error> {
    spec.org = store::approvals::org_name(tx, org_id)?;
    Ok(intent_digest.map_or_else(|| spec.digest(), str::to_owned))
}

/// If a rule demands approval, holds the run (inserted with its digest) as
/// `pending_approval` (or lets it through by break-glass). Fails (and so
/// rolls the submission back) on a break-glass the rule does not allow, one
/// with a blank reason, or one for a run that needs no approval.
pub(crate) fn admit(tx: &Tx<'_>, s: Submission<'_>) -> Result<Admitted, Error> {
    let digest = s.digest;
    let runbook = s.spec.runbook.as_ref().map(|r| r.name.as_str());
    let rule = s.runbook_rule.or(s.target_rule);
    let needed = rule.filter(|r| r.applies(runbook, !s.spec.secrets.is_empty()));
    let queued = Admitted {
        status: RunStatus::Queued,
        approval: None,
    };
    let Some(rule) = needed else {
        if s.break_glass.is_some() {
            return Err(Error::Invalid(format!(
                "runs like this one on target {} need no approval; leave out --break-glass",
                s.spec.target
            )));
        }
        return Ok(queued);
    };
    let rule_json = serde_json::to_string(rule)?;
    if let Some(reason) = s.break_glass {
        let reason = check_text("a break-glass reason", reason)?;
        if !rule.allows_break_glass(s.role) {
            let allowed = if rule.break_glass_roles.is_empty() {
                "it allows no break-glass".to_owned()
            } else {
                let roles: Vec<&str> = rule.break_glass_roles.iter().map(|r| r.as_str()).collect();
                format!("only {} may", roles.join(", "))
            };
            return Err(Error::Forbidden(format!(
                "role {} may not skip approval on target {} (approval.break_glass_roles: {allowed})",
                s.role, s.spec.target
            )));
        }
        store::approvals::set_break_glass(tx, s.run_id, &rule_json, reason)?;
        store::audit::append(
            tx,
            s.org_id,
            s.actor,
            "run.break_glass",
            s.run_id,
            json!({
                "reason": reason,
                "review_required": true,
                "digest": digest,
                "rule": rule,
                "user_id": s.spec.submitter_user_id,
            }),
        )?;
        return Ok(queued);
    }
    let expires_ms = s.now.saturating_add(
        i64::try_from(rule.expires_in_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    store::approvals::hold(tx, s.run_id, &rule_json, expires_ms)?;
    // In the same transaction: the request is never held without its
    // message owed to the approvers' channels.
    store::slack::queue_approval_posts(tx, s.org_id, s.run_id, s.now)?;
    store::audit::append(
        tx,
        s.org_id,
        s.actor,
        "run.approval_requested",
        s.run_id,
        json!({
            "digest": digest,
            "rule": rule,
            "expires_at_ms": expires_ms,
        }),
    )?;
    Ok(Admitted {
        status: RunStatus::PendingApproval,
        approval: Some(ApprovalProgress {
            approved: 0,
            required: rule.approvals,
            approvers: rule.approvers(),
            expires_at_ms: expires_ms,
        }),
    })
}

/// `text` trimmed, refused when blank or too long.
fn check_text<'t>(what: &str, text: &'t str) -> Result<&'t str, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Invalid(format!("{what} cannot be empty")));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Error::Invalid(format!(
            "{what} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(text)
}

/// The approval request of the org's run `run_id` (404 if it has none).
pub(crate) fn view(tx: &Tx<'_>, org_id: i64, run_id: &str) -> Result<ApprovalView, Error> {
    let not_found = || Error::not_found(Object::Run, run_id);
    let run = store::runs::view(tx, org_id, run_id)?.ok_or_else(not_found)?;
    let req = store::approvals::request(tx, org_id, run_id)?.ok_or_else(not_found)?;
    let (Some(rule), Some(digest)) = (&req.rule, &req.digest) else {
        return Err(Error::NotFound {
            object: Object::Run,
            name: run_id.to_owned(),
            message: format!("run {run_id} needed no approval: it has no approval request"),
        });
    };
    let rule: ApprovalRule = serde_json::from_str(rule)?;
    let (approvals, rejected) = store::approvals::decisions(tx, run_id)?;
    let intents = store::runs::intents(tx, run_id)?;
    Ok(ApprovalView {
        spec: RunSpec {
            org: store::approvals::org_name(tx, org_id)?,
            target: run.target,
            argv: run.argv,
            env: req.env,
            secrets: run.secrets,
            image: run.image,
            timeout_secs: run.timeout_secs,
            runbook: match (run.runbook, run.runbook_version) {
                (Some(name), Some(version)) => Some(RunbookRef { name, version }),
                _ => None,
            },
            submitter_user_id: req.submitter_user_id.unwrap_or(0),
            stdin: run.stdin,
        },
        run_id: run.id,
        status: run.status,
        digest: digest.clone(),
        submitter: run.submitter,
        created_at_ms: run.created_at_ms,
        required: rule.approvals,
        approvers: rule.approvers(),
        rule,
        approvals,
        expires_at_ms: req.expires_ms,
        rejection: rejected,
        break_glass: req.break_glass.map(|reason| BreakGlass {
            reason,
            review_required: true,
        }),
        signed: intents
            .signed
            .map(|(intent, _)| serde_json::from_str(&intent))
            .transpose()?,
        stated: intents.stated,
    })
}

/// How far the approval of the org's run `run_id` is, while it waits.
pub(crate) fn progress(
    tx: &Tx<'_>,
    org_id: i64,
    run_id: &str,
) -> Result<Option<ApprovalProgress>, Error> {
    match view(tx, org_id, run_id) {
        Ok(v) if v.status == RunStatus::PendingApproval => Ok(Some(ApprovalProgress {
            approved: u32::try_from(v.approvals.len()).unwrap_or(u32::MAX),
            required: v.required,
            approvers: v.approvers,
            expires_at_ms: v.expires_at_ms.unwrap_or(0),
        })),
        Ok(_) | Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Someone deciding on a request.
pub(crate) struct Approver<'a> {
    pub(crate) org_id: i64,
    pub(crate) user_id: i64,
    pub(crate) role: Role,
    pub(crate) actor: &'a str,
}

/// What a decision asks.
pub(crate) enum Asked<'a> {
    /// Approve the spec with this digest.
    Approve {
        digest: &'a str,
        comment: Option<&'a str>,
        /// Its signed form (required for a signed run).
        signed: Option<&'a Signed<ApprovalStatement>>,
        /// Or its form asserted with a passkey.
        passkey: Option<&'a PasskeyApproval>,
    },
    /// Reject, for this reason.
    Reject { reason: &'a str },
}

/// What a decision did: the request after it, and whether the run was
/// released to the queue (with its target, to wake its agents).
pub(crate) struct Decided {
    pub(crate) view: ApprovalView,
    pub(crate) released: Option<i64>,
}

/// Whether `who` may decide on a request under `rule`: a member of one of
/// its groups, or holding one of its roles; with neither listed, any role
/// that may approve runs (the caller has checked that).
fn eligible(tx: &Tx<'_>, rule: &ApprovalRule, who: &Approver<'_>) -> Result<bool, Error> {
    if rule.from_groups.is_empty() && rule.from_roles.is_empty() {
        return Ok(true);
    }
    if rule.from_roles.contains(&who.role) {
        return Ok(true);
    }
    for group in &rule.from_groups {
        if store::users::in_group(tx, who.org_id, who.user_id, group)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Approves or rejects the org's run `run_id` as `who`.
pub(crate) fn decide(
    tx: &Tx<'_>,
    who: &Approver<'_>,
    run_id: &str,
    asked: Asked<'_>,
    now: i64,
) -> Result<Decided, Error> {
    let current = view(tx, who.org_id, run_id)?;
    if current.status != RunStatus::PendingApproval {
        let what = if current.break_glass.is_some() {
            " (its submitter skipped approval by break-glass)"
        } else {
            ""
        };
        return Err(Error::Conflict(format!(
            "run {run_id} is not waiting for approval: it is {}{what}",
            current.status
        )));
    }
    if current.expires_at_ms.is_some_and(|at| at < now) {
        return Err(Error::Conflict(format!(
            "the approval request of run {run_id} has expired; it will not run"
        )));
    }
    if current.spec.submitter_user_id == who.user_id {
        return Err(Error::Forbidden(match asked {
            Asked::Approve { .. } => {
                format!("you submitted run {run_id}; another person must approve it")
            }
            Asked::Reject { .. } => format!(
                "you submitted run {run_id}; withdraw it with `sealrun runs cancel {run_id}` instead"
            ),
        }));
    }
    if !eligible(tx, &current.rule, who)? {
        return Err(Error::Forbidden(format!(
            "run {run_id} needs approval from {} (the approval rule of target {}); you are not one of them",
            current.approvers, current.spec.target
        )));
    }
    let user = store::users::name(tx, who.user_id)?.unwrap_or_else(|| who.actor.to_owned());
    let mut released = None;
    match asked {
        Asked::Approve {
            digest,
            comment,
            signed,
            passkey,
        } => {
            if digest != current.digest {
                return Err(Error::Conflict(format!(
                    "digest {digest} is not the digest of run {run_id}'s spec ({}): the spec you were shown is not the one submitted; look again with `sealrun approvals show {run_id}`",
                    current.digest
                )));
            }
            let proof = match (signed, passkey) {
                (Some(s), None) => Some(crate::signing::Proof::Key(s)),
                (None, Some(p)) => Some(crate::signing::Proof::Passkey(p)),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(Error::Invalid(
                        "an approval is signed with a key or asserted with a passkey, not both"
                            .into(),
                    ));
                }
            };
            // Recorded with the decision: how the approval is signed.
            let signed_with = proof.map(|p| match p {
                crate::signing::Proof::Key(_) => "key",
                crate::signing::Proof::Passkey(_) => "passkey",
            });
            let signed = proof
                .map(|p| {
                    crate::signing::check_approval(tx, who.org_id, who.user_id, &user, digest, p)
                })
                .transpose()?;
            let comment = comment.map(|c| check_text("a comment", c)).transpose()?;
            let recorded = store::approvals::insert_decision(
                tx,
                &store::approvals::NewDecision {
                    run_id,
                    user_id: who.user_id,
                    user: &user,
                    actor: who.actor,
                    decision: store::approvals::Decision::Approved,
                    digest,
                    comment,
                    now,
                },
            )?;
            if !recorded {
                return Err(Error::Conflict(format!(
                    "you already approved run {run_id}; each person counts once"
                )));
            }
            if let Some(signed) = &signed {
                store::approvals::set_signed(tx, run_id, who.user_id, signed)?;
            }
            let count = current.approvals.len() + 1;
            let complete = count >= current.required as usize;
            store::audit::append(
                tx,
                who.org_id,
                who.actor,
                "run.approved",
                run_id,
                json!({
                    "user": user,
                    "user_id": who.user_id,
                    "digest": digest,
                    "comment": comment,
                    "signed_with": signed_with,
                    "approvals": count,
                    "required": current.required,
                    "queued": complete,
                }),
            )?;
            if complete && store::approvals::release(tx, run_id, now)? {
                let req = store::approvals::request(tx, who.org_id, run_id)?
                    .ok_or_else(|| Error::not_found(Object::Run, run_id))?;
                released = Some(req.target_id);
            }
        }
        Asked::Reject { reason } => {
            let reason = check_text("a rejection reason", reason)?;
            store::approvals::insert_decision(
                tx,
                &store::approvals::NewDecision {
                    run_id,
                    user_id: who.user_id,
                    user: &user,
                    actor: who.actor,
                    decision: store::approvals::Decision::Rejected,
                    digest: &current.digest,
                    comment: Some(reason),
                    now,
                },
            )?;
            store::approvals::reject(tx, run_id, &format!("rejected by {user}: {reason}"), now)?;
            store::audit::append(
                tx,
                who.org_id,
                who.actor,
                "run.rejected",
                run_id,
                json!({
                    "user": user,
                    "user_id": who.user_id,
                    "reason": reason,
                    "digest": current.digest,
                }),
            )?;
        }
    }
    Ok(Decided {
        view: view(tx, who.org_id, run_id)?,
        released,
    })
}

/// Marks every request whose time ran out before `now` as `expired` (it
/// never ran, and never will); returns their ids.
pub(crate) fn expire_pending(tx: &Tx<'_>, now: i64) -> Result<Vec<String>, Error> {
    let error =
        format!("{APPROVAL_EXPIRED} was not given before the request expired; the run never ran");
    let expired = store::approvals::expire_pending(tx, now, &error)?;
    for (id, org_id) in &expired {
        let (approvals, _) = store::approvals::decisions(tx, id)?;
        store::audit::append(
            tx,
            *org_id,
            crate::caller::SYSTEM,
            "run.approval_expired",
            id,
            json!({ "approvals": approvals.len() }),
        )?;
    }
    Ok(expired.into_iter().map(|(id, _)| id).collect())
}
