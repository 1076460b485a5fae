//! The run queue and each run's state machine.
//!
//! ```text
//! queued ──claim──> running ──finish──> succeeded | failed | timed_out | canceled | error
//!   │                  ├──lease lapses / agent reconnects / revoked──> lost
//!   │                  └──cancel──> (flag; the agent finishes it as canceled)
//!   ├──cancel──> canceled
//!   └──a referenced secret was deleted──> error
//! ```
//!
//! Every transition is a conditional `UPDATE ... WHERE status = <expected>`
//! run by the single writer, so two transitions can never both apply: a run is
//! claimed at most once, and a run that became `lost` can never be finished.
//! Every function here runs inside a writer job and audits what it changes.

use crate::audit;
use crate::auth::Agent;
use crate::db::now_ms;
use crate::error::ApiError;
use crate::names::check_env_name;
use rusqlite::{Connection, OptionalExtension as _, params};
use sealrun_vault::SealedSecret;
use sealrun_wire::admin::TargetSpec;
use sealrun_wire::agent::{AssignedSecret, Assignment, FinishRequest};
use sealrun_wire::run::{RunRequest, RunSource, RunStatus, RunView};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// Columns [`view_from_row`] reads, in order.
pub(crate) const VIEW_COLUMNS: &str = "id, target, argv, secrets, image, status, exit_code, error, \
     source, submitter, agent_name, timeout_secs, created_ms, started_ms, finished_ms, log_bytes, log_truncated";

/// Largest total size of a run's argv and env.
const MAX_COMMAND_BYTES: usize = 256 * 1024;
/// Longest error text an agent may report.
const MAX_ERROR_CHARS: usize = 4096;

fn json_column<T: serde::de::DeserializeOwned>(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn status_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<RunStatus> {
    let text: String = r.get(i)?;
    RunStatus::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown run status {text:?}").into(),
        )
    })
}

fn source_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<RunSource> {
    let text: String = r.get(i)?;
    Ok(match text.as_str() {
        "cli" => RunSource::Cli,
        "slack" => RunSource::Slack,
        _ => RunSource::Api,
    })
}

/// A [`RunView`] from a row selected with [`VIEW_COLUMNS`].
pub(crate) fn view_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunView> {
    Ok(RunView {
        id: r.get(0)?,
        target: r.get(1)?,
        argv: json_column(r, 2)?,
        secrets: json_column(r, 3)?,
        image: r.get(4)?,
        status: status_column(r, 5)?,
        exit_code: r.get(6)?,
        error: r.get(7)?,
        source: source_column(r, 8)?,
        submitter: r.get(9)?,
        agent: r.get(10)?,
        timeout_secs: r.get(11)?,
        created_at_ms: r.get(12)?,
        started_at_ms: r.get(13)?,
        finished_at_ms: r.get(14)?,
        log_bytes: r.get(15)?,
        log_truncated: r.get(16)?,
    })
}

/// One run of the caller's org, or 404.
pub(crate) fn view(conn: &Connection, org_id: i64, run_id: &str) -> Result<RunView, ApiError> {
    conn.prepare_cached(&format!(
        "SELECT {VIEW_COLUMNS} FROM runs WHERE org_id = ?1 AND id = ?2"
    ))?
    .query_row(params![org_id, run_id], view_from_row)
    .optional()?
    .ok_or_else(|| no_such_run(run_id))
}

pub(crate) fn no_such_run(run_id: &str) -> ApiError {
    ApiError::not_found(format!("no run {run_id:?}"))
}

/// A target as the queue needs it.
pub(crate) struct TargetRow {
    pub(crate) id: i64,
    pub(crate) spec: TargetSpec,
}

pub(crate) fn target_by_name(
    conn: &Connection,
    org_id: i64,
    name: &str,
) -> Result<Option<TargetRow>, ApiError> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, spec FROM targets WHERE org_id = ?1 AND name = ?2")?
        .query_row(params![org_id, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((id, spec)) => Ok(Some(TargetRow {
            id,
            spec: serde_json::from_str(&spec)?,
        })),
        None => Ok(None),
    }
}

/// Who submits a run.
pub(crate) struct Submitter<'a> {
    pub(crate) org_id: i64,
    /// Shown in the run (`submitter`).
    pub(crate) name: &'a str,
    /// Recorded in the audit trail.
    pub(crate) actor: &'a str,
}

