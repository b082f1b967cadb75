//! Traces and metrics to Application Insights, against the ingestion stand-in of
//! tests/support/fake_azure.py (HTTPS, local authentication disabled: a
//! request without the managed identity's token is refused; every
//! envelope's schema checked) and its managed-identity endpoint. The
//! binary runs as its own process, as in `telemetry`.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_azure::{FakeAzure, IKEY, MONITOR_TOKEN, TOKEN};
use crate::helpers::*;
use crate::process::Served;
use crate::telemetry::{Collector, STUCK_EXPORTER, hex};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN_ID: &str = "b7ad6b7169203331";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";

/// Settings as the Bicep gives them in Azure (the managed identity, the
/// connection string with its ingestion endpoint, here the stand-in's),
/// every trace kept and exported within 50 ms.
fn app_insights_vars(azure: &FakeAzure, database_url: &str) -> HashMap<String, String> {
    let mut vars = base_vars(database_url);
    let connection_string = format!(
        "InstrumentationKey={IKEY};IngestionEndpoint=https://localhost:{}/;\
         LiveEndpoint=https://localhost:1/;ApplicationId=00000000-0000-0000-0000-000000000001",
        azure.ingestion_port
    );
    for (k, v) in [
        ("LOG_FORMAT", "json".to_owned()),
        ("OTEL_TRACES_SAMPLER_ARG", "1".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
        (
            "IDENTITY_ENDPOINT",
            format!("http://127.0.0.1:{}/msi/token", azure.identity_port),
        ),
        ("IDENTITY_HEADER", "local-identity-header".to_owned()),
        ("AZURE_CLIENT_ID", CLIENT_ID.to_owned()),
        (
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            format!("Authorization=AAD;ClientId={CLIENT_ID}"),
        ),
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", connection_string),
        (
            "SSL_CERT_FILE",
            azure.dir.path().join("tls/ca.crt").display().to_string(),
        ),
    ] {
        vars.insert(k.to_owned(), v);
    }
    vars
}

/// What the stand-in accepted, and what it refused (with why).
fn envelopes(azure: &FakeAzure, file: &str) -> Vec<Value> {
    std::fs::read_to_string(azure.dir.path().join(file))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn json_lines(printed: &str) -> Vec<Value> {
    printed
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// A request sent with a caller's `traceparent` becomes a RequestData
/// envelope under that operation id (named after the route template, with
/// its status), its statement a RemoteDependencyData under the same
/// operation whose parent is the request; the request's log line has the
/// same trace and span ids; they were sent with the managed identity's
/// token for Azure Monitor, and neither the token nor the connection
/// string is in the logs. The OTLP collector, configured too, gets the
/// same spans.
#[tokio::test]
async fn a_request_reaches_application_insights_with_its_statements_under_the_callers_operation() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let azure = FakeAzure::start(&json!({}));
    let collector = Collector::start().await;
    let mut vars = app_insights_vars(&azure, &app.database_url);
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.url.clone());
    let served = Served::start(vars).await;
    let token = app.token(f.owner);
    let response = reqwest::Client::new()
        .get(served.url(&format!("/api/sessions/{}", f.session_id)))
        .header("X-API-Key", &f.key)
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();

    let in_operation = |name: &str| {
        envelopes(&azure, "envelopes.jsonl")
            .into_iter()
            .filter(|e| e["tags"]["ai.operation.id"] == TRACE_ID && e["name"] == name)
            .collect::<Vec<_>>()
    };
    wait_for("the request and its statement reach ingestion", || {
        let found = !in_operation("Microsoft.ApplicationInsights.Request").is_empty()
            && in_operation("Microsoft.ApplicationInsights.RemoteDependency")
                .iter()
                .any(|e| e["data"]["baseData"]["name"] == "sessions.read");
        async move { found }
    })
    .await;
    let requests = in_operation("Microsoft.ApplicationInsights.Request");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request["iKey"], IKEY);
    assert_eq!(request["data"]["baseType"], "RequestData");
    let data = &request["data"]["baseData"];
    assert_eq!(data["name"], "GET /api/sessions/{session_id}");
    assert_eq!(data["responseCode"], "200");
    assert_eq!(data["success"], true);
    assert_eq!(
        request["tags"]["ai.operation.parentId"], CALLER_SPAN_ID,
        "continues the caller's span"
    );
    assert_eq!(
        request["tags"]["ai.operation.name"],
        "GET /api/sessions/{session_id}"
    );
    assert_eq!(request["tags"]["ai.cloud.role"], "amplifier-sessions");
    let request_id = data["id"].as_str().unwrap().to_owned();

    let statement = in_operation("Microsoft.ApplicationInsights.RemoteDependency")
        .into_iter()
        .find(|e| e["data"]["baseData"]["name"] == "sessions.read")
        .unwrap();
    assert_eq!(statement["data"]["baseType"], "RemoteDependencyData");
    assert_eq!(statement["tags"]["ai.operation.parentId"], request_id);
    assert_eq!(statement["data"]["baseData"]["type"], "postgresql");
    assert_eq!(
        statement["data"]["baseData"]["properties"]["db.operation.name"],
        "sessions.read"
    );
    assert_eq!(
        envelopes(&azure, "invalid.jsonl"),
        Vec::<Value>::new(),
        "envelopes the schema refuses"
    );

    // The token was asked for Azure Monitor, as the user-assigned
    // identity; every export carried it (the stand-in accepts no other
    // token: none was refused) on the v2.1 track path.
    let asked = azure.requests();
    assert!(
        asked.contains(&format!(
            "identity https://monitor.azure.com/ client_id={CLIENT_ID}"
        )),
        "{asked}"
    );
    assert!(asked.contains("ingestion /v2.1/track items="), "{asked}");
    assert!(!asked.contains("authorization=none"), "{asked}");
    assert!(!asked.contains("ingestion refused"), "{asked}");

    // The same server span went over OTLP.
    wait_for("the server span reaches the OTLP collector", || {
        let found = collector
            .spans()
            .iter()
            .any(|(_, s)| hex(&s.trace_id) == TRACE_ID && hex(&s.span_id) == request_id);
        async move { found }
    })
    .await;

    // Nothing from the path, no credential, in any envelope.
    let everything = format!("{:?}", envelopes(&azure, "envelopes.jsonl"));
    for secret in [&f.session_id, &f.key, &token] {
        assert!(!everything.contains(secret.as_str()), "{secret} sent");
    }

    let printed = served.stop();
    let lines = json_lines(&printed);
    let line = lines
        .iter()
        .find(|l| l["message"] == "request" && l["route"] == "/api/sessions/{session_id}")
        .unwrap_or_else(|| panic!("no request line: {printed}"));
    assert_eq!(line["trace_id"], TRACE_ID);
    assert_eq!(line["span_id"], request_id);
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "telemetry on" && l["app_insights"] == "on (Entra ID token)"),
        "{printed}"
    );
    for secret in [TOKEN, MONITOR_TOKEN, IKEY] {
        assert!(!printed.contains(secret), "{secret} logged: {printed}");
    }
}

