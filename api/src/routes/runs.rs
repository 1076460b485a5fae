//! Runs as users see them: submit, list, inspect, cancel, read output.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, Params, Segments};
use crate::follow::{Follow, Followed};
use crate::state::AppState;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealrun_control::{Member, RunFilter, User};
use sealrun_wire::log::{LogEvent, LogPage};
use sealrun_wire::run::{CLI_PRODUCT, RunCreated, RunList, RunRequest, RunView, StdinSent};
use serde::Deserialize;

/// The header naming a submission, so a retry queues nothing twice.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `user` submitting through the API: recorded with source `cli` when the
/// request's `User-Agent` names the sealrun CLI ([`CLI_PRODUCT`]), else
/// `api`. A request body cannot set the source.
fn member(user: &User, headers: &HeaderMap) -> Member {
    let cli = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split_once('/'))
        .is_some_and(|(product, _)| product == CLI_PRODUCT);
    if cli {
        Member::via_cli(user)
    } else {
        Member::from(user)
    }
}

/// `POST /v1/runs` (admin, operator): `201` with the run queued, or `200`
/// with the run an earlier submission with the same `Idempotency-Key`
/// queued.
pub(crate) async fn submit(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RunRequest>,
) -> Result<(StatusCode, Json<RunCreated>), ApiError> {
    // Bytes that are not text become U+FFFD, which the domain's key rule
    // refuses: the rule stays in one place.
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let submitted = state
        .control
        .submit_run_once(&member(&user, &headers), req, key)
        .await?;
    let status = if submitted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(RunCreated {
            id: submitted.id,
            status: submitted.status,
            served: submitted.served,
            expires_at_ms: Some(submitted.expires_at_ms),
            approval: submitted.approval,
        }),
    ))
}

/// Filters of `GET /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
    target: Option<String>,
    limit: Option<u32>,
    /// Only runs submitted before this run (for paging back).
    before: Option<String>,
    submitter: Option<String>,
    source: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

/// `GET /v1/runs` (every role): newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Params(q): Params<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let filter = RunFilter {
        status: q.status,
        target: q.target,
        limit: q.limit,
        before: q.before,
        submitter: q.submitter,
        source: q.source,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    let runs = state
        .control
        .list_runs(&Member::from(&user), filter)
        .await?;
    Ok(Json(RunList { runs }))
}

/// `PUT /v1/runs/{id}/stdin` (the run's submitter): streams the body to the
/// run's command as its stdin; answers once it is passed on, or the run
/// ended first. Never stored.
pub(crate) async fn stdin(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
    body: Body,
) -> Result<Json<StdinSent>, ApiError> {
    let sent = state
        .control
        .feed_stdin(&Member::from(&user), id, body.into_data_stream())
        .await?;
    Ok(Json(sent))
}

/// `GET /v1/runs/{id}` (every role).
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(state.control.run(&Member::from(&user), id).await?))
}

/// `POST /v1/runs/{id}/cancel` (admin, operator): a queued run is canceled
/// at once; a running one is flagged and its agent told at its next
/// heartbeat (or log upload). Answers the run as it now stands.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
) -> Result<Json<RunView>, ApiError> {
    let canceled = state.control.cancel_run(&Member::from(&user), id).await?;
    Ok(Json(canceled.run))
}

/// Parameters of `GET /v1/runs/{id}/logs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    /// First `seq` wanted.
    #[serde(default)]
    after: u64,
    /// Stream NDJSON `LogEvent`s until the run ends.
    #[serde(default)]
    follow: bool,
}

/// `GET /v1/runs/{id}/logs` (every role): a page, or with `follow=true` a
/// stream that ends when the run does.
pub(crate) async fn logs(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
    Params(q): Params<LogQuery>,
) -> Result<Response, ApiError> {
    let who = Member::from(&user);
    if !q.follow {
        let page = state.control.log_page(&who, id, q.after).await?;
        return Ok(Json(LogPage {
            chunks: page.chunks,
            next_seq: page.next_seq,
            status: page.status,
        })
        .into_response());
    }
    let follow = Follow::start(state, user, id, q.after).await?;
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let bytes = match f.next().await? {
            Followed::Events(events) => {
                let mut out = Vec::new();
                for event in &events {
                    line(&mut out, event);
                }
                Bytes::from(out)
            }
            // Clients skip empty lines.
            Followed::KeepAlive => Bytes::from_static(b"\n"),
        };
        Some((Ok::<_, std::convert::Infallible>(bytes), f))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn line(out: &mut Vec<u8>, event: &LogEvent) {
    // Serializing wire types into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, event).is_ok() {
        out.push(b'\n');
    }
}
