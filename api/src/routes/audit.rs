//! The audit trail, for admins and auditors.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Params;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use sealrun_control::{AuditScope, User};
use sealrun_wire::audit::{AuditPage, AuditVerification};
use serde::Deserialize;

/// Parameters of `GET /v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

/// `GET /v1/audit` (admin, auditor).
pub(crate) async fn page(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Params(q): Params<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(
        state.control.audit_page(&user, q.after, q.limit).await?,
    ))
}

/// Parameters of `GET /v1/audit/verify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyQuery {
    /// Re-hash every entry, not only those appended since the checkpoint.
    #[serde(default)]
    full: bool,
}

/// `GET /v1/audit/verify` (admin, auditor): re-hashes the entries appended
/// since the last verification (`full=true`: every entry).
pub(crate) async fn verify(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Params(q): Params<VerifyQuery>,
) -> Result<Json<AuditVerification>, ApiError> {
    let scope = if q.full {
        AuditScope::Full
    } else {
        AuditScope::SinceCheckpoint
    };
    Ok(Json(state.control.audit_verify(&user, scope).await?))
}
