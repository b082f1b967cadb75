//! The hosting contract: `functions/*/function.json` and `host.json` agree
//! with the router, both ways.

use std::collections::BTreeSet;

use amplifier_sessions::api::FUNCTIONS;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

fn read_json(relative: &str) -> Value {
    let text = std::fs::read_to_string(repo_path(relative)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// (function name, METHOD, /api/route) for every `functions/*/function.json`.
fn declared_functions() -> BTreeSet<(String, String, String)> {
    let mut declared = BTreeSet::new();
    for entry in std::fs::read_dir(repo_path("functions")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let doc = read_json(&format!("functions/{name}/function.json"));
        let bindings = doc["bindings"].as_array().unwrap();
        let trigger = bindings
            .iter()
            .find(|b| b["type"] == "httpTrigger")
            .unwrap_or_else(|| panic!("{name}: no httpTrigger"));
        assert_eq!(trigger["direction"], "in", "{name}");
        assert_eq!(
            trigger["authLevel"], "anonymous",
            "{name}: the binary authenticates"
        );
        assert!(
            bindings
                .iter()
                .any(|b| b["type"] == "http" && b["direction"] == "out"),
            "{name}: no http output"
        );
        let route = trigger["route"].as_str().unwrap();
        for method in trigger["methods"].as_array().unwrap() {
            declared.insert((
                name.clone(),
                method.as_str().unwrap().to_uppercase(),
                format!("/api/{route}"),
            ));
        }
    }
    declared
}

#[test]
fn function_json_files_match_the_router_both_ways() {
    let routed: BTreeSet<(String, String, String)> = FUNCTIONS
        .iter()
        .map(|f| (f.name.to_owned(), f.method.to_owned(), f.path.to_owned()))
        .collect();
    let declared = declared_functions();
    let missing: Vec<_> = routed.difference(&declared).collect();
    let extra: Vec<_> = declared.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routed but no function.json: {missing:?}"
    );
    assert!(extra.is_empty(), "function.json but not routed: {extra:?}");
}

#[test]
fn host_json_configures_the_custom_handler() {
    let host = read_json("host.json");
    assert_eq!(host["version"], "2.0");
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        env!("CARGO_PKG_NAME")
    );
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    let local = read_json("local.settings.json");
    assert_eq!(local["Values"]["FUNCTIONS_WORKER_RUNTIME"], "custom");
}

/// Every entry of the table is really served (no 404/405 from the router).
#[tokio::test]
async fn the_router_serves_every_function() {
    let app = spawn_app().await;
    for f in FUNCTIONS {
        let path = f
            .path
            .replace("{config_id}", "00000000-0000-0000-0000-000000000000")
            .replace("{session_id}", "00000000-0000-0000-0000-000000000000")
            .replace("{user_id}", "me");
        let method = Method::from_bytes(f.method.as_bytes()).unwrap();
        let response = app
            .http
            .request(method, app.url(&path))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let routing_miss = (status == StatusCode::NOT_FOUND
            && body["detail"]
                .as_str()
                .unwrap_or("")
                .starts_with("no function"))
            || status == StatusCode::METHOD_NOT_ALLOWED;
        assert!(
            !routing_miss,
            "{} {} is not routed: {status} {body}",
            f.method, f.path
        );
    }
}
