//! The HTTP API: one module per area, wired into one router here.
//! `docs/openapi.yaml` describes every route.

mod admin;
mod agent;
mod approvals;
mod audit;
mod ops;
mod people;
mod runbooks;
mod runs;
mod targets;

pub(crate) use ops::metrics_router;

use crate::error::{ApiError, Error};
use crate::state::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};

/// Builds the router for `state`.
pub(crate) fn router(state: AppState, slack: crate::slack::SlackState) -> Result<Router, Error> {
    let body_limit = state.settings().max_body_bytes;
    Ok(Router::new()
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/v1/whoami", get(admin::whoami))
        .route(
            "/v1/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(admin::revoke_token),
        )
        .route(
            "/v1/users",
            post(people::create_user).get(people::list_users),
        )
        .route("/v1/users/{name}/disable", post(people::disable_user))
        .route("/v1/users/{name}/certificate", put(people::certify_user))
        .route("/v1/users/{name}/passkeys", get(people::user_passkeys))
        .route(
            "/v1/groups",
            post(people::create_group).get(people::list_groups),
        )
        .route(
            "/v1/groups/{name}",
            get(people::get_group).delete(people::delete_group),
        )
        .route("/v1/groups/{name}/add", post(people::add_members))
        .route("/v1/groups/{name}/remove", post(people::remove_members))
        .route("/v1/pools", post(admin::create_pool).get(admin::list_pools))
        .route(
            "/v1/pools/{pool}/enrollment-tokens",
            post(admin::create_enrollment_token).get(admin::list_enrollment_tokens),
        )
        .route("/v1/agents", get(admin::list_agents))
        .route(
            "/v1/agents/{id}",
            axum::routing::delete(admin::revoke_agent),
        )
        .route("/v1/targets", get(targets::list).put(targets::put_all))
        .route(
            "/v1/targets/{name}",
            put(targets::put)
                .get(targets::get_one)
                .delete(targets::delete),
        )
        .route("/v1/targets/{name}/rekey", post(targets::rekey))
        .route("/v1/targets/{name}/certificate", put(targets::certify))
        .route("/v1/targets/{name}/public-key", get(targets::public_key))
        .route("/v1/targets/{name}/secrets", get(targets::list_secrets))
        .route(
            "/v1/targets/{name}/secrets/{secret}",
            put(targets::put_secret).delete(targets::delete_secret),
        )
        .route("/v1/runbooks", get(runbooks::list).put(runbooks::apply))
        .route("/v1/runbooks/{name}", get(runbooks::get_one))
        .route("/v1/runbooks/{name}/certificate", put(runbooks::certify))
        .route("/v1/runs", post(runs::submit).get(runs::list))
        .route("/v1/runs/{id}", get(runs::get_one))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/logs", get(runs::logs))
        .route("/v1/runs/{id}/stdin", put(runs::stdin))
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{run_id}", get(approvals::get_one))
        .route("/v1/approvals/{run_id}/approve", post(approvals::approve))
        .route("/v1/approvals/{run_id}/reject", post(approvals::reject))
        .route("/v1/audit", get(audit::page))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/agent/register", post(agent::register))
        .route("/v1/agent/challenge", post(agent::challenge))
        .route("/v1/agent/connect", post(agent::connect))
        .route("/v1/agent/audit", post(agent::audit))
        .route("/v1/agent/poll", post(agent::poll))
        .route("/v1/agent/heartbeat", post(agent::heartbeat))
        .route("/v1/agent/runs/{id}/logs", post(agent::upload_logs))
        .route("/v1/agent/runs/{id}/finish", post(agent::finish))
        .route("/v1/agent/runs/{id}/stdin", get(agent::stdin))
        .route("/v1/agent/deregister", post(agent::deregister))
        .merge(crate::slack::router(slack))
        .merge(crate::console::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state))
}

/// Counts and logs every routed request by its route template.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    state
        .metrics
        .http_request(method.as_str(), route, status.as_u16());
    if status.is_server_error() {
        tracing::warn!(%method, route, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "request failed");
    } else {
        tracing::debug!(%method, route, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "request");
    }
    response
}

async fn not_found(State(state): State<AppState>, method: Method, uri: Uri) -> ApiError {
    state
        .metrics
        .http_request(method.as_str(), "unmatched", 404);
    ApiError::not_found(format!("no such endpoint: {method} {}", uri.path()))
}

async fn method_not_allowed(State(state): State<AppState>, method: Method, uri: Uri) -> ApiError {
    state
        .metrics
        .http_request(method.as_str(), "unmatched", 405);
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
