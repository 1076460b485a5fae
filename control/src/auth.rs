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

impl Control {
    /// The caller presenting bearer token `value`, or
    /// [`Error::Unauthenticated`] (with the reason logged and audited, never
    /// answered).
    pub async fn authenticate(
        &self,
        value: &str,
        attempt: Attempt<'_>,
    ) -> Result<Principal, Error> {
        match self.resolve(value.to_owned()).await {
            Ok(principal) => Ok(principal),
            Err(refusal) => Err(self.refused(attempt, refusal).await),
        }
    }

    async fn resolve(&self, value: String) -> Result<Principal, Refusal> {
        let Some(presented) = token::parse(&value) else {
            return Err(Refusal::anonymous("malformed token"));
        };
        if let Some(principal) = self.auth.get(&presented) {
            return Ok(principal);
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
            Ok(Ok(verified)) => {
                let principal = verified.principal.clone();
                self.auth.insert(generation, id, kind, verified);
                Ok(principal)
            }
            Ok(Err(refusal)) => Err(refusal),
            Err(e) => {
                tracing::error!(error = %e, token_id = %id, ?kind, "cannot look up a token");
                Err(Refusal {
                    org_id: None,
                    token_id: Some(id),
                    reason: "lookup failed",
                })
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
    let principal = match presented.kind {
        TokenKind::User => {
            let Some(role) = row.role.as_deref().and_then(Role::parse) else {
                return refuse("user token without a role");
            };
            Principal::User(User {
                org_id,
                org: row.org,
                token_id: presented.id.to_owned(),
                name: row.name,
                role,
            })
        }
        TokenKind::Enrollment => {
            let Some(pool_id) = row.pool_id else {
                return refuse("enrollment token without a pool");
            };
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
            })
        }
    };
    Ok(Ok(Verified {
        principal,
        hash: row.secret_sha256,
        expires_ms: row.expires_ms,
    }))
}
