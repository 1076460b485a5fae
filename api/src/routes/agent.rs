//! The agent protocol (see `sealrun_wire::agent`): register, connect,
//! long-poll, heartbeat, upload output, finish, deregister.

use crate::audit;
use crate::auth::{Agent, Enroller, TokenRecord, insert_token};
use crate::db::now_ms;
use crate::error::ApiError;
use crate::extract::{JsonBody, OptionalJsonBody, Segments};
use crate::logs;
use crate::names::{check_label, check_name};
use crate::queue::{self, Claim};
use crate::state::AppState;
use crate::token::{self, TokenKind};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension as _, params};
use sealrun_vault::PublicKey;
use sealrun_wire::agent::{
    AgentSettings, ConnectRequest, FinishRequest, Heartbeat, HeartbeatAck, PollRequest,
    RegisterRequest, Registered,
};
use sealrun_wire::log::{LogUpload, LogUploadAck};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Most runs one agent may execute at once.
const MAX_CONCURRENCY: u32 = 1024;
/// Most targets one agent may serve.
const MAX_TARGETS: usize = 1000;
/// Most chunks in one upload.
const MAX_CHUNKS: usize = 10_000;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `POST /v1/agent/register` (enrollment token): enrolls an agent into the
/// token's pool and returns its own token, shown once.
pub(crate) async fn register(
    State(state): State<AppState>,
    enroller: Enroller,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    check_name("agent", &req.name).map_err(ApiError::bad_request)?;
    let registered = state
        .db
        .write(move |conn| {
            let taken = conn
                .prepare_cached(
                    "SELECT 1 FROM agents WHERE org_id = ?1 AND name = ?2 AND revoked_ms IS NULL",
                )?
                .exists(params![enroller.org_id, req.name])?;
            if taken {
                return Err(ApiError::conflict(format!(
                    "an agent named {:?} is already enrolled; pick another name or revoke it first",
                    req.name
                )));
            }
            let agent_id = format!("agt_{}", token::random_hex(8));
            conn.prepare_cached(
                "INSERT INTO agents (id, org_id, pool_id, name, registered_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![agent_id, enroller.org_id, enroller.pool_id, req.name, now_ms()])?;
            let new = token::mint(TokenKind::Agent);
            insert_token(
                conn,
                &new,
                &TokenRecord {
                    org_id: enroller.org_id,
                    kind: TokenKind::Agent,
                    name: &req.name,
                    role: None,
                    pool_id: Some(enroller.pool_id),
                    agent_id: Some(&agent_id),
                    expires_ms: None,
                },
            )?;
            audit::append(
                conn,
                enroller.org_id,
                &format!("token:{}", enroller.token_id),
                "agent.registered",
                &agent_id,
                json!({"name": req.name, "pool": enroller.pool, "agent_token": new.id}),
            )?;
            Ok(Registered {
                agent_id,
                agent_token: new.value,
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// A served target, checked.
struct Served {
    name: String,
    key: PublicKey,
}

fn check_connect(req: &ConnectRequest) -> Result<Vec<Served>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    check_label("agent version", &req.version).map_err(bad)?;
    if req.max_concurrency == 0 || req.max_concurrency > MAX_CONCURRENCY {
        return Err(bad(format!(
            "max_concurrency must be between 1 and {MAX_CONCURRENCY}"
        )));
    }
    if req.targets.is_empty() || req.targets.len() > MAX_TARGETS {
        return Err(bad(format!(
            "an agent serves between 1 and {MAX_TARGETS} targets"
        )));
    }
    let mut seen = BTreeSet::new();
    req.targets
        .iter()
        .map(|t| {
            if !seen.insert(&t.name) {
                return Err(bad(format!("target {} is listed twice", t.name)));
            }
            let key = PublicKey::from_base64(&t.public_key)
                .map_err(|e| bad(format!("target {}: {e}", t.name)))?;
            Ok(Served {
                name: t.name.clone(),
                key,
            })
        })
        .collect()
}

/// What a connect did (committed either way).
enum Connected {
    Ok(AgentSettings, Vec<String>),
    KeyMismatch(ApiError),
}

fn connect_job(
    conn: &Connection,
    agent: &Agent,
    req: &ConnectRequest,
    served: &[Served],
    state: &AppState,
) -> Result<Connected, ApiError> {
    let s = &state.settings;
    let now = now_ms();
    let mut resolved = Vec::with_capacity(served.len());
    let mut mismatches = Vec::new();
    for t in served {
        let row: Option<(i64, i64, Option<String>)> = conn
            .prepare_cached(
                "SELECT id, pool_id, key_id FROM targets WHERE org_id = ?1 AND name = ?2",
            )?
            .query_row(params![agent.org_id, t.name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((id, pool_id, pinned)) = row else {
            return Err(ApiError::bad_request(format!(
                "target {} is not declared: an admin must declare it first (PUT /v1/targets/{})",
                t.name, t.name
            )));
        };
        if pool_id != agent.pool_id {
            return Err(ApiError::forbidden(format!(
                "target {} belongs to another pool than this agent's",
                t.name
            )));
        }
        let presented = t.key.key_id();
        match pinned {
            Some(p) if p != presented.0 => mismatches.push((t.name.clone(), p, presented)),
            Some(_) => resolved.push((id, t, false)),
            None => resolved.push((id, t, true)),
        }
    }
    if !mismatches.is_empty() {
        // Refused, but recorded: this is what a stolen agent token with a
        // swapped key (to read future secrets) looks like.
        let mut names = Vec::new();
        for (target, pinned, presented) in mismatches {
            audit::append(
                conn,
                agent.org_id,
                &agent.actor(),
                "target.key_mismatch",
                &target,
                json!({"agent": agent.name, "pinned_key_id": pinned, "presented_key_id": presented.0}),
            )?;
            names.push(format!("{target} (pinned {pinned}, presented {presented})"));
        }
        return Ok(Connected::KeyMismatch(ApiError::conflict(format!(
            "refusing to connect: public key mismatch for {}; keys are never replaced silently (to re-key, an admin deletes and re-declares the target)",
            names.join(", ")
        ))));
    }
    let window = millis(s.connected_window());
    let others: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM agents WHERE org_id = ?1 AND id != ?2 AND online = 1
             AND revoked_ms IS NULL AND last_seen_ms >= ?3",
        )?
        .query_row(params![agent.org_id, agent.id, now - window], |r| r.get(0))?;
    if others >= i64::from(s.max_agents_per_org) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the org already has {others} connected agents (the limit is {})",
                s.max_agents_per_org
            ),
        ));
    }
    let lost = queue::lose_held(conn, agent.org_id, &agent.id, "agent reconnected")?;
    conn.prepare_cached("DELETE FROM agent_targets WHERE agent_id = ?1")?
        .execute([&agent.id])?;
    for (target_id, t, pin) in &resolved {
        if *pin {
            conn.prepare_cached(
                "UPDATE targets SET public_key = ?2, key_id = ?3 WHERE id = ?1 AND key_id IS NULL",
            )?
            .execute(params![target_id, t.key.to_base64(), t.key.key_id().0])?;
            audit::append(
                conn,
                agent.org_id,
                &agent.actor(),
                "target.key_pinned",
                &t.name,
                json!({"agent": agent.name, "key_id": t.key.key_id().0}),
            )?;
        }
        conn.prepare_cached("INSERT INTO agent_targets (agent_id, target_id) VALUES (?1, ?2)")?
            .execute(params![agent.id, target_id])?;
    }
    conn.prepare_cached(
        "UPDATE agents SET version = ?2, max_concurrency = ?3, online = 1, last_seen_ms = ?4 WHERE id = ?1",
    )?
    .execute(params![agent.id, req.version, req.max_concurrency, now])?;
    audit::append(
        conn,
        agent.org_id,
        &agent.actor(),
        "agent.connected",
        &agent.id,
        json!({
            "name": agent.name,
            "version": req.version,
            "max_concurrency": req.max_concurrency,
            "targets": served.iter().map(|t| &t.name).collect::<Vec<_>>(),
            "runs_lost": lost.len(),
        }),
    )?;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok(Connected::Ok(
        AgentSettings {
            agent_id: agent.id.clone(),
            heartbeat_interval_ms: ms(s.heartbeat_interval),
            lease_ttl_ms: ms(s.lease_ttl),
            poll_timeout_ms: ms(s.poll_timeout),
            max_chunk_bytes: s.max_chunk_bytes,
            max_log_bytes: s.max_log_bytes,
            cancel_grace_ms: ms(s.cancel_grace),
        },
        lost,
    ))
}

/// `POST /v1/agent/connect`: declares the targets served (pinning keys on
/// first sight, refusing mismatches) and gets the protocol settings. Runs
/// the agent held before are `lost`.
pub(crate) async fn connect(
    State(state): State<AppState>,
    agent: Agent,
    JsonBody(req): JsonBody<ConnectRequest>,
) -> Result<Json<AgentSettings>, ApiError> {
    let served = check_connect(&req)?;
    let st = Arc::clone(&state);
    let invalidate = Arc::clone(&state);
    let outcome = state
        .db
        .write_then(
            move |conn| connect_job(conn, &agent, &req, &served, &st),
            // The agent's cached principal (targets, online) is stale now.
            move |_| invalidate.auth.invalidate(),
        )
        .await?;
    match outcome {
        Connected::Ok(settings, lost) => {
            for run in &lost {
                state.watchers.touch(run);
            }
            Ok(Json(settings))
        }
        Connected::KeyMismatch(e) => Err(e),
    }
}

/// Resolves when any of `waits` does; never if there are none.
async fn any(waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>>) {
    if waits.is_empty() {
        std::future::pending::<()>().await;
    } else {
        futures_util::future::select_all(waits).await;
    }
}

/// `POST /v1/agent/poll`: a run (`200`), or `204` after `poll_timeout`
/// without one. Woken as soon as a run for one of its targets is queued.
pub(crate) async fn poll(
    State(state): State<AppState>,
    agent: Agent,
    OptionalJsonBody(_): OptionalJsonBody<PollRequest>,
) -> Result<Response, ApiError> {
    if !agent.online {
        return Err(ApiError::conflict(
            "the agent is not connected: call /v1/agent/connect first",
        ));
    }
    let deadline = tokio::time::Instant::now() + state.settings.poll_timeout;
    let notifiers: Vec<_> = agent
        .targets
        .iter()
        .map(|t| state.wakeups.notifier(*t))
        .collect();
    let agent = Arc::new(agent);
    let ttl = millis(state.settings.lease_ttl);
    loop {
        // Register interest before looking, so a run queued between the
        // look and the wait still wakes us.
        let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
        for n in &notifiers {
            let mut notified = Box::pin(n.notified());
            notified.as_mut().enable();
            waits.push(notified);
        }
        let a = Arc::clone(&agent);
        match state
            .db
            .write(move |conn| queue::claim(conn, &a, ttl))
            .await?
        {
            Claim::Assigned(assignment, waited_ms) => {
                state.metrics.dispatched(waited_ms);
                tracing::info!(run = %assignment.run_id, agent = %agent.name, waited_ms, "run assigned");
                return Ok(Json(*assignment).into_response());
            }
            Claim::Busy => {
                // Not entitled to a run now: do not take a wake-up another
                // agent could use.
                waits.clear();
            }
            Claim::Empty => {}
        }
        let woken = tokio::select! {
            () = any(waits) => true,
            () = tokio::time::sleep_until(deadline) => false,
            () = state.shutting_down() => false,
        };
        if !woken {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
}

/// `POST /v1/agent/heartbeat`: renews the leases of the runs listed.
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    agent: Agent,
    JsonBody(req): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAck>, ApiError> {
    if req.running.len() > MAX_CONCURRENCY as usize {
        return Err(ApiError::bad_request("too many runs in one heartbeat"));
    }
    let ttl = millis(state.settings.lease_ttl);
    let (cancel, abandon) = state
        .db
        .write(move |conn| queue::heartbeat(conn, &agent, &req.running, ttl))
        .await?;
    Ok(Json(HeartbeatAck { cancel, abandon }))
}

/// `POST /v1/agent/runs/{id}/logs`: stores redacted output, idempotently.
pub(crate) async fn upload_logs(
    State(state): State<AppState>,
    agent: Agent,
    Segments(run_id): Segments<String>,
    JsonBody(req): JsonBody<LogUpload>,
) -> Result<Json<LogUploadAck>, ApiError> {
    if req.chunks.len() > MAX_CHUNKS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_CHUNKS} chunks per upload"
        )));
    }
    let (max_chunk, max_log) = (state.settings.max_chunk_bytes, state.settings.max_log_bytes);
    let id = run_id.clone();
    let ack = state
        .db
        .write(move |conn| logs::store(conn, &agent, &id, &req.chunks, max_chunk, max_log))
        .await?;
    state.watchers.touch(&run_id);
    Ok(Json(ack))
}

