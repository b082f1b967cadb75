//! `GET /api/health`: is this instance able to serve, database included.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// 200 when the database answers, 503 (with `Retry-After`) when it does not.
/// Needs no credentials, and is the first call to build the pool.
pub async fn check(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => Json(json!({"status": "ok", "database": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "2")],
                Json(json!({"status": "degraded", "database": "unavailable"})),
            )
                .into_response()
        }
    }
}
