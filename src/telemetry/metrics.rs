//! Metrics, exported over OTLP/HTTP protobuf by a periodic reader
//! (`OTEL_METRIC_EXPORT_INTERVAL`) when telemetry is on and a metrics
//! endpoint is set. Names follow the OpenTelemetry semantic conventions
//! where one exists (`http.server.*`, `db.client.connection.*`,
//! `otel.sdk.*`); the service's own are under `amplifier.`.
//!
//! What each costs a request:
//! - the request histogram and the pool's wait time: one check of a
//!   `OnceLock` when metrics are off; when on, a histogram record whose
//!   attributes are a route template (a bounded set), a method from a
//!   fixed list and a status code;
//! - the pool's size, the open streams and the callers tracked: nothing;
//!   they are read when the reader collects (observable instruments);
//! - refusals, pool timeouts and failed exports: an atomic add on paths
//!   that are rare by nature. These counts are kept with metrics off too:
//!   `/api/health` shows them to the admin.
//!
//! Spans the batch processor drops (its queue full) are counted by the
//! SDK itself, `otel.sdk.processor.span.processed` with `error.type =
//! queue_full` (its self-diagnostics, which record through the global
//! meter provider: set before the tracer provider is built).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde::Serialize;
use tokio::runtime::Handle;
use utoipa::ToSchema;

use super::app_insights::IngestionClient;
use super::otel::{OnRuntime, PipelineError};
use crate::db::Database;
use crate::events::Events;
use crate::limits::rate::RateLimiter;
use crate::settings::TelemetrySettings;

/// The instruments recorded on the way of a request: built once.
struct Instruments {
    meter: Meter,
    request_duration: Histogram<f64>,
    connection_wait_time: Histogram<f64>,
}

/// Set when the metrics pipeline is built; unset, nothing is recorded.
static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();

/// The semantic conventions' advice for `http.server.request.duration`.
const REQUEST_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// A connection is normally handed over in microseconds; a wait worth
/// seeing is in milliseconds up to the pool timeout (seconds).
const WAIT_BOUNDARIES: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The meter provider and its periodic reader; `shutdown` exports what
/// was collected last.
pub struct Pipeline {
    provider: SdkMeterProvider,
}

impl Pipeline {
    /// Builds the reader and exporter, makes the provider the global one
    /// (for the SDK's own counts), and the instruments.
    pub fn new(
        settings: &TelemetrySettings,
        otlp_endpoint: Option<&str>,
        app_insights: Option<opentelemetry_application_insights::Exporter<IngestionClient>>,
        resource: Resource,
        runtime: Handle,
    ) -> Result<Self, PipelineError> {
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        if let Some(endpoint) = otlp_endpoint {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .with_timeout(settings.export_timeout)
                .with_http_client(OnRuntime::new(settings.export_timeout, runtime)?)
                .with_temporality(Temporality::Cumulative)
                .build()
                .map_err(PipelineError::Exporter)?;
            builder = builder.with_reader(
                PeriodicReader::builder(CountFailures(exporter))
                    .with_interval(settings.metric_export_interval)
                    .build(),
            );
        }
        // Application Insights takes deltas (the exporter says so): each
        // reader keeps its own temporality.
        if let Some(exporter) = app_insights {
            builder = builder.with_reader(
                PeriodicReader::builder(CountFailures(exporter))
                    .with_interval(settings.metric_export_interval)
                    .build(),
            );
        }
        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        let meter = provider.meter(env!("CARGO_PKG_NAME"));
        let instruments = Instruments {
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests, until the last byte")
                .with_boundaries(REQUEST_BOUNDARIES.to_vec())
                .build(),
            connection_wait_time: meter
                .f64_histogram("db.client.connection.wait_time")
                .with_unit("s")
                .with_description("The time it took to obtain a connection from the pool")
                .with_boundaries(WAIT_BOUNDARIES.to_vec())
                .build(),
            meter,
        };
        counts_instruments(&instruments.meter);
        let _ = INSTRUMENTS.set(instruments);
        Ok(Self { provider })
    }

    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "telemetry: the last metrics were not exported at shutdown");
        }
    }
}