/// `POST /v1/agent/runs/{id}/finish`: how the run ended.
pub(crate) async fn finish(
    State(state): State<AppState>,
    agent: Agent,
    Segments(run_id): Segments<String>,
    JsonBody(req): JsonBody<FinishRequest>,
) -> Result<StatusCode, ApiError> {
    let id = run_id.clone();
    let changed = state
        .db
        .write(move |conn| queue::finish(conn, &agent, &id, &req))
        .await?;
    if changed {
        state.watchers.touch(&run_id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/agent/deregister`: empty, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Deregister {}

/// `POST /v1/agent/deregister`: the agent is going away (it stays enrolled
/// and may connect again). Runs it still holds are `lost`.
pub(crate) async fn deregister(
    State(state): State<AppState>,
    agent: Agent,
    OptionalJsonBody(_): OptionalJsonBody<Deregister>,
) -> Result<StatusCode, ApiError> {
    let invalidate = Arc::clone(&state);
    let lost = state
        .db
        .write_then(
            move |conn| {
                conn.prepare_cached("UPDATE agents SET online = 0 WHERE id = ?1")?
                    .execute([&agent.id])?;
                let lost = queue::lose_held(conn, agent.org_id, &agent.id, "agent deregistered")?;
                audit::append(
                    conn,
                    agent.org_id,
                    &agent.actor(),
                    "agent.deregistered",
                    &agent.id,
                    json!({"name": agent.name, "runs_lost": lost.len()}),
                )?;
                Ok(lost)
            },
            move |_| invalidate.auth.invalidate(),
        )
        .await?;
    for run in &lost {
        state.watchers.touch(run);
    }
    Ok(StatusCode::NO_CONTENT)
}
