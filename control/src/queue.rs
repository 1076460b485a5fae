//! The run queue and each run's state machine.
//!
//! ```text
//! pending_approval ──approved──> queued (see `crate::approval`: also rejected, expired, canceled)
//! queued ──claim──> running ──finish──> succeeded | failed | timed_out | canceled | error
//!   │                  ├──lease lapses / agent reconnects / revoked──> lost
//!   │                  └──cancel──> (flag; the agent finishes it as canceled)
//!   ├──cancel──> canceled
//!   ├──no agent took it within the queue TTL──> expired
//!   └──a referenced secret was deleted──> error
//! ```
//!
//! Every transition is a conditional `UPDATE ... WHERE status = <expected>`,
//! so two transitions can never both apply: a run is claimed at most once,
//! and a run that became `lost` can never be finished. Every function here
//! runs inside a writer job and audits what it changes. On PostgreSQL
//! [`submit`], [`claim`] and [`finish`] run beside other replicas' (see
//! `Db::write_beside`): they lock what they decide from (the idempotency
//! key, the run claimed or finished, the agent's row before counting its
//! slots) instead of relying on the one writer.

use crate::caller::Agent;
use crate::caller::SYSTEM;
pub(crate) use crate::dispatch::Claim;
use crate::error::{Error, Object};
use crate::settings::millis;
use crate::store::runs::{Found, Tried};
use crate::store::{self, Tx, now_ms};
use sealrun_wire::admin::TargetSpec;
use sealrun_wire::agent::{AssignedSecret, Assignment, FinishRequest};
use sealrun_wire::approval::{RunSpec, RunbookRef};
use sealrun_wire::names;
use sealrun_wire::report::{Ended, RunReport};
use sealrun_wire::run::{RunRequest, RunSource, RunStatus, RunView};
use sealrun_wire::trust::Signed;
use serde_json::json;
use std::collections::BTreeSet;

/// Largest total size of a run's argv and env.
const MAX_COMMAND_BYTES: usize = 256 * 1024;
/// Longest error text an agent may report.
const MAX_ERROR_CHARS: usize = 4096;
/// Longest idempotency key of a submission.
const MAX_KEY_CHARS: usize = 255;
/// Longest poll id of an agent.
const MAX_POLL_ID_CHARS: usize = 64;

/// One run of the caller's org, or 404.
pub(crate) fn view(tx: &Tx<'_>, org_id: i64, run_id: &str) -> Result<RunView, Error> {
    store::runs::view(tx, org_id, run_id)?.ok_or_else(|| no_such_run(run_id))
}

/// The answer for a run that does not exist in the caller's org.
pub(crate) fn no_such_run(run_id: &str) -> Error {
    Error::not_found(Object::Run, run_id)
}

/// What a submit found and did: the run's id, its target's id, whether a
/// connected agent serves the target now, when the run was queued, and
/// whether it was queued by an earlier submission with the same key.
pub(crate) struct Submitted {
    pub(crate) id: String,
    pub(crate) target_id: i64,
    pub(crate) served: bool,
    pub(crate) created_ms: i64,
    pub(crate) replayed: bool,
    /// `queued`, or `pending_approval` (with how far its approval is).
    pub(crate) status: RunStatus,
    pub(crate) approval: Option<sealrun_wire::run::ApprovalProgress>,
}

/// Who submits a run.
pub(crate) struct Submitter<'a> {
    pub(crate) org_id: i64,
    /// Shown in the run (`submitter`).
    pub(crate) name: &'a str,
    /// Recorded in the audit trail.
    pub(crate) actor: &'a str,
    /// Where the run comes from (from the member, never the request).
    pub(crate) source: RunSource,
    /// The user behind it (part of its spec digest; never its approver).
    pub(crate) user_id: i64,
    /// Their role (for break-glass).
    pub(crate) role: sealrun_wire::admin::Role,
}

