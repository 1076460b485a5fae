//! Approval requests: list, inspect (the full spec being approved),
//! approve (bound to the spec digest), reject (with a reason).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, Params, Segments};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use sealrun_control::{ApprovalFilter, Member, User};
use sealrun_wire::approval::{ApprovalList, ApprovalView, ApproveRequest, RejectRequest};
use serde::Deserialize;

/// Filters of `GET /v1/approvals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only requests whose run is in this status (default
    /// `pending_approval`; with `break_glass`, any).
    status: Option<String>,
    /// Runs that skipped approval by break-glass instead.
    #[serde(default)]
    break_glass: bool,
    limit: Option<u32>,
}

/// `GET /v1/approvals` (every role): newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Params(q): Params<ListQuery>,
) -> Result<Json<ApprovalList>, ApiError> {
    let filter = ApprovalFilter {
        status: q.status,
        break_glass: q.break_glass,
        limit: q.limit,
    };
    let approvals = state
        .control
        .list_approvals(&Member::from(&user), filter)
        .await?;
    Ok(Json(ApprovalList { approvals }))
}

/// `GET /v1/approvals/{run_id}` (every role).
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    Ok(Json(
        state.control.approval(&Member::from(&user), id).await?,
    ))
}

/// `POST /v1/approvals/{run_id}/approve` (admin, operator; never the
/// submitter): `409` unless `digest` is the run's spec digest.
pub(crate) async fn approve(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
    JsonBody(req): JsonBody<ApproveRequest>,
) -> Result<Json<ApprovalView>, ApiError> {
    Ok(Json(
        state
            .control
            .approve_run(&Member::from(&user), id, req)
            .await?,
    ))
}

/// `POST /v1/approvals/{run_id}/reject` (admin, operator; never the
/// submitter): the run ends `rejected`.
pub(crate) async fn reject(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
    JsonBody(req): JsonBody<RejectRequest>,
) -> Result<Json<ApprovalView>, ApiError> {
    Ok(Json(
        state
            .control
            .reject_run(&Member::from(&user), id, req)
            .await?,
    ))
}
