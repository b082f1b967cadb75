use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::*;

#[tokio::test]
async fn admin_creates_an_application_and_gets_its_key_once() {
    let app = spawn_app().await;
    let response = app
        .post("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"app_id": "web-app", "app_name": "Web", "settings": {"theme": "dark"}}))
        .send()
        .await
        .unwrap();
    let body = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(body["app_id"], "web-app");
    assert_eq!(body["app_name"], "Web");
    assert_eq!(body["is_active"], true);
    assert!(body["created_at"].is_string());
    let key = body["api_key"].as_str().unwrap();
    assert!(key.starts_with("amp_") && key.len() >= 40, "{key}");

    // Stored only as its SHA-256 hash.
    let row = app
        .db()
        .await
        .query_one(
            "SELECT api_key_hash, settings FROM applications WHERE app_id = 'web-app'",
            &[],
        )
        .await
        .unwrap();
    let stored: String = row.get(0);
    assert_eq!(stored, format!("{:x}", Sha256::digest(key.as_bytes())));
    assert_eq!(row.get::<_, serde_json::Value>(1), json!({"theme": "dark"}));

    // The key works as an application key.
    let response = app
        .post("/api/configs")
        .header("X-API-Key", key)
        .json(&json!({"name": "c", "yaml_content": "a: 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn duplicate_app_id_is_a_conflict_and_keeps_the_first_key() {
    let app = spawn_app().await;
    let first = app.create_application("dup-app").await;
    let response = app
        .post("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"app_id": "dup-app", "app_name": "Again"}))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::CONFLICT).await;
    assert!(detail.contains("dup-app"), "{detail}");
    app.create_config(&first).await;
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"app_id": "No_Caps", "app_name": "x"}), "app_id"),
        (json!({"app_id": "ab", "app_name": "x"}), "app_id"),
        (json!({"app_id": "good-id", "app_name": ""}), "app_name"),
        (
            json!({"app_id": "good-id", "app_name": "x".repeat(256)}),
            "app_name",
        ),
        (json!({"app_id": "good-id"}), "app_name"),
        (
            json!({"app_id": "good-id", "app_name": "x", "settings": [1]}),
            "settings",
        ),
    ] {
        let response = app
            .post("/api/applications")
            .header("X-API-Key", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains(field), "{body}: {detail}");
    }
    let count = app.count_rows("applications", None).await;
    assert_eq!(count, 0, "nothing written");
}

#[tokio::test]
async fn only_the_admin_manages_applications() {
    let app = spawn_app().await;
    let app_key = app.create_application("some-app").await;
    let body = json!({"app_id": "other-app", "app_name": "x"});

    let response = app
        .post("/api/applications")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;

    let response = app
        .post("/api/applications")
        .header("X-API-Key", "amp_not-a-real-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;

    let response = app
        .post("/api/applications")
        .header("X-API-Key", &app_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn the_admin_key_is_not_an_application_key() {
    let app = spawn_app().await;
    let response = app
        .post("/api/configs")
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"name": "c", "yaml_content": "a: 1"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
}
