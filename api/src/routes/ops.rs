//! `GET /health` and `GET /metrics`, which hold nothing org-specific (no
//! names, no ids; route templates only). `/health` answers anyone;
//! `/metrics` counts every org's activity together, so on the API address
//! it answers only the metrics token, and without a token configured only
//! the separate metrics address serves it ([`metrics_router`]).

use crate::auth::bearer;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// `200` once the control plane can read and write; `503` (with
/// `Retry-After`) while it cannot, saying why.
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.readiness.check(&state.control).await?;
    Ok(Json(json!({"status": "ok"})))
}

/// Prometheus text on the API address: for the metrics token only.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let Some(token) = &state.metrics_token else {
        return Err(ApiError::not_found(
            "metrics are not served on this address: start the server with --metrics-listen ADDR, or --metrics-token-file FILE to serve them here to that token",
        ));
    };
    if !bearer(&parts).is_some_and(|t| token.matches(t)) {
        state.metrics.auth_failed();
        return Err(ApiError::unauthorized(
            "/metrics needs the metrics token (Authorization: Bearer <token>)",
        ));
    }
    exposition(&state).await
}

/// The metrics address's routes: `/metrics` (no token: the address itself
/// is the access control) and `/health`.
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(open_metrics))
        .route("/health", get(health))
        .fallback(|| async { ApiError::not_found("only /metrics and /health are served here") })
        .with_state(state)
}

async fn open_metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    exposition(&state).await
}

/// Prometheus text exposition: gauges kept by the store as things change
/// (no table scans) and this process's counters.
async fn exposition(state: &AppState) -> Result<Response, ApiError> {
    let gauges = state.control.gauges().await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges, &state.listeners),
    )
        .into_response())
}
