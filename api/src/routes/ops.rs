//! `GET /health` and `GET /metrics`: unauthenticated, and holding nothing
//! org-specific (no names, no ids; route templates only).

use crate::db::now_ms;
use crate::error::ApiError;
use crate::metrics::Gauges;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use sealrun_wire::run::RunStatus;
use serde_json::{Value, json};

/// Answers once the database answers.
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .db
        .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
        .await
        .map_err(|_| ApiError::unavailable("the database does not answer"))?;
    Ok(Json(json!({"status": "ok"})))
}

/// Prometheus text exposition.
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let window = i64::try_from(state.settings.connected_window().as_millis()).unwrap_or(i64::MAX);
    let gauges = state
        .db
        .read(move |conn| {
            let mut counts = std::collections::HashMap::new();
            let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM runs GROUP BY status")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                counts.insert(r.get::<_, String>(0)?, r.get::<_, u64>(1)?);
            }
            let runs_by_status = RunStatus::ALL
                .iter()
                .map(|s| (s.as_str(), counts.get(s.as_str()).copied().unwrap_or(0)))
                .collect();
            let connected_agents = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM agents WHERE online = 1 AND revoked_ms IS NULL AND last_seen_ms >= ?1",
                )?
                .query_row([now_ms().saturating_sub(window)], |r| r.get(0))?;
            Ok(Gauges {
                runs_by_status,
                connected_agents,
            })
        })
        .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges),
    ))
}
