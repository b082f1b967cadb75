//! `GET /api/health`: is this instance able to serve, database included.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    status: &'static str,
    /// `ok` or `unavailable`.
    database: &'static str,
}

/// Health of this instance and its database. Needs no credentials; the
/// first call builds the connection pool.
#[utoipa::path(
    get, path = "/api/health", operation_id = "health", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database is unavailable", body = Health,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
    security(()),
)]
pub async fn check(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => Json(Health {
            status: "ok",
            database: "ok",
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "2")],
                Json(Health {
                    status: "degraded",
                    database: "unavailable",
                }),
            )
                .into_response()
        }
    }
}
