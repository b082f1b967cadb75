//! Traces and metrics, against a real OTLP/HTTP receiver: the official
//! protobuf definitions (`opentelemetry-proto`) decoding what the binary
//! exports.
//! The binary runs as its own process (`Served`): the trace pipeline is
//! process-wide, as it is deployed.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{StatusCode as AxumStatus, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use opentelemetry_proto::tonic::metrics::v1::{Gauge, Sum};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;
use crate::process::Served;
use crate::sse::Sse;

/// An OTLP/HTTP receiver on port 0: every `ExportTraceServiceRequest`
/// posted to `/v1/traces` and `ExportMetricsServiceRequest` posted to
/// `/v1/metrics`, decoded.
pub(crate) struct Collector {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

impl Collector {
    pub(crate) async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let store_metrics = metrics.clone();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                post(move |body: Bytes| {
                    let store = store.clone();
                    async move {
                        let request = ExportTraceServiceRequest::decode(body)
                            .expect("an ExportTraceServiceRequest");
                        store.lock().unwrap().push(request);
                        (
                            AxumStatus::OK,
                            [(header::CONTENT_TYPE, "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                }),
            )
            .route(
                "/v1/metrics",
                post(move |body: Bytes| {
                    let store = store_metrics.clone();
                    async move {
                        let request = ExportMetricsServiceRequest::decode(body)
                            .expect("an ExportMetricsServiceRequest");
                        store.lock().unwrap().push(request);
                        (
                            AxumStatus::OK,
                            [(header::CONTENT_TYPE, "application/x-protobuf")],
                            ExportMetricsServiceResponse::default().encode_to_vec(),
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            received,
            metrics,
        }
    }

    /// The points of metric `name` in the latest export that has it
    /// (cumulative: each export holds every count since start), with the
    /// resource's attributes.
    fn latest(&self, name: &str) -> Option<(HashMap<String, String>, Vec<Point>)> {
        let exports = self.metrics.lock().unwrap();
        for request in exports.iter().rev() {
            for resource_metrics in &request.resource_metrics {
                let resource = resource_metrics
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for scope in &resource_metrics.scope_metrics {
                    if let Some(metric) = scope.metrics.iter().find(|m| m.name == name) {
                        return Some((resource, points(metric.data.as_ref())));
                    }
                }
            }
        }
        None
    }

    /// The points of `name` now, empty before its first export.
    fn points(&self, name: &str) -> Vec<Point> {
        self.latest(name)
            .map(|(_, points)| points)
            .unwrap_or_default()
    }

    fn requests(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Every span received, with its resource's attributes.
    pub(crate) fn spans(&self) -> Vec<(HashMap<String, String>, Span)> {
        let mut spans = Vec::new();
        for request in self.received.lock().unwrap().iter() {
            for resource_spans in &request.resource_spans {
                let resource = resource_spans
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        spans.push((resource.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

fn attributes(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// One data point: its attributes and its value (a sum or gauge's
/// number, or a histogram's count).
#[derive(Debug, Clone)]
struct Point {
    attributes: HashMap<String, String>,
    value: f64,
    /// For a histogram: the sum of what was recorded.
    sum: Option<f64>,
}

fn number(value: Option<&NumberValue>) -> f64 {
    match value {
        Some(NumberValue::AsInt(i)) => *i as f64,
        Some(NumberValue::AsDouble(d)) => *d,
        None => f64::NAN,
    }
}

/// One span per export, a queue of four, and an export that waits ten
/// minutes for its answer: the first export to a silent endpoint blocks
/// the exporter for longer than a test runs.
pub(crate) const STUCK_EXPORTER: [(&str, &str); 4] = [
    ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
    ("OTEL_BSP_SCHEDULE_DELAY", "10"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
];

fn points(data: Option<&Data>) -> Vec<Point> {
    match data {
        Some(Data::Sum(Sum { data_points, .. }) | Data::Gauge(Gauge { data_points, .. })) => {
            data_points
                .iter()
                .map(|p| Point {
                    attributes: attributes(&p.attributes),
                    value: number(p.value.as_ref()),
                    sum: None,
                })
                .collect()
        }
        Some(Data::Histogram(histogram)) => histogram
            .data_points
            .iter()
            .map(|p| Point {
                attributes: attributes(&p.attributes),
                value: p.count as f64,
                sum: p.sum,
            })
            .collect(),
        other => panic!("unexpected metric data: {other:?}"),
    }
}

/// The value of the point whose attributes include every one of `with`
/// (and, for `None` values, lack that attribute); 0 when there is none.
fn value(points: &[Point], with: &[(&str, Option<&str>)]) -> f64 {
    points
        .iter()
        .filter(|p| {
            with.iter().all(|(k, v)| match v {
                Some(v) => p.attributes.get(*k).map(String::as_str) == Some(*v),
                None => !p.attributes.contains_key(*k),
            })
        })
        .map(|p| p.value)
        .sum()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The binary over `database_url`, exporting to `endpoint`, every trace
/// kept and exported within 50 ms.
fn traced_vars(database_url: &str, endpoint: &str) -> HashMap<String, String> {
    let mut vars = base_vars(database_url);
    for (k, v) in [
        ("LOG_FORMAT", "json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("TELEMETRY_ENVIRONMENT", "otel-test"),
    ] {
        vars.insert(k.to_owned(), v.to_owned());
    }
    vars
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// A request sent with a caller's `traceparent` is found under that trace
/// id: the server span (route template, status, application; parent: the
/// caller's span), its statement and pool spans as its children, and its
/// log line carrying the same trace and span ids.
#[tokio::test]
async fn a_request_continues_the_callers_trace_with_its_statements_and_log_line() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let app_id: String = app
        .scalar(
            "SELECT app_id FROM applications WHERE app_id LIKE 'app-%'",
            &[],
        )
        .await;
    let collector = Collector::start().await;
    let served = Served::start(traced_vars(&app.database_url, &collector.url)).await;
    let token = app.token(f.owner);
    let response = reqwest::Client::new()
        .get(served.url(&format!("/api/sessions/{}", f.session_id)))
        .header("X-API-Key", &f.key)
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();

    let server_span = || {
        collector
            .spans()
            .into_iter()
            .find(|(_, s)| hex(&s.trace_id) == TRACE_ID && s.kind == SpanKind::Server as i32)
    };
    wait_for("the server span is exported", || {
        let found = server_span().is_some();
        async move { found }
    })
    .await;
    let (resource, server) = server_span().unwrap();
    assert_eq!(resource["service.name"], "amplifier-sessions");
    assert_eq!(resource["deployment.environment.name"], "otel-test");
    assert_eq!(
        hex(&server.parent_span_id),
        CALLER_SPAN_ID,
        "continues the caller's span"
    );
    assert_eq!(server.trace_state, "vendor=opaque");
    assert_eq!(server.name, "GET /api/sessions/{session_id}");
    let attrs = attributes(&server.attributes);
    assert_eq!(attrs["http.route"], "/api/sessions/{session_id}");
    assert_eq!(attrs["http.request.method"], "GET");
    assert_eq!(attrs["http.response.status_code"], "200");
    assert_eq!(attrs["amplifier.app_id"], app_id);

    // Its children: the pool checkout and the statement (which can end
    // up in a later export than the server span: wait for them too).
    let server_id = server.span_id.clone();
    let children = || {
        collector
            .spans()
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s.parent_span_id == server_id)
            .collect::<Vec<_>>()
    };
    wait_for("the statement span is exported", || {
        let found = children().iter().any(|s| s.name == "sessions.read");
        async move { found }
    })
    .await;
    let children = children();
    let statement = children.iter().find(|s| s.name == "sessions.read").unwrap();
    assert_eq!(statement.kind, SpanKind::Client as i32);
    assert_eq!(hex(&statement.trace_id), TRACE_ID);
    let statement_attrs = attributes(&statement.attributes);
    assert_eq!(statement_attrs["db.system.name"], "postgresql");
    assert_eq!(statement_attrs["db.operation.name"], "sessions.read");
    assert!(
        children.iter().any(|s| s.name == "pool.checkout"),
        "{children:?}"
    );

    // Nothing from the path, no credential, in any span.
    let everything = format!("{:?}", collector.spans());
    for secret in [&f.session_id, &f.key, &token] {
        assert!(!everything.contains(secret.as_str()), "{secret} in a span");
    }

    let printed = served.stop();
    let line: Value = printed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request" && l["route"] == "/api/sessions/{session_id}")
        .unwrap_or_else(|| panic!("no request line: {printed}"));
    assert_eq!(line["trace_id"], TRACE_ID);
    assert_eq!(line["span_id"], hex(&server.span_id));
}

/// An OTLP endpoint that accepts connections and never answers: once the
/// exporter is stuck on it (an export request has arrived and will never
/// get its answer), requests go on being served, far more of them than
/// the span queue holds; the spans that do not fit are dropped and
/// counted: in the metrics (exported to a collector that answers) and in
/// the log at shutdown.
#[tokio::test]
async fn a_collector_that_never_answers_holds_up_no_request() {
    let app = spawn_app().await;
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let bytes_received = Arc::new(AtomicUsize::new(0));
    {
        let bytes_received = bytes_received.clone();
        // Accepts, reads, never writes; the connections stay open (held
        // by this thread) until the test process ends.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in silent.incoming() {
                let Ok(stream) = stream else { return };
                let counter = bytes_received.clone();
                let mut reader = stream.try_clone().unwrap();
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = reader.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        counter.fetch_add(n, Ordering::SeqCst);
                    }
                });
                held.push(stream);
            }
        });
    }
    // Metrics go to a collector that answers: they count the drops.
    let collector = Collector::start().await;
    let metrics_endpoint = format!("{}/v1/metrics", collector.url);
    let mut vars = traced_vars(&app.database_url, &endpoint);
    for (k, v) in [
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            metrics_endpoint.as_str(),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
    ]
    .into_iter()
    .chain(STUCK_EXPORTER)
    {
        vars.insert(k.to_owned(), v.to_owned());
    }
    let served = Served::start(vars).await;
    let http = reqwest::Client::new();
    let health = served.url("/api/health");
    assert_eq!(
        http.get(&health).send().await.unwrap().status(),
        StatusCode::OK
    );
    wait_for("an export request reaches the silent collector", || {
        let arrived = bytes_received.load(Ordering::SeqCst) > 0;
        async move { arrived }
    })
    .await;

    // The exporter now waits for an answer that never comes.
    for i in 0..50 {
        let response = http.get(&health).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
    }
    // The SDK's count of what its batch processor dropped, exported.
    let dropped_spans = || {
        value(
            &collector.points("otel.sdk.processor.span.processed"),
            &[("error.type", Some("queue_full"))],
        )
    };
    wait_for("the dropped spans are counted in the metrics", || {
        let counted = dropped_spans() >= 46.0;
        async move { counted }
    })
    .await;

    let printed = served.stop();
    let dropped: u64 = printed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["name"] == "BatchSpanProcessor.SpansDropped")
        .and_then(|l| l["dropped_span_count"].as_u64())
        .unwrap_or_else(|| panic!("no count of dropped spans at shutdown: {printed}"));
    // 51 requests, at least one span each; the stuck export took one and
    // the queue holds four.
    assert!(dropped >= 51 - 5, "{dropped} dropped");
}

/// `TELEMETRY_ENABLED=false` wins over a configured endpoint: nothing is
/// exported, not even at shutdown (which flushes the queue), and log
/// lines carry no trace ids.
#[tokio::test]
async fn telemetry_enabled_false_exports_nothing() {
    let app = spawn_app().await;
    let collector = Collector::start().await;
    let mut vars = traced_vars(&app.database_url, &collector.url);
    vars.insert("TELEMETRY_ENABLED".into(), "false".into());
    let served = Served::start(vars).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let response = http
            .get(served.url("/api/health"))
            .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let printed = served.stop();
    assert_eq!(collector.requests(), 0, "exported with telemetry off");
    let lines: Vec<Value> = printed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "request")
        .collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(
        lines.iter().all(|l| l.get("trace_id").is_none()),
        "{printed}"
    );
}

/// The binary exporting metrics to `collector` every 100 ms.
fn metered_vars(database_url: &str, collector: &Collector) -> HashMap<String, String> {
    let mut vars = traced_vars(database_url, &collector.url);
    vars.insert("OTEL_METRIC_EXPORT_INTERVAL".into(), "100".into());
    vars
}

/// Requests are counted by route template, method and status: 200s and a
/// 404 of one route, a 404 of no route (no `http.route`: one series for
/// every unknown path), 401s and the 429 a source over its refused
/// credentials gets (also counted by policy); the pool's gauges are read
/// from the pool (idle + used within the maximum, no timeout); the admin's
/// health detail shows the same counts.
#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_read_the_pool() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let collector = Collector::start().await;
    let mut vars = metered_vars(&app.database_url, &collector);
    vars.insert("DATABASE_POOL_MAX_SIZE".into(), "7".into());
    vars.insert("RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE".into(), "2".into());
    let served = Served::start(vars).await;
    let http = reqwest::Client::new();
    let token = app.token(f.owner);
    let session = served.url(&format!("/api/sessions/{}", f.session_id));
    for _ in 0..3 {
        let response = http
            .get(&session)
            .header("X-API-Key", &f.key)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
    }
    let missing = http
        .get(served.url(&format!("/api/sessions/{}", Uuid::new_v4())))
        .header("X-API-Key", &f.key)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    for path in ["/api/no-such-function", "/api/no-such-function/either"] {
        let unknown = http.get(served.url(path)).send().await.unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }
    // Two wrong keys from one source, then it is refused before its key
    // is looked at (the peer is local: the source is X-Forwarded-For's).
    let guess = || {
        http.get(&session)
            .header("X-API-Key", "not-a-key")
            .header("X-Forwarded-For", "203.0.113.9")
            .send()
    };
    for _ in 0..2 {
        assert_eq!(guess().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        guess().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let route = Some("/api/sessions/{session_id}");
    let counted = |status: &str| {
        value(
            &collector.points("http.server.request.duration"),
            &[
                ("http.route", route),
                ("http.request.method", Some("GET")),
                ("http.response.status_code", Some(status)),
            ],
        )
    };
    wait_for("the requests are exported", || {
        let done = counted("429") == 1.0;
        async move { done }
    })
    .await;
    let (resource, requests) = collector.latest("http.server.request.duration").unwrap();
    assert_eq!(resource["service.name"], "amplifier-sessions");
    assert_eq!(resource["deployment.environment.name"], "otel-test");
    assert_eq!(counted("200"), 3.0, "{requests:?}");
    assert_eq!(counted("404"), 1.0, "{requests:?}");
    assert_eq!(counted("401"), 2.0, "{requests:?}");
    assert_eq!(
        value(
            &requests,
            &[
                ("http.route", None),
                ("http.response.status_code", Some("404"))
            ]
        ),
        2.0,
        "{requests:?}"
    );
    // Nothing from a path (ids, unknown names) in any attribute.
    let everything = format!("{requests:?}");
    for text in [f.session_id.as_str(), "no-such-function", f.key.as_str()] {
        assert!(!everything.contains(text), "{text} in the metrics");
    }
    assert!(
        requests.iter().all(|p| p.sum.is_some_and(|s| s >= 0.0)),
        "{requests:?}"
    );
    assert_eq!(
        value(
            &collector.points("amplifier.rate_limit.refused"),
            &[("amplifier.rate_limit.policy", Some("source"))]
        ),
        1.0
    );

    // The pool: seven at most, what is open either idle or used.
    let max = value(&collector.points("db.client.connection.max"), &[]);
    assert_eq!(max, 7.0);
    let connections = collector.points("db.client.connection.count");
    let idle = value(
        &connections,
        &[("db.client.connection.state", Some("idle"))],
    );
    let used = value(
        &connections,
        &[("db.client.connection.state", Some("used"))],
    );
    assert!(idle + used >= 1.0, "{connections:?}");
    assert!(idle + used <= max, "{connections:?}");
    assert!(used >= 0.0 && idle >= 0.0, "{connections:?}");
    assert_eq!(
        value(
            &collector.points("db.client.connection.pending_requests"),
            &[]
        ),
        0.0
    );
    assert_eq!(
        value(&collector.points("db.client.connection.timeouts"), &[]),
        0.0
    );
    // Every request that read the database waited for a connection.
    assert!(value(&collector.points("db.client.connection.wait_time"), &[]) >= 4.0);
    assert_eq!(
        value(
            &collector.points("amplifier.telemetry.export_failures"),
            &[]
        ),
        0.0
    );
    // Spans reached the collector too, and none was dropped.
    let spans = collector.points("otel.sdk.processor.span.processed");
    assert!(value(&spans, &[("error.type", None)]) >= 1.0, "{spans:?}");
    assert_eq!(
        value(&spans, &[("error.type", Some("queue_full"))]),
        0.0,
        "{spans:?}"
    );

    // The admin's health detail: the same counts, from the same process.
    let health: Value = http
        .get(served.url("/api/health"))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let detail = &health["detail"];
    assert_eq!(detail["counts"]["rate_limited"]["source"], 1, "{health}");
    assert_eq!(detail["pool"]["max_size"], 7, "{health}");
    assert_eq!(detail["telemetry"]["metrics"], true, "{health}");
    assert_eq!(detail["telemetry"]["traces"], true, "{health}");
    served.stop();
}

/// The open-streams gauge goes up while an event stream is open, and back
/// down once its client has gone.
#[tokio::test]
async fn the_open_streams_gauge_follows_an_event_stream() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let collector = Collector::start().await;
    let mut vars = metered_vars(&app.database_url, &collector);
    // A gone client is noticed at the next heartbeat.
    vars.insert("EVENTS_HEARTBEAT_SECONDS".into(), "1".into());
    let served = Served::start(vars).await;
    let open = || value(&collector.points("amplifier.event_streams.open"), &[]);
    wait_for("the gauge is exported", || {
        let exported = collector.latest("amplifier.event_streams.open").is_some();
        async move { exported }
    })
    .await;
    assert_eq!(open(), 0.0);
    let mut stream = Sse::open(
        reqwest::Client::new()
            .get(served.url(&format!("/api/sessions/{}/events", f.session_id)))
            .header("X-API-Key", &f.key)
            .bearer_auth(app.token(f.owner)),
    )
    .await;
    stream.expect("snapshot").await;
    wait_for("the open stream is counted", || {
        let one = open() == 1.0;
        async move { one }
    })
    .await;
    drop(stream);
    wait_for("the closed stream is no longer counted", || {
        let zero = open() == 0.0;
        async move { zero }
    })
    .await;
    served.stop();
}
