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
    // 1,600 appends of one user in seconds: over any rate limit by design.
    let app = spawn_app_with(&[
        ("DATABASE_POOL_MAX_SIZE", "8"),
        ("RATE_LIMIT_REQUESTS_PER_MINUTE", "0"),
        ("RATE_LIMIT_WRITES_PER_MINUTE", "0"),
    ])
    .await;
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
async fn a_fork_holds_messages_up_to_a_seq_in_a_session_of_the_caller() {
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

/// `count` distinct words, `{prefix}000000` upwards (sorted as numbered).
fn distinct_words(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| format!("{prefix}{i:06}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sessions of `user` that `q` finds.
async fn found(app: &TestApp, key: &str, user: Uuid, q: &str) -> Vec<String> {
    let response = app
        .as_user(app.get(&format!("/api/users/me/sessions?q={q}")), key, user)
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect()
}

/// One message of 130,000 distinct words, within the default request
/// limit (`MAX_BODY_BYTES`, 1 MiB): more than one search document holds,
/// and every one of them is found, the last one too, and excludes.
#[tokio::test]
async fn every_word_of_a_large_append_is_searchable() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let text = distinct_words("z", 130_000);
    let body = json!({"messages": [{"title": "haystack", "text": text}]});
    assert!(serde_json::to_vec(&body).unwrap().len() <= 1024 * 1024);
    append(&app, &f, f.owner, body["messages"].clone()).await;
    for q in ["z000000", "z065000", "z129999", "haystack+z129999"] {
        assert_eq!(
            found(&app, &f.key, f.owner, q).await,
            [f.session_id.as_str()],
            "{q}"
        );
    }
    assert!(
        found(&app, &f.key, f.owner, "haystack+-z129999")
            .await
            .is_empty()
    );
    assert!(found(&app, &f.key, f.owner, "z130000").await.is_empty());
    assert!(
        app.scalar::<i64>(
            "SELECT count(*) FROM session_search WHERE first_seq > 0",
            &[]
        )
        .await
            > 1,
        "one document cannot hold these words"
    );
}

/// A fork cutting through an append whose first message alone has more
/// words than one document holds (and more than PostgreSQL's parser can
/// put in a `tsvector`): 201, and it is found by that message's words and
/// not by those after the cut.
#[tokio::test]
async fn a_fork_through_a_large_append_is_found_by_the_words_up_to_the_cut() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let messages = json!([
        {"text": distinct_words("y", 120_000)},
        {"text": "tailonly"},
    ]);
    let first = append(&app, &f, f.owner, messages).await["first_seq"]
        .as_i64()
        .unwrap();
    let response = app
        .as_user(
            app.post(&format!("/api/sessions/{}/fork", f.session_id)),
            &f.key,
            f.owner,
        )
        .json(&json!({"up_to_seq": first}))
        .send()
        .await
        .unwrap();
    let fork = expect_status(response, StatusCode::CREATED).await;
    let fork_id = fork["session_id"].as_str().unwrap();
    assert_eq!(fork["message_count"], first);
    let mut both = vec![f.session_id.clone(), fork_id.to_owned()];
    both.sort();
    for q in ["y000000", "y119999"] {
        let mut ids = found(&app, &f.key, f.owner, q).await;
        ids.sort();
        assert_eq!(ids, both, "{q}");
    }
    assert_eq!(
        found(&app, &f.key, f.owner, "tailonly").await,
        [f.session_id.as_str()]
    );
    assert_eq!(
        found(&app, &f.key, f.owner, "y119999+-tailonly").await,
        [fork_id]
    );
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

/// A database as migration V10 left it, before forks shared messages: forks
/// made then keep their copies; a document of several messages gets each
/// word's first message, so a new fork cutting through it is found by the
/// words up to the cut only; messages get their running size, so a new
/// fork's `transcript_bytes` is right.
#[tokio::test]
async fn the_migrations_keep_old_forks_and_documents_right() {
    let database_url = fresh_database(&admin_url()).await;
    let config: tokio_postgres::Config = database_url.parse().unwrap();
    let tls = tokio_postgres::NoTls;
    amplifier_sessions::db::migrate::run_until(&config, tls, 10)
        .await
        .unwrap();
    let user = Uuid::new_v4();
    let db = pg_connect(&database_url).await;
    db.execute(
        "INSERT INTO configs (config_id, name, yaml_content) VALUES
             ('00000000-0000-4000-8000-00000000c0f1', 'c', 'a: 1')",
        &[],
    )
    .await
    .unwrap();
    // A session of five messages appended at once, and a fork of it at 3
    // holding copies of messages 1-3 and the cut document, as V10 made them.
    db.batch_execute(&format!(
        "INSERT INTO sessions (session_id, config_id, owner_user_id, message_count, metadata,
                               parent_session_id, forked_from_seq) VALUES
             ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-00000000c0f1',
              '{user}', 5, '{{}}', NULL, NULL),
             ('00000000-0000-4000-8000-0000000000a2', '00000000-0000-4000-8000-00000000c0f1',
              '{user}', 3, '{{}}', '00000000-0000-4000-8000-0000000000a1', 3);
         INSERT INTO session_participants (session_id, user_id, role) VALUES
             ('00000000-0000-4000-8000-0000000000a1', '{user}', 'owner'),
             ('00000000-0000-4000-8000-0000000000a2', '{user}', 'owner');
         INSERT INTO session_messages (session_id, seq, message)
         SELECT s, n, jsonb_build_object('text', w)
         FROM unnest(ARRAY['alpha', 'bravo', 'charlie Alpha', 'delta', 'echo']) WITH ORDINALITY AS t (w, n),
              unnest(ARRAY['00000000-0000-4000-8000-0000000000a1',
                           '00000000-0000-4000-8000-0000000000a2']::uuid[]) AS s
         WHERE s = '00000000-0000-4000-8000-0000000000a1' OR n <= 3;
         UPDATE sessions s SET transcript_bytes =
             (SELECT sum(octet_length(message::text)) FROM session_messages m
              WHERE m.session_id = s.session_id);
         INSERT INTO session_search (session_id, first_seq, last_seq, words) VALUES
             ('00000000-0000-4000-8000-0000000000a1', 0, 0, ''),
             ('00000000-0000-4000-8000-0000000000a1', 1, 5, 'alpha bravo charlie delta echo'),
             ('00000000-0000-4000-8000-0000000000a2', 0, 0, ''),
             ('00000000-0000-4000-8000-0000000000a2', 1, 3, 'alpha bravo charlie');"
    ))
    .await
    .unwrap();
    amplifier_sessions::db::migrate::run(&config, tls, None)
        .await
        .unwrap();
    let words: String = db
        .query_one(
            "SELECT words::text FROM session_search
             WHERE session_id = '00000000-0000-4000-8000-0000000000a1' AND first_seq = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(words, "'alpha':1 'bravo':2 'charlie':3 'delta':4 'echo':5");

    let app = spawn_app_on(&database_url, &[]).await;
    let key = app.create_application("migrated-app").await;
    let f = |session: &str| Fixture {
        key: key.clone(),
        owner: user,
        session_id: session.to_owned(),
    };
    let (root, old_fork) = (
        "00000000-0000-4000-8000-0000000000a1",
        "00000000-0000-4000-8000-0000000000a2",
    );
    let texts = |page: Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"]["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = |session: &str| format!("/api/sessions/{session}/messages");
    assert_eq!(
        texts(get_json(&app, &f(old_fork), user, &path(old_fork)).await),
        ["alpha", "bravo", "charlie Alpha"]
    );
    let fork = |session: &'static str, up_to: i32| {
        let request = app
            .as_user(
                app.post(&format!("/api/sessions/{session}/fork")),
                &key,
                user,
            )
            .json(&json!({ "up_to_seq": up_to }));
        async move { expect_status(request.send().await.unwrap(), StatusCode::CREATED).await }
    };
    let new_fork = fork(root, 2).await;
    let new_id = new_fork["session_id"].as_str().unwrap().to_owned();
    let bytes = (r#"{"text": "alpha"}"#.len() + r#"{"text": "bravo"}"#.len()) as i64;
    assert_eq!(new_fork["transcript_bytes"], bytes);
    assert_eq!(
        texts(get_json(&app, &f(&new_id), user, &path(&new_id)).await),
        ["alpha", "bravo"]
    );
    let of_old = fork(old_fork, 2).await;
    assert_eq!(of_old["transcript_bytes"], bytes);
    let of_old_id = of_old["session_id"].as_str().unwrap().to_owned();

    let mut expected = vec![root.to_owned(), old_fork.to_owned()];
    expected.sort();
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    assert_eq!(sorted(found(&app, &key, user, "charlie").await), expected);
    assert_eq!(found(&app, &key, user, "delta").await, [root]);
    let mut with_bravo = vec![root.to_owned(), old_fork.to_owned(), new_id, of_old_id];
    with_bravo.sort();
    assert_eq!(sorted(found(&app, &key, user, "bravo").await), with_bravo);
}
