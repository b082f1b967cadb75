use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_user_lists_their_sessions_most_recently_active_first() {
    let app = spawn_app().await;
    let key = app.create_application("list-app").await;
    let config_id = app.create_config(&key).await;
    let user = Uuid::new_v4();
    let other = Uuid::new_v4();

    let own_old = app.create_session(&key, user, config_id).await;
    let own_new = app.create_session(&key, user, config_id).await;
    // Shared with `user` but never active: sorts last.
    let shared = app.create_session(&key, other, config_id).await;
    let shared_id = shared["session_id"].as_str().unwrap();
    app.add_participant(&key, other, shared_id, user, "viewer")
        .await;
    // Not shared with `user`: not listed.
    app.create_session(&key, other, config_id).await;

    for path in [
        "/api/users/me/sessions".to_owned(),
        format!("/api/users/{user}/sessions"),
    ] {
        let body = expect_status(
            app.as_user(app.get(&path), &key, user)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(body["user_id"], user.to_string());
        let sessions = body["sessions"].as_array().unwrap();
        let ids: Vec<&str> = sessions
            .iter()
            .map(|s| s["session_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                own_new["session_id"].as_str().unwrap(),
                own_old["session_id"].as_str().unwrap(),
                shared_id
            ]
        );
        assert_eq!(sessions[0]["role"], "owner");
        assert_eq!(sessions[2]["role"], "viewer");
        assert!(sessions[2]["last_active_at"].is_null());
        for s in sessions {
            assert!(s.get("transcript").is_none(), "never the transcript");
            for field in [
                "config_id",
                "owner_user_id",
                "status",
                "joined_at",
                "message_count",
                "metadata",
                "created_at",
                "updated_at",
            ] {
                assert!(s.get(field).is_some(), "{field}");
            }
        }
    }

    let body = expect_status(
        app.as_user(app.get("/api/users/me/sessions?limit=2"), &key, user)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn another_users_list_is_forbidden() {
    let app = spawn_app().await;
    let key = app.create_application("list-app").await;
    let path = format!("/api/users/{}/sessions", Uuid::new_v4());
    let response = app
        .as_user(app.get(&path), &key, Uuid::new_v4())
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn bad_limits_and_user_ids_are_rejected() {
    let app = spawn_app().await;
    let key = app.create_application("list-app").await;
    let user = Uuid::new_v4();
    for limit in ["0", "101", "ten", "5,10"] {
        let path = format!("/api/users/me/sessions?limit={limit}");
        let response = app
            .as_user(app.get(&path), &key, user)
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains("limit"), "{limit}: {detail}");
    }
    let response = app
        .as_user(app.get("/api/users/someone/sessions"), &key, user)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST).await;
}
