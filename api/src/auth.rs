//! Who is calling: bearer tokens resolved into a [`Principal`], and the
//! extractors handlers use to demand a kind of caller.
//!
//! Failures answer `401` with one message whatever went wrong, so the answer
//! is no oracle; the reason goes to the audit trail of the org the token id
//! belongs to (if it belongs to one), at most once a second per token id so a
//! flood cannot fill the disk.

use crate::audit;
use crate::db::now_ms;
use crate::error::ApiError;
use crate::state::AppState;
use crate::token::{self, TokenKind};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use rusqlite::{OptionalExtension as _, params};
use sealrun_wire::admin::Role;
use sealrun_wire::{PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A person or program with a role in an org.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) org_id: i64,
    pub(crate) org: String,
    pub(crate) token_id: String,
    pub(crate) name: String,
    pub(crate) role: Role,
}

impl User {
    /// `token:<id>`, as recorded in the audit trail.
    pub(crate) fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }

    /// Refuses (`403`) unless the caller has one of `roles`.
    pub(crate) fn allow(&self, roles: &[Role], action: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "a token with role {} cannot {action}",
                self.role
            )))
        }
    }
}

/// An enrolled agent.
#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub(crate) org_id: i64,
    pub(crate) org: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) pool_id: i64,
    /// Whether it has connected since it last deregistered.
    pub(crate) online: bool,
    /// Targets it serves (from its last connect).
    pub(crate) targets: Vec<i64>,
}

impl Agent {
    /// `agent:<id>`, as recorded in the audit trail.
    pub(crate) fn actor(&self) -> String {
        format!("agent:{}", self.id)
    }
}

/// The holder of an enrollment token.
#[derive(Clone, Debug)]
pub(crate) struct Enroller {
    pub(crate) org_id: i64,
    pub(crate) token_id: String,
    pub(crate) pool_id: i64,
    pub(crate) pool: String,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub(crate) enum Principal {
    User(User),
    Agent(Agent),
    Enroller(Enroller),
}

/// Why a credential was refused (for the audit trail, not the client).
struct Refusal {
    org_id: Option<i64>,
    token_id: Option<String>,
    reason: &'static str,
}

impl Refusal {
    fn anonymous(reason: &'static str) -> Refusal {
        Refusal {
            org_id: None,
            token_id: None,
            reason,
        }
    }
}

/// Recently verified tokens, so most requests authenticate without a
/// database read. The secret is still hashed and compared (in constant time)
/// on every request, and expiry re-checked; only the lookup is saved.
///
/// Every change that can revoke or reshape a principal (token or agent
/// revocation, agent connect/deregister, target changes) calls
/// [`invalidate`](AuthCache::invalidate) from its commit hook, so it takes
/// effect before the change is even acknowledged. A lookup that started
/// before an invalidation cannot repopulate the cache with what it read
/// (generation check). Entries also expire after [`CACHE_TTL`].
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    generation: u64,
    entries: HashMap<String, Cached>,
}

#[derive(Debug)]
struct Cached {
    kind: TokenKind,
    hash: Vec<u8>,
    expires_ms: Option<i64>,
    loaded: Instant,
    principal: Principal,
}

/// Longest a verified token is trusted without a database read.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most tokens cached at once.
const CACHE_MAX: usize = 10_000;

impl AuthCache {
    fn get(&self, presented: &token::Presented<'_>) -> Option<Principal> {
        let inner = self.inner.lock().ok()?;
        let c = inner.entries.get(presented.id)?;
        let fresh = c.loaded.elapsed() < CACHE_TTL && c.expires_ms.is_none_or(|e| e > now_ms());
        (fresh && c.kind == presented.kind && presented.matches(&c.hash))
            .then(|| c.principal.clone())
    }

    fn generation(&self) -> u64 {
        self.inner.lock().map_or(u64::MAX, |i| i.generation)
    }

    fn insert(&self, generation: u64, id: String, kind: TokenKind, v: Verified) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.generation != generation {
            return; // invalidated while we were reading
        }
        if inner.entries.len() >= CACHE_MAX {
            inner.entries.clear();
        }
        inner.entries.insert(
            id,
            Cached {
                kind,
                hash: v.hash,
                expires_ms: v.expires_ms,
                loaded: Instant::now(),
                principal: v.principal,
            },
        );
    }

    /// Forgets every cached token.
    pub(crate) fn invalidate(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.generation = inner.generation.wrapping_add(1);
            inner.entries.clear();
        }
    }
}

