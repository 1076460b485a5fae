//! Runs as users see them: submit, list, inspect, cancel, read output.

use crate::auth::User;
use crate::error::ApiError;
use crate::extract::{JsonBody, Params, Segments};
use crate::logs::{self, Page};
use crate::queue::{self, Canceled, Submitter, VIEW_COLUMNS};
use crate::state::AppState;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::types::Value as SqlValue;
use sealrun_wire::admin::Role;
use sealrun_wire::log::{LogEvent, LogPage};
use sealrun_wire::run::{RunCreated, RunList, RunRequest, RunStatus, RunView};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor];
const DEFAULT_LIST: u32 = 50;
const MAX_LIST: u32 = 500;
/// A followed log with no news sends an empty line this often, so idle
/// connections are not cut by proxies (clients skip empty lines).
const FOLLOW_KEEPALIVE: Duration = Duration::from_secs(15);

/// `POST /v1/runs` (admin, operator).
pub(crate) async fn submit(
    State(state): State<AppState>,
    user: User,
    JsonBody(req): JsonBody<RunRequest>,
) -> Result<(StatusCode, Json<RunCreated>), ApiError> {
    user.allow(&[Role::Admin, Role::Operator], "submit runs")?;
    let id = enqueue(&state, user.org_id, user.name.clone(), user.actor(), req).await?;
    Ok((
        StatusCode::CREATED,
        Json(RunCreated {
            id,
            status: RunStatus::Queued,
        }),
    ))
}

/// Queues a run for a caller already authorised to submit, and wakes the
/// agents polling for its target. The one path every run takes, whether it
/// came from `POST /v1/runs` or from Slack.
pub(crate) async fn enqueue(
    state: &AppState,
    org_id: i64,
    name: String,
    actor: String,
    req: RunRequest,
) -> Result<String, ApiError> {
    let waker = Arc::clone(state);
    let (id, _target_id) = state
        .db
        .write_then(
            move |conn| {
                let who = Submitter {
                    org_id,
                    name: &name,
                    actor: &actor,
                };
                queue::submit(conn, &who, &req)
            },
            // Pollers may claim it as soon as it is committed: their claim
            // is answered only once it (and so this submit) is on disk.
            move |(_, target_id)| waker.wakeups.run_queued(*target_id),
        )
        .await?;
    Ok(id)
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
}

/// `GET /v1/runs` (every role): newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    Params(q): Params<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    user.allow(READERS, "read runs")?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown status {s:?}; one of: {}",
                RunStatus::ALL.map(RunStatus::as_str).join(", ")
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST);
    let runs = state
        .db
        .read(move |conn| {
            let mut sql = format!("SELECT {VIEW_COLUMNS} FROM runs WHERE org_id = ?");
            let mut args = vec![SqlValue::Integer(user.org_id)];
            if let Some(s) = status {
                sql.push_str(" AND status = ?");
                args.push(SqlValue::Text(s.as_str().to_owned()));
            }
            if let Some(t) = q.target.filter(|t| !t.is_empty()) {
                sql.push_str(" AND target = ?");
                args.push(SqlValue::Text(t));
            }
            if let Some(b) = q.before.filter(|b| !b.is_empty()) {
                sql.push_str(" AND n < (SELECT n FROM runs WHERE org_id = ? AND id = ?)");
                args.push(SqlValue::Integer(user.org_id));
                args.push(SqlValue::Text(b));
            }
            sql.push_str(" ORDER BY n DESC LIMIT ?");
            args.push(SqlValue::Integer(i64::from(limit)));
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), queue::view_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(RunList { runs }))
}

/// `GET /v1/runs/{id}` (every role).
pub(crate) async fn get_one(
    State(state): State<AppState>,
    user: User,
    Segments(id): Segments<String>,
) -> Result<Json<RunView>, ApiError> {
    user.allow(READERS, "read runs")?;
    let view = state
        .db
        .read(move |conn| queue::view(conn, user.org_id, &id))
        .await?;
    Ok(Json(view))
}

/// `POST /v1/runs/{id}/cancel` (admin, operator): a queued run is canceled
/// at once; a running one is flagged and its agent told at its next
/// heartbeat (or log upload). Answers the run as it now stands.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    user: User,
    Segments(id): Segments<String>,
) -> Result<Json<RunView>, ApiError> {
    user.allow(&[Role::Admin, Role::Operator], "cancel runs")?;
    let (outcome, view) = state
        .db
        .write(move |conn| {
            let outcome = queue::cancel(conn, user.org_id, &id, &user.actor())?;
            Ok((outcome, queue::view(conn, user.org_id, &id)?))
        })
        .await?;
    if matches!(outcome, Canceled::Now) {
        state.watchers.touch(&view.id);
    }
    Ok(Json(view))
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
    user: User,
    Segments(id): Segments<String>,
    Params(q): Params<LogQuery>,
) -> Result<Response, ApiError> {
    user.allow(READERS, "read logs")?;
    let org_id = user.org_id;
    if !q.follow {
        let page = read_page(&state, org_id, &id, q.after).await?;
        return Ok(Json(LogPage {
            chunks: page.chunks,
            next_seq: page.next_seq,
            status: page.status,
        })
        .into_response());
    }
    // Subscribe before the first read, so nothing written in between is missed.
    let watch = state.watchers.watch(&id);
    let first = read_page(&state, org_id, &id, q.after).await?;
    let follow = Follow {
        state,
        org_id,
        run_id: id,
        watch,
        next: q.after,
        pending: Some(first),
        done: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        f.next_bytes()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), f))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn read_page(state: &AppState, org_id: i64, id: &str, from: u64) -> Result<Page, ApiError> {
    let id = id.to_owned();
    state
        .db
        .read(move |conn| logs::page(conn, org_id, &id, from))
        .await
}

/// A log being followed.
struct Follow {
    state: AppState,
    org_id: i64,
    run_id: String,
    watch: crate::dispatch::RunWatch,
    /// First `seq` not yet sent.
    next: u64,
    pending: Option<Page>,
    done: bool,
}

impl Follow {
    /// The next piece of the stream; `None` ends it.
    async fn next_bytes(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            let page = match self.pending.take() {
                Some(p) => p,
                None => {
                    match read_page(&self.state, self.org_id, &self.run_id, self.next).await {
                        Ok(p) => p,
                        // The client reconnects with `after`; nothing is lost.
                        Err(_) => return None,
                    }
                }
            };
            let mut out = Vec::new();
            for chunk in page.chunks {
                line(&mut out, &LogEvent::Chunk(chunk));
            }
            self.next = page.next_seq;
            if let Some(end) = page.end {
                line(&mut out, &LogEvent::End(end));
                self.done = true;
                return Some(Bytes::from(out));
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
            tokio::select! {
                () = self.watch.changed() => {}
                () = tokio::time::sleep(FOLLOW_KEEPALIVE) => return Some(Bytes::from_static(b"\n")),
                () = self.state.shutting_down() => return None,
            }
        }
    }
}

fn line(out: &mut Vec<u8>, event: &LogEvent) {
    // Serializing wire types into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, event).is_ok() {
        out.push(b'\n');
    }
}
