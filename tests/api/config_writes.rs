//! list-configs, update-config, delete-config.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn the_creator_updates_partially_and_others_are_forbidden() {
    let app = spawn_app().await;
    let key = app.create_application("owner-app").await;
    let other = app.create_application("other-app").await;
    // Shared: the other application sees it, and still may not change it.
    let id = app.create_config_shared(&key, true).await;
    let path = format!("/api/configs/{id}");

    let updated = expect_status(
        app.http
            .patch(app.url(&path))
            .header("X-API-Key", &key)
            .json(&json!({"name": "renamed", "description": "now described", "tags": {"a": "b"}}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["description"], "now described");
    assert_eq!(updated["tags"], json!({"a": "b"}));
    assert_eq!(
        updated["yaml_content"], "model: test\n",
        "absent fields unchanged"
    );

    // null clears the description; the admin may write too.
    let cleared = expect_status(
        app.http
            .patch(app.url(&path))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({"description": null, "yaml_content": "model: other\n"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(cleared["description"].is_null());
    assert_eq!(cleared["name"], "renamed");

    let response = app
        .http
        .patch(app.url(&path))
        .header("X-API-Key", &other)
        .json(&json!({"name": "hijacked"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(
        app.scalar::<String>("SELECT name FROM configs", &[]).await,
        "renamed"
    );

    for (body, status) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"yaml_content": "a: [1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"name": ""}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"owner": "me"}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let response = app
            .http
            .patch(app.url(&path))
            .header("X-API-Key", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(response, status).await;
    }
    let response = app
        .http
        .patch(app.url(&format!("/api/configs/{}", Uuid::new_v4())))
        .header("X-API-Key", &key)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn deleting_a_config_deletes_its_sessions() {
    let app = spawn_app().await;
    let key = app.create_application("owner-app").await;
    let other = app.create_application("other-app").await;
    let id = app.create_config_shared(&key, true).await;
    let user = Uuid::new_v4();
    let session = app.create_session(&key, user, id).await;
    let path = format!("/api/configs/{id}");

    let response = app
        .http
        .delete(app.url(&path))
        .header("X-API-Key", &other)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(app.count_rows("sessions", None).await, 1);

    let response = app
        .http
        .delete(app.url(&path))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.count_rows("configs", None).await, 0);
    assert_eq!(app.count_rows("sessions", None).await, 0);
    assert_eq!(app.count_rows("session_participants", None).await, 0);
    let response = app
        .as_user(
            app.get(&format!(
                "/api/sessions/{}",
                session["session_id"].as_str().unwrap()
            )),
            &key,
            user,
        )
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;

    let response = app
        .http
        .delete(app.url(&path))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;

    // The admin may delete any config.
    let id = app.create_config(&key).await;
    let response = app
        .http
        .delete(app.url(&format!("/api/configs/{id}")))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn list_configs_pages_through_the_callers_own_newest_first() {
    let app = spawn_app().await;
    let key = app.create_application("list-app").await;
    let other = app.create_application("other-app").await;
    app.create_config(&other).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.create_config(&key).await.to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/configs?limit=2".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = expect_status(
            app.get(&path)
                .header("X-API-Key", &key)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        let configs = page["configs"].as_array().unwrap();
        assert!(configs.len() <= 2);
        seen.extend(
            configs
                .iter()
                .map(|c| c["config_id"].as_str().unwrap().to_owned()),
        );
        if seen.len() == 2 {
            // A config created between pages does not disturb the walk.
            app.create_config(&key).await;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created, "each existing config once, newest first");

    let response = app
        .get("/api/configs?cursor=garbage")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("cursor"), "{detail}");
}