fn check_request(req: &RunRequest, target: &TargetRow) -> Result<u64, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    if req.argv.is_empty() || req.argv[0].is_empty() {
        return Err(bad(
            "argv must name a command (its first element cannot be empty)".into(),
        ));
    }
    let mut size = 0;
    for arg in &req.argv {
        if arg.contains('\0') {
            return Err(bad("argv cannot contain NUL characters".into()));
        }
        size += arg.len();
    }
    for (name, value) in &req.env {
        check_env_name(name).map_err(bad)?;
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
        check_env_name(name).map_err(bad)?;
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
    }
    let max = target.spec.timeout_secs;
    match req.timeout_secs {
        None => Ok(max),
        Some(0) => Err(bad("timeout_secs must be at least 1".into())),
        Some(t) if t > max => Err(bad(format!(
            "timeout_secs {t} exceeds target {}'s maximum of {max}",
            target.spec.name
        ))),
        Some(t) => Ok(t),
    }
}

/// Validates and queues a run; returns its id and its target's id.
pub(crate) fn submit(
    conn: &Connection,
    who: &Submitter<'_>,
    req: &RunRequest,
) -> Result<(String, i64), ApiError> {
    let target = target_by_name(conn, who.org_id, &req.target)?
        .ok_or_else(|| ApiError::not_found(format!("no target named {:?}", req.target)))?;
    let timeout = check_request(req, &target)?;
    for name in &req.secrets {
        let exists = conn
            .prepare_cached("SELECT 1 FROM secrets WHERE target_id = ?1 AND name = ?2")?
            .exists(params![target.id, name])?;
        if !exists {
            return Err(ApiError::bad_request(format!(
                "target {} has no secret named {name}",
                req.target
            )));
        }
    }
    let id = format!("run_{}", crate::token::random_hex(8));
    let image = req
        .image
        .clone()
        .unwrap_or_else(|| target.spec.image.clone());
    conn.prepare_cached(
        "INSERT INTO runs (id, org_id, target_id, target, argv, env, secrets, image, timeout_secs,
                           source, submitter, status, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued', ?12)",
    )?
    .execute(params![
        id,
        who.org_id,
        target.id,
        req.target,
        serde_json::to_string(&req.argv)?,
        serde_json::to_string(&req.env)?,
        serde_json::to_string(&req.secrets)?,
        image,
        timeout,
        req.source.as_str(),
        who.name,
        now_ms(),
    ])?;
    audit::append(
        conn,
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
            "source": req.source.as_str(),
            "submitter": who.name,
        }),
    )?;
    Ok((id, target.id))
}

/// What a claim attempt found.
pub(crate) enum Claim {
    /// A run, now `running` and leased to the agent; with how long it queued.
    Assigned(Box<Assignment>, u64),
    /// No queued run for the agent's targets.
    Empty,
    /// The agent may not take a run now (every slot busy, or not connected).
    Busy,
}

/// A run just claimed, as stored.
struct Claimed {
    run_id: String,
    target_id: i64,
    target: String,
    argv: String,
    env: String,
    secrets: String,
    image: String,
    timeout_secs: u64,
    created: i64,
}