/// Limits `auth.failed` audit entries to one per token id per second.
#[derive(Debug, Default)]
pub(crate) struct FailureThrottle {
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

const THROTTLE_WINDOW: Duration = Duration::from_secs(1);
const THROTTLE_MAX_IDS: usize = 10_000;

impl FailureThrottle {
    /// `Some(n)` if this failure should be audited, `n` being how many were
    /// suppressed since the last audited one.
    fn admit(&self, token_id: &str) -> Option<u64> {
        let Ok(mut last) = self.last.lock() else {
            return Some(0);
        };
        if last.len() > THROTTLE_MAX_IDS {
            last.clear();
        }
        let now = Instant::now();
        match last.get_mut(token_id) {
            Some((at, suppressed)) if now.duration_since(*at) < THROTTLE_WINDOW => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                *at = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                last.insert(token_id.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn resolve(state: &AppState, value: String) -> Result<Principal, Refusal> {
    let Some(presented) = token::parse(&value) else {
        return Err(Refusal::anonymous("malformed token"));
    };
    if let Some(principal) = state.auth.get(&presented) {
        return Ok(principal);
    }
    let generation = state.auth.generation();
    let kind = presented.kind;
    let id = presented.id.to_owned();
    let looked_up = state
        .db
        .read(move |conn| {
            let Some(presented) = token::parse(&value) else {
                return Ok(Err(Refusal::anonymous("malformed token")));
            };
            lookup(conn, &presented)
        })
        .await;
    match looked_up {
        Ok(Ok(verified)) => {
            let principal = verified.principal.clone();
            state.auth.insert(generation, id, kind, verified);
            Ok(principal)
        }
        Ok(Err(refusal)) => Err(refusal),
        Err(e) => {
            tracing::error!(error = %e.message, token_id = %id, ?kind, "cannot look up a token");
            Err(Refusal {
                org_id: None,
                token_id: Some(id),
                reason: "lookup failed",
            })
        }
    }
}

type Row = (
    String,
    Option<String>,
    String,
    Vec<u8>,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// A principal as verified from the database, with what re-verifying a
/// later presentation of the same token needs.
struct Verified {
    principal: Principal,
    hash: Vec<u8>,
    expires_ms: Option<i64>,
}

fn lookup(
    conn: &rusqlite::Connection,
    presented: &token::Presented<'_>,
) -> Result<Result<Verified, Refusal>, ApiError> {
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT t.kind, t.role, t.name, t.secret_sha256, t.org_id, o.name, t.pool_id,
                    t.agent_id, t.expires_ms, t.revoked_ms
             FROM tokens t JOIN orgs o ON o.id = t.org_id WHERE t.id = ?1",
        )?
        .query_row([presented.id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .optional()?;
    let Some((kind, role, name, hash, org_id, org, pool_id, agent_id, expires, revoked)) = row
    else {
        return Ok(Err(Refusal {
            org_id: None,
            token_id: Some(presented.id.to_owned()),
            reason: "unknown token id",
        }));
    };
    let refuse = |reason| {
        Ok(Err(Refusal {
            org_id: Some(org_id),
            token_id: Some(presented.id.to_owned()),
            reason,
        }))
    };
    if TokenKind::parse(&kind) != Some(presented.kind) || !presented.matches(&hash) {
        return refuse("wrong secret");
    }
    if revoked.is_some() {
        return refuse("revoked token");
    }
    if expires.is_some_and(|e| e <= now_ms()) {
        return refuse("expired token");
    }
    let principal = match presented.kind {
        TokenKind::User => {
            let Some(role) = role.as_deref().and_then(Role::parse) else {
                return refuse("user token without a role");
            };
            Principal::User(User {
                org_id,
                org,
                token_id: presented.id.to_owned(),
                name,
                role,
            })
        }
        TokenKind::Enrollment => {
            let Some(pool_id) = pool_id else {
                return refuse("enrollment token without a pool");
            };
            let pool: String = conn
                .prepare_cached("SELECT name FROM pools WHERE id = ?1")?
                .query_row([pool_id], |r| r.get(0))?;
            Principal::Enroller(Enroller {
                org_id,
                token_id: presented.id.to_owned(),
                pool_id,
                pool,
            })
        }
        TokenKind::Agent => {
            let Some(agent_id) = agent_id else {
                return refuse("agent token without an agent");
            };
            let agent: Option<(String, i64, bool, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT name, pool_id, online, revoked_ms FROM agents WHERE id = ?1",
                )?
                .query_row([&agent_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((name, pool_id, online, None)) = agent else {
                return refuse("revoked agent");
            };
            let targets = conn
                .prepare_cached("SELECT target_id FROM agent_targets WHERE agent_id = ?1")?
                .query_map([&agent_id], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?;
            Principal::Agent(Agent {
                org_id,
                org,
                id: agent_id,
                name,
                pool_id,
                online,
                targets,
            })
        }
    };
    Ok(Ok(Verified {
        principal,
        hash,
        expires_ms: expires,
    }))
}

async fn refused(state: &AppState, parts: &Parts, refusal: Refusal) -> ApiError {
    state.metrics.auth_failed();
    tracing::warn!(
        token_id = refusal.token_id.as_deref().unwrap_or("-"),
        reason = refusal.reason,
        method = %parts.method,
        path = parts.uri.path(),
        "authentication failed"
    );
    if let (Some(org_id), Some(token_id)) = (refusal.org_id, refusal.token_id) {
        if let Some(suppressed) = state.failures.admit(&token_id) {
            let detail = json!({
                "reason": refusal.reason,
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "suppressed_since_last": suppressed,
            });
            let subject = format!("token:{token_id}");
            let written = state
                .db
                .write(move |conn| {
                    audit::append(
                        conn,
                        org_id,
                        "unauthenticated",
                        "auth.failed",
                        &subject,
                        detail,
                    )?;
                    Ok(())
                })
                .await;
            if let Err(e) = written {
                tracing::error!(error = %e.message, "cannot audit a failed authentication");
            }
        }
    }
    ApiError::unauthorized("invalid, expired or revoked token")
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = bearer(parts) else {
            state.metrics.auth_failed();
            return Err(ApiError::unauthorized(
                "missing bearer token (send Authorization: Bearer <token>)",
            ));
        };
        match resolve(state, value.to_owned()).await {
            Ok(p) => Ok(p),
            Err(refusal) => Err(refused(state, parts, refusal).await),
        }
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, state).await? {
            Principal::User(u) => Ok(u),
            Principal::Agent(_) => Err(ApiError::forbidden(
                "agent tokens can only call /v1/agent/* endpoints",
            )),
            Principal::Enroller(_) => Err(ApiError::forbidden(
                "enrollment tokens can only register agents",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_protocol(parts)?;
        match Principal::from_request_parts(parts, state).await? {
            Principal::Agent(a) => Ok(a),
            Principal::User(_) => Err(ApiError::forbidden("this endpoint is for agents")),
            Principal::Enroller(_) => Err(ApiError::forbidden(
                "enrollment tokens can only register agents: use the agent token it returned",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Enroller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check_protocol(parts)?;
        match Principal::from_request_parts(parts, state).await? {
            Principal::Enroller(e) => Ok(e),
            _ => Err(ApiError::forbidden(
                "registering an agent needs an enrollment token",
            )),
        }
    }
}

/// Agents announce their protocol version; an absent header means the
/// current one (curl-friendly), another version is refused.
fn check_protocol(parts: &Parts) -> Result<(), ApiError> {
    let Some(v) = parts.headers.get(PROTOCOL_VERSION_HEADER) else {
        return Ok(());
    };
    let speaks =
        v.to_str().ok().and_then(|v| v.trim().parse::<u32>().ok()) == Some(PROTOCOL_VERSION);
    if speaks {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "this control plane speaks agent protocol {PROTOCOL_VERSION}; upgrade the agent or the control plane"
            ),
        ))
    }
}

/// What is stored about a new token besides its id and hash.
#[derive(Debug)]
pub(crate) struct TokenRecord<'a> {
    pub(crate) org_id: i64,
    pub(crate) kind: TokenKind,
    pub(crate) name: &'a str,
    pub(crate) role: Option<Role>,
    pub(crate) pool_id: Option<i64>,
    pub(crate) agent_id: Option<&'a str>,
    pub(crate) expires_ms: Option<i64>,
}

/// Stores a new token (inside a writer job); returns its creation time.
pub(crate) fn insert_token(
    conn: &rusqlite::Connection,
    new: &token::NewToken,
    rec: &TokenRecord<'_>,
) -> rusqlite::Result<i64> {
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO tokens (id, org_id, kind, role, name, secret_sha256, pool_id, agent_id, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        new.id,
        rec.org_id,
        rec.kind.as_str(),
        rec.role.map(Role::as_str),
        rec.name,
        new.secret_sha256.as_slice(),
        rec.pool_id,
        rec.agent_id,
        now,
        rec.expires_ms
    ])?;
    Ok(now)
}