/// The metrics reach Application Insights too, as MetricData envelopes
/// the stand-in accepts, sent with the token: the request duration of the
/// route served (an aggregation: count, sum, min, max, in seconds) and the
/// pool's connections, each attribute a property.
#[tokio::test]
async fn the_metrics_reach_application_insights_as_metric_data() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let azure = FakeAzure::start(&json!({}));
    let mut vars = app_insights_vars(&azure, &app.database_url);
    vars.insert("OTEL_METRIC_EXPORT_INTERVAL".into(), "200".into());
    let served = Served::start(vars).await;
    let response = reqwest::Client::new()
        .get(served.url(&format!("/api/sessions/{}", f.session_id)))
        .header("X-API-Key", &f.key)
        .bearer_auth(app.token(f.owner))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();

    let metric = |name: &'static str| {
        envelopes(&azure, "envelopes.jsonl")
            .into_iter()
            .filter(move |e| {
                e["name"] == "Microsoft.ApplicationInsights.Metric"
                    && e["data"]["baseData"]["metrics"][0]["name"] == name
            })
    };
    let served_route = || {
        metric("http.server.request.duration").find(|e| {
            let properties = &e["data"]["baseData"]["properties"];
            properties["http.route"] == "/api/sessions/{session_id}"
                && properties["http.response.status_code"] == "200"
        })
    };
    wait_for("the request duration and the pool reach ingestion", || {
        let found =
            served_route().is_some() && metric("db.client.connection.count").next().is_some();
        async move { found }
    })
    .await;
    let duration = served_route().unwrap();
    let point = &duration["data"]["baseData"]["metrics"][0];
    assert_eq!(point["kind"], "Aggregation", "{duration}");
    assert_eq!(point["count"], 1, "{duration}");
    let (value, min, max) = (
        point["value"].as_f64().unwrap(),
        point["min"].as_f64().unwrap(),
        point["max"].as_f64().unwrap(),
    );
    assert!(value > 0.0 && value < 60.0 && min <= max, "{duration}");
    assert_eq!(duration["iKey"], IKEY);
    assert_eq!(
        duration["data"]["baseData"]["properties"]["service.name"],
        "amplifier-sessions"
    );
    assert!(
        envelopes(&azure, "invalid.jsonl").is_empty(),
        "{:?}",
        envelopes(&azure, "invalid.jsonl")
    );
    let asked = azure.requests();
    assert!(!asked.contains("authorization=none"), "{asked}");
    assert!(!asked.contains("ingestion refused"), "{asked}");
    served.stop();
}

