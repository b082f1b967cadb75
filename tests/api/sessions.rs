use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn create_session_writes_session_owner_and_user_atomically() {
    let app = spawn_app().await;
    let key = app.create_application("sess-app").await;
    let config_id = app.create_config(&key).await;
    let owner = Uuid::new_v4();

    let response = app
        .as_user(app.post("/api/sessions"), &key, owner)
        .json(&json!({"config_id": config_id, "metadata": {"title": "hello"}}))
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let session = expect_status(response, StatusCode::CREATED).await;
    let id = session["session_id"].as_str().unwrap();
    assert_eq!(location, format!("/api/sessions/{id}"));
    assert_eq!(session["config_id"], config_id.to_string());
    assert_eq!(session["owner_user_id"], owner.to_string());
    assert_eq!(session["created_by_app_id"], "sess-app");
    assert_eq!(session["status"], "active");
    assert_eq!(session["message_count"], 0);
    assert_eq!(session["metadata"], json!({"title": "hello"}));
    for field in ["created_at", "updated_at"] {
        assert!(session[field].is_string(), "{field}");
    }
    assert!(session.get("last_accessed_at").is_some());

    let db = app.db().await;
    let role: String = db
        .query_one(
            "SELECT role FROM session_participants WHERE session_id = $1::text::uuid AND user_id = $2",
            &[&id, &owner],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "owner");

    app.create_session(&key, owner, config_id).await;
    let row = db
        .query_one(
            "SELECT total_sessions, last_seen_app_id, first_seen <= last_seen FROM users WHERE user_id = $1",
            &[&owner],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("sess-app"));
    assert!(row.get::<_, bool>(2));
}

#[tokio::test]
async fn unknown_config_is_404_naming_it_and_writes_nothing() {
    let app = spawn_app().await;
    let key = app.create_application("sess-app").await;
    let missing = Uuid::new_v4();
    let response = app
        .as_user(app.post("/api/sessions"), &key, Uuid::new_v4())
        .json(&json!({"config_id": missing}))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::NOT_FOUND).await;
    assert!(detail.contains(&missing.to_string()), "{detail}");
    for table in ["sessions", "session_participants", "users"] {
        let n = app.count_rows(table, None).await;
        assert_eq!(n, 0, "{table}");
    }
}

#[tokio::test]
async fn invalid_create_session_bodies_are_422() {
    let app = spawn_app().await;
    let key = app.create_application("sess-app").await;
    for (body, field) in [
        (json!({}), "config_id"),
        (json!({"config_id": "nope"}), "config_id"),
        (
            json!({"config_id": Uuid::new_v4(), "metadata": "x"}),
            "metadata",
        ),
    ] {
        let response = app
            .as_user(app.post("/api/sessions"), &key, Uuid::new_v4())
            .json(&body)
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains(field), "{body}: {detail}");
    }
}

#[tokio::test]
async fn participants_read_the_session_with_their_role_and_others_get_404() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let viewer = Uuid::new_v4();
    let response = app
        .add_participant(&f.key, f.owner, &f.session_id, viewer, "viewer")
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let path = format!("/api/sessions/{}", f.session_id);
    let body = expect_status(
        app.as_user(app.get(&path), &f.key, f.owner)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["role"], "owner");
    assert!(body.get("transcript").is_none());
    assert_eq!(body["last_seq"], 0);
    assert_eq!(body["session_id"], f.session_id);

    let body = expect_status(
        app.as_user(app.get(&path), &f.key, viewer)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["role"], "viewer");

    let stranger = app
        .as_user(app.get(&path), &f.key, Uuid::new_v4())
        .send()
        .await
        .unwrap();
    let detail = expect_problem(stranger, StatusCode::NOT_FOUND).await;
    let missing_id = Uuid::new_v4();
    let missing = app
        .as_user(
            app.get(&format!("/api/sessions/{missing_id}")),
            &f.key,
            f.owner,
        )
        .send()
        .await
        .unwrap();
    let missing_detail = expect_problem(missing, StatusCode::NOT_FOUND).await;
    assert_eq!(
        detail.replace(&f.session_id, "ID"),
        missing_detail.replace(&missing_id.to_string(), "ID"),
        "a hidden session looks exactly like a missing one"
    );
}

#[tokio::test]
async fn reading_records_access_without_moving_updated_at() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let reader = app.create_application("reader-app").await;
    let path = format!("/api/sessions/{}", f.session_id);
    let first = expect_status(
        app.as_user(app.get(&path), &reader, f.owner)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(first["last_accessed_at"].is_string());
    let second = expect_status(
        app.as_user(app.get(&path), &reader, f.owner)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let at = |v: &serde_json::Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert!(at(&second["last_accessed_at"]) > at(&first["last_accessed_at"]));
    assert_eq!(second["updated_at"], first["updated_at"]);
    let by: Option<String> = app
        .db()
        .await
        .query_one("SELECT last_accessed_by_app_id FROM sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(by.as_deref(), Some("reader-app"));
}
