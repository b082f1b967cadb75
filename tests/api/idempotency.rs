//! Idempotency-Key on create-session and append-messages.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

async fn create(
    app: &TestApp,
    key: &str,
    user: Uuid,
    idem: &str,
    body: &Value,
) -> reqwest::Response {
    app.as_user(app.post("/api/sessions"), key, user)
        .header("Idempotency-Key", idem)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_replays_the_first_response_without_writing() {
    let app = spawn_app().await;
    let key = app.create_application("idem-app").await;
    let config = app.create_config(&key).await;
    let user = Uuid::new_v4();
    let body = json!({"config_id": config, "metadata": {"a": 1}});

    let first = create(&app, &key, user, "retry-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].clone();
    let first_body = first.text().await.unwrap();

    // Same content, different formatting: still the same request.
    let same = json!({"metadata": {"a": 1}, "config_id": config});
    let again = create(&app, &key, user, "retry-1", &same).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(app.count_rows("sessions", None).await, 1);

    let different = create(&app, &key, user, "retry-1", &json!({"config_id": config})).await;
    let detail = expect_problem(different, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("Idempotency-Key"), "{detail}");

    assert_eq!(
        create(&app, &key, user, "retry-2", &body).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.count_rows("sessions", None).await, 2);

    // Keys belong to one application: another may use the same key.
    let other = app.create_application("other-app").await;
    assert_eq!(
        create(&app, &other, user, "retry-1", &body).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.count_rows("sessions", None).await, 3);
}

#[tokio::test]
async fn concurrent_duplicates_write_once() {
    let app = spawn_app().await;
    let key = app.create_application("idem-app").await;
    let config = app.create_config(&key).await;
    let user = Uuid::new_v4();
    let body = json!({"config_id": config});
    let calls = (0..10).map(|_| create(&app, &key, user, "same-key", &body));
    let responses = futures::future::join_all(calls).await;
    let mut bodies = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        bodies.push(response.text().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every caller sees the one session"
    );
    assert_eq!(app.count_rows("sessions", None).await, 1);
    assert_eq!(app.count_rows("users", None).await, 1);
    assert_eq!(
        app.scalar::<i32>("SELECT total_sessions FROM users", &[])
            .await,
        1
    );
}

#[tokio::test]
async fn a_failed_request_does_not_use_up_its_key() {
    let app = spawn_app().await;
    let key = app.create_application("idem-app").await;
    let user = Uuid::new_v4();
    let body = json!({"config_id": Uuid::new_v4()});
    expect_problem(
        create(&app, &key, user, "k", &body).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.count_rows("idempotency_keys", None).await, 0);
    let response = app
        .as_user(app.post("/api/sessions"), &key, user)
        .header("Idempotency-Key", "has spaces")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn appends_with_a_key_happen_once() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}/messages", f.session_id);
    let body = json!({"messages": [{"text": "once"}, {"text": "twice?"}]});
    let calls = (0..5).map(|_| {
        app.as_user(app.post(&path), &f.key, f.owner)
            .header("Idempotency-Key", "append-1")
            .json(&body)
            .send()
    });
    for response in futures::future::join_all(calls).await {
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let value: Value = response.json().await.unwrap();
        assert_eq!(value["message_count"], 2);
    }
    assert_eq!(
        app.scalar::<i32>("SELECT message_count FROM sessions", &[])
            .await,
        2
    );
}

/// A retry after its session was deleted must not answer 201 with the
/// `Location` of a deleted session, nor report an append to a transcript
/// that no longer exists: it is a 410 naming the session, and nothing is
/// created again. A fork's replay is about the fork, not its source.
#[tokio::test]
async fn a_replay_after_its_session_was_deleted_is_410() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let config = app.create_config(&f.key).await;
    let post = |path: String, idem: &'static str, body: Value| {
        app.as_user(app.post(&path), &f.key, f.owner)
            .header("Idempotency-Key", idem)
            .json(&body)
            .send()
    };
    let delete = |session: String| {
        app.as_user(
            app.http
                .delete(app.url(&format!("/api/sessions/{session}"))),
            &f.key,
            f.owner,
        )
        .send()
    };
    let create = || {
        post(
            "/api/sessions".to_owned(),
            "create",
            json!({"config_id": config}),
        )
    };
    let fork = || {
        post(
            format!("/api/sessions/{}/fork", f.session_id),
            "fork",
            json!({}),
        )
    };
    let append = || {
        post(
            format!("/api/sessions/{}/messages", f.session_id),
            "append",
            json!({"messages": [{"text": "hi"}]}),
        )
    };
    let created = expect_status(create().await.unwrap(), StatusCode::CREATED).await;
    let created = created["session_id"].as_str().unwrap().to_owned();
    expect_status(append().await.unwrap(), StatusCode::OK).await;
    let forked = expect_status(fork().await.unwrap(), StatusCode::CREATED).await;
    let forked = forked["session_id"].as_str().unwrap().to_owned();

    for session in [&created, &f.session_id] {
        assert_eq!(
            delete(session.clone()).await.unwrap().status(),
            StatusCode::NO_CONTENT
        );
    }
    // The fork outlives its source: its replay still stands.
    let replay = fork().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(
        delete(forked.clone()).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );

    for (what, replay, session) in [
        ("create-session", create().await.unwrap(), &created),
        ("append-messages", append().await.unwrap(), &f.session_id),
        ("fork-session", fork().await.unwrap(), &forked),
    ] {
        assert!(replay.headers().get("location").is_none(), "{what}");
        let detail = expect_problem(replay, StatusCode::GONE).await;
        assert!(
            detail.contains(session.as_str()) && detail.contains("deleted"),
            "{what}: {detail}"
        );
    }
    assert_eq!(app.count_rows("sessions", None).await, 0);
}
