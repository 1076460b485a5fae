//! The audit trail, for admins and auditors.

use crate::audit;
use crate::auth::User;
use crate::error::ApiError;
use crate::extract::Params;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use sealrun_wire::admin::Role;
use sealrun_wire::audit::{AuditPage, AuditVerification};
use serde::Deserialize;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

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
    user: User,
    Params(q): Params<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    user.allow(&[Role::Admin, Role::Auditor], "read the audit trail")?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let entries = state
        .db
        .read(move |conn| Ok(audit::page(conn, user.org_id, q.after, limit)?))
        .await?;
    let next_after = entries.last().map_or(q.after, |e| e.seq);
    Ok(Json(AuditPage {
        entries,
        next_after,
    }))
}

/// `GET /v1/audit/verify` (admin, auditor): re-checks the whole chain.
pub(crate) async fn verify(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<AuditVerification>, ApiError> {
    user.allow(&[Role::Admin, Role::Auditor], "read the audit trail")?;
    let verifier = state
        .db
        .read(move |conn| Ok(audit::verify(conn, user.org_id)?))
        .await?;
    Ok(Json(verifier.finish()))
}
