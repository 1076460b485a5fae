//! A console request that failed, as a page: the status and a one-line
//! message, or, for a missing or ended session, the way back to sign-in.

use super::document::head;
use crate::error::ApiError;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, html};

/// Why a console page could not be shown.
#[derive(Debug)]
pub(crate) enum PageError {
    /// No valid session: a page (GET) redirects to sign-in, coming back to
    /// `next`; anything else answers `401`.
    SignIn {
        /// The page asked for, if it was one.
        next: Option<String>,
    },
    /// Anything else: the API's status and message (never secret material).
    Failed(ApiError),
}

impl PageError {
    pub(crate) fn forbidden(message: impl Into<String>) -> PageError {
        PageError::Failed(ApiError::new(StatusCode::FORBIDDEN, message))
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> PageError {
        PageError::Failed(ApiError::bad_request(message))
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::Failed(e)
    }
}

impl From<sealrun_control::Error> for PageError {
    fn from(e: sealrun_control::Error) -> PageError {
        PageError::Failed(ApiError::from(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next: Some(next) } => {
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &next)
                    .finish();
                Redirect::to(&format!("/ui/login?{query}")).into_response()
            }
            PageError::SignIn { next: None } => page(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your session has ended or is not valid. Sign in again.",
            ),
            PageError::Failed(e) => page(
                e.status,
                e.status.canonical_reason().unwrap_or("Error"),
                &e.message,
            ),
        }
    }
}

/// A bare error page (no navigation: the session may be gone).
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body {
                main class="narrow" {
                    h1 { (status.as_u16()) " " (title) }
                    p class="error" role="alert" { (message) }
                    p { a href="/ui/runs" { "Back to the console" } " · " a href="/ui/login" { "Sign in" } }
                }
            }
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body.into_string(),
    )
        .into_response()
}
