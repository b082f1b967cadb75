//! Transcripts as rows: numbering under concurrency, paging both ways,
//! export, fork, search, limits, and the migration from the old column.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

async fn append(app: &TestApp, f: &Fixture, user: Uuid, messages: Value) -> Value {
    let response = app
        .as_user(
            app.post(&format!("/api/sessions/{}/messages", f.session_id)),
            &f.key,
            user,
        )
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await
}

async fn get_json(app: &TestApp, f: &Fixture, user: Uuid, path: &str) -> Value {
    let response = app
        .as_user(app.get(path), &f.key, user)
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await
}

/// 8 writers × 200 appends to one session: every seq 1..=N exactly once,
/// each append's messages contiguous and in order, `message_count` = N.
#[tokio::test]
async fn concurrent_appends_get_contiguous_numbers_without_gaps() {
    let app = spawn_app_with(&[("DATABASE_POOL_MAX_SIZE", "8")]).await;
    let f = app.fixture().await;
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (http, url, key, token) = (
                app.http.clone(),
                app.url(&format!("/api/sessions/{}/messages", f.session_id)),
                f.key.clone(),
                app.token(f.owner),
            );
            tokio::spawn(async move {
                let mut ranges = Vec::new();
                for append in 0..200 {
                    let size = 1 + (writer + append) % 3;
                    let messages: Vec<_> = (0..size)
                        .map(|i| json!({"writer": writer, "append": append, "i": i}))
                        .collect();
                    let response = http
                        .post(&url)
                        .header("X-API-Key", &key)
                        .bearer_auth(&token)
                        .json(&json!({ "messages": messages }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    let body: Value = response.json().await.unwrap();
                    let (first, last) = (
                        body["first_seq"].as_i64().unwrap(),
                        body["last_seq"].as_i64().unwrap(),
                    );
                    assert_eq!(last - first + 1, size as i64);
                    ranges.push((first, last, writer, append));
                }
                ranges
            })
        })
        .collect();
    let mut by_first = BTreeMap::new();
    for writer in writers {
        for (first, last, w, a) in writer.await.unwrap() {
            assert!(
                by_first.insert(first, (last, w, a)).is_none(),
                "seq {first} twice"
            );
        }
    }
    // The ranges tile 1..=N.
    let mut next = 1;
    for (first, (last, _, _)) in &by_first {
        assert_eq!(*first, next, "a gap or an overlap before {first}");
        next = last + 1;
    }
    let n = next - 1;
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT s.message_count, count(m.*), min(m.seq), max(m.seq)
             FROM sessions s JOIN session_messages m USING (session_id)
             GROUP BY s.message_count",
            &[],
        )
        .await
        .unwrap();
    let (count, rows, min, max): (i32, i64, i32, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (i64::from(count), rows, i64::from(min), i64::from(max)),
        (n, n, 1, n)
    );
    // Each range holds exactly its append's messages, in order.
    for (first, (last, writer, append)) in by_first.iter().take(50) {
        let rows = db
            .query(
                "SELECT message FROM session_messages WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
                &[&(*first as i32), &(*last as i32)],
            )
            .await
            .unwrap();
        for (i, row) in rows.iter().enumerate() {
            let message: Value = row.get(0);
            assert_eq!(message, json!({"writer": writer, "append": append, "i": i}));
        }
    }
}