/// Hands the agent the oldest queued run of its targets, if it has a free
/// slot: atomically `queued -> running` with a lease.
pub(crate) fn claim(
    conn: &Connection,
    agent: &Agent,
    lease_ttl_ms: i64,
) -> Result<Claim, ApiError> {
    let now = now_ms();
    conn.prepare_cached("UPDATE agents SET last_seen_ms = ?2 WHERE id = ?1")?
        .execute(params![agent.id, now])?;
    let (held, max, online): (i64, i64, bool) = conn
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM runs WHERE agent_id = ?1 AND status = 'running'),
                    max_concurrency, online FROM agents WHERE id = ?1",
        )?
        .query_row([&agent.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if held >= max || !online {
        return Ok(Claim::Busy);
    }
    loop {
        let claimed: Option<Claimed> = conn
            .prepare_cached(
                "UPDATE runs SET status = 'running', agent_id = ?1, agent_name = ?2,
                                 lease_expires_ms = ?3, started_ms = ?4
                 WHERE n = (SELECT r.n FROM agent_targets a
                            JOIN runs r ON r.target_id = a.target_id AND r.status = 'queued'
                            WHERE a.agent_id = ?1 ORDER BY r.n LIMIT 1)
                   AND status = 'queued'
                 RETURNING id, target_id, target, argv, env, secrets, image, timeout_secs, created_ms",
            )?
            .query_row(params![agent.id, agent.name, now + lease_ttl_ms, now], |r| {
                Ok(Claimed {
                    run_id: r.get(0)?,
                    target_id: r.get(1)?,
                    target: r.get(2)?,
                    argv: r.get(3)?,
                    env: r.get(4)?,
                    secrets: r.get(5)?,
                    image: r.get(6)?,
                    timeout_secs: r.get(7)?,
                    created: r.get(8)?,
                })
            })
            .optional()?;
        let Some(Claimed {
            run_id,
            target_id,
            target,
            argv,
            env,
            secrets,
            image,
            timeout_secs,
            created,
        }) = claimed
        else {
            return Ok(Claim::Empty);
        };
        let spec: TargetSpec = serde_json::from_str(
            &conn
                .prepare_cached("SELECT spec FROM targets WHERE id = ?1")?
                .query_row([target_id], |r| r.get::<_, String>(0))?,
        )?;
        let names: Vec<String> = serde_json::from_str(&secrets)?;
        let mut sealed = Vec::with_capacity(names.len());
        let mut missing = None;
        for name in names {
            let row: Option<String> = conn
                .prepare_cached("SELECT sealed FROM secrets WHERE target_id = ?1 AND name = ?2")?
                .query_row(params![target_id, name], |r| r.get(0))
                .optional()?;
            match row {
                Some(json) => sealed.push(AssignedSecret {
                    sealed: serde_json::from_str::<SealedSecret>(&json)?,
                    name,
                }),
                None => {
                    missing = Some(name);
                    break;
                }
            }
        }
        if let Some(name) = missing {
            // Deleted after the run was queued: the command would run without
            // it. Fail the run visibly rather than hand it out.
            let error = format!("secret {name} was deleted before the run started");
            conn.prepare_cached(
                "UPDATE runs SET status = 'error', error = ?2, finished_ms = ?3, lease_expires_ms = NULL
                 WHERE id = ?1",
            )?
            .execute(params![run_id, error, now])?;
            audit::append(
                conn,
                agent.org_id,
                audit::SYSTEM,
                "run.finished",
                &run_id,
                json!({"status": "error", "error": error}),
            )?;
            continue;
        }
        audit::append(
            conn,
            agent.org_id,
            &agent.actor(),
            "run.started",
            &run_id,
            json!({"agent": agent.name, "target": target}),
        )?;
        let assignment = Assignment {
            run_id,
            target,
            image,
            argv: serde_json::from_str(&argv)?,
            env: serde_json::from_str::<BTreeMap<String, String>>(&env)?,
            secrets: sealed,
            timeout_secs,
            limits: spec.limits,
            network: spec.network,
            user: spec.user,
        };
        let waited = u64::try_from(now - created).unwrap_or(0);
        return Ok(Claim::Assigned(Box::new(assignment), waited));
    }
}

/// What a cancel request did.
pub(crate) enum Canceled {
    /// It was queued and is now canceled.
    Now,
    /// It is running; the agent is told in its next heartbeat.
    Requested,
}

/// Cancels a run of the org: at once if queued, through its agent if running.
pub(crate) fn cancel(
    conn: &Connection,
    org_id: i64,
    run_id: &str,
    actor: &str,
) -> Result<Canceled, ApiError> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM runs WHERE org_id = ?1 AND id = ?2")?
        .query_row(params![org_id, run_id], |r| r.get(0))
        .optional()?;
    let status = status.ok_or_else(|| no_such_run(run_id))?;
    match RunStatus::parse(&status) {
        Some(RunStatus::Queued) => {
            conn.prepare_cached(
                "UPDATE runs SET status = 'canceled', finished_ms = ?2 WHERE id = ?1 AND status = 'queued'",
            )?
            .execute(params![run_id, now_ms()])?;
            audit::append(
                conn,
                org_id,
                actor,
                "run.canceled",
                run_id,
                json!({"was": "queued"}),
            )?;
            Ok(Canceled::Now)
        }
        Some(RunStatus::Running) => {
            let changed = conn
                .prepare_cached(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 AND cancel_requested = 0",
                )?
                .execute([run_id])?;
            if changed > 0 {
                audit::append(
                    conn,
                    org_id,
                    actor,
                    "run.cancel_requested",
                    run_id,
                    json!({}),
                )?;
            }
            Ok(Canceled::Requested)
        }
        _ => Err(ApiError::conflict(format!(
            "run {run_id} has already ended ({status})"
        ))),
    }
}

