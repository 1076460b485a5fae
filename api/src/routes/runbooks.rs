//! Runbooks: named, versioned command templates (declared by admins, read
//! by operators; a run calls one through `POST /v1/runs`).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, Params, Segments};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use sealrun_control::User;
use sealrun_wire::runbook::{
    RunbookCertificate, RunbookList, RunbookSpecs, RunbookView, RunbooksApplied,
};
use sealrun_wire::trust::Signed;
use serde::Deserialize;

/// `PUT /v1/runbooks` (admin): declares or changes every listed runbook in
/// one transaction, or none; each changed spec is a new version.
pub(crate) async fn apply(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    JsonBody(req): JsonBody<RunbookSpecs>,
) -> Result<Json<RunbooksApplied>, ApiError> {
    let runbooks = state.control.apply_runbooks(&user, req.runbooks).await?;
    Ok(Json(RunbooksApplied { runbooks }))
}

/// `GET /v1/runbooks` (admin, operator): the latest version of each.
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
) -> Result<Json<RunbookList>, ApiError> {
    let runbooks = state.control.list_runbooks(&user).await?;
    Ok(Json(RunbookList { runbooks }))
}

/// Parameters of `GET /v1/runbooks/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionQuery {
    /// A version other than the latest.
    version: Option<u64>,
}

/// `GET /v1/runbooks/{name}` (admin, operator): its latest version, or
/// `?version=N`.
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
    Params(q): Params<VersionQuery>,
) -> Result<Json<RunbookView>, ApiError> {
    Ok(Json(state.control.runbook(&user, name, q.version).await?))
}

/// `PUT /v1/runbooks/{name}/certificate` (admin): store an admin's
/// certificate of the runbook's latest definition (made and signed on the
/// admin's machine: `sealrun runbook trust`).
pub(crate) async fn certify(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
    JsonBody(signed): JsonBody<Signed<RunbookCertificate>>,
) -> Result<Json<RunbookView>, ApiError> {
    Ok(Json(
        state.control.certify_runbook(&user, name, signed).await?,
    ))
}
