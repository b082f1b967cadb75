//! Logs, traces and metrics.
//!
//! Logs go to stdout, which the Functions host forwards to Application
//! Insights: one line per request (`request`), plus what the service has
//! to say. Traces (`otel`) are OpenTelemetry spans made with `tracing`:
//! one server span per request continuing the caller's W3C trace, a
//! client span per SQL statement, per pool checkout, and per fetch from
//! Key Vault, Entra ID and the identity provider. The request's log line
//! carries its trace and span ids, so the two join.
//!
//! Metrics (`metrics`) count requests, the pool, refusals, open streams
//! and telemetry's own losses, exported periodically.
//!
//! Off (the default without an exporter), no span is made: the request
//! middleware checks one flag, and the spans the code declares are never
//! created because no layer wants them (the log layer takes events only).
//! Nor is any metric recorded.

mod app_insights;
pub mod metrics;
mod otel;
mod request;

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::runtime::Handle;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub(crate) use request::invocation_id;
pub use request::{bounded, log_request};

use crate::settings::{LogFormat, Settings};

/// Spans of this crate are the only ones exported: a dependency's spans
/// (or the exporter's own HTTP requests) never become telemetry.
const SPAN_TARGET: &str = env!("CARGO_CRATE_NAME");

/// Whether requests get spans: set once by [`init`].
static ENABLED: AtomicBool = AtomicBool::new(false);

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What [`init`] set up; [`Telemetry::shutdown`] flushes the spans still
/// queued. Call it on the runtime's way out, while the runtime still runs
/// (the exporter's requests are tasks on it).
pub struct Telemetry {
    pipeline: Option<otel::Pipeline>,
    metrics: Option<metrics::Pipeline>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(pipeline) = self.pipeline {
            pipeline.shutdown();
        }
        // Last: its final export counts the spans the traces' last flush
        // sent.
        if let Some(metrics) = self.metrics {
            metrics.shutdown();
        }
    }
}

/// Installs logging and, when `TELEMETRY_ENABLED`, the trace pipeline
/// (its exports run on `runtime`). `RUST_LOG` wins over `LOG_LEVEL`.
/// tokio-postgres logs statement parameters at debug level, so it stays
/// at info unless asked.
pub fn init(settings: &Settings, runtime: Handle) -> Telemetry {
    let log_filter = || filter(&settings.log_level).and(filter_fn(|m| m.is_event()));
    let logs = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(log_filter())
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_filter(log_filter())
            .boxed(),
    };
    let telemetry = &settings.telemetry;
    let (ai_traces, ai_metrics, app_insights) = match telemetry
        .app_insights_connection_string
        .as_ref()
        .filter(|_| telemetry.enabled)
        .map(|cs| app_insights::exporter(settings, cs, runtime.clone()))
    {
        None => (None, None, app_insights::State::Off),
        Some(Ok(built)) => (
            Some(built.traces),
            Some(built.metrics),
            app_insights::State::On { entra: built.entra },
        ),
        Some(Err(e)) => (None, None, app_insights::State::Failed(e)),
    };
    // Before the trace pipeline: its batch processor counts what it drops
    // through the global meter provider this sets.
    let otlp_metrics = telemetry.otlp_metrics_endpoint.as_deref();
    let (metrics, metrics_failed) =
        match (telemetry.enabled && (otlp_metrics.is_some() || ai_metrics.is_some())).then(|| {
            metrics::Pipeline::new(
                telemetry,
                otlp_metrics,
                ai_metrics,
                otel::resource(telemetry),
                runtime.clone(),
            )
        }) {
            Some(Ok(metrics)) => (Some(metrics), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
    let (pipeline, failed) = match telemetry
        .enabled
        .then(|| otel::Pipeline::new(telemetry, ai_traces, runtime))
    {
        Some(Ok(pipeline)) => (Some(pipeline), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let spans = pipeline.as_ref().map(|pipeline| {
        tracing_opentelemetry::layer()
            .with_tracer(pipeline.tracer())
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(|m| {
                m.is_span() && m.target().starts_with(SPAN_TARGET)
            }))
    });
    let installed = Registry::default()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    ENABLED.store(installed && pipeline.is_some(), Ordering::Relaxed);
    if let Some(e) = failed {
        tracing::error!(
            error = &e as &dyn std::error::Error,
            "telemetry is off: {e}"
        );
    }
    if let Some(e) = metrics_failed {
        tracing::error!(error = &e as &dyn std::error::Error, "metrics are off: {e}");
    }
    if enabled() {
        let app_insights = match &app_insights {
            app_insights::State::Off => "off",
            app_insights::State::On { entra: true } => "on (Entra ID token)",
            app_insights::State::On { entra: false } => "on (instrumentation key only)",
            app_insights::State::Failed(e) => {
                // Names what is wrong; never the connection string.
                tracing::error!(
                    error = e as &dyn std::error::Error,
                    "Application Insights is off: {e}"
                );
                "off (see the error above)"
            }
        };
        tracing::info!(
            otlp = telemetry.otlp_traces_endpoint.is_some(),
            app_insights,
            metrics = metrics.is_some(),
            sampling_ratio = telemetry.sampling_ratio,
            "telemetry on"
        );
    }
    Telemetry { pipeline, metrics }
}

/// What gets logged for `LOG_LEVEL=log_level`.
pub fn filter(log_level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{log_level},tokio_postgres=info")))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Names the calling application on the request's server span, once a
/// statement has checked its key (the key itself is never recorded).
pub(crate) fn record_app_id(app_id: &str) {
    request::record_app_id(app_id);
}

/// The rows a statement returned or changed, on its span.
pub(crate) fn record_rows(rows: u64) {
    if enabled() {
        tracing::Span::current().record("db.response.returned_rows", rows);
    }
}
