//! Logging to stdout, which the Functions host forwards to Application Insights.

use tracing_subscriber::EnvFilter;

/// `RUST_LOG` wins when set; otherwise `LOG_LEVEL`. tokio-postgres logs
/// statement parameters at debug level, so it stays at info unless asked.
pub fn init(log_level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(log_level))
        .with_ansi(false)
        .try_init();
}

/// What gets logged for `LOG_LEVEL=log_level`.
pub fn filter(log_level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{log_level},tokio_postgres=info")))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}