/// Whether metrics are exported.
pub fn enabled() -> bool {
    INSTRUMENTS.get().is_some()
}

/// One request, when its response has ended: `route` is the template
/// (`None` when no route matched), `method` any token (a method outside
/// the standard ones is `_OTHER`, as the conventions say, so a caller
/// cannot add series).
pub(super) fn request(route: Option<String>, method: &str, status: u16, duration: Duration) {
    let Some(instruments) = INSTRUMENTS.get() else {
        return;
    };
    let method = KeyValue::new("http.request.method", known_method(method));
    let status = KeyValue::new("http.response.status_code", i64::from(status));
    let seconds = duration.as_secs_f64();
    match route {
        Some(route) => instruments.request_duration.record(
            seconds,
            &[KeyValue::new("http.route", route), method, status],
        ),
        None => instruments
            .request_duration
            .record(seconds, &[method, status]),
    }
}

fn known_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "_OTHER",
    }
}

/// Times one wait for a pooled connection: recorded when dropped, so a
/// wait cut short (a timeout, the client gone) counts too.
pub struct ConnectionWait(Option<Instant>);

/// Starts timing a wait for a connection (nothing when metrics are off).
pub fn connection_wait() -> ConnectionWait {
    ConnectionWait(enabled().then(Instant::now))
}

impl Drop for ConnectionWait {
    fn drop(&mut self) {
        if let (Some(started), Some(instruments)) = (self.0, INSTRUMENTS.get()) {
            instruments
                .connection_wait_time
                .record(started.elapsed().as_secs_f64(), &[pool_name()]);
        }
    }
}

/// `db.client.connection.pool.name`: the service has one pool.
fn pool_name() -> KeyValue {
    KeyValue::new("db.client.connection.pool.name", "default")
}

/// Registers what is read from the state when the reader collects: the
/// pool's connections, the open event streams, the callers the rate
/// limiter tracks. Held weakly: a state gone reports nothing. Does nothing
/// when metrics are off.
pub fn observe(db: &Arc<Database>, events: &Arc<Events>, rate: &Arc<RateLimiter>) {
    let Some(instruments) = INSTRUMENTS.get() else {
        return;
    };
    let meter = &instruments.meter;
    let pool = Arc::downgrade(db);
    let status = move || Weak::upgrade(&pool).and_then(|db| db.pool_status());
    let read = status.clone();
    meter
        .i64_observable_up_down_counter("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("Connections open in the pool, by state (idle or used)")
        .with_callback(move |observer| {
            if let Some(s) = read() {
                let used = s.size.saturating_sub(s.available);
                observer.observe(s.available as i64, &[pool_name(), state("idle")]);
                observer.observe(used as i64, &[pool_name(), state("used")]);
            }
        })
        .build();
    let read = status.clone();
    meter
        .i64_observable_up_down_counter("db.client.connection.max")
        .with_unit("{connection}")
        .with_description("The most connections the pool may open")
        .with_callback(move |observer| {
            if let Some(s) = read() {
                observer.observe(s.max_size as i64, &[pool_name()]);
            }
        })
        .build();
    meter
        .i64_observable_up_down_counter("db.client.connection.pending_requests")
        .with_unit("{request}")
        .with_description("Requests waiting for a connection from the pool")
        .with_callback(move |observer| {
            if let Some(s) = status() {
                observer.observe(s.waiting as i64, &[pool_name()]);
            }
        })
        .build();
    let streams = Arc::downgrade(events);
    meter
        .i64_observable_up_down_counter("amplifier.event_streams.open")
        .with_unit("{stream}")
        .with_description("Event streams and waiting long-polls open on this instance")
        .with_callback(move |observer| {
            if let Some(events) = streams.upgrade() {
                observer.observe(events.open_streams() as i64, &[]);
            }
        })
        .build();
    let limiter = Arc::downgrade(rate);
    meter
        .i64_observable_up_down_counter("amplifier.rate_limit.callers")
        .with_unit("{caller}")
        .with_description("Applications and users whose requests this instance counts")
        .with_callback(move |observer| {
            if let Some(rate) = limiter.upgrade() {
                observer.observe(rate.callers() as i64, &[]);
            }
        })
        .build();
}

fn state(value: &'static str) -> KeyValue {
    KeyValue::new("db.client.connection.state", value)
}

/// The rate limit a request was refused by (429).
#[derive(Debug, Clone, Copy)]
pub enum RateLimitPolicy {
    App,
    User,
    Writes,
    /// Too many refused credentials from one source address.
    Source,
}

impl RateLimitPolicy {
    const ALL: [Self; 4] = [Self::App, Self::User, Self::Writes, Self::Source];

    /// `app`, `user` and `writes` as in the `RateLimit-Policy` header.
    pub fn from_policy(policy: &str) -> Option<Self> {
        match policy {
            "app" => Some(Self::App),
            "user" => Some(Self::User),
            "writes" => Some(Self::Writes),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::User => "user",
            Self::Writes => "writes",
            Self::Source => "source",
        }
    }
}

/// Why a request got no connection for its application's pool share.
#[derive(Debug, Clone, Copy)]
pub enum PoolShareRefusal {
    /// Its share and waiting places were taken: refused at once.
    Full,
    /// It waited the pool timeout for its share.
    TimedOut,
}

/// Why an event stream (or long-poll) was refused.
#[derive(Debug, Clone, Copy)]
pub enum StreamRefusal {
    /// `EVENTS_MAX_STREAMS` (503).
    Instance,
    /// The application's share (429).
    Application,
    /// The user's `EVENTS_MAX_STREAMS_PER_USER` (429).
    User,
}

/// What telemetry sends.
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    Traces,
    Metrics,
}