/// A run may name only an image its target allows (`sealrun_wire::image`):
/// any other name would make the agent's Docker pull from wherever it points.
fn check_image_allowed(image: &str, target: &TargetSpec) -> Result<(), Error> {
    let allowed = target.effective_images();
    match sealrun_wire::image::allows(&allowed, image) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Forbidden(format!(
            "image {image} is not allowed on target {}: it allows {} (an admin can add images to the target's allowed_images)",
            target.name,
            allowed.join(", ")
        ))),
        Err(e) => Err(Error::Invalid(e.to_string())),
    }
}

/// What a target's policy says of an ad-hoc run (one whose argv the
/// submitter wrote): whether it may run at all, and with which secrets.
/// Runbook runs are not ad hoc: their argv is an admin's template.
fn check_ad_hoc_policy(req: &RunRequest, target: &TargetSpec) -> Result<(), Error> {
    if !target.policy.ad_hoc {
        return Err(Error::Forbidden(format!(
            "target {} allows only runbooks (policy.ad_hoc = false); `sealrun runbook list` shows them",
            target.name
        )));
    }
    if let Some(name) = req
        .secrets
        .iter()
        .find(|s| !target.policy.ad_hoc_may_use(s))
    {
        return Err(Error::Forbidden(format!(
            "secret {name} of target {} may only be used by runbooks (policy.runbook_only_secrets)",
            target.name
        )));
    }
    Ok(())
}

fn check_request(req: &RunRequest, target: &TargetSpec) -> Result<u64, Error> {
    let bad = |m: String| Error::Invalid(m);
    if req.argv.is_empty() || req.argv[0].is_empty() {
        return Err(bad(
            "argv must name a command (its first element cannot be empty)".into(),
        ));
    }
    // What the agent's shim can take (one bundle), refused here rather than
    // by the agent after the run was accepted.
    if req.argv.len() > names::MAX_ARGS {
        return Err(bad(format!(
            "argv has {} arguments; the limit is {}",
            req.argv.len(),
            names::MAX_ARGS
        )));
    }
    if req.env.len() + req.secrets.len() > names::MAX_ENV_VARS {
        return Err(bad(format!(
            "env and secrets name {} variables; the limit is {}",
            req.env.len() + req.secrets.len(),
            names::MAX_ENV_VARS
        )));
    }
    if let Some((name, _)) = req
        .env
        .iter()
        .find(|(_, v)| v.len() > names::MAX_ENV_VALUE_LEN)
    {
        return Err(bad(format!(
            "env {name} is longer than {} bytes, more than a program can be given",
            names::MAX_ENV_VALUE_LEN
        )));
    }
    let mut size = 0;
    for arg in &req.argv {
        if arg.contains('\0') {
            return Err(bad("argv cannot contain NUL characters".into()));
        }
        size += arg.len();
    }
    for (name, value) in &req.env {
        names::env_var(name).map_err(|e| bad(e.to_string()))?;
        if value.contains('\0') {
            return Err(bad(format!("env {name} cannot contain NUL characters")));
        }
        size += name.len() + value.len();
    }
    if size > MAX_COMMAND_BYTES {
        return Err(bad(format!(
            "argv and env take {size} bytes; the limit is {MAX_COMMAND_BYTES}"
        )));
    }
    let mut seen = BTreeSet::new();
    for name in &req.secrets {
        names::env_var(name).map_err(|e| bad(e.to_string()))?;
        if !seen.insert(name) {
            return Err(bad(format!("secret {name} is listed twice")));
        }
        if req.env.contains_key(name) {
            return Err(bad(format!(
                "{name} is both a plain env var and a secret; pick one"
            )));
        }
    }
    if let Some(image) = &req.image {
        if image.is_empty()
            || image.len() > 512
            || image.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad(format!("invalid image {image:?}")));
        }
        check_image_allowed(image, target)?;
    }
    let max = target.timeout_secs;
    match req.timeout_secs {
        None => Ok(max),
        Some(0) => Err(bad("timeout_secs must be at least 1".into())),
        Some(t) if t > max => Err(bad(format!(
            "timeout_secs {t} exceeds target {}'s maximum of {max}",
            target.name
        ))),
        Some(t) => Ok(t),
    }
}

