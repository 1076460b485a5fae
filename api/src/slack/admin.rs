//! Admin endpoints linking Slack workspaces, users and the approvers'
//! channel to the caller's org. Every change is audited (by the domain); no
//! endpoint ever returns a signing secret or a bot token.

use super::SlackState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, Segments};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sealrun_control::User;
use sealrun_wire::slack::{
    ApprovalsChannel, UserLink, UserList, UserView, WorkspaceLink, WorkspaceList, WorkspaceView,
};
use zeroize::Zeroizing;

/// `PUT /v1/integrations/slack/workspaces/{team_id}` (admin): links the
/// workspace, or replaces its signing secret.
pub(crate) async fn put_workspace(
    State(state): State<SlackState>,
    Caller(user): Caller<User>,
    Segments(team_id): Segments<String>,
    JsonBody(link): JsonBody<WorkspaceLink>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let secret = Zeroizing::new(link.signing_secret.clone());
    drop(link);
    let view = state
        .app
        .control
        .link_slack_workspace(&user, team_id, secret)
        .await?;
    Ok(Json(view))
}

/// `GET /v1/integrations/slack/workspaces` (admin).
pub(crate) async fn list_workspaces(
    State(state): State<SlackState>,
    Caller(user): Caller<User>,
) -> Result<Json<WorkspaceList>, ApiError> {
    let workspaces = state.app.control.list_slack_workspaces(&user).await?;
    Ok(Json(WorkspaceList { workspaces }))
}

/// `DELETE /v1/integrations/slack/workspaces/{team_id}` (admin): unlinks the
/// workspace and every user linked in it.
pub(crate) async fn delete_workspace(
    State(state): State<SlackState>,
    Caller(user): Caller<User>,
    Segments(team_id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    state
        .app
        .control
        .unlink_slack_workspace(&user, team_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/integrations/slack/users/{team_id}/{user_id}` (admin): links a
/// Slack user of a linked workspace to a sealrun user, or moves the link.
pub(crate) async fn put_user(
    State(state): State<SlackState>,
    Caller(user): Caller<User>,
    Segments((team_id, user_id)): Segments<(String, String)>,
    JsonBody(link): JsonBody<UserLink>,
) -> Result<Json<UserView>, ApiError> {
    let view = state
        .app
        .control
        .link_slack_user(&user, team_id, user_id, link)
        .await?;
    Ok(Json(view))
}

/// `GET /v1/integrations/slack/users` (admin).
pub(crate) async fn list_users(
    State(state): State<SlackState>,
    Caller(user): Caller<User>,
) -> Result<Json<UserList>, ApiError> {
    let users = state.app.control.list_slack_users(&user).await?;
    Ok(Json(UserList { users }))
}

/// `DELETE /v1/integrations/slack/users/{team_id}/{user_id}` (admin).
pub(crate) async fn delete_user(
    State(state): State<SlackState>,
    Caller(user): Caller<User>,
    Segments((team_id, user_id)): Segments<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .app
        .control
        .unlink_slack_user(&user, team_id, user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/integrations/slack/workspaces/{team_id}/approvals` (admin):
/// posts the org's approval requests to a channel of the workspace, as its
/// app's bot (the token sealed; never returned).
pub(crate) async fn put_approvals(
    State(state): State<SlackState>,
    Caller(user): Caller<User>,
    Segments(team_id): Segments<String>,
    JsonBody(req): JsonBody<ApprovalsChannel>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let view = state
        .app
        .control
        .set_slack_approvals(&user, team_id, req)
        .await?;
    Ok(Json(view))
}

/// `DELETE /v1/integrations/slack/workspaces/{team_id}/approvals` (admin):
/// stops posting approval requests there, and forgets the bot token.
pub(crate) async fn delete_approvals(
    State(state): State<SlackState>,
    Caller(user): Caller<User>,
    Segments(team_id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    state
        .app
        .control
        .clear_slack_approvals(&user, team_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