/// An ingestion endpoint that accepts connections and never answers:
/// once an export is stuck on it, requests go on being served, far more
/// of them than the span queue holds; the spans that do not fit are
/// dropped and counted; the OTLP collector still gets the spans.
#[tokio::test]
async fn an_ingestion_endpoint_that_never_answers_holds_up_no_request() {
    let app = spawn_app().await;
    let azure = FakeAzure::start(&json!({}));
    std::fs::write(azure.dir.path().join("ingestion_hang"), "").unwrap();
    let collector = Collector::start().await;
    let mut vars = app_insights_vars(&azure, &app.database_url);
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.url.clone());
    for (k, v) in STUCK_EXPORTER {
        vars.insert(k.to_owned(), v.to_owned());
    }
    let served = Served::start(vars).await;
    let http = reqwest::Client::new();
    let health = served.url("/api/health");
    assert_eq!(
        http.get(&health).send().await.unwrap().status(),
        StatusCode::OK
    );
    wait_for("an export reaches the silent ingestion endpoint", || {
        let arrived = azure.requests().contains("ingestion hang /v2.1/track");
        async move { arrived }
    })
    .await;

    for i in 0..50 {
        let response = http.get(&health).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
    }
    // Requests' server spans still go over OTLP (a traced request is sent
    // until one finds room in the OTLP queue of four, which the requests
    // above may have filled).
    wait_for("the OTLP collector gets a traced request's span", || {
        let found = collector
            .spans()
            .iter()
            .any(|(_, s)| hex(&s.trace_id) == TRACE_ID);
        let http = http.clone();
        let health = health.clone();
        async move {
            if !found {
                let response = http
                    .get(&health)
                    .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
            found
        }
    })
    .await;

    let printed = served.stop();
    // One count per processor: Application Insights' is the one stuck.
    let dropped: u64 = json_lines(&printed)
        .iter()
        .filter(|l| l["name"] == "BatchSpanProcessor.SpansDropped")
        .filter_map(|l| l["dropped_span_count"].as_u64())
        .max()
        .unwrap_or_else(|| panic!("no count of dropped spans at shutdown: {printed}"));
    assert!(dropped >= 51 - 5, "{dropped} dropped");
}

