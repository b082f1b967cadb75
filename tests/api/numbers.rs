//! Numbers come back digit for digit: messages, metadata and settings are
//! stored as they were sent, not as the nearest double.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Numbers a double cannot hold, and `-0`. Raw text: `json!` (a Rust
/// literal) could not even write the first one.
const NUMBERS: &str = r#"{
    "big": 12345678901234567890123,
    "negative": -98765432109876543210,
    "decimal": 0.10000000000000000000000000001,
    "pi": 3.141592653589793238462643383279,
    "zero": -0,
    "nested": [{"big": 12345678901234567890123}]
}"#;

/// Each number of [`NUMBERS`] as it must come back. JSONB stores `-0` as
/// the number zero and writes it `0`: the same value.
fn assert_exact(value: &Value, what: &str) {
    for (field, digits) in [
        ("big", "12345678901234567890123"),
        ("negative", "-98765432109876543210"),
        ("decimal", "0.10000000000000000000000000001"),
        ("pi", "3.141592653589793238462643383279"),
    ] {
        assert_eq!(
            value[field].to_string(),
            digits,
            "{what}: {field} in {value}"
        );
    }
    assert_eq!(
        value["nested"][0]["big"].to_string(),
        "12345678901234567890123",
        "{what}: nested in {value}"
    );
    assert_eq!(value["zero"].as_f64(), Some(0.0), "{what}: -0 in {value}");
}

fn json_body(builder: reqwest::RequestBuilder, body: String) -> reqwest::RequestBuilder {
    builder
        .header("content-type", "application/json")
        .body(body)
}

#[tokio::test]
async fn messages_metadata_and_settings_keep_every_digit() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let config = app.create_config(&f.key).await;

    let created = expect_status(
        json_body(
            app.as_user(app.post("/api/sessions"), &f.key, f.owner),
            format!(r#"{{"config_id": "{config}", "metadata": {NUMBERS}}}"#),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_exact(&created["metadata"], "create-session");
    let session = created["session_id"].as_str().unwrap();
    let read = expect_status(
        app.as_user(
            app.get(&format!("/api/sessions/{session}")),
            &f.key,
            f.owner,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_exact(&read["metadata"], "get-session");

    let messages = format!("/api/sessions/{session}/messages");
    expect_status(
        json_body(
            app.as_user(app.post(&messages), &f.key, f.owner),
            format!(r#"{{"messages": [{NUMBERS}]}}"#),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    let page = expect_status(
        app.as_user(app.get(&messages), &f.key, f.owner)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_exact(&page["messages"][0]["message"], "list-messages");

    let export = app
        .as_user(
            app.get(&format!("/api/sessions/{session}/export")),
            &f.key,
            f.owner,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    let text = export.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_exact(&lines[0]["metadata"], "export-session (session)");
    assert_exact(&lines[1]["message"], "export-session (message)");

    let app_id = "numbers-app";
    app.create_application(app_id).await;
    let updated = expect_status(
        json_body(
            app.http
                .patch(app.url(&format!("/api/applications/{app_id}")))
                .header("X-API-Key", ADMIN_KEY),
            format!(r#"{{"settings": {NUMBERS}}}"#),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_exact(&updated["settings"], "update-application");
    let read = expect_status(
        app.get(&format!("/api/applications/{app_id}"))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_exact(&read["settings"], "get-application");

    // Tags hold strings only: a number is refused, and digits in a string
    // are text.
    let response = json_body(
        app.post("/api/configs").header("X-API-Key", &f.key),
        r#"{"name": "n", "yaml_content": "a: 1", "tags": {"n": 12345678901234567890123}}"#
            .to_owned(),
    )
    .send()
    .await
    .unwrap();
    let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        detail.starts_with("tags") && detail.contains("number"),
        "{detail}"
    );
}

/// Kept digit for digit, a number must not turn into far more text when
/// PostgreSQL writes it without its exponent: `1e131071` would be 131,072
/// digits in every read of the session.
#[tokio::test]
async fn exponents_cannot_make_short_numbers_long() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let config = app.create_config(&f.key).await;
    let sessions_before = app.count_rows("sessions", None).await;
    let messages = format!("/api/sessions/{}/messages", f.session_id);
    // The smallest and largest double stay accepted.
    expect_status(
        json_body(
            app.as_user(app.post(&messages), &f.key, f.owner),
            r#"{"messages": [{"max": 1.7976931348623157e308, "tiny": 5e-324}]}"#.to_owned(),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;

    for (path, body, field) in [
        (
            messages.clone(),
            r#"{"messages": [{"n": 1e131071}]}"#.to_owned(),
            "messages",
        ),
        (
            messages.clone(),
            r#"{"messages": [{"n": 1e-16383}]}"#.to_owned(),
            "messages",
        ),
        (
            "/api/sessions".to_owned(),
            format!(r#"{{"config_id": "{config}", "metadata": {{"n": 1e309}}}}"#),
            "metadata",
        ),
    ] {
        let response = json_body(app.as_user(app.post(&path), &f.key, f.owner), body)
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            detail.starts_with(field) && detail.contains("exponent"),
            "{path}: {detail}"
        );
    }

    // 64 KiB counts numbers as they are written back: 300 times `1e308`
    // is under 2 KiB as sent and 90 KiB as stored.
    let many: Vec<String> = (0..300).map(|i| format!(r#""n{i}": 1e308"#)).collect();
    let response = json_body(
        app.as_user(app.post("/api/sessions"), &f.key, f.owner),
        format!(
            r#"{{"config_id": "{config}", "metadata": {{{}}}}}"#,
            many.join(", ")
        ),
    )
    .send()
    .await
    .unwrap();
    let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        detail.starts_with("metadata") && detail.contains("64 KiB"),
        "{detail}"
    );

    assert_eq!(app.count_rows("sessions", None).await, sessions_before);
    assert_eq!(
        app.scalar::<i32>("SELECT count(*)::int FROM session_messages", &[])
            .await,
        1
    );
}