/// Records how a run ended, as reported by the agent holding it.
/// Idempotent: the same report twice is accepted; a different one is not.
pub(crate) fn finish(
    conn: &Connection,
    agent: &Agent,
    run_id: &str,
    req: &FinishRequest,
) -> Result<bool, ApiError> {
    if !req.status.is_terminal() || req.status == RunStatus::Lost {
        return Err(ApiError::bad_request(format!(
            "{} is not a status an agent can finish a run with",
            req.status
        )));
    }
    let row: Option<(String, Option<String>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT status, agent_id, exit_code FROM runs WHERE org_id = ?1 AND id = ?2",
        )?
        .query_row(params![agent.org_id, run_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((status, holder, exit_code)) = row else {
        return Err(no_such_run(run_id));
    };
    if holder.as_deref() != Some(agent.id.as_str()) {
        return Err(no_such_run(run_id));
    }
    match RunStatus::parse(&status) {
        Some(RunStatus::Running) => {}
        Some(RunStatus::Lost) => {
            return Err(ApiError::conflict(format!(
                "run {run_id} is lost (its lease lapsed); its result is refused"
            )));
        }
        Some(s) if s == req.status && exit_code == req.exit_code => return Ok(false),
        _ => {
            return Err(ApiError::conflict(format!(
                "run {run_id} already ended as {status}"
            )));
        }
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
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, exit_code = ?3, error = ?4, oom_killed = ?5, finished_ms = ?6,
                         lease_expires_ms = NULL, log_final_seq = ?7
         WHERE id = ?1 AND status = 'running'",
    )?
    .execute(params![
        run_id,
        req.status.as_str(),
        req.exit_code,
        error,
        req.oom_killed,
        now_ms(),
        req.next_seq,
    ])?;
    audit::append(
        conn,
        agent.org_id,
        &agent.actor(),
        "run.finished",
        run_id,
        json!({
            "status": req.status.as_str(),
            "exit_code": req.exit_code,
            "oom_killed": req.oom_killed,
        }),
    )?;
    Ok(true)
}

/// Marks the runs `agent_id` holds as `lost` (it restarted, deregistered or
/// was revoked: whatever they were doing, no result will come); returns
/// their ids.
pub(crate) fn lose_held(
    conn: &Connection,
    org_id: i64,
    agent_id: &str,
    reason: &str,
) -> Result<Vec<String>, ApiError> {
    let ids = conn
        .prepare_cached(
            "UPDATE runs SET status = 'lost', finished_ms = ?2, lease_expires_ms = NULL,
                             error = ?3
             WHERE agent_id = ?1 AND status = 'running' RETURNING id",
        )?
        .query_map(
            params![agent_id, now_ms(), format!("lost: {reason}")],
            |r| r.get(0),
        )?
        .collect::<Result<Vec<String>, _>>()?;
    for id in &ids {
        audit::append(
            conn,
            org_id,
            audit::SYSTEM,
            "run.lost",
            id,
            json!({"agent": agent_id, "reason": reason}),
        )?;
    }
    Ok(ids)
}

/// Marks every run whose lease expired before `now` as `lost`; returns
/// their ids.
pub(crate) fn expire_leases(conn: &Connection, now: i64) -> Result<Vec<String>, ApiError> {
    let lost = conn
        .prepare_cached(
            "UPDATE runs SET status = 'lost', finished_ms = ?1, lease_expires_ms = NULL,
                             error = 'lost: the agent stopped renewing its lease'
             WHERE status = 'running' AND lease_expires_ms < ?1
             RETURNING id, org_id, agent_id",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<(String, i64, Option<String>)>, _>>()?;
    for (id, org_id, agent) in &lost {
        audit::append(
            conn,
            *org_id,
            audit::SYSTEM,
            "run.lost",
            id,
            json!({"agent": agent, "reason": "lease expired"}),
        )?;
    }
    Ok(lost.into_iter().map(|(id, _, _)| id).collect())
}

/// Renews the leases of the listed runs the agent holds; returns (runs to
/// cancel, runs to abandon).
pub(crate) fn heartbeat(
    conn: &Connection,
    agent: &Agent,
    running: &[String],
    lease_ttl_ms: i64,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let now = now_ms();
    conn.prepare_cached("UPDATE agents SET last_seen_ms = ?2 WHERE id = ?1")?
        .execute(params![agent.id, now])?;
    let mut cancel = Vec::new();
    let mut abandon = Vec::new();
    for run_id in running {
        let renewed: Option<bool> = conn
            .prepare_cached(
                "UPDATE runs SET lease_expires_ms = ?3
                 WHERE id = ?1 AND agent_id = ?2 AND status = 'running'
                 RETURNING cancel_requested",
            )?
            .query_row(params![run_id, agent.id, now + lease_ttl_ms], |r| r.get(0))
            .optional()?;
        match renewed {
            Some(true) => cancel.push(run_id.clone()),
            Some(false) => {}
            None => abandon.push(run_id.clone()),
        }
    }
    Ok((cancel, abandon))
}