/// Counts since the process started.
struct Counts {
    rate_limited: [AtomicU64; 4],
    pool_share_refused: [AtomicU64; 2],
    streams_refused: [AtomicU64; 3],
    pool_timeouts: AtomicU64,
    export_failures: [AtomicU64; 2],
}

static COUNTS: Counts = Counts {
    rate_limited: [const { AtomicU64::new(0) }; 4],
    pool_share_refused: [const { AtomicU64::new(0) }; 2],
    streams_refused: [const { AtomicU64::new(0) }; 3],
    pool_timeouts: AtomicU64::new(0),
    export_failures: [const { AtomicU64::new(0) }; 2],
};

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub fn rate_limited(policy: RateLimitPolicy) {
    add(&COUNTS.rate_limited[policy as usize]);
}

pub fn pool_share_refused(reason: PoolShareRefusal) {
    add(&COUNTS.pool_share_refused[reason as usize]);
}

pub fn stream_refused(reason: StreamRefusal) {
    add(&COUNTS.streams_refused[reason as usize]);
}

/// A request waited the whole pool timeout for a connection.
pub fn pool_timeout() {
    add(&COUNTS.pool_timeouts);
}

fn export_failed(signal: Signal) {
    add(&COUNTS.export_failures[signal as usize]);
}

