//! Keyset pages of list-user-sessions: every row once, in order, across
//! inserts between pages and rows that were never active (NULL).

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

async fn page(app: &TestApp, key: &str, user: Uuid, cursor: Option<&str>) -> Value {
    let mut path = "/api/users/me/sessions?limit=3".to_owned();
    if let Some(c) = cursor {
        path.push_str(&format!("&cursor={c}"));
    }
    expect_status(
        app.as_user(app.get(&path), key, user).send().await.unwrap(),
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn pages_cover_every_session_once_in_order() {
    let app = spawn_app().await;
    let key = app.create_application("page-app").await;
    let config = app.create_config(&key).await;
    let user = Uuid::new_v4();
    let other = Uuid::new_v4();
    // 5 owned (active), 4 shared with `user` who never acted (NULL).
    for _ in 0..5 {
        app.create_session(&key, user, config).await;
    }
    for _ in 0..4 {
        let s = app.create_session(&key, other, config).await;
        app.add_participant(
            &key,
            other,
            s["session_id"].as_str().unwrap(),
            user,
            "viewer",
        )
        .await;
    }
    // Two share one timestamp, to exercise the tie-break.
    app.db()
        .await
        .execute(
            "UPDATE session_participants SET last_active_at = '2026-01-01T00:00:00Z'
             WHERE session_id IN (SELECT session_id FROM session_participants
                                  WHERE user_id = $1 AND role = 'owner' LIMIT 2)
               AND user_id = $1",
            &[&user],
        )
        .await
        .unwrap();

    let existing: HashSet<String> = {
        let rows = app
            .db()
            .await
            .query(
                "SELECT session_id::text FROM session_participants WHERE user_id = $1",
                &[&user],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    };
    assert_eq!(existing.len(), 9);

    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let body = page(&app, &key, user, cursor.as_deref()).await;
        pages += 1;
        seen.extend(body["sessions"].as_array().unwrap().iter().cloned());
        if pages == 1 {
            // Inserted between pages: newer than the cursor, so not in later pages.
            app.create_session(&key, user, config).await;
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "runaway pagination");
    }
    let ids: Vec<String> = seen
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no session twice: {ids:?}");
    assert_eq!(unique, existing, "every session that existed at the start");
    assert_eq!(pages, 3);

    // Order: last_active_at descending, NULLs last, ties by session_id.
    let key_of = |s: &Value| {
        (
            s["last_active_at"].as_str().map(str::to_owned),
            s["session_id"].as_str().unwrap().to_owned(),
        )
    };
    for pair in seen.windows(2) {
        let (a, b) = (key_of(&pair[0]), key_of(&pair[1]));
        let ordered = match (&a.0, &b.0) {
            (Some(x), Some(y)) => {
                let (x, y) = (
                    x.parse::<chrono::DateTime<chrono::Utc>>().unwrap(),
                    y.parse::<chrono::DateTime<chrono::Utc>>().unwrap(),
                );
                x > y || (x == y && a.1 < b.1)
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => a.1 < b.1,
        };
        assert!(ordered, "{a:?} before {b:?}");
    }
    assert!(seen[8]["last_active_at"].is_null());
}

#[tokio::test]
async fn filtered_pages_cover_every_match_once() {
    let app = spawn_app().await;
    let key = app.create_application("page-app").await;
    let (config_a, config_b) = (app.create_config(&key).await, app.create_config(&key).await);
    let user = Uuid::new_v4();
    let mut okapis = HashSet::new();
    for i in 0..9 {
        let config = if i % 3 == 0 { config_a } else { config_b };
        let session = app.create_session(&key, user, config).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let text = if i < 5 { "an okapi" } else { "a zebra" };
        let response = app
            .as_user(
                app.post(&format!("/api/sessions/{session}/messages")),
                &key,
                user,
            )
            .json(&json!({"messages": [{"content": text}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        if config == config_b && i < 5 {
            okapis.insert(session);
        }
    }
    assert_eq!(okapis.len(), 3);

    // Each filter, and the cursor after it, must keep its own parameters.
    let query = format!("config_id={config_b}&status=active&q=okapi+-zebra&limit=2");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let mut path = format!("/api/users/me/sessions?{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let body = expect_status(
            app.as_user(app.get(&path), &key, user)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        for s in body["sessions"].as_array().unwrap() {
            seen.push(s["session_id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "each match once: {seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), okapis);
}

#[tokio::test]
async fn bad_cursors_are_422() {
    let app = spawn_app().await;
    let key = app.create_application("page-app").await;
    for cursor in ["nope", "eyJ4IjoxfQ"] {
        let response = app
            .as_user(
                app.get(&format!("/api/users/me/sessions?cursor={cursor}")),
                &key,
                Uuid::new_v4(),
            )
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains("cursor"), "{detail}");
    }
}
