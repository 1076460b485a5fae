//! Who is calling: bearer tokens resolved into a [`Principal`].
//!
//! Failures answer one message whatever went wrong, so the answer is no
//! oracle; the reason goes to the audit trail of the org the token id
//! belongs to (if it belongs to one), at most once a second per token id so a
//! flood cannot fill the disk.

use crate::audit::Refused;
use crate::caller::{Agent, Enroller, Principal, User};
use crate::credentials::Verified;
use crate::error::Error;
use crate::service::Control;
use crate::store::{self, Tx, now_ms};
use crate::token::{self, TokenKind};
use sealrun_wire::admin::Role;
use serde_json::json;

/// The request a credential came with, for the log and the audit trail.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The request's method (`GET`, `POST`...).
    pub method: &'a str,
    /// The request's path.
    pub path: &'a str,
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

/// The credential a long request rests on.
#[derive(Clone, Copy, Debug)]
enum Held<'a> {
    /// A user token, by id.
    Token(&'a str),
    /// An agent, by id (its token is revoked with it).
    Agent(&'a str),
}

impl Control {
    /// Resolves once `user`'s token is revoked or expires. Requests that
    /// outlive their authentication (a followed log) end then, instead of
    /// running on until the run does.
    ///
    /// Woken by every change that can revoke a credential (the same commit
    /// hooks that empty the token cache), it reads the token's row only
    /// then, and sleeps until the expiry otherwise: a revocation committed
    /// even between the authentication and this call is seen at once.
    pub async fn revoked(&self, user: &User) {
        self.until_invalid(
            Held::Token(&user.token_id),
            user.verified_at,
            user.expires_at_ms,
        )
        .await;
    }

    /// Resolves once `agent` is revoked (its long poll ends then).
    pub(crate) async fn agent_revoked(&self, agent: &Agent) {
        self.until_invalid(Held::Agent(&agent.id), agent.verified_at, None)
            .await;
    }

    async fn until_invalid(&self, held: Held<'_>, verified_at: u64, expires_ms: Option<i64>) {
        let mut changes = self.auth.subscribe();
        let mut checked = verified_at;
        loop {
            let generation = *changes.borrow_and_update();
            if generation != checked {
                checked = generation;
                if !self.still_valid(held).await {
                    return;
                }
            }
            let expiry = async {
                match expires_ms {
                    Some(at) => {
                        let left = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                        tokio::time::sleep(std::time::Duration::from_millis(left)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The cache (and so the control plane) is gone.
                        return;
                    }
                }
                () = expiry => return,
            }
        }
    }

    /// Whether `held` is still unrevoked and unexpired; a failed read counts
    /// as valid (the next change looks again), since ending a stream on a
    /// transient error would be a refusal the caller did not earn.
    async fn still_valid(&self, held: Held<'_>) -> bool {
        let (agent, id) = match held {
            Held::Token(id) => (false, id.to_owned()),
            Held::Agent(id) => (true, id.to_owned()),
        };
        let valid = self
            .db
            .read(move |tx| {
                if agent {
                    let agent = store::agents::get(tx, &id)?;
                    Ok(agent.is_some_and(|a| a.revoked_ms.is_none()))
                } else {
                    store::tokens::active(tx, &id, now_ms())
                }
            })
            .await;
        valid.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot re-check a credential");
            true
        })
    }

    /// The caller presenting bearer token `value`, or
    /// [`Error::Unauthenticated`] (with the reason logged and audited, never
    /// answered).
    ///
    /// A console session token is refused here: it is accepted only from
    /// the console's cookie ([`authenticate_session`](Control::authenticate_session)).
    pub async fn authenticate(
        &self,
        value: &str,
        attempt: Attempt<'_>,
    ) -> Result<Principal, Error> {
        self.authenticate_as(value, attempt, false).await
    }

    /// The user whose console session token (from the console's cookie) is
    /// `value`, or [`Error::Unauthenticated`]. Only session tokens are
    /// accepted: a bearer token in a cookie is refused.
    pub async fn authenticate_session(
        &self,
        value: &str,
        attempt: Attempt<'_>,
    ) -> Result<User, Error> {
        match self.authenticate_as(value, attempt, true).await? {
            Principal::User(user) => Ok(user),
            // `lookup` makes only users of session tokens.
            _ => Err(Error::Unauthenticated(
                "invalid, expired or revoked session".into(),
            )),
        }
    }

    async fn authenticate_as(
        &self,
        value: &str,
        attempt: Attempt<'_>,
        session: bool,
    ) -> Result<Principal, Error> {
        let kind = token::parse(value).map(|p| p.kind);
        if kind.is_some_and(|k| (k == TokenKind::Session) != session) {
            let reason = if session {
                "a bearer token presented as a console session"
            } else {
                "a console session token presented as a bearer token"
            };
            return Err(self.refused(attempt, Refusal::anonymous(reason)).await);
        }
        match self.resolve(value.to_owned()).await? {
            Ok(principal) => Ok(principal),
            Err(refusal) => Err(self.refused(attempt, refusal).await),
        }
    }

    /// The principal of a token, or why it is refused; `Err` when the store
    /// cannot say (a database that is down): that is no verdict on the
    /// token, so it must not be answered as a refusal (401 tells clients to
    /// give up, when asking again once the database is back would succeed).
    async fn resolve(&self, value: String) -> Result<Result<Principal, Refusal>, Error> {
        let Some(presented) = token::parse(&value) else {
            return Ok(Err(Refusal::anonymous("malformed token")));
        };
        if let Some(principal) = self.auth.get(&presented) {
            return Ok(Ok(principal));
        }
        let generation = self.auth.generation();
        let kind = presented.kind;
        let id = presented.id.to_owned();
        let looked_up = self
            .db
            .read(move |tx| {
                let Some(presented) = token::parse(&value) else {
                    return Ok(Err(Refusal::anonymous("malformed token")));
                };
                lookup(tx, &presented)
            })
            .await;
        match looked_up {
            Ok(Ok(mut verified)) => {
                // What it was read at: a revocation committed since then
                // makes `revoked` look again (a cache hit returns what this
                // stored, and the cache is emptied by every invalidation).
                match &mut verified.principal {
                    Principal::User(u) => u.verified_at = generation,
                    Principal::Agent(a) => a.verified_at = generation,
                    Principal::Enroller(_) => {}
                }
                let principal = verified.principal.clone();
                self.auth.insert(generation, id, kind, verified);
                Ok(Ok(principal))
            }
            Ok(Err(refusal)) => Ok(Err(refusal)),
            Err(e) => {
                tracing::error!(error = %e, token_id = %id, ?kind, "cannot look up a token");
                Err(e)
            }
        }
    }

    async fn refused(&self, attempt: Attempt<'_>, refusal: Refusal) -> Error {
        tracing::warn!(
            token_id = refusal.token_id.as_deref().unwrap_or("-"),
            reason = refusal.reason,
            method = attempt.method,
            path = attempt.path,
            "authentication failed"
        );
        if let (Some(org_id), Some(token_id)) = (refusal.org_id, refusal.token_id) {
            if let Some(suppressed) = self.failures.admit(&token_id) {
                let detail = json!({
                    "reason": refusal.reason,
                    "method": attempt.method,
                    "path": attempt.path,
                    "suppressed_since_last": suppressed,
                });
                self.audit_refusal(Refused {
                    org_id,
                    actor: "unauthenticated".into(),
                    action: "auth.failed",
                    subject: format!("token:{token_id}"),
                    detail,
                })
                .await;
            }
        }
        Error::Unauthenticated("invalid, expired or revoked token".into())
    }
}