#[tokio::test]
async fn list_messages_pages_forwards_and_backwards() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let base = format!("/api/sessions/{}/messages", f.session_id);
    let empty = get_json(&app, &f, f.owner, &base).await;
    assert_eq!(empty["messages"], json!([]));
    assert_eq!(empty["next_after_seq"], Value::Null);
    let messages: Vec<_> = (1..=25).map(|n| json!({"n": n})).collect();
    append(&app, &f, f.owner, json!(messages)).await;

    // Forwards, 10 at a time.
    let mut seen = Vec::new();
    let mut path = format!("{base}?limit=10");
    loop {
        let page = get_json(&app, &f, f.owner, &path).await;
        for m in page["messages"].as_array().unwrap() {
            assert_eq!(m["message"]["n"], m["seq"]);
            assert!(m["created_at"].is_string());
            seen.push(m["seq"].as_i64().unwrap());
        }
        match page["next_after_seq"].as_i64() {
            Some(after) => path = format!("{base}?limit=10&after_seq={after}"),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<i64>>());

    // Backwards from the end, newest first.
    let page = get_json(&app, &f, f.owner, &format!("{base}?before_seq=26&limit=10")).await;
    let seqs: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (16..=25).rev().collect::<Vec<i64>>());
    assert_eq!(page["next_before_seq"], 16);
    let last = get_json(&app, &f, f.owner, &format!("{base}?before_seq=6")).await;
    assert_eq!(last["messages"].as_array().unwrap().len(), 5);
    assert_eq!(last["next_before_seq"], Value::Null);

    for bad in [
        "?limit=0",
        "?limit=1001",
        "?after_seq=1&before_seq=5",
        "?after_seq=x",
    ] {
        let response = app
            .as_user(app.get(&format!("{base}{bad}")), &f.key, f.owner)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let response = app
        .as_user(app.get(&base), &f.key, Uuid::new_v4())
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn export_streams_the_session_then_every_message() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    for batch in 0..12 {
        let messages: Vec<_> = (0..100).map(|i| json!({"batch": batch, "i": i})).collect();
        append(&app, &f, f.owner, json!(messages)).await;
    }
    let response = app
        .as_user(
            app.get(&format!("/api/sessions/{}/export", f.session_id)),
            &f.key,
            f.owner,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["session_id"], f.session_id.as_str());
    assert_eq!(lines[0]["message_count"], 1200);
    assert_eq!(lines.len(), 1201);
    for (i, line) in lines[1..].iter().enumerate() {
        assert_eq!(line["seq"], i + 1);
        assert_eq!(line["message"], json!({"batch": i / 100, "i": i % 100}));
    }
}

