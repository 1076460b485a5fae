//! People: users (`/v1/users`) and groups (`/v1/groups`), admin only.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, Segments};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sealrun_control::User;
use sealrun_wire::people::{
    GroupCreate, GroupList, GroupMembers, GroupView, UserCreate, UserDisabled, UserList, UserView,
};
use sealrun_wire::trust::{Signed, UserCertificate};

/// `POST /v1/users`.
pub(crate) async fn create_user(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    JsonBody(req): JsonBody<UserCreate>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let view = state.control.create_user(&user, req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/users`: by name.
pub(crate) async fn list_users(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
) -> Result<Json<UserList>, ApiError> {
    let users = state.control.list_users(&user).await?;
    Ok(Json(UserList { users }))
}

/// `POST /v1/users/{name}/disable`: revokes all its tokens at once.
pub(crate) async fn disable_user(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
) -> Result<Json<UserDisabled>, ApiError> {
    Ok(Json(state.control.disable_user(&user, name).await?))
}

/// `PUT /v1/users/{name}/certificate`: an admin's certificate of the
/// user's signing key.
pub(crate) async fn certify_user(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
    JsonBody(signed): JsonBody<Signed<UserCertificate>>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.control.certify_user(&user, name, signed).await?))
}

/// `GET /v1/users/{name}/passkeys`: what `sealrun user certify --passkey`
/// picks from.
pub(crate) async fn user_passkeys(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
) -> Result<Json<sealrun_wire::people::PasskeyList>, ApiError> {
    let passkeys = state.control.user_passkeys(&user, name).await?;
    Ok(Json(sealrun_wire::people::PasskeyList { passkeys }))
}

/// `POST /v1/groups`.
pub(crate) async fn create_group(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    JsonBody(req): JsonBody<GroupCreate>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    let view = state.control.create_group(&user, req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/groups`: by name, with members.
pub(crate) async fn list_groups(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
) -> Result<Json<GroupList>, ApiError> {
    let groups = state.control.list_groups(&user).await?;
    Ok(Json(GroupList { groups }))
}

/// `GET /v1/groups/{name}`.
pub(crate) async fn get_group(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(state.control.group(&user, name).await?))
}

/// `DELETE /v1/groups/{name}`.
pub(crate) async fn delete_group(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
) -> Result<StatusCode, ApiError> {
    state.control.delete_group(&user, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/groups/{name}/add`.
pub(crate) async fn add_members(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
    JsonBody(req): JsonBody<GroupMembers>,
) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(
        state
            .control
            .add_group_members(&user, name, req.users)
            .await?,
    ))
}

/// `POST /v1/groups/{name}/remove`.
pub(crate) async fn remove_members(
    State(state): State<AppState>,
    Caller(user): Caller<User>,
    Segments(name): Segments<String>,
    JsonBody(req): JsonBody<GroupMembers>,
) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(
        state
            .control
            .remove_group_members(&user, name, req.users)
            .await?,
    ))
}