fn lookup(
    tx: &Tx<'_>,
    presented: &token::Presented<'_>,
) -> Result<Result<Verified, Refusal>, Error> {
    let Some(row) = store::tokens::credential(tx, presented.id)? else {
        return Ok(Err(Refusal {
            org_id: None,
            token_id: Some(presented.id.to_owned()),
            reason: "unknown token id",
        }));
    };
    let org_id = row.org_id;
    let refuse = |reason| {
        Ok(Err(Refusal {
            org_id: Some(org_id),
            token_id: Some(presented.id.to_owned()),
            reason,
        }))
    };
    if TokenKind::parse(&row.kind) != Some(presented.kind) || !presented.matches(&row.secret_sha256)
    {
        return refuse("wrong secret");
    }
    if row.revoked_ms.is_some() {
        return refuse("revoked token");
    }
    if row.expires_ms.is_some_and(|e| e <= now_ms()) {
        return refuse("expired token");
    }
    // A session lives only as long as the token it was signed in with.
    if presented.kind == TokenKind::Session && row.parent_valid != Some(true) {
        return refuse("session of a revoked or expired token");
    }
    let principal = match presented.kind {
        TokenKind::User | TokenKind::Session => {
            let Some((user_id, user, role, disabled)) = row.user else {
                return refuse("user token without a user");
            };
            // Disabling a user revokes its tokens too; this also stops one
            // issued in a race with the disabling. Same refusal as a
            // revoked token's.
            if disabled.is_some() {
                return refuse("disabled user");
            }
            let Some(role) = Role::parse(&role) else {
                return refuse("user without a role");
            };
            Principal::User(User {
                org_id,
                org: row.org,
                token_id: presented.id.to_owned(),
                name: row.name,
                user_id,
                user,
                role,
                expires_at_ms: row.expires_ms,
                verified_at: 0,
            })
        }
        TokenKind::Enrollment => {
            let Some(pool_id) = row.pool_id else {
                return refuse("enrollment token without a pool");
            };
            if row.max_uses.is_some_and(|max| row.uses >= max) {
                return refuse("used-up enrollment token");
            }
            Principal::Enroller(Enroller {
                org_id,
                token_id: presented.id.to_owned(),
                pool_id,
                pool: store::pools::name(tx, pool_id)?,
            })
        }
        TokenKind::Agent => {
            let Some(agent_id) = row.agent_id else {
                return refuse("agent token without an agent");
            };
            let agent = store::agents::get(tx, &agent_id)?;
            let Some(agent) = agent.filter(|a| a.revoked_ms.is_none()) else {
                return refuse("revoked agent");
            };
            let targets = store::agents::target_ids(tx, &agent_id)?;
            Principal::Agent(Agent {
                org_id,
                org: row.org,
                id: agent_id,
                name: agent.name,
                pool_id: agent.pool_id,
                online: agent.online,
                targets,
                verified_at: 0,
            })
        }
    };
    Ok(Ok(Verified {
        principal,
        hash: row.secret_sha256,
        expires_ms: row.expires_ms,
    }))
}
