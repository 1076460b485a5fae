//! Org administration: user tokens, pools, enrollment tokens, agents.

use crate::caller::{Principal, User};
use crate::credentials::issue;
use crate::error::{Error, Object};
use crate::people::create_user_in;
use crate::permissions::Action;
use crate::queue;
use crate::service::Control;
use crate::store::tokens::TokenRecord;
use crate::store::{self, now_ms};
use crate::token::TokenKind;
use sealrun_wire::admin::{
    AgentView, EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenView, PoolView, TokenCreate,
    TokenCreated, TokenView, Whoami,
};
use sealrun_wire::names;
use serde_json::json;
use std::sync::Arc;

/// Longest enrollment token lifetime an admin may ask for.
const MAX_ENROLLMENT_TTL_SECS: u64 = 365 * 24 * 3600;
/// Longest user token lifetime an admin may ask for (ten years: a token
/// meant to outlive that should say so by having no expiry).
const MAX_TOKEN_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
/// Most agents one enrollment token may be limited to.
const MAX_ENROLLMENT_AGENTS: u32 = 10_000;

/// Unix milliseconds `secs` seconds after `now`.
fn after_secs(now: i64, secs: u64) -> i64 {
    now.saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

impl Principal {
    /// Who the caller is: user and agent tokens may ask, enrollment tokens
    /// may only register agents.
    pub fn whoami(self) -> Result<Whoami, Error> {
        match self {
            Principal::User(u) => Ok(Whoami {
                org: u.org,
                name: u.name,
                role: u.role.as_str().to_owned(),
                user: Some(u.user),
                signing_key: None,
                certifiers: Vec::new(),
            }),
            Principal::Agent(a) => Ok(Whoami {
                org: a.org,
                name: a.name,
                role: "agent".to_owned(),
                user: None,
                signing_key: None,
                certifiers: Vec::new(),
            }),
            Principal::Enroller(_) => Err(Error::Forbidden(
                "enrollment tokens can only register agents".into(),
            )),
        }
    }
}

impl Control {
    /// Who the caller is ([`Principal::whoami`]), with the signing key an
    /// admin certified for its user, if any, and the keys that signed the
    /// org's certificates.
    pub async fn whoami(&self, principal: Principal) -> Result<Whoami, Error> {
        let user = match &principal {
            Principal::User(u) => Some((u.user_id, u.org_id)),
            _ => None,
        };
        let mut me = principal.whoami()?;
        if let Some((user_id, org_id)) = user {
            let (key, certifiers) = self
                .db
                .read(move |tx| {
                    Ok((
                        crate::signing::certified_key(tx, user_id)?,
                        store::orgs::certifiers(tx, org_id)?,
                    ))
                })
                .await?;
            me.signing_key = key;
            me.certifiers = certifiers;
        }
        Ok(me)
    }

    /// Issues a user token; its value is in the answer and nowhere else.
    ///
    /// With `req.user`, for that existing user (it acts with the user's
    /// role; `req.role`, if given, must be that role). Without, `req.name`
    /// and `req.role` name the user: created if it does not exist, given
    /// another token if it does with that role, refused if its role
    /// differs (a user has one role).
    pub async fn create_token(&self, user: &User, req: TokenCreate) -> Result<TokenCreated, Error> {
        user.require(Action::ManageTokens)?;
        if !req.name.is_empty() {
            names::label("token name", &req.name).map_err(invalid)?;
        }
        let owner = match (&req.user, req.role) {
            (Some(owner), _) => owner.clone(),
            (None, Some(_)) if !req.name.is_empty() => req.name.clone(),
            (None, _) => {
                return Err(Error::Invalid(
                    "say whose token it is: user (an existing user), or name and role (user name is created with that role if it does not exist)".into(),
                ));
            }
        };
        names::label("user name", &owner).map_err(invalid)?;
        if req
            .expires_in_secs
            .is_some_and(|t| t == 0 || t > MAX_TOKEN_TTL_SECS)
        {
            return Err(Error::Invalid(format!(
                "expires_in_secs must be between 1 and {MAX_TOKEN_TTL_SECS} (or absent: no expiry)"
            )));
        }
        let user = user.clone();
        self.db
            .write(move |tx| {
                let now = now_ms();
                let found = store::users::by_name(tx, user.org_id, &owner)?;
                let (user_id, role) = match (found, req.role) {
                    (Some(u), _) if u.disabled_ms.is_some() => {
                        return Err(Error::Conflict(format!(
                            "user {owner:?} is disabled: it gets no new tokens"
                        )));
                    }
                    (Some(u), Some(role)) if u.role != role => {
                        return Err(Error::Conflict(format!(
                            "user {owner:?} has role {}, not {role}: a user has one role, and its tokens act with it",
                            u.role
                        )));
                    }
                    (Some(u), _) => (u.id, u.role),
                    (None, Some(role)) if req.user.is_none() => {
                        let id = create_user_in(tx, &user, &owner, role, now)?;
                        (id, role)
                    }
                    (None, _) => return Err(Error::not_found(Object::User, owner)),
                };
                let label = if req.name.is_empty() {
                    owner.clone()
                } else {
                    req.name
                };
                let expires = req.expires_in_secs.map(|t| after_secs(now, t));
                let (new, at) = issue(
                    tx,
                    &TokenRecord {
                        org_id: user.org_id,
                        kind: TokenKind::User,
                        name: &label,
                        role: Some(role),
                        user_id: Some(user_id),
                        pool_id: None,
                        agent_id: None,
                        expires_ms: expires,
                        max_uses: None,
                        parent_id: None,
                    },
                    &user.actor(),
                    json!({"name": label, "role": role.as_str(), "for_user": owner, "user": user.user, "expires_at_ms": expires}),
                )?;
                Ok(TokenCreated {
                    view: TokenView {
                        id: new.id.clone(),
                        name: label,
                        user: owner,
                        role,
                        created_at_ms: at,
                        revoked_at_ms: None,
                        expires_at_ms: expires,
                    },
                    token: new.value,
                })
            })
            .await
    }

    /// The org's user tokens, newest first.
    pub async fn list_tokens(&self, user: &User) -> Result<Vec<TokenView>, Error> {
        user.require(Action::ManageTokens)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::tokens::list_users(tx, org_id))
            .await
    }

    /// Revokes a user or enrollment token (agent tokens go with their agent).
    /// Refuses to revoke the org's last admin token.
    pub async fn revoke_token(&self, user: &User, id: String) -> Result<(), Error> {
        user.require(Action::ManageTokens)?;
        let user = user.clone();
        let cache = Arc::clone(&self.auth);
        self.db
            .write_then(
                move |tx| {
                    let Some(token) = store::tokens::revocable(tx, user.org_id, &id)? else {
                        return Err(Error::not_found(Object::Token, id));
                    };
                    if token.kind == "agent" {
                        return Err(Error::Invalid(
                            "agent tokens are revoked with their agent: DELETE /v1/agents/{id}"
                                .into(),
                        ));
                    }
                    if token.revoked_ms.is_some() {
                        return Ok(());
                    }
                    // A console session is not one of the org's admin
                    // tokens (the token it was signed in with is): ending
                    // a stolen one must always be possible.
                    if token.kind == "user"
                        && token.role.as_deref() == Some("admin")
                        && store::tokens::active_admins(tx, user.org_id)? <= 1
                    {
                        return Err(Error::Conflict(
                            "this is the org's last admin token; issue another admin token first"
                                .into(),
                        ));
                    }
                    store::tokens::revoke(tx, &id, now_ms())?;
                    store::audit::append(
                        tx,
                        user.org_id,
                        &user.actor(),
                        "token.revoked",
                        &format!("token:{id}"),
                        json!({"kind": token.kind, "name": token.name, "for_user": token.user, "user": user.user}),
                    )?;
                    Ok(())
                },
                move |_| cache.invalidate(),
            )
            .await
    }

    /// Creates an agent pool.
    pub async fn create_pool(&self, user: &User, name: String) -> Result<PoolView, Error> {
        user.require(Action::ManagePools)?;
        names::object("pool", &name).map_err(invalid)?;
        let user = user.clone();
        self.db
            .write(move |tx| {
                let now = now_ms();
                if !store::pools::insert(tx, user.org_id, &name, now)? {
                    return Err(Error::Conflict(format!("pool {name:?} already exists")));
                }
                store::audit::append(
                    tx,
                    user.org_id,
                    &user.actor(),
                    "pool.created",
                    &name,
                    json!({}),
                )?;
                Ok(PoolView {
                    name,
                    created_at_ms: now,
                })
            })
            .await
    }

    /// The org's pools, by name.
    pub async fn list_pools(&self, user: &User) -> Result<Vec<PoolView>, Error> {
        user.require(Action::ManagePools)?;
        let org_id = user.org_id;
        self.db.read(move |tx| store::pools::list(tx, org_id)).await
    }

    /// Issues an enrollment token for `pool`, valid `req.ttl_secs` (default:
    /// the configured enrollment TTL) for `req.max_agents` agents (default
    /// one) or, with `req.unlimited`, any number; its value is in the answer
    /// only.
    pub async fn create_enrollment_token(
        &self,
        user: &User,
        pool: String,
        req: EnrollmentTokenCreate,
    ) -> Result<EnrollmentToken, Error> {
        user.require(Action::EnrollAgents)?;
        let ttl = req
            .ttl_secs
            .unwrap_or(self.settings.enrollment_ttl.as_secs());
        if ttl == 0 || ttl > MAX_ENROLLMENT_TTL_SECS {
            return Err(Error::Invalid(format!(
                "ttl_secs must be between 1 and {MAX_ENROLLMENT_TTL_SECS}"
            )));
        }
        let max_agents = match (req.max_agents, req.unlimited) {
            (Some(_), true) => {
                return Err(Error::Invalid(
                    "give max_agents or unlimited, not both".into(),
                ));
            }
            (None, true) => None,
            (None, false) => Some(1),
            (Some(n), false) if (1..=MAX_ENROLLMENT_AGENTS).contains(&n) => Some(n),
            (Some(_), false) => {
                return Err(Error::Invalid(format!(
                    "max_agents must be between 1 and {MAX_ENROLLMENT_AGENTS}"
                )));
            }
        };
        let user = user.clone();
        self.db
            .write(move |tx| {
                let pool_id = store::pools::id(tx, user.org_id, &pool)?
                    .ok_or_else(|| Error::not_found(Object::Pool, pool.clone()))?;
                let expires = after_secs(now_ms(), ttl);
                let (new, _) = issue(
                    tx,
                    &TokenRecord {
                        org_id: user.org_id,
                        kind: TokenKind::Enrollment,
                        name: &format!("enrollment:{pool}"),
                        role: None,
                        user_id: None,
                        pool_id: Some(pool_id),
                        agent_id: None,
                        expires_ms: Some(expires),
                        max_uses: max_agents,
                        parent_id: None,
                    },
                    &user.actor(),
                    json!({"kind": "enrollment", "pool": pool, "expires_at_ms": expires, "max_agents": max_agents}),
                )?;
                Ok(EnrollmentToken {
                    pool,
                    token: new.value,
                    expires_at_ms: expires,
                    max_agents,
                })
            })
            .await
    }

    /// The enrollment tokens of `pool`: metadata only.
    pub async fn list_enrollment_tokens(
        &self,
        user: &User,
        pool: String,
    ) -> Result<Vec<EnrollmentTokenView>, Error> {
        user.require(Action::EnrollAgents)?;
        let org_id = user.org_id;
        self.db
            .read(move |tx| {
                let pool_id = store::pools::id(tx, org_id, &pool)?
                    .ok_or_else(|| Error::not_found(Object::Pool, pool.clone()))?;
                store::tokens::list_enrollment(tx, pool_id, &pool)
            })
            .await
    }

    /// The org's enrolled, unrevoked agents.
    pub async fn list_agents(&self, user: &User) -> Result<Vec<AgentView>, Error> {
        user.require(Action::ReadAgents)?;
        let since = self.settings.connected_since(now_ms());
        let org_id = user.org_id;
        self.db
            .read(move |tx| store::agents::list(tx, org_id, since))
            .await
    }

    /// Revokes an agent and its token; the runs it holds become `lost`.
    pub async fn revoke_agent(&self, user: &User, id: String) -> Result<(), Error> {
        user.require(Action::ManageAgents)?;
        let user = user.clone();
        let cache = Arc::clone(&self.auth);
        let lost = self
            .db
            .write_then(
                move |tx| {
                    let Some((name, revoked)) = store::agents::revocable(tx, user.org_id, &id)?
                    else {
                        return Err(Error::not_found(Object::Agent, id));
                    };
                    if revoked.is_some() {
                        return Ok(Vec::new());
                    }
                    let now = now_ms();
                    store::agents::revoke(tx, &id, now)?;
                    store::tokens::revoke_agents(tx, &id, now)?;
                    store::audit::append(
                        tx,
                        user.org_id,
                        &user.actor(),
                        "agent.revoked",
                        &id,
                        json!({"name": name}),
                    )?;
                    queue::lose_held(tx, user.org_id, &id, "agent revoked")
                },
                move |_| cache.invalidate(),
            )
            .await?;
        for run in &lost {
            self.watchers.touch(run);
        }
        Ok(())
    }
}
