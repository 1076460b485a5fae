//! Who is looking: the console's session cookie resolved by the domain into
//! the [`User`] it acts as, and the CSRF rule every form obeys.
//!
//! The cookie (`__Host-sealrun-session`: `HttpOnly`, `Secure`,
//! `SameSite=Strict`, `Path=/`) holds a session token, never the token the
//! person signed in with. Each form carries a CSRF token derived from the
//! session token (`SHA-256` under its own context), which only a page served
//! to that session knows: a forged form from another site has the cookie
//! (at most) but not the token. Requests a browser marks as cross-site
//! (`Sec-Fetch-Site`) are refused outright.

use super::error::PageError;
use crate::state::AppState;
use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use sealrun_control::{Attempt, User};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// The session cookie's name. `__Host-` makes browsers refuse it unless it
/// is `Secure`, has `Path=/` and no `Domain`: no other host can set it.
pub(crate) const SESSION_COOKIE: &str = "__Host-sealrun-session";
/// The sign-in form's CSRF cookie (before there is a session).
pub(crate) const LOGIN_COOKIE: &str = "__Host-sealrun-login";

/// The value of cookie `name` in `headers`, if sent.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for `name` with every flag the console's cookies
/// carry; `max_age_secs` 0 deletes it.
pub(crate) fn set_cookie(name: &str, value: &str, max_age_secs: u64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}")
}

/// The CSRF token of the session whose token is `session`.
fn csrf_of(session: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sealrun console csrf v1\n");
    h.update(session.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `presented` equals `expected`, in constant time.
pub(crate) fn same_token(presented: &str, expected: &str) -> bool {
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// Refuses a request the browser says came from another site (a forged
/// form or fetch). Browsers that send no `Sec-Fetch-Site` are judged by the
/// CSRF token alone.
pub(crate) fn same_site(headers: &HeaderMap) -> Result<(), PageError> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin" | "none") => Ok(()),
        Some(other) => Err(PageError::forbidden(format!(
            "refused a {other} request: console forms are accepted only from the console's own pages"
        ))),
    }
}

/// A signed-in person: the user their session acts as, and the CSRF token
/// their forms must carry.
pub(crate) struct Viewer {
    pub(crate) user: User,
    csrf: Zeroizing<String>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("user", &self.user.user)
            .field("role", &self.user.role)
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// The CSRF token to put in this viewer's forms.
    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A form posted by a signed-in person: who, and its fields. The one place
/// forms are accepted: refused (`403`) when the browser marks the request
/// cross-site or the form's `csrf` field is missing or not the session's,
/// before any of it is acted on.
pub(crate) struct Posted<T> {
    pub(crate) viewer: Viewer,
    pub(crate) form: T,
}

/// A form with no fields but its CSRF token.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoFields {}

/// What a console form sends: its CSRF token and its own fields.
#[derive(Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        same_site(&parts.headers)?;
        let refused = || {
            PageError::forbidden(
                "the form's CSRF token is missing or not this session's: reload the page and try again",
            )
        };
        let Form(posted) =
            Form::<WithCsrf<T>>::from_request(Request::from_parts(parts, body), state)
                .await
                // Unreadable is refused as unchecked: nothing of it is used.
                .map_err(|_| refused())?;
        if posted.csrf.is_empty() || !same_token(&posted.csrf, &viewer.csrf) {
            return Err(refused());
        }
        Ok(Posted {
            viewer,
            form: posted.form,
        })
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        // A page comes back here after sign-in; other requests just fail.
        let sign_in = || PageError::SignIn {
            next: (parts.method == Method::GET && !parts.uri.path().ends_with("/events")).then(
                || {
                    parts
                        .uri
                        .path_and_query()
                        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned())
                },
            ),
        };
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(sign_in());
        };
        let attempt = Attempt {
            method: parts.method.as_str(),
            path: parts.uri.path(),
        };
        match state.control.authenticate_session(value, attempt).await {
            Ok(user) => Ok(Viewer {
                user,
                csrf: Zeroizing::new(csrf_of(value)),
            }),
            Err(sealrun_control::Error::Unauthenticated(_)) => {
                state.metrics.auth_failed();
                Err(sign_in())
            }
            Err(e) => Err(e.into()),
        }
    }
}
