//! The hosting contract: the router, `functions/*/function.json` and the
//! served OpenAPI document list the same functions, each way.

use std::collections::BTreeSet;

use amplifier_sessions::api;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

fn read_json(relative: &str) -> Value {
    let text = std::fs::read_to_string(repo_path(relative)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every `functions/*/function.json`: (folder name, its bindings).
fn function_files() -> Vec<(String, Vec<Value>)> {
    std::fs::read_dir(repo_path("functions"))
        .unwrap()
        .map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let doc = read_json(&format!("functions/{name}/function.json"));
            (name, doc["bindings"].as_array().unwrap().clone())
        })
        .collect()
}

/// The functions whose trigger is not HTTP: the host POSTs their
/// invocations to `/{name}` on the handler's port, outside `/api`.
fn non_http_functions() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (name, bindings) in function_files() {
        if bindings.iter().any(|b| b["type"] == "httpTrigger") {
            continue;
        }
        assert_eq!(
            bindings.len(),
            1,
            "{name}: a trigger and no output bindings"
        );
        let trigger = &bindings[0];
        assert_eq!(
            trigger["type"], "timerTrigger",
            "{name}: an unknown trigger"
        );
        assert_eq!(trigger["direction"], "in", "{name}");
        // The schedule is an app setting (%NAME%), so that the in-process
        // schedule reads the same one; it must be set wherever the host runs.
        let schedule = trigger["schedule"].as_str().unwrap();
        let setting = schedule
            .strip_prefix('%')
            .and_then(|s| s.strip_suffix('%'))
            .unwrap_or_else(|| panic!("{name}: schedule {schedule} is not an app setting"));
        let bicep = std::fs::read_to_string(repo_path("infra/main.bicep")).unwrap();
        assert!(
            bicep
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{setting}: "))),
            "{name}: infra/main.bicep does not set {setting}"
        );
        let local = read_json("local.settings.json");
        assert!(
            local["Values"][setting].is_string(),
            "{name}: local.settings.json does not set {setting}"
        );
        found.insert(name);
    }
    found
}

#[test]
fn the_purge_is_a_timer_function() {
    assert_eq!(
        non_http_functions().into_iter().collect::<Vec<_>>(),
        ["purge-expired"]
    );
}

/// (function name, METHOD, /api/route) for every HTTP-triggered
/// `functions/*/function.json`.
fn declared_functions() -> BTreeSet<(String, String, String)> {
    let mut declared = BTreeSet::new();
    let others = non_http_functions();
    for (name, bindings) in function_files() {
        if others.contains(&name) {
            continue;
        }
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

type Entry = (String, String, String);

fn routed() -> BTreeSet<Entry> {
    api::functions()
        .into_iter()
        .map(|f| (f.name, f.method.to_owned(), f.path))
        .collect()
}

fn assert_same(a_name: &str, a: &BTreeSet<Entry>, b_name: &str, b: &BTreeSet<Entry>) {
    let only_a: Vec<_> = a.difference(b).collect();
    let only_b: Vec<_> = b.difference(a).collect();
    assert!(
        only_a.is_empty(),
        "in {a_name} but not in {b_name}: {only_a:?}"
    );
    assert!(
        only_b.is_empty(),
        "in {b_name} but not in {a_name}: {only_b:?}"
    );
}

#[test]
fn function_json_files_match_the_router_both_ways() {
    assert_same("the router", &routed(), "functions/", &declared_functions());
}

/// The document clients download lists exactly the functions.
#[tokio::test]
async fn the_served_openapi_document_lists_every_function() {
    let app = spawn_app().await;
    let doc = expect_status(
        app.get("/api/openapi.json").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut served = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                let name = operation["operationId"].as_str().unwrap().to_owned();
                served.insert((name, method.to_uppercase(), path.clone()));
            }
        }
    }
    assert_same("openapi.json", &served, "functions/", &declared_functions());
    for name in non_http_functions() {
        assert!(
            doc["paths"]
                .as_object()
                .unwrap()
                .keys()
                .all(|p| !p.contains(&name)),
            "{name} is not a public function"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
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

/// Every entry of the table is really served (no 404/405 from the router),
/// and so is each non-HTTP function at `POST /{name}`, as the host calls it.
#[tokio::test]
async fn the_router_serves_every_function() {
    let app = spawn_app().await;
    for name in non_http_functions() {
        let response = app
            .post(&format!("/{name}"))
            .json(&serde_json::json!({"Data": {}, "Metadata": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "POST /{name} is not served"
        );
    }
    for f in api::functions() {
        let path = f
            .path
            .replace("{config_id}", "00000000-0000-0000-0000-000000000000")
            .replace("{session_id}", "00000000-0000-0000-0000-000000000000")
            .replace("{user_id}", "me")
            .replace("{app_id}", "some-app");
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