#[tokio::test]
async fn fork_copies_messages_up_to_a_seq_into_a_session_of_the_caller() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let viewer = Uuid::new_v4();
    app.add_participant(&f.key, f.owner, &f.session_id, viewer, "viewer")
        .await;
    let messages: Vec<_> = (1..=10).map(|n| json!({"n": n})).collect();
    append(&app, &f, f.owner, json!(messages)).await;
    let fork_path = format!("/api/sessions/{}/fork", f.session_id);

    // A viewer may fork what they read; the fork is theirs.
    let response = app
        .as_user(app.post(&fork_path), &f.key, viewer)
        .json(&json!({"up_to_seq": 4, "metadata": {"branch": "b"}}))
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let fork = expect_status(response, StatusCode::CREATED).await;
    let fork_id = fork["session_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/sessions/{fork_id}"));
    assert_eq!(fork["owner_user_id"], viewer.to_string());
    assert_eq!(fork["parent_session_id"], f.session_id.as_str());
    assert_eq!(fork["forked_from_seq"], 4);
    assert_eq!(fork["message_count"], 4);
    assert_eq!(fork["metadata"], json!({"branch": "b"}));
    let fork_fixture = Fixture {
        key: f.key.clone(),
        owner: viewer,
        session_id: fork_id.clone(),
    };
    let page = get_json(
        &app,
        &fork_fixture,
        viewer,
        &format!("/api/sessions/{fork_id}/messages"),
    )
    .await;
    let copied: Vec<&Value> = page["messages"].as_array().unwrap().iter().collect();
    assert_eq!(copied.len(), 4);
    for (i, m) in copied.iter().enumerate() {
        assert_eq!(m["seq"], i + 1);
        assert_eq!(m["message"], json!({"n": i + 1}));
    }
    // The fork goes on from its own seq 5; the source is untouched.
    let appended = append(&app, &fork_fixture, viewer, json!([{"n": "new"}])).await;
    assert_eq!(appended["first_seq"], 5);
    let source = get_json(
        &app,
        &f,
        f.owner,
        &format!("/api/sessions/{}", f.session_id),
    )
    .await;
    assert_eq!(source["message_count"], 10);
    // A full fork by default, with the source's metadata.
    let full = expect_status(
        app.as_user(app.post(&fork_path), &f.key, f.owner)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(full["forked_from_seq"], 10);
    assert_eq!(full["transcript_bytes"], source["transcript_bytes"]);
    // Beyond the last message, or not a participant.
    let detail = expect_problem(
        app.as_user(app.post(&fork_path), &f.key, f.owner)
            .json(&json!({"up_to_seq": 11}))
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(detail.contains("up_to_seq"), "{detail}");
    expect_problem(
        app.as_user(app.post(&fork_path), &f.key, Uuid::new_v4())
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.count_rows("sessions", None).await, 3);
}

#[tokio::test]
async fn user_sessions_filter_by_status_config_and_words() {
    let app = spawn_app().await;
    let key = app.create_application("search-app").await;
    let (config_a, config_b) = (app.create_config(&key).await, app.create_config(&key).await);
    let user = Uuid::new_v4();
    let stranger = Uuid::new_v4();
    let create = |config: Uuid, metadata: Value, who: Uuid| {
        let request = app
            .as_user(app.post("/api/sessions"), &key, who)
            .json(&json!({"config_id": config, "metadata": metadata}));
        async move {
            let body = expect_status(request.send().await.unwrap(), StatusCode::CREATED).await;
            body["session_id"].as_str().unwrap().to_owned()
        }
    };
    let talk = create(config_a, json!({"title": "Quarterly planning"}), user).await;
    let code = create(config_b, json!({"title": "Refactoring"}), user).await;
    let other = create(config_a, json!({}), stranger).await;
    let say = |session: &str, who: Uuid, text: &str| {
        let request = app
            .as_user(
                app.post(&format!("/api/sessions/{session}/messages")),
                &key,
                who,
            )
            .json(&json!({"messages": [{"role": "user", "content": text, "tokens": 42}]}));
        async move { assert_eq!(request.send().await.unwrap().status(), StatusCode::OK) }
    };
    say(&talk, user, "Let us discuss the Zanzibar budget").await;
    say(&code, user, "rename the parser module").await;
    say(&other, stranger, "zanzibar is secret").await;
    let response = app
        .as_user(
            app.http.patch(app.url(&format!("/api/sessions/{code}"))),
            &key,
            user,
        )
        .json(&json!({"status": "completed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let ids = |query: &str| {
        let request = app.as_user(
            app.get(&format!("/api/users/me/sessions?{query}")),
            &key,
            user,
        );
        async move {
            let body = expect_status(request.send().await.unwrap(), StatusCode::OK).await;
            body["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["session_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("status=completed").await, [code.as_str()]);
    assert_eq!(ids(&format!("config_id={config_a}")).await, [talk.as_str()]);
    assert_eq!(
        ids("q=zanzibar").await,
        [talk.as_str()],
        "any case; only the caller's"
    );
    assert_eq!(
        ids("q=quarterly").await,
        [talk.as_str()],
        "metadata strings"
    );
    assert_eq!(
        ids("q=%22parser+module%22").await,
        [code.as_str()],
        "all the words"
    );
    assert!(ids("q=budget+-zanzibar").await.is_empty(), "exclusion");
    assert!(ids("q=content").await.is_empty(), "keys do not match");
    assert!(ids("q=42").await.is_empty(), "numbers do not match");
    assert!(
        ids("q=zanz").await.is_empty(),
        "parts of words do not match"
    );
    assert!(ids("q=zanzibar&status=completed").await.is_empty());
    // Words may come from different messages (and appends) of a session.
    say(&talk, user, "and the lagoons").await;
    assert_eq!(ids("q=zanzibar+lagoons").await, [talk.as_str()]);
    assert!(
        ids("q=zanzibar+parser").await.is_empty(),
        "not across sessions"
    );
    // A fork is found by the words of what it copied, and only those:
    // here it cuts through an append of two messages.
    let both = app
        .as_user(
            app.post(&format!("/api/sessions/{code}/messages")),
            &key,
            user,
        )
        .json(&json!({"messages": [{"content": "kept okapi"}, {"content": "dropped narwhal"}]}))
        .send()
        .await
        .unwrap();
    let last = expect_status(both, StatusCode::OK).await["last_seq"]
        .as_i64()
        .unwrap();
    let fork = expect_status(
        app.as_user(app.post(&format!("/api/sessions/{code}/fork")), &key, user)
            .json(&json!({"up_to_seq": last - 1, "metadata": {"title": "Branch"}}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let fork_id = fork["session_id"].as_str().unwrap().to_owned();
    let okapi = ids("q=okapi").await;
    assert!(
        okapi.contains(&fork_id) && okapi.contains(&code),
        "{okapi:?}"
    );
    assert_eq!(
        ids("q=narwhal").await,
        [code.as_str()],
        "not copied, not found"
    );
    assert_eq!(
        ids("q=branch").await,
        [fork_id.as_str()],
        "its own metadata"
    );
    assert_eq!(
        ids("q=refactoring").await,
        [code.as_str()],
        "not the source's metadata"
    );
    let response = app
        .as_user(app.get("/api/users/me/sessions?q=%20"), &key, user)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn session_limits_are_409s_naming_the_limit() {
    let app = spawn_app_with(&[
        ("SESSION_MAX_MESSAGES", "5"),
        ("SESSION_MAX_TRANSCRIPT_BYTES", "2000"),
    ])
    .await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}/messages", f.session_id);
    let post = |messages: Value| {
        app.as_user(app.post(&path), &f.key, f.owner)
            .json(&json!({ "messages": messages }))
            .send()
    };
    assert_eq!(
        post(json!([{"a": 1}, {"a": 2}, {"a": 3}]))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let detail = expect_problem(
        post(json!([{"a": 4}, {"a": 5}, {"a": 6}])).await.unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(detail.contains("SESSION_MAX_MESSAGES"), "{detail}");
    let detail = expect_problem(
        post(json!([{"big": "x".repeat(3000)}])).await.unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(detail.contains("SESSION_MAX_TRANSCRIPT_BYTES"), "{detail}");
    assert_eq!(
        app.scalar::<i64>("SELECT count(*) FROM session_messages", &[])
            .await,
        3,
        "nothing of the refused appends"
    );
    assert_eq!(
        post(json!([{"a": 4}, {"a": 5}])).await.unwrap().status(),
        StatusCode::OK
    );
}

/// A database holding transcripts in the old form (a JSONB array per
/// session) migrates to rows, in order, with counts and sizes right.
#[tokio::test]
async fn the_migration_moves_old_transcripts_in_order() {
    let database_url = fresh_database(&admin_url()).await;
    let config: tokio_postgres::Config = database_url.parse().unwrap();
    let tls = tokio_postgres::NoTls;
    amplifier_sessions::db::migrate::run_until(&config, tls, 9)
        .await
        .unwrap();
    let db = pg_connect(&database_url).await;
    db.batch_execute(
        "INSERT INTO configs (config_id, name, yaml_content) VALUES
             ('00000000-0000-4000-8000-00000000c0f1', 'c', 'a: 1');
         INSERT INTO sessions (session_id, config_id, owner_user_id, message_count, transcript) VALUES
             ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-00000000c0f1',
              '00000000-0000-4000-8000-0000000000b1', 3,
              '[{\"n\": 1, \"text\": \"first\"}, {\"n\": 2}, {\"n\": 3, \"text\": \"last\"}]'),
             ('00000000-0000-4000-8000-0000000000a2', '00000000-0000-4000-8000-00000000c0f1',
              '00000000-0000-4000-8000-0000000000b1', 0, '[]');",
    )
    .await
    .unwrap();
    amplifier_sessions::db::migrate::run(&config, tls, None)
        .await
        .unwrap();
    let rows = db
        .query(
            "SELECT seq, message FROM session_messages
             WHERE session_id = '00000000-0000-4000-8000-0000000000a1' ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let moved: Vec<(i32, Value)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        moved,
        [
            (1, json!({"n": 1, "text": "first"})),
            (2, json!({"n": 2})),
            (3, json!({"n": 3, "text": "last"})),
        ]
    );
    let counts = db
        .query(
            "SELECT message_count, transcript_bytes FROM sessions ORDER BY session_id",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<(i32, i64)> = counts.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected_bytes: i64 = [
        r#"{"n": 1, "text": "first"}"#,
        r#"{"n": 2}"#,
        r#"{"n": 3, "text": "last"}"#,
    ]
    .iter()
    .map(|s| s.len() as i64)
    .sum();
    assert_eq!(counts, [(3, expected_bytes), (0, 0)]);
    let column: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'sessions' AND column_name = 'transcript'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(column, 0, "the old column is gone");
}
