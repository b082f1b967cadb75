//! Traces, against a real OTLP/HTTP receiver: the official protobuf
//! definitions (`opentelemetry-proto`) decoding what the binary exports.
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
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::process::Served;

/// An OTLP/HTTP receiver on port 0: every `ExportTraceServiceRequest`
/// posted to `/v1/traces`, decoded.
pub(crate) struct Collector {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Collector {
    pub(crate) async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let app = axum::Router::new().route(
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
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
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
/// counted.
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
    let mut vars = traced_vars(&app.database_url, &endpoint);
    for (k, v) in [
        // One span per export, a queue of four, and an export that waits
        // ten minutes for its answer: the first export blocks the
        // exporter for longer than this test runs.
        ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
        ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
    ] {
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