/// An idempotency key: 1 to 255 visible ASCII characters (a UUID, a ULID,
/// random hex...).
fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Invalid(format!(
            "an idempotency key is 1 to {MAX_KEY_CHARS} visible ASCII characters"
        )));
    }
    Ok(())
}

/// What tells two submissions apart: the SHA-256 of the request's JSON
/// (its maps are ordered, so equal requests hash equally).
fn fingerprint(req: &RunRequest) -> Result<String, Error> {
    use sha2::Digest as _;
    Ok(hex::encode(sha2::Sha256::digest(serde_json::to_vec(req)?)))
}

/// Validates and queues a run, once per idempotency key: a submission with
/// a key this submitter used before answers the run queued then (if the
/// request is the same; [`Error::Conflict`] if not) and queues nothing.
/// `connected_since`: agents heard from since then count as connected (for
/// `served`, and for `require_agent`).
pub(crate) fn submit(
    tx: &Tx<'_>,
    who: &Submitter<'_>,
    req: &RunRequest,
    key: Option<&str>,
    connected_since: i64,
) -> Result<Submitted, Error> {
    // The request as sent: a runbook run is rendered into a new request.
    let break_glass = req.break_glass.as_deref();
    let keyed = match key {
        Some(key) => {
            check_key(key)?;
            Some((key, fingerprint(req)?))
        }
        None => None,
    };
    if let Some((key, fingerprint)) = &keyed {
        if let Some(first) = store::runs::by_key(tx, who.org_id, who.actor, key)? {
            if &first.fingerprint != fingerprint {
                return Err(Error::Conflict(format!(
                    "idempotency key {key:?} was already used for another request (run {}); a new run needs a new key",
                    first.run_id
                )));
            }
            let status = store::runs::status(tx, who.org_id, &first.run_id)?
                .and_then(|s| RunStatus::parse(&s))
                .unwrap_or(RunStatus::Queued);
            return Ok(Submitted {
                served: store::agents::served(tx, first.target_id, connected_since)?,
                approval: crate::approval::progress(tx, who.org_id, &first.run_id)?,
                id: first.run_id,
                target_id: first.target_id,
                created_ms: first.created_ms,
                replayed: true,
                status,
            });
        }
    }
    // A runbook run becomes the request its runbook renders; from here on
    // it is checked like any other (image, timeout, secrets, size).
    let rendered = match &req.runbook {
        Some(call) => Some(crate::runbooks::resolve(tx, who.org_id, req, call)?),
        None => None,
    };
    let req = rendered.as_ref().map_or(req, |r| &r.request);
    // The request's shape before anything it names is looked up: a command
    // without argv is a 400 whatever its target.
    if rendered.is_none() && req.argv.is_empty() {
        return Err(Error::Invalid(
            "argv must name a command (or call a runbook)".into(),
        ));
    }
    if req.target.is_empty() {
        return Err(Error::Invalid(
            "name a target (a run without a runbook needs one)".into(),
        ));
    }
    let (target_id, spec, served) =
        store::targets::spec_by_name_served(tx, who.org_id, &req.target, connected_since)?
            .ok_or_else(|| Error::not_found(Object::Target, req.target.clone()))?;
    if rendered.is_none() {
        check_ad_hoc_policy(req, &spec)?;
    }
    let timeout = check_request(req, &spec)?;
    for name in &req.secrets {
        if !store::secrets::exists(tx, target_id, name)? {
            return Err(Error::Invalid(format!(
                "target {} has no secret named {name}",
                req.target
            )));
        }
    }
    if req.require_agent && !served {
        return Err(Error::Conflict(format!(
            "no connected agent serves target {}; the run was not queued",
            req.target
        )));
    }
    let id = format!("run_{}", crate::token::random_hex(8));
    let image = req.image.clone().unwrap_or_else(|| spec.image.clone());
    let now = now_ms();
    let run = store::runs::NewRun {
        id: &id,
        org_id: who.org_id,
        target_id,
        target: &req.target,
        argv: &req.argv,
        env: &req.env,
        secrets: &req.secrets,
        image: &image,
        timeout_secs: timeout,
        source: who.source,
        submitter: who.name,
        stdin: req.stdin,
        now,
    };
    let signed = match &req.signed {
        Some(signed) => Some(crate::signing::check_intent(
            tx,
            signed,
            &run,
            req.runbook.as_ref(),
            &spec,
            who.user_id,
            break_glass,
        )?),
        None => None,
    };
    // A Slack command is signed by no one: the intent is stated here, for
    // approvers to sign and for an agent to hold to what admins allowed.
    let stated = match (&signed, who.source) {
        (None, RunSource::Slack) => Some(crate::signing::state_intent(
            tx,
            &run,
            who.user_id,
            req.runbook.as_ref(),
            break_glass,
        )?),
        _ => None,
    };
    let intent_digest = signed
        .as_ref()
        .map(|s| s.digest.as_str())
        .or(stated.as_ref().map(|s| s.digest.as_str()));
    let mut run_spec = RunSpec {
        org: String::new(),
        target: req.target.clone(),
        argv: req.argv.clone(),
        env: req.env.clone(),
        secrets: req.secrets.clone(),
        image: image.clone(),
        timeout_secs: timeout,
        runbook: rendered.as_ref().map(|r| RunbookRef {
            name: r.name.clone(),
            version: r.version,
        }),
        submitter_user_id: who.user_id,
        stdin: req.stdin,
    };
    let digest = crate::approval::digest(tx, who.org_id, &mut run_spec, intent_digest)?;
    store::runs::insert(tx, &run, &digest, who.user_id)?;
    if let Some(r) = &rendered {
        store::runs::set_runbook(tx, &id, &r.name, r.version)?;
    }
    if let Some(s) = &signed {
        store::runs::set_signed(tx, &id, &s.intent, &s.certificate)?;
    }
    if let Some(s) = &stated {
        store::runs::set_stated(tx, &id, &s.intent)?;
    }
    if let Some((key, fingerprint)) = &keyed {
        store::runs::insert_key(tx, who.org_id, who.actor, key, fingerprint, &id, now)?;
    }
    store::audit::append(
        tx,
        who.org_id,
        who.actor,
        "run.submitted",
        &id,
        json!({
            "target": req.target,
            "argv": req.argv,
            "env_names": req.env.keys().collect::<Vec<_>>(),
            "secrets": req.secrets,
            "image": image,
            "timeout_secs": timeout,
            "source": who.source.as_str(),
            "submitter": who.name,
            "served": served,
            "stdin": req.stdin,
            "runbook": rendered.as_ref().map(|r| &r.name),
            "runbook_version": rendered.as_ref().map(|r| r.version),
            "params": req.runbook.as_ref().map(|c| &c.params),
            "signed": signed.as_ref().map(|s| &s.digest),
        }),
    )?;
    let admitted = crate::approval::admit(
        tx,
        crate::approval::Submission {
            org_id: who.org_id,
            run_id: &id,
            spec: run_spec,
            digest: &digest,
            target_rule: spec.policy.approval.as_ref(),
            runbook_rule: rendered.as_ref().and_then(|r| r.approval.as_ref()),
            role: who.role,
            actor: who.actor,
            break_glass,
            now,
        },
    )?;
    Ok(Submitted {
        id,
        target_id,
        served,
        created_ms: now,
        replayed: false,
        status: admitted.status,
        approval: admitted.approval,
    })
}