/// The counts as exported instruments, read when the reader collects.
fn counts_instruments(meter: &Meter) {
    meter
        .u64_observable_counter("db.client.connection.timeouts")
        .with_unit("{timeout}")
        .with_description("Requests that got no connection within the pool timeout")
        .with_callback(|observer| observer.observe(read(&COUNTS.pool_timeouts), &[pool_name()]))
        .build();
    meter
        .u64_observable_counter("amplifier.rate_limit.refused")
        .with_unit("{request}")
        .with_description("Requests refused with 429 by a rate limit")
        .with_callback(|observer| {
            for policy in RateLimitPolicy::ALL {
                observer.observe(
                    read(&COUNTS.rate_limited[policy as usize]),
                    &[KeyValue::new("amplifier.rate_limit.policy", policy.name())],
                );
            }
        })
        .build();
    meter
        .u64_observable_counter("amplifier.pool_share.refused")
        .with_unit("{request}")
        .with_description("Requests refused (429) for their application's share of the pool")
        .with_callback(|observer| {
            for (i, reason) in ["full", "timed_out"].into_iter().enumerate() {
                observer.observe(
                    read(&COUNTS.pool_share_refused[i]),
                    &[KeyValue::new("amplifier.refusal.reason", reason)],
                );
            }
        })
        .build();
    meter
        .u64_observable_counter("amplifier.event_streams.refused")
        .with_unit("{stream}")
        .with_description("Event streams and long-polls refused for want of a place")
        .with_callback(|observer| {
            for (i, reason) in ["instance", "application", "user"].into_iter().enumerate() {
                observer.observe(
                    read(&COUNTS.streams_refused[i]),
                    &[KeyValue::new("amplifier.refusal.reason", reason)],
                );
            }
        })
        .build();
    meter
        .u64_observable_counter("amplifier.telemetry.export_failures")
        .with_unit("{export}")
        .with_description("Exports of telemetry that failed (what they held is lost)")
        .with_callback(|observer| {
            for (i, signal) in ["traces", "metrics"].into_iter().enumerate() {
                observer.observe(
                    read(&COUNTS.export_failures[i]),
                    &[KeyValue::new("amplifier.telemetry.signal", signal)],
                );
            }
        })
        .build();
}

/// The counts, for `/api/health`'s detail.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountsSnapshot {
    /// Requests that got no connection within the pool timeout.
    pub pool_timeouts: u64,
    /// Requests refused by a rate limit, by policy.
    pub rate_limited: RateLimited,
    /// Requests refused for their application's share of the pool.
    pub pool_share_refused: PoolShareRefused,
    /// Event streams and long-polls refused, by the limit reached.
    pub event_streams_refused: StreamsRefused,
    /// Telemetry exports that failed.
    pub export_failures: ExportFailures,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimited {
    pub app: u64,
    pub user: u64,
    pub writes: u64,
    /// Sources refused for too many refused credentials.
    pub source: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PoolShareRefused {
    pub full: u64,
    pub timed_out: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamsRefused {
    pub instance: u64,
    pub application: u64,
    pub user: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportFailures {
    pub traces: u64,
    pub metrics: u64,
}

pub fn counts() -> CountsSnapshot {
    let c = &COUNTS;
    CountsSnapshot {
        pool_timeouts: read(&c.pool_timeouts),
        rate_limited: RateLimited {
            app: read(&c.rate_limited[RateLimitPolicy::App as usize]),
            user: read(&c.rate_limited[RateLimitPolicy::User as usize]),
            writes: read(&c.rate_limited[RateLimitPolicy::Writes as usize]),
            source: read(&c.rate_limited[RateLimitPolicy::Source as usize]),
        },
        pool_share_refused: PoolShareRefused {
            full: read(&c.pool_share_refused[PoolShareRefusal::Full as usize]),
            timed_out: read(&c.pool_share_refused[PoolShareRefusal::TimedOut as usize]),
        },
        event_streams_refused: StreamsRefused {
            instance: read(&c.streams_refused[StreamRefusal::Instance as usize]),
            application: read(&c.streams_refused[StreamRefusal::Application as usize]),
            user: read(&c.streams_refused[StreamRefusal::User as usize]),
        },
        export_failures: ExportFailures {
            traces: read(&c.export_failures[Signal::Traces as usize]),
            metrics: read(&c.export_failures[Signal::Metrics as usize]),
        },
    }
}

/// An exporter whose failed exports are counted.
#[derive(Debug)]
pub(super) struct CountFailures<E>(pub(super) E);

impl<E: PushMetricExporter> PushMetricExporter for CountFailures<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.0.export(metrics).await;
        if result.is_err() {
            export_failed(Signal::Metrics);
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.0.temporality()
    }
}

impl<E: SpanExporter> SpanExporter for CountFailures<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.0.export(batch).await;
        if result.is_err() {
            export_failed(Signal::Traces);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}
