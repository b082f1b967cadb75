//! list/get/update/rotate/delete applications.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_admin_lists_and_reads_applications_without_secrets() {
    let app = spawn_app().await;
    let key_a = app.create_application("app-a").await;
    app.create_application("app-b").await;
    let list = expect_status(
        app.get("/api/applications")
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let ids: Vec<&str> = list["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["app-a", "app-b"]);
    let text = list.to_string();
    assert!(
        !text.contains("api_key") && !text.contains(&key_a),
        "no keys or hashes: {text}"
    );

    let one = expect_status(
        app.get("/api/applications/app-a")
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(one["app_name"], "app-a app");
    assert!(one.get("api_key_hash").is_none());
    let response = app
        .get("/api/applications/none-such")
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .get("/api/applications")
        .header("X-API-Key", &key_a)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn deactivation_refuses_the_key_at_once_and_reactivation_restores_it() {
    let app = spawn_app().await;
    let key = app.create_application("app-a").await;
    let patch = |body: serde_json::Value| {
        app.http
            .patch(app.url("/api/applications/app-a"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&body)
            .send()
    };
    let updated = expect_status(
        patch(json!({"is_active": false, "app_name": "Renamed", "settings": {"x": 1}}))
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["is_active"], false);
    assert_eq!(updated["app_name"], "Renamed");
    assert_eq!(updated["settings"], json!({"x": 1}));
    let response = app
        .get("/api/configs")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::UNAUTHORIZED).await;
    assert!(detail.contains("deactivated"));

    expect_status(
        patch(json!({"is_active": true})).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let response = app
        .get("/api/configs")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    for body in [
        json!({}),
        json!({"app_id": "new-id"}),
        json!({"app_name": ""}),
    ] {
        expect_problem(patch(body).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    }
}

#[tokio::test]
async fn rotation_replaces_the_key_at_once() {
    let app = spawn_app().await;
    let old = app.create_application("app-a").await;
    let rotated = expect_status(
        app.post("/api/applications/app-a/rotate-key")
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let new = rotated["api_key"].as_str().unwrap();
    assert!(new.starts_with("amp_") && new != old);
    let response = app
        .get("/api/configs")
        .header("X-API-Key", &old)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .get("/api/configs")
        .header("X-API-Key", new)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .post("/api/applications/none-such/rotate-key")
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_deleted_application_is_gone_and_its_key_refused() {
    let app = spawn_app().await;
    let key = app.create_application("app-a").await;
    app.create_config(&key).await;
    let response = app
        .http
        .delete(app.url("/api/applications/app-a"))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .get("/api/configs")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.count_rows("configs", None).await, 1, "its configs stay");
    let response = app
        .http
        .delete(app.url("/api/applications/app-a"))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

/// Keys are checked by each function's own statement, never cached: after
/// rotate-key the old key is refused by the very next request of every
/// family of functions, and the new one works.
#[tokio::test]
async fn a_rotated_key_is_refused_by_the_next_request_of_every_function() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let config: String = app.scalar("SELECT config_id::text FROM configs", &[]).await;
    let session = &f.session_id;
    let requests = |key: &str| {
        let user = |b: reqwest::RequestBuilder| app.as_user(b, key, f.owner);
        vec![
            (
                "get-session",
                user(app.get(&format!("/api/sessions/{session}"))),
            ),
            (
                "append-messages",
                user(app.post(&format!("/api/sessions/{session}/messages")))
                    .json(&json!({"messages": [{"text": "hi"}]})),
            ),
            (
                "list-messages",
                user(app.get(&format!("/api/sessions/{session}/messages"))),
            ),
            (
                "list-participants",
                user(app.get(&format!("/api/sessions/{session}/participants"))),
            ),
            (
                "list-user-sessions",
                user(app.get("/api/users/me/sessions")),
            ),
            (
                "get-config",
                app.get(&format!("/api/configs/{config}"))
                    .header("X-API-Key", key),
            ),
            (
                "list-configs",
                app.get("/api/configs").header("X-API-Key", key),
            ),
        ]
    };
    for (name, request) in requests(&f.key) {
        assert!(
            request.send().await.unwrap().status().is_success(),
            "{name} before"
        );
    }
    let rotated = expect_status(
        app.post(&format!(
            "/api/applications/{}/rotate-key",
            app.scalar::<String>("SELECT app_id FROM applications", &[])
                .await
        ))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    for (name, request) in requests(&f.key) {
        let detail = expect_problem(request.send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
        assert!(detail.contains("rotate-key"), "{name}: {detail}");
    }
    let new_key = rotated["api_key"].as_str().unwrap();
    for (name, request) in requests(new_key) {
        assert!(
            request.send().await.unwrap().status().is_success(),
            "{name} after"
        );
    }
}