/// A poll id: 1 to 64 ASCII letters, digits, `-` or `_`.
fn check_poll_id(id: &str) -> Result<(), Error> {
    if id.is_empty()
        || id.len() > MAX_POLL_ID_CHARS
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::Invalid(format!(
            "a poll id is 1 to {MAX_POLL_ID_CHARS} ASCII letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// Hands the agent the oldest queued run of its targets, if it has a free
/// slot: atomically `queued -> running` with a lease, recorded as handed
/// out in poll `poll_id`.
///
/// A poll whose answer the agent did not get (an error after the claim
/// committed, a connection cut, a control plane that crashed) is asked
/// again with the same `poll_id`, and answered with the same run, its lease
/// renewed: the agent never got it, so it is not running it, and nothing
/// else would ever run it or say it is gone but the lease expiring. An
/// agent asks with a new id once it has an answer, so no run is handed to
/// it twice.
pub(crate) fn claim(
    tx: &Tx<'_>,
    agent: &Agent,
    lease_ttl_ms: i64,
    poll_id: Option<&str>,
) -> Result<Claim, Error> {
    if let Some(poll_id) = poll_id {
        check_poll_id(poll_id)?;
    }
    let now = now_ms();
    let lease_until = now + lease_ttl_ms;
    let Tried {
        mut held,
        max,
        online,
        found,
    } = store::runs::try_claim(tx, &agent.id, &agent.name, poll_id, lease_until, now)?;
    match found {
        Some(Found::Again(claimed)) => {
            tracing::warn!(run = %claimed.run_id, agent = %agent.name, "handing a run out again: the agent did not get the answer to the poll it was claimed in");
            if let Some((assignment, waited)) = hand_out(tx, agent, claimed, now, false)? {
                return Ok(Claim::Assigned(assignment, waited));
            }
            // It ended instead (a secret it needs is gone): counted running
            // above, its slot is free now.
            held -= 1;
        }
        Some(Found::New(claimed)) => {
            if let Some((assignment, waited)) = hand_out(tx, agent, claimed, now, true)? {
                return Ok(Claim::Assigned(assignment, waited));
            }
            // It ended instead: the next one may be handed out.
        }
        // Nothing queued for it, or no slot free.
        None if held < max && online => return Ok(Claim::Empty),
        None => {}
    }
    if held >= max || !online {
        return Ok(Claim::Busy);
    }
    loop {
        let Some(claimed) =
            store::runs::claim_next(tx, &agent.id, &agent.name, poll_id, lease_until, now)?
        else {
            return Ok(Claim::Empty);
        };
        if let Some((assignment, waited)) = hand_out(tx, agent, claimed, now, true)? {
            return Ok(Claim::Assigned(assignment, waited));
        }
    }
}

/// The answer a poll can be given without claiming, read from a snapshot:
/// `Busy` or `Empty` when [`claim`] would give it and change nothing that
/// matters, else `None` (claim).
///
/// A claim is a write (a transaction, the agent's row locked); most polls
/// begin with nothing queued for the agent (it has just finished a run), so
/// settling those on a reader keeps them off the writer. What a claim
/// would change is the agent's `last_seen_ms`: a poll is settled here only
/// if the agent was heard from within `touch_every_ms` (the poll passes half
/// its heartbeat interval), so that, the poll held for at most the poll
/// timeout, it is still within the connected window
/// (`Settings::connected_window`: the poll timeout and two heartbeat
/// intervals) when it is next heard, with a heartbeat and a half to spare
/// for the next poll's arrival and replicas' clocks. A run handed to it in
/// this poll (an answer it did not get) is always claimed again.
pub(crate) fn settle(
    tx: &Tx<'_>,
    agent: &Agent,
    poll_id: Option<&str>,
    touch_every_ms: i64,
) -> Result<Option<Claim>, Error> {
    if let Some(poll_id) = poll_id {
        check_poll_id(poll_id)?;
    }
    let Some(state) = store::agents::poll_state(tx, &agent.id, poll_id)? else {
        return Ok(None);
    };
    let heard_lately = state
        .last_seen_ms
        .is_some_and(|seen| now_ms().saturating_sub(seen) < touch_every_ms);
    Ok(if state.in_poll || !heard_lately {
        None
    } else if !state.online || state.held >= state.max {
        Some(Claim::Busy)
    } else if !state.queued {
        Some(Claim::Empty)
    } else {
        None
    })
}

/// The assignment of a run just claimed (`first`) or claimed before and
/// handed out again, with how long it queued; `None` if a secret it needs
/// was deleted since it was queued, in which case it ended as `error`.
fn hand_out(
    tx: &Tx<'_>,
    agent: &Agent,
    claimed: store::runs::Claimed,
    now: i64,
    first: bool,
) -> Result<Option<(Box<Assignment>, u64)>, Error> {
    let mut sealed = Vec::with_capacity(claimed.secrets.len());
    for name in &claimed.secrets {
        match store::secrets::sealed(tx, claimed.target_id, name)? {
            Some(secret) => sealed.push(AssignedSecret {
                sealed: secret,
                name: name.clone(),
            }),
            None => {
                // Deleted after the run was queued: the command would run
                // without it. Fail the run visibly rather than hand it out.
                let error = format!("secret {name} was deleted before the run started");
                store::runs::fail_unstarted(tx, &claimed.run_id, &error, now)?;
                store::audit::append(
                    tx,
                    agent.org_id,
                    SYSTEM,
                    "run.finished",
                    &claimed.run_id,
                    json!({"status": "error", "error": error}),
                )?;
                return Ok(None);
            }
        }
    }
    if first {
        store::audit::append(
            tx,
            agent.org_id,
            &agent.actor(),
            "run.started",
            &claimed.run_id,
            json!({"agent": agent.name, "target": claimed.target}),
        )?;
    }
    let waited = u64::try_from(now - claimed.created_ms).unwrap_or(0);
    let authority =
        crate::signing::authority(tx, &claimed.run_id, claimed.target_id, claimed.intents)?;
    let assignment = Assignment {
        run_id: claimed.run_id,
        target: claimed.target,
        image: claimed.image,
        allowed_images: claimed.spec.effective_images(),
        argv: claimed.argv,
        env: claimed.env,
        secrets: sealed,
        timeout_secs: claimed.timeout_secs,
        limits: claimed.spec.limits,
        network: claimed.spec.network,
        user: claimed.spec.user,
        stdin: claimed.stdin,
        authority,
    };
    Ok(Some((Box::new(assignment), waited)))
}

/// What a cancel request did.
pub(crate) enum Canceled {
    /// It was queued and is now canceled.
    Now,
    /// It is running; the agent is told in its next heartbeat.
    Requested,
}

/// Cancels a run of the org: at once if queued or waiting for approval,
/// through its agent if running.
pub(crate) fn cancel(
    tx: &Tx<'_>,
    org_id: i64,
    run_id: &str,
    actor: &str,
) -> Result<Canceled, Error> {
    let status = store::runs::status(tx, org_id, run_id)?.ok_or_else(|| no_such_run(run_id))?;
    match RunStatus::parse(&status) {
        Some(was @ (RunStatus::Queued | RunStatus::PendingApproval)) => {
            store::runs::cancel_queued(tx, run_id, now_ms())?;
            store::audit::append(
                tx,
                org_id,
                actor,
                "run.canceled",
                run_id,
                json!({"was": was.as_str()}),
            )?;
            Ok(Canceled::Now)
        }
        Some(RunStatus::Running) => {
            if store::runs::request_cancel(tx, run_id)? {
                store::audit::append(tx, org_id, actor, "run.cancel_requested", run_id, json!({}))?;
            }
            Ok(Canceled::Requested)
        }
        _ => Err(Error::Conflict(format!(
            "run {run_id} has already ended ({status})"
        ))),
    }
}

/// Records how a run ended, as reported by the agent holding it.
/// Idempotent: the same report twice is accepted; a different one is not.
pub(crate) fn finish(
    tx: &Tx<'_>,
    agent: &Agent,
    run_id: &str,
    req: &FinishRequest,
    stdin_bytes: Option<u64>,
) -> Result<bool, Error> {
    if !req.status.is_terminal() || req.status == RunStatus::Lost {
        return Err(Error::Invalid(format!(
            "{} is not a status an agent can finish a run with",
            req.status
        )));
    }
    let error = req.error.as_ref().map(|e| {
        if e.chars().count() > MAX_ERROR_CHARS {
            let mut short: String = e.chars().take(MAX_ERROR_CHARS).collect();
            short.push_str("...");
            short
        } else {
            e.clone()
        }
    });
    // Stored as sent, once checked below.
    let report = req.report.as_ref().map(serde_json::to_string).transpose()?;
    // The run is finished first, if this agent holds it running, in one
    // statement: what a finish nearly always finds. Else nothing changed,
    // and the run's state says why. A report that does not hold (checked
    // after, against the target's key) fails the job, undoing the finish.
    let finished = store::runs::finish_held(
        tx,
        agent.org_id,
        &agent.id,
        run_id,
        &store::runs::Outcome {
            status: req.status,
            exit_code: req.exit_code,
            error: error.as_deref(),
            oom_killed: req.oom_killed,
            now: now_ms(),
            final_seq: req.next_seq,
            stdin_bytes,
            redactions: req.redactions,
            report: report.as_deref(),
        },
    )?;
    let Some(target_id) = finished else {
        return not_finished(tx, agent, run_id, req);
    };
    if let Some(signed) = &req.report {
        check_report(tx, run_id, target_id, req, signed)?;
    }
    store::audit::append(
        tx,
        agent.org_id,
        &agent.actor(),
        "run.finished",
        run_id,
        json!({
            "status": req.status.as_str(),
            "exit_code": req.exit_code,
            "oom_killed": req.oom_killed,
            // An auditor sees that a command printed a secret (masked).
            "redactions": {
                "stdout": req.redactions.stdout,
                "stderr": req.redactions.stderr,
            },
            // What the agent signed of it: the control plane cannot
            // change the outcome above without this failing to match.
            "report": req.report,
        }),
    )?;
    Ok(true)
}

/// Why agent `agent` could not finish run `run_id` as `req` says, which it
/// does not hold running: it holds no such run (`404`), the run is lost,
/// or it ended before, as `req` says (the same report sent again: `Ok`,
/// nothing changed) or otherwise.
fn not_finished(
    tx: &Tx<'_>,
    agent: &Agent,
    run_id: &str,
    req: &FinishRequest,
) -> Result<bool, Error> {
    let Some((status, _, exit_code)) =
        store::runs::holder_locked(tx, agent.org_id, run_id, &agent.id)?
    else {
        return Err(no_such_run(run_id));
    };
    match RunStatus::parse(&status) {
        Some(RunStatus::Lost) => Err(Error::Conflict(format!(
            "run {run_id} is lost (its lease lapsed); its result is refused"
        ))),
        Some(s) if s == req.status && exit_code == req.exit_code => Ok(false),
        // Running and held, yet not finished by the statement before: on
        // PostgreSQL, a run the agent was not handed when that statement
        // began (it finishes a run it guessed) claimed for it since.
        Some(RunStatus::Running) => Err(Error::Conflict(format!(
            "run {run_id} was handed to this agent while it was being finished; send the finish again"
        ))),
        _ => Err(Error::Conflict(format!(
            "run {run_id} already ended as {status}"
        ))),
    }
}

/// Checks that the agent's signed report of run `run_id` (of target
/// `target_id`) says what `req` says, signed with the target's report key
/// (as its agent presented it with the target's key). A mismatch is the
/// agent's mistake, refused (`400`) rather than stored to look forged.
fn check_report(
    tx: &Tx<'_>,
    run_id: &str,
    target_id: i64,
    req: &FinishRequest,
    signed: &Signed<RunReport>,
) -> Result<(), Error> {
    let bad = |why: &str| Error::Invalid(format!("the run report {why}"));
    let (report, signer) = signed
        .open()
        .map_err(|e| Error::Invalid(format!("the run report: {e}")))?;
    let ended = Ended {
        run_id,
        target: None,
        status: req.status.as_str(),
        exit_code: req.exit_code,
        redactions: Some((req.redactions.stdout, req.redactions.stderr)),
    };
    if !report.differences(&ended).is_empty() || report.log_chunks != req.next_seq {
        return Err(bad("does not say what the request says"));
    }
    let key = store::targets::report_key(tx, target_id)?;
    if key.as_deref() != Some(signer.to_string().as_str()) {
        return Err(bad("is not signed with the target's report key"));
    }
    Ok(())
}

/// Marks the runs `agent_id` holds as `lost` (it restarted, deregistered or
/// was revoked: whatever they were doing, no result will come); returns
/// their ids.
pub(crate) fn lose_held(
    tx: &Tx<'_>,
    org_id: i64,
    agent_id: &str,
    reason: &str,
) -> Result<Vec<String>, Error> {
    let ids = store::runs::lose_held(tx, agent_id, &format!("lost: {reason}"), now_ms())?;
    for id in &ids {
        store::audit::append(
            tx,
            org_id,
            SYSTEM,
            "run.lost",
            id,
            json!({"agent": agent_id, "reason": reason}),
        )?;
    }
    Ok(ids)
}

/// Marks every run whose lease expired before `now` as `lost`; returns
/// their ids.
pub(crate) fn expire_leases(tx: &Tx<'_>, now: i64) -> Result<Vec<String>, Error> {
    let lost = store::runs::expire_leases(tx, now, "lost: the agent stopped renewing its lease")?;
    for (id, org_id, agent) in &lost {
        store::audit::append(
            tx,
            *org_id,
            SYSTEM,
            "run.lost",
            id,
            json!({"agent": agent, "reason": "lease expired"}),
        )?;
    }
    Ok(lost.into_iter().map(|(id, _, _)| id).collect())
}

/// Marks every run still queued `ttl` after it entered the queue (its
/// submission, or its approval) as
/// `expired` (it never ran, and never will); returns their ids.
pub(crate) fn expire_queued(
    tx: &Tx<'_>,
    now: i64,
    ttl: std::time::Duration,
) -> Result<Vec<String>, Error> {
    let error = format!(
        "expired: no agent took it within {}s of entering the queue",
        ttl.as_secs()
    );
    let created_before = now.saturating_sub(millis(ttl));
    let expired = store::runs::expire_queued(tx, created_before, now, &error)?;
    for (id, org_id) in &expired {
        store::audit::append(
            tx,
            *org_id,
            SYSTEM,
            "run.expired",
            id,
            json!({"queue_ttl_secs": ttl.as_secs()}),
        )?;
    }
    Ok(expired.into_iter().map(|(id, _)| id).collect())
}

/// Renews the leases of the listed runs the agent holds; returns (runs to
/// cancel, runs to abandon).
pub(crate) fn heartbeat(
    tx: &Tx<'_>,
    agent: &Agent,
    running: &[String],
    lease_ttl_ms: i64,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let now = now_ms();
    store::agents::touch(tx, &agent.id, now)?;
    let mut cancel = Vec::new();
    let mut abandon = Vec::new();
    for run_id in running {
        match store::runs::renew_lease(tx, run_id, &agent.id, now + lease_ttl_ms)? {
            Some(true) => cancel.push(run_id.clone()),
            Some(false) => {}
            None => abandon.push(run_id.clone()),
        }
    }
    Ok((cancel, abandon))
}
