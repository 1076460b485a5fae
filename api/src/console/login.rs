//! Signing in and out of the console.
//!
//! Sign-in exchanges a sealrun user token (typed or pasted once) for a
//! session ([`Control::open_session`](sealrun_control::Control::open_session)):
//! the browser keeps only the session's cookie. The sign-in form has its own
//! CSRF token (a random cookie echoed in the form), so another site cannot
//! sign a browser in to an account of its choosing. Sign-out revokes the
//! session server-side, so its cookie is worthless even if kept.

use super::document::head;
use super::error::PageError;
use super::page::html_response;
use super::session::{
    LOGIN_COOKIE, NoFields, Posted, SESSION_COOKIE, cookie, same_site, same_token, set_cookie,
};
use crate::state::AppState;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, html};
use rand::RngCore as _;
use sealrun_control::{Attempt, SESSION_TTL};
use serde::Deserialize;

/// How long a sign-in form stays usable.
const LOGIN_FORM_SECS: u64 = 600;

/// `?next=` of the sign-in page: where to go once signed in.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Next {
    #[serde(default)]
    next: Option<String>,
}

/// Where a sign-in may send the browser: a console page of this host only
/// (never `//elsewhere`, another scheme, or out of `/ui/` by dot segments,
/// plain or escaped), else the runs list.
fn next_page(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains('\\')
                && !n.contains("..")
                && !["%2e", "%2f", "%5c"]
                    .iter()
                    .any(|e| n.to_ascii_lowercase().contains(e))
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/ui/runs",
    }
}

/// `GET /ui/login`: the sign-in form.
pub(crate) async fn form(Query(q): Query<Next>) -> Response {
    login_page(StatusCode::OK, q.next.as_deref(), None)
}

fn login_page(status: StatusCode, next: Option<&str>, error: Option<&str>) -> Response {
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in", false))
            body {
                main id="main" class="narrow" {
                    h1 { "Sign in to sealrun" }
                    @if let Some(error) = error {
                        p class="error" role="alert" { (error) }
                    }
                    form method="post" action="/ui/login" class="stack" {
                        input type="hidden" name="csrf" value=(nonce);
                        input type="hidden" name="next" value=(next_page(next));
                        label for="token" { "Your sealrun token" }
                        input id="token" name="token" type="password" autocomplete="off" required
                            spellcheck="false" aria-describedby="token-help";
                        p id="token-help" class="meta" {
                            "A user token (" code { "srt_…" } "), as " code { "sealrun login" } " takes. "
                            "It is exchanged for a session of at most " (SESSION_TTL.as_secs() / 3600)
                            " hours; the browser never keeps the token itself."
                        }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    };
    let mut response = html_response(doc);
    *response.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&set_cookie(LOGIN_COOKIE, &nonce, LOGIN_FORM_SECS)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The sign-in form as posted (the token wiped when it is dropped).
#[derive(Deserialize, zeroize::ZeroizeOnDrop)]
pub(crate) struct SignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: a session for the token, or the form again with why not.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Result<Response, PageError> {
    same_site(&headers)?;
    let Form(form) = form.map_err(|e| PageError::bad_request(e.body_text()))?;
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || expected.is_empty() || !same_token(&form.csrf, expected) {
        return Err(PageError::forbidden(
            "the sign-in form's CSRF token is missing or stale: reload the sign-in page",
        ));
    }
    let attempt = Attempt {
        method: "POST",
        path: "/ui/login",
    };
    // Signing in again ends the session the browser had (one browser, one
    // session): a session is never left behind valid and forgotten.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(previous) = state.control.authenticate_session(old, attempt).await {
            state.control.close_session(&previous).await?;
        }
    }
    let session = match state.control.open_session(form.token.trim(), attempt).await {
        Ok(session) => session,
        Err(sealrun_control::Error::Unauthenticated(_) | sealrun_control::Error::Forbidden(_)) => {
            state.metrics.auth_failed();
            return Ok(login_page(
                StatusCode::UNAUTHORIZED,
                form.next.as_deref(),
                Some("That token is not valid (unknown, expired, revoked, or not a user token)."),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let secs = session.seconds_left();
    let mut response = Redirect::to(next_page(form.next.as_deref())).into_response();
    let cookies = [
        set_cookie(SESSION_COOKIE, &session.value, secs),
        set_cookie(LOGIN_COOKIE, "", 0),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

/// `POST /ui/logout`: revokes the session and forgets its cookie.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    Posted { viewer, .. }: Posted<NoFields>,
) -> Result<Response, PageError> {
    state.control.close_session(&viewer.user).await?;
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", 0)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn sign_in_returns_only_to_console_pages_of_this_host() {
        assert_eq!(next_page(Some("/ui/runs/abc?x=1")), "/ui/runs/abc?x=1");
        for bad in [
            "//evil.example/ui/",
            "https://evil.example/",
            "/v1/tokens",
            "/ui\\evil",
            "/ui/\r\nx",
            "/ui/../v1/tokens",
            "/ui/%2e%2e/v1/tokens",
            "/ui/%2E%2E%2Fv1",
        ] {
            assert_eq!(next_page(Some(bad)), "/ui/runs", "{bad}");
        }
        assert_eq!(next_page(None), "/ui/runs");
        assert_eq!(
            next_page(Some("/ui/runs?submitter=a%20b")),
            "/ui/runs?submitter=a%20b"
        );
    }
}
