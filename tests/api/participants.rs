use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

/// Every caller role × every granted role, over HTTP.
#[tokio::test]
async fn add_participant_role_matrix() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let editor = Uuid::new_v4();
    let viewer = Uuid::new_v4();
    assert_eq!(
        app.add_participant(&f.key, f.owner, &f.session_id, editor, "editor")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.add_participant(&f.key, f.owner, &f.session_id, viewer, "viewer")
            .await
            .status(),
        StatusCode::CREATED
    );

    let cases = [
        (f.owner, "owner", StatusCode::CREATED),
        (f.owner, "editor", StatusCode::CREATED),
        (f.owner, "viewer", StatusCode::CREATED),
        (editor, "owner", StatusCode::FORBIDDEN),
        (editor, "editor", StatusCode::CREATED),
        (editor, "viewer", StatusCode::CREATED),
        (viewer, "owner", StatusCode::FORBIDDEN),
        (viewer, "editor", StatusCode::FORBIDDEN),
        (viewer, "viewer", StatusCode::FORBIDDEN),
        (Uuid::new_v4(), "viewer", StatusCode::NOT_FOUND),
    ];
    for (caller, role, expected) in cases {
        let target = Uuid::new_v4();
        let response = app
            .add_participant(&f.key, caller, &f.session_id, target, role)
            .await;
        let status = response.status();
        if expected == StatusCode::CREATED {
            let body = expect_status(response, expected).await;
            assert_eq!(body["role"], role);
            assert_eq!(body["user_id"], target.to_string());
            assert_eq!(body["session_id"], f.session_id);
            assert!(body["joined_at"].is_string());
        } else {
            expect_problem(response, expected).await;
            let n = app.count_rows("session_participants", Some(target)).await;
            assert_eq!(n, 0, "{role} by a caller who got {status}: nothing written");
        }
    }
}

#[tokio::test]
async fn readding_returns_200_and_changes_nothing() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let user = Uuid::new_v4();
    let first = expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, user, "editor")
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(first["last_active_at"], serde_json::Value::Null);
    let again = expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, user, "viewer")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        again, first,
        "the row is returned unchanged, role and activity included"
    );

    // The added user has a users row.
    let n = app.count_rows("users", Some(user)).await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn role_defaults_to_viewer_and_unknown_roles_are_422() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}/participants", f.session_id);
    let user = Uuid::new_v4();
    let body = expect_status(
        app.as_user(app.post(&path), &f.key, f.owner)
            .json(&json!({"user_id": user}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(body["role"], "viewer");

    for (body, field) in [
        (json!({"user_id": Uuid::new_v4(), "role": "admin"}), "role"),
        (json!({"user_id": "someone"}), "user_id"),
        (json!({"role": "viewer"}), "user_id"),
    ] {
        let response = app
            .as_user(app.post(&path), &f.key, f.owner)
            .json(&body)
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains(field), "{body}: {detail}");
    }
}

#[tokio::test]
async fn thirty_concurrent_adds_of_one_user_make_one_row() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let user = Uuid::new_v4();
    let calls =
        (0..30).map(|_| app.add_participant(&f.key, f.owner, &f.session_id, user, "editor"));
    let statuses: Vec<StatusCode> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        29,
        "{statuses:?}"
    );
    let n = app.count_rows("session_participants", Some(user)).await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn list_participants_in_join_order_for_participants_only() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let mut added = vec![f.owner];
    for _ in 0..3 {
        let user = Uuid::new_v4();
        app.add_participant(&f.key, f.owner, &f.session_id, user, "viewer")
            .await;
        added.push(user);
    }
    let path = format!("/api/sessions/{}/participants", f.session_id);
    let body = expect_status(
        app.as_user(app.get(&path), &f.key, added[2])
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["session_id"], f.session_id);
    let listed: Vec<String> = body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = added.iter().map(Uuid::to_string).collect();
    assert_eq!(listed, expected);
    assert_eq!(body["participants"][0]["role"], "owner");

    let response = app
        .as_user(app.get(&path), &f.key, Uuid::new_v4())
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
}