/// A managed identity that gives no token: nothing is sent without one
/// (the resource would refuse it), the failure is logged, and requests
/// are served as usual.
#[tokio::test]
async fn without_a_token_nothing_is_sent_and_requests_are_served() {
    let app = spawn_app().await;
    let azure = FakeAzure::start(&json!({}));
    let mut vars = app_insights_vars(&azure, &app.database_url);
    // The identity endpoint refuses a request without its header.
    vars.insert("IDENTITY_HEADER".into(), "not-the-header".into());
    let served = Served::start(vars).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let response = http.get(served.url("/api/health")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    wait_for("the token fetch fails and is logged", || {
        let logged = json_lines(&served.printed()).iter().any(|l| {
            l["message"] == "fetch failed" && l["what"] == "Entra ID token for Application Insights"
        });
        async move { logged }
    })
    .await;
    let response = http.get(served.url("/api/health")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let printed = served.stop();
    let asked = azure.requests();
    assert!(
        asked.contains("identity https://monitor.azure.com/"),
        "{asked}"
    );
    assert!(
        !asked.contains("ingestion"),
        "sent without a token: {asked}"
    );
    assert!(
        !printed.contains(IKEY),
        "connection string logged: {printed}"
    );
}

/// A malformed connection string: the service serves, says what is wrong
/// with it (never what it holds), and sends nothing.
#[tokio::test]
async fn a_malformed_connection_string_is_reported_without_its_content() {
    let app = spawn_app().await;
    let azure = FakeAzure::start(&json!({}));
    let mut vars = app_insights_vars(&azure, &app.database_url);
    vars.insert(
        "APPLICATIONINSIGHTS_CONNECTION_STRING".into(),
        format!("InstrumentationKey={IKEY};IngestionEndpoint"),
    );
    let served = Served::start(vars).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let response = http.get(served.url("/api/health")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let printed = served.stop();
    let lines = json_lines(&printed);
    let error = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Application Insights is off"))
        })
        .unwrap_or_else(|| panic!("no error line: {printed}"));
    assert_eq!(error["level"], "ERROR");
    assert!(
        error["message"].as_str().unwrap().contains("not Key=Value"),
        "{printed}"
    );
    assert!(
        !printed.contains(IKEY),
        "connection string logged: {printed}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "telemetry on"
                && l["app_insights"] == "off (see the error above)"),
        "{printed}"
    );
    assert!(!azure.requests().contains("ingestion"));
}

/// Without a managed identity and without `Authorization=AAD` (a local
/// run against a resource that accepts local authentication), envelopes
/// are sent with the instrumentation key alone: no token is asked for.
#[tokio::test]
async fn without_a_managed_identity_the_instrumentation_key_alone_is_sent() {
    let app = spawn_app().await;
    let azure = FakeAzure::start(&json!({}));
    std::fs::write(azure.dir.path().join("local_auth"), "").unwrap();
    let mut vars = app_insights_vars(&azure, &app.database_url);
    for name in [
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "AZURE_CLIENT_ID",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    ] {
        vars.remove(name);
    }
    let served = Served::start(vars).await;
    let response = reqwest::Client::new()
        .get(served.url("/api/health"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    wait_for("the request reaches ingestion", || {
        let found = envelopes(&azure, "envelopes.jsonl").iter().any(|e| {
            e["name"] == "Microsoft.ApplicationInsights.Request"
                && e["tags"]["ai.operation.id"] == TRACE_ID
        });
        async move { found }
    })
    .await;
    let printed = served.stop();
    let asked = azure.requests();
    assert!(asked.contains("authorization=none"), "{asked}");
    assert!(
        !asked.contains("identity "),
        "a token was asked for: {asked}"
    );
    assert!(
        json_lines(&printed)
            .iter()
            .any(|l| l["message"] == "telemetry on"
                && l["app_insights"] == "on (instrumentation key only)"),
        "{printed}"
    );
}
