//! Org administration: who am I, tokens, pools, enrollment tokens, agents.

use crate::audit;
use crate::auth::{Principal, TokenRecord, User, insert_token};
use crate::db::now_ms;
use crate::error::ApiError;
use crate::extract::{JsonBody, OptionalJsonBody, Segments};
use crate::names::{check_label, check_name};
use crate::queue;
use crate::state::AppState;
use crate::token::{self, TokenKind};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rusqlite::{OptionalExtension as _, params};
use sealrun_wire::admin::{
    AgentList, AgentView, EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenList,
    EnrollmentTokenView, PoolCreate, PoolList, PoolView, Role, TokenCreate, TokenCreated,
    TokenList, TokenView, Whoami,
};
use serde_json::json;
use std::sync::Arc;

/// Longest enrollment token lifetime an admin may ask for.
const MAX_ENROLLMENT_TTL_SECS: u64 = 365 * 24 * 3600;

/// `GET /v1/whoami`: any user or agent token.
pub(crate) async fn whoami(principal: Principal) -> Result<Json<Whoami>, ApiError> {
    match principal {
        Principal::User(u) => Ok(Json(Whoami {
            org: u.org,
            name: u.name,
            role: u.role.as_str().to_owned(),
        })),
        Principal::Agent(a) => Ok(Json(Whoami {
            org: a.org,
            name: a.name,
            role: "agent".to_owned(),
        })),
        Principal::Enroller(_) => Err(ApiError::forbidden(
            "enrollment tokens can only register agents",
        )),
    }
}

