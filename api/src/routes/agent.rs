//! The agent protocol (see `sealrun_wire::agent`): register, challenge, connect,
//! long-poll, heartbeat, upload output, finish, deregister.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, OptionalJsonBody, Segments};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt as _;
use sealrun_control::{Agent, Enroller};
use sealrun_wire::agent::{
    AgentSettings, AuditLinks, AuditLinksRequest, ChallengeRequest, Challenges, ConnectRequest,
    FinishRequest, Heartbeat, HeartbeatAck, PollRequest, RegisterRequest, Registered,
};
use sealrun_wire::log::{LogUpload, LogUploadAck};
use serde::Deserialize;

/// `POST /v1/agent/register` (enrollment token): enrolls an agent into the
/// token's pool and returns its own token, shown once.
pub(crate) async fn register(
    State(state): State<AppState>,
    Caller(enroller): Caller<Enroller>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let registered = state.control.register_agent(&enroller, req).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// `POST /v1/agent/challenge`: one challenge per target the agent is about
/// to connect serving, sealed to the key it will present (proof of
/// possession).
pub(crate) async fn challenge(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    JsonBody(req): JsonBody<ChallengeRequest>,
) -> Result<Json<Challenges>, ApiError> {
    Ok(Json(state.control.agent_challenges(&agent, req).await?))
}

/// `POST /v1/agent/connect`: declares the targets served (pinning keys on
/// first sight, refusing mismatches), proves it holds their private keys
/// and gets the protocol settings. Runs the agent held before are `lost`.
pub(crate) async fn connect(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    JsonBody(req): JsonBody<ConnectRequest>,
) -> Result<Json<AgentSettings>, ApiError> {
    Ok(Json(state.control.connect_agent(&agent, req).await?))
}

/// `POST /v1/agent/audit`: the links of the org's audit chain from an
/// entry on, for the agent to witness that history was not rewritten.
pub(crate) async fn audit(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    JsonBody(req): JsonBody<AuditLinksRequest>,
) -> Result<Json<AuditLinks>, ApiError> {
    Ok(Json(state.control.audit_links(&agent, req.from_seq).await?))
}

/// `POST /v1/agent/poll`: a run (`200`), or `204` after `poll_timeout`
/// without one. Woken as soon as a run for one of its targets is queued.
/// Asked again with the same `poll_id`, the run handed out in that poll.
pub(crate) async fn poll(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    OptionalJsonBody(req): OptionalJsonBody<PollRequest>,
) -> Result<Response, ApiError> {
    match state.control.poll(&agent, req.poll_id).await? {
        Some(dispatched) => {
            state
                .metrics
                .dispatched(dispatched.waited_ms, dispatched.handed_off);
            Ok(Json(*dispatched.assignment).into_response())
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /v1/agent/heartbeat`: renews the leases of the runs listed.
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    JsonBody(req): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAck>, ApiError> {
    Ok(Json(state.control.heartbeat(&agent, req.running).await?))
}

/// `POST /v1/agent/runs/{id}/logs`: stores redacted output, idempotently.
pub(crate) async fn upload_logs(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    Segments(run_id): Segments<String>,
    JsonBody(req): JsonBody<LogUpload>,
) -> Result<Json<LogUploadAck>, ApiError> {
    Ok(Json(
        state
            .control
            .upload_logs(&agent, run_id, req.chunks)
            .await?,
    ))
}

/// `POST /v1/agent/runs/{id}/finish`: how the run ended.
pub(crate) async fn finish(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    Segments(run_id): Segments<String>,
    JsonBody(req): JsonBody<FinishRequest>,
) -> Result<StatusCode, ApiError> {
    state.control.finish_run(&agent, run_id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/agent/runs/{id}/stdin`: the submitter's input of a run the
/// agent holds, streamed as it arrives. A body cut off before its final
/// chunk means the input broke off: the agent must not let the command go on
/// with part of it.
pub(crate) async fn stdin(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    Segments(run_id): Segments<String>,
) -> Result<Response, ApiError> {
    let run = run_id.clone();
    // Cutting the body tells the agent only that the input broke off: the
    // reason is said here, for whoever looks into the run's `error`.
    let input = state
        .control
        .take_stdin(&agent, run_id)
        .await?
        .inspect_err(move |broken| {
            tracing::warn!(%run, reason = %broken, "a run's input broke off; its agent's read is cut");
        });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(input),
    )
        .into_response())
}

/// Body of `POST /v1/agent/deregister`: empty, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Deregister {}

/// `POST /v1/agent/deregister`: the agent is going away (it stays enrolled
/// and may connect again). Runs it still holds are `lost`.
pub(crate) async fn deregister(
    State(state): State<AppState>,
    Caller(agent): Caller<Agent>,
    OptionalJsonBody(_): OptionalJsonBody<Deregister>,
) -> Result<StatusCode, ApiError> {
    state.control.deregister_agent(&agent).await?;
    Ok(StatusCode::NO_CONTENT)
}
