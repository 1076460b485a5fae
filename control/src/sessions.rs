//! Web console sessions: a user token exchanged, at sign-in, for a
//! short-lived session token that the console keeps in an `HttpOnly`
//! cookie, so the token a person types is never stored in a browser.
//!
//! A session is a token of kind `session` (stored as a hash, like every
//! token) that acts as its user with the user's role, through the same
//! permission table as the API. It ends at the first of: its own expiry
//! ([`SESSION_TTL`]), sign-out, the expiry or revocation of the token it was
//! signed in with, the user being disabled.

use crate::auth::Attempt;
use crate::caller::User;
use crate::credentials::issue;
use crate::error::Error;
use crate::service::Control;
use crate::store::tokens::TokenRecord;
use crate::store::{self, now_ms};
use crate::token::TokenKind;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long a console session lasts at most (a working day); sooner if the
/// token it was signed in with expires sooner.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// A console session just opened.
pub struct Session {
    /// The session token, for the console's cookie only (wiped on drop,
    /// never shown in `Debug`).
    pub value: Zeroizing<String>,
    /// Who it acts as.
    pub user: User,
    /// Unix milliseconds it expires at.
    pub expires_at_ms: i64,
}

impl Session {
    /// Whole seconds until it expires (what its cookie's `Max-Age` says).
    pub fn seconds_left(&self) -> u64 {
        u64::try_from(self.expires_at_ms.saturating_sub(now_ms()) / 1000).unwrap_or(0)
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user.user)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Signs in to the console with user token `token`: a new session of
    /// its user (audited `session.opened`, naming the token signed in
    /// with). Any token a user may present to the API may sign in; agent
    /// and enrollment tokens may not.
    pub async fn open_session(&self, token: &str, attempt: Attempt<'_>) -> Result<Session, Error> {
        let user = self.authenticate(token, attempt).await?.into_user()?;
        let now = now_ms();
        let ttl = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
        let expires = match user.expires_at_ms {
            Some(parent) => parent.min(now.saturating_add(ttl)),
            None => now.saturating_add(ttl),
        };
        let parent = user.clone();
        let mut new = self
            .db
            .write(move |tx| {
                let label = format!("console session of {}", parent.user);
                let (new, _) = issue(
                    tx,
                    &TokenRecord {
                        org_id: parent.org_id,
                        kind: TokenKind::Session,
                        name: &label,
                        role: None,
                        user_id: Some(parent.user_id),
                        pool_id: None,
                        agent_id: None,
                        expires_ms: Some(expires),
                        max_uses: None,
                        parent_id: Some(&parent.token_id),
                    },
                    &parent.actor(),
                    json!({"kind": "session", "user": parent.user, "signed_in_with": parent.token_id, "expires_at_ms": expires}),
                )?;
                Ok(new)
            })
            .await?;
        let value = Zeroizing::new(std::mem::take(&mut new.value));
        let session = self.authenticate_session(&value, attempt).await?;
        Ok(Session {
            value,
            user: session,
            expires_at_ms: expires,
        })
    }

    /// Signs `session` out: its token is revoked (audited `session.closed`),
    /// so its cookie is worthless even if kept, and its live streams end.
    pub async fn close_session(&self, session: &User) -> Result<(), Error> {
        let session = session.clone();
        let cache = Arc::clone(&self.auth);
        self.db
            .write_then(
                move |tx| {
                    store::tokens::revoke(tx, &session.token_id, now_ms())?;
                    store::audit::append(
                        tx,
                        session.org_id,
                        &session.actor(),
                        "session.closed",
                        &format!("token:{}", session.token_id),
                        json!({"user": session.user}),
                    )?;
                    Ok(())
                },
                move |()| cache.invalidate(),
            )
            .await
    }
}
