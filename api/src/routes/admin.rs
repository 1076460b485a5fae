//! Org administration: who am I, tokens, pools, enrollment tokens, agents.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, OptionalJsonBody, Segments};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sealrun_control::{Principal, User};
use sealrun_wire::admin::{
    AgentList, EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenList, PoolCreate, PoolList,
    PoolView, TokenCreate, TokenCreated, TokenList, Whoami,
};

/// `GET /v1/whoami`: any user or agent token.
pub(crate) async fn whoami(
    State(state): State<AppState>,
    Caller(principal): Caller<Principal>,
) -> Result<Json<Whoami>, ApiError> {
    Ok(Json(state.control.whoami(principal).await?))
}

/// `POST /v1/tokens` (admin).
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    JsonBody(req): JsonBody<TokenCreate>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let created = state.control.create_token(&user, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /v1/tokens` (admin): user tokens, newest first.
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.control.list_tokens(&user).await?;
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /v1/tokens/{id}` (admin): revokes a user or enrollment token.
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    state.control.revoke_token(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/pools` (admin).
pub(crate) async fn create_pool(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    JsonBody(req): JsonBody<PoolCreate>,
) -> Result<(StatusCode, Json<PoolView>), ApiError> {
    let view = state.control.create_pool(&user, req.name).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/pools` (admin).
pub(crate) async fn list_pools(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
) -> Result<Json<PoolList>, ApiError> {
    let pools = state.control.list_pools(&user).await?;
    Ok(Json(PoolList { pools }))
}

/// `POST /v1/pools/{pool}/enrollment-tokens` (admin): shown once.
pub(crate) async fn create_enrollment_token(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(pool): Segments<String>,
    OptionalJsonBody(req): OptionalJsonBody<EnrollmentTokenCreate>,
) -> Result<(StatusCode, Json<EnrollmentToken>), ApiError> {
    let issued = state
        .control
        .create_enrollment_token(&user, pool, req)
        .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// `GET /v1/pools/{pool}/enrollment-tokens` (admin): metadata only.
pub(crate) async fn list_enrollment_tokens(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(pool): Segments<String>,
) -> Result<Json<EnrollmentTokenList>, ApiError> {
    let tokens = state.control.list_enrollment_tokens(&user, pool).await?;
    Ok(Json(EnrollmentTokenList { tokens }))
}

/// `GET /v1/agents` (admin): enrolled, unrevoked agents.
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
) -> Result<Json<AgentList>, ApiError> {
    let agents = state.control.list_agents(&user).await?;
    Ok(Json(AgentList { agents }))
}

/// `DELETE /v1/agents/{id}` (admin): revokes the agent and its token; the
/// runs it holds become `lost`.
pub(crate) async fn revoke_agent(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    state.control.revoke_agent(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
