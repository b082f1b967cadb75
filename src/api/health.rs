//! `GET /api/health`: is this instance able to serve, database included.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    status: &'static str,
    /// `ok`; `unavailable` (cannot connect); `unusable` (connected, but the
    /// schema is missing or the service's role may not read it).
    #[schema(example = "ok")]
    database: &'static str,
}

/// Health of this instance and its database: connects and reads the
/// schema as the service's own role. Needs no credentials; the first call
/// builds the connection pool.
#[utoipa::path(
    get, path = "/api/health", operation_id = "health", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database is unavailable or unusable", body = Health,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
    security(()),
)]
pub async fn check(State(state): State<AppState>) -> Response {
    let database = match state.db.check_schema().await {
        Ok(()) => {
            return Json(Health {
                status: "ok",
                database: "ok",
            })
            .into_response();
        }
        Err(DbError::SchemaUnusable(cause)) => {
            tracing::error!(%cause, "health check: the database schema is not usable");
            "unusable"
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            "unavailable"
        }
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "2")],
        Json(Health {
            status: "degraded",
            database,
        }),
    )
        .into_response()
}
