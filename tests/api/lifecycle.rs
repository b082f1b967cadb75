//! update-session, delete-session, append-messages.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn update_session_changes_status_and_metadata() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}", f.session_id);
    let before = expect_status(
        app.as_user(app.get(&path), &f.key, f.owner)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let updated = expect_status(
        app.as_user(app.http.patch(app.url(&path)), &f.key, f.owner)
            .json(&json!({"status": "completed", "metadata": {"score": 3}}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["status"], "completed");
    assert_eq!(updated["metadata"], json!({"score": 3}));
    assert_ne!(updated["updated_at"], before["updated_at"]);

    for body in [
        json!({"status": "paused"}),
        json!({}),
        json!({"metadata": [1]}),
        json!({"transcript": []}),
    ] {
        let response = app
            .as_user(app.http.patch(app.url(&path)), &f.key, f.owner)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    assert_eq!(
        app.scalar::<String>("SELECT status FROM sessions", &[])
            .await,
        "completed"
    );
}

/// delete-session moves the session to the trash (kept, invisible);
/// `permanent=true` removes it and its participants.
#[tokio::test]
async fn delete_session_trashes_it_and_permanent_delete_removes_it_and_its_participants() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}", f.session_id);
    let response = app
        .as_user(app.http.delete(app.url(&path)), &f.key, f.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let trashed: i64 = app
        .scalar(
            "SELECT count(*) FROM sessions WHERE trashed_at IS NOT NULL",
            &[],
        )
        .await;
    assert_eq!(trashed, 1);
    assert_eq!(app.count_rows("session_participants", None).await, 1);
    let response = app
        .as_user(app.get(&path), &f.key, f.owner)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;

    let response = app
        .as_user(
            app.http.delete(app.url(&format!("{path}?permanent=true"))),
            &f.key,
            f.owner,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.count_rows("sessions", None).await, 0);
    assert_eq!(app.count_rows("session_participants", None).await, 0);
}

#[tokio::test]
async fn append_messages_numbers_them_and_bumps_the_caller() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let editor = Uuid::new_v4();
    app.add_participant(&f.key, f.owner, &f.session_id, editor, "editor")
        .await;
    let path = format!("/api/sessions/{}/messages", f.session_id);
    let body = expect_status(
        app.as_user(app.post(&path), &f.key, editor)
            .json(&json!({"messages": [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "hello"}]}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        body,
        json!({"session_id": f.session_id, "message_count": 2, "first_seq": 1, "last_seq": 2})
    );
    let session = expect_status(
        app.as_user(
            app.get(&format!("/api/sessions/{}", f.session_id)),
            &f.key,
            editor,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(session["message_count"], 2);
    assert_eq!(session["last_seq"], 2);
    assert!(session.get("transcript").is_none(), "never the transcript");
    let page = expect_status(
        app.as_user(app.get(&path), &f.key, editor)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["messages"][1]["seq"], 2);
    assert_eq!(
        page["messages"][1]["message"],
        json!({"role": "assistant", "text": "hello"})
    );
    let bumped: bool = app
        .scalar(
            "SELECT last_active_at IS NOT NULL FROM session_participants WHERE user_id = $1",
            &[&editor],
        )
        .await;
    assert!(bumped);

    let too_many: Vec<_> = (0..101).map(|i| json!({"n": i})).collect();
    for body in [
        json!({"messages": []}),
        json!({"messages": too_many}),
        json!({"messages": ["text"]}),
        json!({"messages": {"a": 1}}),
        json!({}),
    ] {
        let response = app
            .as_user(app.post(&path), &f.key, editor)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    assert_eq!(
        app.scalar::<i32>("SELECT message_count FROM sessions", &[])
            .await,
        2
    );
}

#[tokio::test]
async fn twenty_concurrent_appends_of_five_leave_exactly_one_hundred() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}/messages", f.session_id);
    let calls = (0..20).map(|call| {
        let messages: Vec<_> = (0..5).map(|i| json!({"call": call, "i": i})).collect();
        app.as_user(app.post(&path), &f.key, f.owner)
            .json(&json!({"messages": messages}))
            .send()
    });
    for response in futures::future::join_all(calls).await {
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
    let (count, rows, max_seq): (i32, i64, i32) = {
        let db = app.db().await;
        let row = db
            .query_one(
                "SELECT s.message_count, count(m.*), max(m.seq) FROM sessions s
                 JOIN session_messages m USING (session_id) GROUP BY s.message_count",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((count, rows, max_seq), (100, 100, 100));
}
