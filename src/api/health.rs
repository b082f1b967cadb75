//! `GET /api/health`: is this instance able to serve, database included;
//! for the admin, also what it holds and what it refused.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth;
use crate::db::DbError;
use crate::state::AppState;
use crate::telemetry::{self, metrics};

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    status: &'static str,
    /// `ok`; `unavailable` (cannot connect); `unusable` (connected, but the
    /// schema is missing or the service's role may not read it).
    #[schema(example = "ok")]
    database: &'static str,
    /// Only with the admin key in `X-API-Key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<HealthDetail>,
}

/// What this instance holds and has refused since it started.
#[derive(Serialize, ToSchema)]
pub struct HealthDetail {
    /// The connection pool; `null` before its first use.
    pool: Option<PoolStatus>,
    /// Event streams and waiting long-polls open now.
    event_streams_open: usize,
    /// Callers whose requests the rate limiter counts now.
    rate_limit_callers: usize,
    /// Refusals, timeouts and failed exports since start.
    counts: metrics::CountsSnapshot,
    telemetry: TelemetryState,
}

#[derive(Serialize, ToSchema)]
pub struct PoolStatus {
    /// `DATABASE_POOL_MAX_SIZE`.
    max_size: usize,
    /// Connections open.
    size: usize,
    /// Connections open and idle.
    available: usize,
    /// Requests waiting for a connection.
    waiting: usize,
}

#[derive(Serialize, ToSchema)]
pub struct TelemetryState {
    /// Whether requests get spans.
    traces: bool,
    /// Whether metrics are exported.
    metrics: bool,
}

/// Health of this instance and its database: connects and reads the
/// schema as the service's own role. Needs no credentials; the first call
/// builds the connection pool. With the admin key it adds `detail` (a
/// wrong key gets the same answer as none).
#[utoipa::path(
    get, path = "/api/health", operation_id = "health", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database is unavailable or unusable", body = Health,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ),
    security((), ("api_key" = [])),
)]
pub async fn check(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let checked = state.db.check_schema().await;
    let detail =
        if headers.contains_key(auth::API_KEY_HEADER) && auth::is_admin(&headers, &state).await {
            Some(detail(&state))
        } else {
            None
        };
    let database = match checked {
        Ok(()) => {
            return Json(Health {
                status: "ok",
                database: "ok",
                detail,
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
            detail,
        }),
    )
        .into_response()
}

fn detail(state: &AppState) -> HealthDetail {
    HealthDetail {
        pool: state.db.pool_status().map(|s| PoolStatus {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
            waiting: s.waiting,
        }),
        event_streams_open: state.events.open_streams(),
        rate_limit_callers: state.rate.callers(),
        counts: metrics::counts(),
        telemetry: TelemetryState {
            traces: telemetry::enabled(),
            metrics: metrics::enabled(),
        },
    }
}
