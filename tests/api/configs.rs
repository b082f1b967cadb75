use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn create_and_get_a_config() {
    let app = spawn_app().await;
    let key = app.create_application("cfg-app").await;
    let response = app
        .post("/api/configs")
        .header("X-API-Key", &key)
        .json(&json!({
            "name": "Assistant",
            "description": "a helpful one",
            "yaml_content": "model: gpt\ntools: [search]\n",
            "tags": {"team": "core"}
        }))
        .send()
        .await
        .unwrap();
    let created = expect_status(response, StatusCode::CREATED).await;
    for field in ["config_id", "created_at", "updated_at"] {
        assert!(created[field].is_string(), "{field}");
    }
    assert_eq!(created["name"], "Assistant");
    assert_eq!(created["description"], "a helpful one");
    assert_eq!(created["tags"], json!({"team": "core"}));
    assert_eq!(created["shared"], false, "private unless said");
    assert_eq!(created["retired"], false);

    // Its application reads it; to another, a private config does not exist.
    let other = app.create_application("other-app").await;
    let id = created["config_id"].as_str().unwrap();
    let read = |key: String| {
        app.get(&format!("/api/configs/{id}"))
            .header("X-API-Key", key)
            .send()
    };
    let fetched = expect_status(read(key.clone()).await.unwrap(), StatusCode::OK).await;
    assert_eq!(fetched, created);
    expect_problem(read(other).await.unwrap(), StatusCode::NOT_FOUND).await;

    let creator: Option<String> = app
        .db()
        .await
        .query_one("SELECT created_by_app_id FROM configs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(creator.as_deref(), Some("cfg-app"));
}

#[tokio::test]
async fn invalid_yaml_is_422_with_line_and_column() {
    let app = spawn_app().await;
    let key = app.create_application("cfg-app").await;
    let response = app
        .post("/api/configs")
        .header("X-API-Key", &key)
        .json(&json!({"name": "bad", "yaml_content": "a: 1\nb: [1, 2\n"}))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("yaml_content"), "{detail}");
    assert!(
        detail.contains("line 3") && detail.contains("column"),
        "{detail}"
    );
}

#[tokio::test]
async fn other_invalid_configs_are_422_naming_the_field_and_write_nothing() {
    let app = spawn_app().await;
    let key = app.create_application("cfg-app").await;
    for (body, field) in [
        (json!({"name": "x", "yaml_content": ""}), "yaml_content"),
        (json!({"name": "x"}), "yaml_content"),
        (json!({"name": "", "yaml_content": "a: 1"}), "name"),
        (
            json!({"name": "x", "yaml_content": "a: 1", "tags": {"n": 1}}),
            "tags",
        ),
        (
            json!({"name": "x", "yaml_content": "a: 1", "tags": ["a"]}),
            "tags",
        ),
        (
            json!({"name": "x", "yaml_content": "a: 1", "colour": "red"}),
            "colour",
        ),
    ] {
        let response = app
            .post("/api/configs")
            .header("X-API-Key", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains(field), "{body}: {detail}");
    }
    let count = app.count_rows("configs", None).await;
    assert_eq!(count, 0);
}

#[tokio::test]
async fn unknown_config_is_404_and_malformed_id_is_400() {
    let app = spawn_app().await;
    let key = app.create_application("cfg-app").await;
    let id = Uuid::new_v4();
    let response = app
        .get(&format!("/api/configs/{id}"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::NOT_FOUND).await;
    assert!(detail.contains(&id.to_string()));

    let response = app
        .get("/api/configs/not-a-uuid")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn configs_need_an_application() {
    let app = spawn_app().await;
    let response = app
        .post("/api/configs")
        .json(&json!({"name": "x", "yaml_content": "a: 1"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
}
