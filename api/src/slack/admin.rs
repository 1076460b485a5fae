//! Admin endpoints linking Slack workspaces and users to the caller's org.
//! Every change is audited; no endpoint ever returns a signing secret.

use super::store::{check_signing_secret, check_slack_id};
use crate::audit;
use crate::auth::User;
use crate::db::now_ms;
use crate::error::ApiError;
use crate::extract::{JsonBody, Segments};
use crate::names::check_label;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rusqlite::{OptionalExtension as _, params};
use sealrun_wire::admin::Role;
use sealrun_wire::slack::{
    UserLink, UserList, UserView, WorkspaceLink, WorkspaceList, WorkspaceView,
};
use serde_json::json;
use std::sync::Arc;

const ADMIN: &[Role] = &[Role::Admin];
const WHAT: &str = "manage the Slack integration";

fn not_linked(team_id: &str) -> ApiError {
    ApiError::not_found(format!("Slack team {team_id} is not linked to this org"))
}

/// `PUT /v1/integrations/slack/workspaces/{team_id}` (admin): links the
/// workspace, or replaces its signing secret.
pub(crate) async fn put_workspace(
    State(state): State<AppState>,
    user: User,
    Segments(team_id): Segments<String>,
    JsonBody(link): JsonBody<WorkspaceLink>,
) -> Result<Json<WorkspaceView>, ApiError> {
    user.allow(ADMIN, WHAT)?;
    check_slack_id("team", &team_id)?;
    check_signing_secret(&link.signing_secret)?;
    let sealed =
        serde_json::to_string(&state.slack.seal(&team_id, link.signing_secret.as_bytes())?)?;
    drop(link);
    let invalidate = Arc::clone(&state);
    let view = state
        .db
        .write_then(
            move |conn| {
                let now = now_ms();
                let existing: Option<(i64, i64)> = conn
                    .prepare_cached("SELECT org_id, created_ms FROM slack_workspaces WHERE team_id = ?1")?
                    .query_row([&team_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let created = match existing {
                    Some((org, _)) if org != user.org_id => {
                        return Err(ApiError::conflict(format!(
                            "Slack team {team_id} is linked to another org; unlink it there first"
                        )));
                    }
                    Some((_, created)) => {
                        conn.prepare_cached(
                            "UPDATE slack_workspaces SET sealed = ?2, updated_ms = ?3 WHERE team_id = ?1",
                        )?
                        .execute(params![team_id, sealed, now])?;
                        created
                    }
                    None => {
                        conn.prepare_cached(
                            "INSERT INTO slack_workspaces (team_id, org_id, sealed, created_ms, updated_ms)
                             VALUES (?1, ?2, ?3, ?4, ?4)",
                        )?
                        .execute(params![team_id, user.org_id, sealed, now])?;
                        now
                    }
                };
                audit::append(
                    conn,
                    user.org_id,
                    &user.actor(),
                    "slack.workspace_linked",
                    &format!("slack:{team_id}"),
                    json!({"replaced_secret": existing.is_some()}),
                )?;
                Ok(WorkspaceView {
                    team_id,
                    linked_at_ms: created,
                    updated_at_ms: now,
                })
            },
            move |_| invalidate.slack.invalidate(),
        )
        .await?;
    Ok(Json(view))
}

/// `GET /v1/integrations/slack/workspaces` (admin).
pub(crate) async fn list_workspaces(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<WorkspaceList>, ApiError> {
    user.allow(ADMIN, WHAT)?;
    let workspaces = state
        .db
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT team_id, created_ms, updated_ms FROM slack_workspaces
                 WHERE org_id = ?1 ORDER BY team_id",
            )?;
            let rows = stmt.query_map([user.org_id], |r| {
                Ok(WorkspaceView {
                    team_id: r.get(0)?,
                    linked_at_ms: r.get(1)?,
                    updated_at_ms: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(WorkspaceList { workspaces }))
}

/// `DELETE /v1/integrations/slack/workspaces/{team_id}` (admin): unlinks the
/// workspace and every user linked in it.
pub(crate) async fn delete_workspace(
    State(state): State<AppState>,
    user: User,
    Segments(team_id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    user.allow(ADMIN, WHAT)?;
    let invalidate = Arc::clone(&state);
    state
        .db
        .write_then(
            move |conn| {
                let users: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM slack_users WHERE team_id = ?1")?
                    .query_row([&team_id], |r| r.get(0))?;
                let deleted = conn
                    .prepare_cached(
                        "DELETE FROM slack_workspaces WHERE team_id = ?1 AND org_id = ?2",
                    )?
                    .execute(params![team_id, user.org_id])?;
                if deleted == 0 {
                    return Err(not_linked(&team_id));
                }
                audit::append(
                    conn,
                    user.org_id,
                    &user.actor(),
                    "slack.workspace_unlinked",
                    &format!("slack:{team_id}"),
                    json!({"users_unlinked": users}),
                )?;
                Ok(())
            },
            move |_| invalidate.slack.invalidate(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/integrations/slack/users/{team_id}/{user_id}` (admin): links a
/// Slack user of a linked workspace, or changes their name or role.
pub(crate) async fn put_user(
    State(state): State<AppState>,
    user: User,
    Segments((team_id, user_id)): Segments<(String, String)>,
    JsonBody(link): JsonBody<UserLink>,
) -> Result<Json<UserView>, ApiError> {
    user.allow(ADMIN, WHAT)?;
    check_slack_id("team", &team_id)?;
    check_slack_id("user", &user_id)?;
    check_label("name", &link.name).map_err(ApiError::bad_request)?;
    let view = state
        .db
        .write(move |conn| {
            let linked = conn
                .prepare_cached(
                    "SELECT 1 FROM slack_workspaces WHERE team_id = ?1 AND org_id = ?2",
                )?
                .exists(params![team_id, user.org_id])?;
            if !linked {
                return Err(not_linked(&team_id));
            }
            let now = now_ms();
            conn.prepare_cached(
                "INSERT INTO slack_users (team_id, user_id, name, role, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (team_id, user_id) DO UPDATE SET
                    name = excluded.name, role = excluded.role, updated_ms = excluded.updated_ms",
            )?
            .execute(params![
                team_id,
                user_id,
                link.name,
                link.role.as_str(),
                now
            ])?;
            audit::append(
                conn,
                user.org_id,
                &user.actor(),
                "slack.user_linked",
                &format!("slack:{team_id}/{user_id}"),
                json!({"name": link.name, "role": link.role.as_str()}),
            )?;
            Ok(UserView {
                team_id,
                user_id,
                name: link.name,
                role: link.role,
                updated_at_ms: now,
            })
        })
        .await?;
    Ok(Json(view))
}

/// `GET /v1/integrations/slack/users` (admin).
pub(crate) async fn list_users(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<UserList>, ApiError> {
    user.allow(ADMIN, WHAT)?;
    let users = state
        .db
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT u.team_id, u.user_id, u.name, u.role, u.updated_ms
                 FROM slack_users u JOIN slack_workspaces w ON w.team_id = u.team_id
                 WHERE w.org_id = ?1 ORDER BY u.team_id, u.user_id",
            )?;
            let rows = stmt.query_map([user.org_id], |r| {
                let role: String = r.get(3)?;
                Ok(UserView {
                    team_id: r.get(0)?,
                    user_id: r.get(1)?,
                    name: r.get(2)?,
                    // The column's CHECK admits only valid roles.
                    role: Role::parse(&role).unwrap_or(Role::Auditor),
                    updated_at_ms: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(UserList { users }))
}

/// `DELETE /v1/integrations/slack/users/{team_id}/{user_id}` (admin).
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    user: User,
    Segments((team_id, user_id)): Segments<(String, String)>,
) -> Result<StatusCode, ApiError> {
    user.allow(ADMIN, WHAT)?;
    state
        .db
        .write(move |conn| {
            let deleted = conn
                .prepare_cached(
                    "DELETE FROM slack_users WHERE team_id = ?1 AND user_id = ?2
                     AND team_id IN (SELECT team_id FROM slack_workspaces WHERE org_id = ?3)",
                )?
                .execute(params![team_id, user_id, user.org_id])?;
            if deleted == 0 {
                return Err(ApiError::not_found(format!(
                    "Slack user {user_id} of team {team_id} is not linked to this org"
                )));
            }
            audit::append(
                conn,
                user.org_id,
                &user.actor(),
                "slack.user_unlinked",
                &format!("slack:{team_id}/{user_id}"),
                json!({}),
            )?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