/// `POST /v1/tokens` (admin).
pub(crate) async fn create_token(
    State(state): State<AppState>,
    user: User,
    JsonBody(req): JsonBody<TokenCreate>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    user.allow(&[Role::Admin], "manage tokens")?;
    check_label("token name", &req.name).map_err(ApiError::bad_request)?;
    let created = state
        .db
        .write(move |conn| {
            let new = token::mint(TokenKind::User);
            let at = insert_token(
                conn,
                &new,
                &TokenRecord {
                    org_id: user.org_id,
                    kind: TokenKind::User,
                    name: &req.name,
                    role: Some(req.role),
                    pool_id: None,
                    agent_id: None,
                    expires_ms: None,
                },
            )?;
            audit::append(
                conn,
                user.org_id,
                &user.actor(),
                "token.issued",
                &format!("token:{}", new.id),
                json!({"name": req.name, "role": req.role.as_str()}),
            )?;
            Ok(TokenCreated {
                view: TokenView {
                    id: new.id.clone(),
                    name: req.name,
                    role: req.role,
                    created_at_ms: at,
                    revoked_at_ms: None,
                },
                token: new.value,
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /v1/tokens` (admin): user tokens, newest first.
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<TokenList>, ApiError> {
    user.allow(&[Role::Admin], "manage tokens")?;
    let tokens = state
        .db
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, role, created_ms, revoked_ms FROM tokens
                 WHERE org_id = ?1 AND kind = 'user' ORDER BY created_ms DESC, id",
            )?;
            let rows = stmt.query_map([user.org_id], |r| {
                let role: String = r.get(2)?;
                Ok(TokenView {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    role: Role::parse(&role).unwrap_or(Role::Auditor),
                    created_at_ms: r.get(3)?,
                    revoked_at_ms: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /v1/tokens/{id}` (admin): revokes a user or enrollment token.
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    user: User,
    Segments(id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    user.allow(&[Role::Admin], "manage tokens")?;
    let invalidate = Arc::clone(&state);
    state
        .db
        .write_then(
            move |conn| {
                let row: Option<(String, Option<String>, String, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT kind, role, name, revoked_ms FROM tokens WHERE org_id = ?1 AND id = ?2",
                )?
                .query_row(params![user.org_id, id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
                let Some((kind, role, name, revoked)) = row else {
                    return Err(ApiError::not_found(format!("no token {id:?}")));
                };
                if kind == "agent" {
                    return Err(ApiError::bad_request(
                        "agent tokens are revoked with their agent: DELETE /v1/agents/{id}",
                    ));
                }
                if revoked.is_some() {
                    return Ok(());
                }
                if role.as_deref() == Some("admin") {
                    let admins: i64 = conn
                        .prepare_cached(
                            "SELECT COUNT(*) FROM tokens WHERE org_id = ?1 AND kind = 'user'
                         AND role = 'admin' AND revoked_ms IS NULL",
                        )?
                        .query_row([user.org_id], |r| r.get(0))?;
                    if admins <= 1 {
                        return Err(ApiError::conflict(
                            "this is the org's last admin token; issue another admin token first",
                        ));
                    }
                }
                conn.prepare_cached("UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1")?
                    .execute(params![id, now_ms()])?;
                audit::append(
                    conn,
                    user.org_id,
                    &user.actor(),
                    "token.revoked",
                    &format!("token:{id}"),
                    json!({"kind": kind, "name": name}),
                )?;
                Ok(())
            },
            move |_| invalidate.auth.invalidate(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn pool_id(conn: &rusqlite::Connection, org_id: i64, name: &str) -> Result<i64, ApiError> {
    conn.prepare_cached("SELECT id FROM pools WHERE org_id = ?1 AND name = ?2")?
        .query_row(params![org_id, name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| ApiError::not_found(format!("no pool named {name:?}")))
}

/// `POST /v1/pools` (admin).
pub(crate) async fn create_pool(
    State(state): State<AppState>,
    user: User,
    JsonBody(req): JsonBody<PoolCreate>,
) -> Result<(StatusCode, Json<PoolView>), ApiError> {
    user.allow(&[Role::Admin], "manage pools")?;
    check_name("pool", &req.name).map_err(ApiError::bad_request)?;
    let view = state
        .db
        .write(move |conn| {
            let now = now_ms();
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO pools (org_id, name, created_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (org_id, name) DO NOTHING",
                )?
                .execute(params![user.org_id, req.name, now])?;
            if inserted == 0 {
                return Err(ApiError::conflict(format!(
                    "pool {:?} already exists",
                    req.name
                )));
            }
            audit::append(
                conn,
                user.org_id,
                &user.actor(),
                "pool.created",
                &req.name,
                json!({}),
            )?;
            Ok(PoolView {
                name: req.name,
                created_at_ms: now,
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/pools` (admin).
pub(crate) async fn list_pools(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<PoolList>, ApiError> {
    user.allow(&[Role::Admin], "manage pools")?;
    let pools = state
        .db
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, created_ms FROM pools WHERE org_id = ?1 ORDER BY name",
            )?;
            let rows = stmt.query_map([user.org_id], |r| {
                Ok(PoolView {
                    name: r.get(0)?,
                    created_at_ms: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(PoolList { pools }))
}

/// `POST /v1/pools/{pool}/enrollment-tokens` (admin): shown once.
pub(crate) async fn create_enrollment_token(
    State(state): State<AppState>,
    user: User,
    Segments(pool): Segments<String>,
    OptionalJsonBody(req): OptionalJsonBody<EnrollmentTokenCreate>,
) -> Result<(StatusCode, Json<EnrollmentToken>), ApiError> {
    user.allow(&[Role::Admin], "enroll agents")?;
    let ttl = req
        .ttl_secs
        .unwrap_or(state.settings.enrollment_ttl.as_secs());
    if ttl == 0 || ttl > MAX_ENROLLMENT_TTL_SECS {
        return Err(ApiError::bad_request(format!(
            "ttl_secs must be between 1 and {MAX_ENROLLMENT_TTL_SECS}"
        )));
    }
    let issued = state
        .db
        .write(move |conn| {
            let pool_id = pool_id(conn, user.org_id, &pool)?;
            let new = token::mint(TokenKind::Enrollment);
            let expires = now_ms().saturating_add(i64::try_from(ttl * 1000).unwrap_or(i64::MAX));
            insert_token(
                conn,
                &new,
                &TokenRecord {
                    org_id: user.org_id,
                    kind: TokenKind::Enrollment,
                    name: &format!("enrollment:{pool}"),
                    role: None,
                    pool_id: Some(pool_id),
                    agent_id: None,
                    expires_ms: Some(expires),
                },
            )?;
            audit::append(
                conn,
                user.org_id,
                &user.actor(),
                "token.issued",
                &format!("token:{}", new.id),
                json!({"kind": "enrollment", "pool": pool, "expires_at_ms": expires}),
            )?;
            Ok(EnrollmentToken {
                pool,
                token: new.value,
                expires_at_ms: expires,
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// `GET /v1/pools/{pool}/enrollment-tokens` (admin): metadata only.
pub(crate) async fn list_enrollment_tokens(
    State(state): State<AppState>,
    user: User,
    Segments(pool): Segments<String>,
) -> Result<Json<EnrollmentTokenList>, ApiError> {
    user.allow(&[Role::Admin], "enroll agents")?;
    let tokens = state
        .db
        .read(move |conn| {
            let pool_id = pool_id(conn, user.org_id, &pool)?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, created_ms, expires_ms, revoked_ms FROM tokens
                 WHERE kind = 'enrollment' AND pool_id = ?1 ORDER BY created_ms DESC, id",
            )?;
            let rows = stmt.query_map([pool_id], |r| {
                Ok(EnrollmentTokenView {
                    id: r.get(0)?,
                    pool: pool.clone(),
                    created_at_ms: r.get(1)?,
                    expires_at_ms: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    revoked_at_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(EnrollmentTokenList { tokens }))
}

/// `GET /v1/agents` (admin): enrolled, unrevoked agents.
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    user: User,
) -> Result<Json<AgentList>, ApiError> {
    user.allow(&[Role::Admin], "manage agents")?;
    let window = i64::try_from(state.settings.connected_window().as_millis()).unwrap_or(i64::MAX);
    let agents = state
        .db
        .read(move |conn| {
            let since = now_ms().saturating_sub(window);
            let mut stmt = conn.prepare_cached(
                "SELECT a.id, a.name, p.name, a.online, a.last_seen_ms, a.version
                 FROM agents a JOIN pools p ON p.id = a.pool_id
                 WHERE a.org_id = ?1 AND a.revoked_ms IS NULL ORDER BY a.name",
            )?;
            let rows = stmt.query_map([user.org_id], |r| {
                let online: bool = r.get(3)?;
                let last_seen: Option<i64> = r.get(4)?;
                Ok(AgentView {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    pool: r.get(2)?,
                    targets: Vec::new(),
                    connected: online && last_seen.is_some_and(|s| s >= since),
                    last_seen_ms: last_seen,
                    version: r.get(5)?,
                })
            })?;
            let mut agents = rows.collect::<Result<Vec<_>, _>>()?;
            let mut targets = conn.prepare_cached(
                "SELECT t.name FROM agent_targets a JOIN targets t ON t.id = a.target_id
                 WHERE a.agent_id = ?1 ORDER BY t.name",
            )?;
            for agent in &mut agents {
                agent.targets = targets
                    .query_map([&agent.id], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
            }
            Ok(agents)
        })
        .await?;
    Ok(Json(AgentList { agents }))
}

/// `DELETE /v1/agents/{id}` (admin): revokes the agent and its token; the
/// runs it holds become `lost`.
pub(crate) async fn revoke_agent(
    State(state): State<AppState>,
    user: User,
    Segments(id): Segments<String>,
) -> Result<StatusCode, ApiError> {
    user.allow(&[Role::Admin], "manage agents")?;
    let invalidate = Arc::clone(&state);
    let lost = state
        .db
        .write_then(
            move |conn| {
                let row: Option<(String, Option<i64>)> = conn
                    .prepare_cached(
                        "SELECT name, revoked_ms FROM agents WHERE org_id = ?1 AND id = ?2",
                    )?
                    .query_row(params![user.org_id, id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((name, revoked)) = row else {
                    return Err(ApiError::not_found(format!("no agent {id:?}")));
                };
                if revoked.is_some() {
                    return Ok(Vec::new());
                }
                let now = now_ms();
                conn.prepare_cached("UPDATE agents SET revoked_ms = ?2, online = 0 WHERE id = ?1")?
                    .execute(params![id, now])?;
                conn.prepare_cached(
                    "UPDATE tokens SET revoked_ms = ?2 WHERE agent_id = ?1 AND revoked_ms IS NULL",
                )?
                .execute(params![id, now])?;
                conn.prepare_cached("DELETE FROM agent_targets WHERE agent_id = ?1")?
                    .execute([&id])?;
                audit::append(
                    conn,
                    user.org_id,
                    &user.actor(),
                    "agent.revoked",
                    &id,
                    json!({"name": name}),
                )?;
                queue::lose_held(conn, user.org_id, &id, "agent revoked")
            },
            move |_| invalidate.auth.invalidate(),
        )
        .await?;
    for run in &lost {
        state.watchers.touch(run);
    }
    Ok(StatusCode::NO_CONTENT)
}
