//! Logging to stdout, which the Functions host forwards to Application
//! Insights, and the one log line every request gets.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// The header the Functions host sets on each request it passes on.
const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";

/// `RUST_LOG` wins when set; otherwise `LOG_LEVEL`. tokio-postgres logs
/// statement parameters at debug level, so it stays at info unless asked.
pub fn init(log_level: &str, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(log_level))
        .with_ansi(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// What gets logged for `LOG_LEVEL=log_level`.
pub fn filter(log_level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{log_level},tokio_postgres=info")))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// One line per request: method, route template (never the path itself,
/// which holds ids and cursors), status, latency, and the Functions
/// invocation id when the host sent one, to join with the host's lines.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let invocation_id = request
        .headers()
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    tracing::info!(
        target: "request",
        method = %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        invocation_id,
        "request"
    );
    response
}
