//! The web console: server-rendered pages under `/ui/` for auditors,
//! approvers and operators, an adapter over the domain like the API and
//! Slack (every page calls the same [`Control`](sealrun_control::Control)
//! methods with the signed-in user, so the one permission table decides
//! what each role sees and does).
//!
//! - Sessions: a token exchanged for an `HttpOnly` session cookie
//!   (`login`, `session`); CSRF token on every form; cross-site requests
//!   refused.
//! - Pages: runs (list, detail with the live redacted log over server-sent
//!   events, download, cancel), approvals (inbox, exact spec, reject;
//!   approving stays on the CLI, where it is signed: see `approvals`), the
//!   audit trail (verification, entries, JSONL export), targets with their
//!   secrets' names, runbooks, agents.
//! - Every answer carries a strict Content-Security-Policy (no inline script
//!   or style, nothing from another origin) and the headers below; assets
//!   are embedded in the binary (no CDN, no build step).
//!
//! Module order (no cycles): `document` ← `error` ← `session` ← `page` ←
//! the pages.

mod approvals;
mod audit;
mod document;
mod error;
mod inventory;
mod login;
mod page;
mod passkeys;
mod runs;
mod session;

use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

/// The Content-Security-Policy of every console answer: scripts, styles and
/// fetches from this origin only, no inline script or style, no framing, no
/// plugins, forms posted only here.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console's routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/login", get(login::form).post(login::sign_in))
        .route("/ui/logout", post(login::sign_out))
        .route("/ui/runs", get(runs::list))
        .route("/ui/runs/{id}", get(runs::detail))
        .route("/ui/runs/{id}/events", get(runs::events))
        .route("/ui/runs/{id}/log", get(runs::download))
        .route("/ui/runs/{id}/cancel", post(runs::cancel))
        .route("/ui/approvals", get(approvals::inbox))
        .route("/ui/approvals/{id}", get(approvals::detail))
        .route("/ui/approvals/{id}/approve", post(approvals::approve))
        .route("/ui/approvals/{id}/reject", post(approvals::reject))
        .route("/ui/passkeys", get(passkeys::list).post(passkeys::register))
        .route("/ui/audit", get(audit::trail))
        .route("/ui/audit/export", get(audit::export))
        .route("/ui/targets", get(inventory::targets))
        .route("/ui/targets/{name}", get(inventory::target))
        .route("/ui/runbooks", get(inventory::runbooks))
        .route("/ui/agents", get(inventory::agents))
        .route("/ui/assets/{name}", get(asset))
        // Any other /ui/ path: the console's own 404, with its headers.
        .route("/ui/{*rest}", axum::routing::any(no_such_page))
        .layer(middleware::from_fn(secure))
}

async fn home() -> Redirect {
    Redirect::to("/ui/runs")
}

async fn no_such_page() -> error::PageError {
    error::PageError::Failed(crate::error::ApiError::not_found(
        "there is no such page in the console",
    ))
}

/// The console's embedded assets: (name, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
];

/// `GET /ui/assets/{name}`.
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// Sets the console's security headers on every answer (and no caching of
/// pages: they show what a session may see), and `Server-Timing` with the
/// time the server spent.
async fn secure(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let is_asset = req.uri().path().starts_with("/ui/assets/");
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &str); 7] = [
        // HTTPS only, as the console is: no downgrade to plain HTTP.
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !is_asset && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        headers.insert(HeaderName::from_static("server-timing"), v);
    }
    response
}
