//! Every error class: problem+json with a clear detail, and nothing written.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .post("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .header("content-type", "application/json")
        .body(r#"{"app_id": "abc", "app_name": "#)
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::BAD_REQUEST).await;
    assert!(detail.contains("JSON"), "{detail}");
}

/// A bare array where an object is expected: the answer shows the
/// object's shape, not serde's view of the array as the struct's fields.
#[tokio::test]
async fn an_array_for_an_object_is_a_422_showing_the_shape() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let response = app
        .as_user(
            app.post(&format!("/api/sessions/{}/messages", f.session_id)),
            &f.key,
            f.owner,
        )
        .json(&json!([{"role": "user", "content": "hi"}]))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains(r#"{"messages": …}"#), "{detail}");
    assert_eq!(
        app.scalar::<i64>("SELECT count(*) FROM session_messages", &[])
            .await,
        0
    );
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let app = spawn_app().await;
    let response = app
        .post("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .header("content-type", "application/json")
        .body(b"{\"app_id\": \"\xff\xfe\", \"app_name\": \"x\"}".to_vec())
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .post("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .header("content-type", "text/plain")
        .body(r#"{"app_id": "abc", "app_name": "x"}"#)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_write_nothing() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "1024")]).await;
    let response = app
        .post("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"app_id": "big-app", "app_name": "x", "settings": {"pad": "x".repeat(2000)}}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Just under the limit is fine.
    let response = app
        .post("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"app_id": "big-app", "app_name": "x", "settings": {"pad": "x".repeat(900)}}))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::CREATED).await;
    let n = app.count_rows("applications", None).await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let response = app.get("/api/nothing-here").send().await.unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .http
        .delete(app.url("/api/health"))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn deeply_nested_json_is_a_clear_4xx_and_writes_nothing() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let nested = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = format!(r#"{{"messages": [{{"deep": {nested}}}]}}"#);
    let response = app
        .as_user(
            app.post(&format!("/api/sessions/{}/messages", f.session_id)),
            &f.key,
            f.owner,
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(status.is_client_error(), "{status}");
    expect_problem(response, status).await;
    assert_eq!(
        app.scalar::<i32>("SELECT message_count FROM sessions", &[])
            .await,
        0
    );
}

#[tokio::test]
async fn huge_strings_are_rejected_by_field_or_by_size() {
    let app = spawn_app().await;
    let key = app.create_application("big-app").await;
    // Within the body limit but too long for the column.
    let response = app
        .post("/api/configs")
        .header("X-API-Key", &key)
        .json(&json!({"name": "n".repeat(100_000), "yaml_content": "a: 1"}))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("name"), "{detail}");
    // Over the body limit.
    let response = app
        .post("/api/configs")
        .header("X-API-Key", &key)
        .json(&json!({"name": "n", "yaml_content": format!("a: {}", "x".repeat(2 * 1024 * 1024))}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(app.count_rows("configs", None).await, 0);
}

/// Found by the fuzzer: numbers at the edge of f64 must survive a trip
/// through JSONB, and NUL characters (which PostgreSQL cannot store) are a
/// 422, not a 500.
#[tokio::test]
async fn extreme_numbers_round_trip_and_nul_is_a_422() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}/messages", f.session_id);
    let response = app
        .as_user(app.post(&path), &f.key, f.owner)
        .header("content-type", "application/json")
        .body(r#"{"messages": [{"max": 1.7976931348623157e308, "min": -1.7976931348623157e308, "tiny": 5e-324}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = expect_status(
        app.as_user(app.get(&path), &f.key, f.owner)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let message = &page["messages"][0]["message"];
    assert_eq!(message["max"].as_f64(), Some(f64::MAX));
    assert_eq!(message["tiny"].as_f64(), Some(5e-324));

    for body in [
        json!({"messages": [{"text": "nul \u{0} inside"}]}),
        json!({"messages": [{"key \u{0}": 1}]}),
    ] {
        let response = app
            .as_user(app.post(&path), &f.key, f.owner)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let response = app
        .post("/api/configs")
        .header("X-API-Key", &f.key)
        .json(&json!({"name": "a\u{0}b", "yaml_content": "a: 1"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        app.scalar::<i32>("SELECT message_count FROM sessions", &[])
            .await,
        1
    );
}

/// What a newcomer reads: the field and the problem, without the
/// framework's preamble; a token that is no JWT says so and, outside
/// staging and production, how to get one; a wrong admin key and a wrong
/// application key are told apart.
#[tokio::test]
async fn error_texts_say_what_to_fix() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let response = app
        .as_user(app.post("/api/sessions"), &f.key, f.owner)
        .json(&serde_json::json!({"config_id": "not-a-uuid"}))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.starts_with("config_id: "), "{detail}");

    let response = app
        .get("/api/users/me/sessions")
        .header("X-API-Key", &f.key)
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::UNAUTHORIZED).await;
    assert!(detail.contains("not a valid JWT"), "{detail}");
    assert!(detail.contains("dev-token"), "{detail}");

    let wrong = "amp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let admin = expect_problem(
        app.get("/api/applications")
            .header("X-API-Key", wrong)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let application = expect_problem(
        app.get("/api/configs")
            .header("X-API-Key", wrong)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(admin.contains("admin key"), "{admin}");
    assert!(application.contains("application key"), "{application}");
}

#[tokio::test]
async fn values_postgres_refuses_are_422_without_its_words() {
    use amplifier_sessions::{db::DbError, error::ApiError};
    use axum::response::IntoResponse;

    // Input is checked field by field before it is stored; this is the
    // fallback for a value PostgreSQL still refuses (SQLSTATE class 22).
    let app = spawn_app().await;
    let refused = app
        .db()
        .await
        .query_one("SELECT 'secret-42'::int", &[])
        .await
        .unwrap_err();
    let response = ApiError::from(DbError::from(refused)).into_response();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY.as_u16());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("cannot be stored"), "{body}");
    for echo in ["secret-42", "invalid input syntax", "22P02"] {
        assert!(!body.contains(echo), "{echo} echoed: {body}");
    }
}
