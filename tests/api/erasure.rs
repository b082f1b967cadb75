//! One user's data: erasure (admin only; nothing of the user is left in
//! any table, everyone else's data stays) and export (the user's own
//! sessions and messages, streamed).

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

async fn append(app: &TestApp, key: &str, user: Uuid, session: &str, messages: Value) -> Value {
    let response = app
        .as_user(
            app.post(&format!("/api/sessions/{session}/messages")),
            key,
            user,
        )
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await
}

async fn get_json(app: &TestApp, key: &str, user: Uuid, path: &str) -> Value {
    let response = app.as_user(app.get(path), key, user).send().await.unwrap();
    expect_status(response, StatusCode::OK).await
}

/// Every message of `session` as `user` reads it: (seq, message).
async fn transcript(app: &TestApp, key: &str, user: Uuid, session: &str) -> Vec<(i64, Value)> {
    let page = get_json(
        app,
        key,
        user,
        &format!("/api/sessions/{session}/messages?limit=1000"),
    )
    .await;
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["seq"].as_i64().unwrap(), m["message"].clone()))
        .collect()
}

/// The sessions of `user` whose words include `q`.
async fn found(app: &TestApp, key: &str, user: Uuid, q: &str) -> Vec<String> {
    let body = get_json(app, key, user, &format!("/api/users/me/sessions?q={q}")).await;
    body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect()
}

/// `user` removes themself from `session`.
async fn leave(app: &TestApp, key: &str, user: Uuid, session: &str) {
    let path = format!("/api/sessions/{session}/participants/{user}");
    let response = app
        .as_user(app.http.delete(app.url(&path)), key, user)
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::NO_CONTENT).await;
}

/// (user id, role) of each participant, as list-participants gives them.
async fn roles(app: &TestApp, key: &str, reader: Uuid, session: &str) -> Vec<(String, String)> {
    let list = get_json(
        app,
        key,
        reader,
        &format!("/api/sessions/{session}/participants"),
    )
    .await;
    list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user_id"].as_str().unwrap().to_owned(),
                p["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until the rate limiter has written all `requests` of `user` to
/// the database (it does a second later): none comes after an erasure.
async fn counted(app: &TestApp, user: Uuid, requests: i64) {
    wait_for(
        "the user's requests are counted in the database",
        || async {
            app.scalar::<i64>(
                "SELECT COALESCE(sum(requests), 0)::bigint FROM rate_limit_counts
             WHERE bucket = $1",
                &[&format!("user:{user}")],
            )
            .await
                == requests
        },
    )
    .await;
}

async fn erase(app: &TestApp, user: Uuid, query: &str) -> Response {
    app.http
        .delete(app.url(&format!("/api/users/{user}{query}")))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap()
}

async fn erased_receipt(app: &TestApp, user: Uuid) -> Value {
    let receipt = expect_status(erase(app, user, "").await, StatusCode::OK).await;
    assert_eq!(receipt["user_id"], user.to_string());
    receipt
}

/// Every (table, rows) of the public schema in which some row, read as
/// text (all its columns), contains `needle` in any case. Tables are read
/// from the catalog, so tables added later are searched too.
async fn rows_containing(app: &TestApp, needle: &str) -> Vec<(String, i64)> {
    let db = app.db().await;
    let tables: Vec<String> = db
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        tables.len() > 10,
        "the catalog lists the tables: {tables:?}"
    );
    let mut found = Vec::new();
    for table in tables {
        let rows: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM public.\"{table}\" t WHERE t::text ILIKE $1"),
                &[&format!("%{needle}%")],
            )
            .await
            .unwrap()
            .get(0);
        if rows > 0 {
            found.push((table, rows));
        }
    }
    found
}

fn tables(found: &[(String, i64)]) -> Vec<&str> {
    found.iter().map(|(t, _)| t.as_str()).collect()
}

fn id(session: &Value) -> String {
    session["session_id"].as_str().unwrap().to_owned()
}

fn erased() -> Value {
    json!({"erased": true})
}

/// The whole-database proof: before, the user's id and their word are in
/// many tables; after, in none, while the other participants' sessions,
/// messages (and numbers) and search stay.
#[tokio::test]
async fn erasure_leaves_nothing_of_the_user_in_any_table_and_keeps_everyone_elses() {
    let app = spawn_app().await;
    let key = app.create_application("erase-app").await;
    let config_id = app.create_config(&key).await;
    let (user, other, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let word = format!("zq{}", &Uuid::new_v4().simple().to_string()[..12]);
    let theirs = |n: i64| json!({"role": "user", "content": format!("{word} says {n}")});
    let kept = |n: i64| json!({"role": "assistant", "content": format!("keepword {n}")});
    // The user's requests, counted, to know when the rate limiter has
    // written them all (below).
    let mut requests = 0;

    // Their own session, nobody else in it: deleted.
    let alone = id(&app.create_session(&key, user, config_id).await);
    append(&app, &key, user, &alone, json!([theirs(1), theirs(2)])).await;
    requests += 2;

    // Another's session they edit: their messages become tombstones.
    let shared = id(&app.create_session(&key, other, config_id).await);
    app.add_participant(&key, other, &shared, user, "editor")
        .await;
    append(&app, &key, other, &shared, json!([kept(1)])).await;
    append(&app, &key, user, &shared, json!([theirs(3), theirs(4)])).await;
    append(&app, &key, other, &shared, json!([kept(2)])).await;
    requests += 1;
    // With an Idempotency-Key (a record naming them), and a stream ticket.
    let response = app
        .as_user(
            app.post(&format!("/api/sessions/{shared}/messages")),
            &key,
            user,
        )
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"messages": [theirs(5)]}))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await;
    let response = app
        .as_user(
            app.post(&format!("/api/sessions/{shared}/events/tickets")),
            &key,
            user,
        )
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::CREATED).await;
    requests += 2;

    // Their session with others: ownership passes to the editor.
    let passed = id(&app.create_session(&key, user, config_id).await);
    app.add_participant(&key, user, &passed, other, "viewer")
        .await;
    app.add_participant(&key, user, &passed, third, "editor")
        .await;
    append(&app, &key, user, &passed, json!([theirs(6)])).await;
    append(&app, &key, third, &passed, json!([kept(3)])).await;
    requests += 4;

    // Their session forked by another, who then left it: the session is
    // deleted, the messages the fork shares become tombstones.
    let forked = id(&app.create_session(&key, user, config_id).await);
    append(
        &app,
        &key,
        user,
        &forked,
        json!([theirs(7), theirs(8), theirs(9)]),
    )
    .await;
    app.add_participant(&key, user, &forked, other, "viewer")
        .await;
    requests += 3;
    let fork = expect_status(
        app.as_user(
            app.post(&format!("/api/sessions/{forked}/fork")),
            &key,
            other,
        )
        .json(&json!({"up_to_seq": 2}))
        .send()
        .await
        .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let fork = id(&fork);
    append(&app, &key, other, &fork, json!([kept(4)])).await;
    leave(&app, &key, other, &forked).await;

    // Audit rows naming them (the trail's writers are other steps').
    app.db()
        .await
        .execute(
            "INSERT INTO audit_events (actor_kind, actor_app_id, actor_user_id, action,
                                       target_kind, target_id, session_id, subject_user_id)
             VALUES ('user', 'erase-app', $1, 'participant.added', 'participant', $4, $2, $3),
                    ('user', 'erase-app', $3, 'participant.added', 'participant', $5, $2, $1)",
            &[
                &user,
                &Uuid::parse_str(&shared).unwrap(),
                &other,
                &format!("{shared}:{user}"),
                &format!("{shared}:{other}"),
            ],
        )
        .await
        .unwrap();

    counted(&app, user, requests).await;

    let shared_before = get_json(&app, &key, other, &format!("/api/sessions/{shared}")).await;
    let fork_before = get_json(&app, &key, other, &format!("/api/sessions/{fork}")).await;
    // Before: the scan does see them.
    let before = rows_containing(&app, &user.to_string()).await;
    for table in [
        "users",
        "sessions",
        "session_participants",
        "session_messages",
        "idempotency_keys",
        "event_tickets",
        "rate_limit_counts",
        "audit_events",
    ] {
        assert!(tables(&before).contains(&table), "{table}: {before:?}");
    }
    let words_before = rows_containing(&app, &word).await;
    assert!(
        tables(&words_before).contains(&"session_messages")
            && tables(&words_before).contains(&"session_search"),
        "{words_before:?}"
    );

    let naming: i64 = app
        .scalar(
            "SELECT count(*) FROM audit_events
             WHERE actor_user_id = $1 OR subject_user_id = $1",
            &[&user],
        )
        .await;
    assert!(naming >= 2);

    let receipt = erased_receipt(&app, user).await;
    assert_eq!(receipt["completed"], true, "{receipt}");
    let counts = &receipt["counts"];
    assert_eq!(counts["sessions_deleted"], 2, "{receipt}");
    assert_eq!(counts["participations_removed"], 2, "{receipt}");
    assert_eq!(counts["ownerships_passed_on"], 1, "{receipt}");
    // 3 and 4, 5 in the shared session; 6; 7 and 8 the fork reads (9 is
    // swept with its session).
    assert_eq!(counts["messages_tombstoned"], 6, "{receipt}");
    assert_eq!(counts["idempotency_records"], 1, "{receipt}");
    assert_eq!(counts["stream_tickets"], 1, "{receipt}");
    assert_eq!(counts["users_rows"], 1, "{receipt}");
    // The two rows above, and any the trail's writers added for the
    // actions of this test.
    assert_eq!(counts["audit_rows_anonymised"], naming, "{receipt}");
    assert!(
        counts["rate_limit_rows"].as_u64().unwrap() >= 2,
        "{receipt}"
    );
    assert!(
        counts["search_documents_rebuilt"].as_u64().unwrap() >= 4,
        "{receipt}"
    );

    // Nothing names them, nothing holds their word.
    assert_eq!(rows_containing(&app, &user.to_string()).await, []);
    assert_eq!(rows_containing(&app, &word).await, []);

    // The others' messages and numbers are as they were; theirs are
    // tombstones under the same numbers.
    assert_eq!(
        transcript(&app, &key, other, &shared).await,
        [
            (1, kept(1)),
            (2, erased()),
            (3, erased()),
            (4, kept(2)),
            (5, erased()),
        ]
    );
    assert_eq!(
        transcript(&app, &key, third, &passed).await,
        [(1, erased()), (2, kept(3))]
    );
    assert_eq!(
        transcript(&app, &key, other, &fork).await,
        [(1, erased()), (2, erased()), (3, kept(4))]
    );
    // Counts and sizes stay: they are what was appended.
    let shared_after = get_json(&app, &key, other, &format!("/api/sessions/{shared}")).await;
    let fork_after = get_json(&app, &key, other, &format!("/api/sessions/{fork}")).await;
    for field in ["message_count", "transcript_bytes", "last_seq"] {
        assert_eq!(shared_after[field], shared_before[field], "{field}");
        assert_eq!(fork_after[field], fork_before[field], "{field}");
    }
    // Appending goes on after the tombstones.
    let appended = append(&app, &key, other, &shared, json!([kept(5)])).await;
    assert_eq!(appended["first_seq"], 6);

    // Ownership passed to the editor, who is now named as the owner.
    let passed_now = get_json(&app, &key, third, &format!("/api/sessions/{passed}")).await;
    assert_eq!(passed_now["role"], "owner");
    assert_eq!(passed_now["owner_user_id"], third.to_string());
    assert_eq!(
        roles(&app, &key, third, &passed).await,
        [
            (other.to_string(), "viewer".to_owned()),
            (third.to_string(), "owner".to_owned())
        ]
    );

    // Search: their word finds nothing, the others' words still find.
    assert!(found(&app, &key, other, &word).await.is_empty());
    assert!(found(&app, &key, third, &word).await.is_empty());
    let mut keeping = found(&app, &key, other, "keepword").await;
    keeping.sort();
    let mut expected = vec![shared.clone(), passed.clone(), fork.clone()];
    expected.sort();
    assert_eq!(keeping, expected);

    // Their own sessions are gone for good (not in any trash).
    let gone: i64 = app
        .scalar(
            "SELECT count(*) FROM sessions WHERE session_id::text = ANY($1)",
            &[&vec![alone.clone(), forked.clone()]],
        )
        .await;
    assert_eq!(gone, 0);

    // The trail: the user.erased row, named by the erasure id; the rows
    // that named them still there, without them.
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT actor_kind, target_kind, actor_user_id, subject_user_id, details
             FROM audit_events WHERE action = 'user.erased' AND target_id = $1",
            &[&receipt["erasure_id"].as_str().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>("actor_kind"), "admin");
    assert_eq!(row.get::<_, &str>("target_kind"), "user");
    assert!(row.get::<_, Option<Uuid>>("actor_user_id").is_none());
    let details: Value = row.get("details");
    assert_eq!(details["completed"], true);
    assert_eq!(details["messages_tombstoned"], 6);
    assert_eq!(details["users_rows"], 1);
    let named: i64 = db
        .query_one(
            "SELECT count(*) FROM audit_events
             WHERE target_id = $1 AND actor_user_id IS NULL AND subject_user_id = $2",
            &[&format!("{shared}:erased"), &other],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(named, 1, "the other's row keeps them as subject");

    // Again: nothing left to do.
    let again = erased_receipt(&app, user).await;
    assert_eq!(again["completed"], true);
    assert_ne!(again["erasure_id"], receipt["erasure_id"]);
    for (kind, n) in again["counts"].as_object().unwrap() {
        if kind != "transcript_rows_swept" {
            assert_eq!(n, 0, "{kind}: {again}");
        }
    }
    assert_eq!(rows_containing(&app, &user.to_string()).await, []);
}

/// Only the admin erases; anyone else changes nothing.
#[tokio::test]
async fn erasure_is_admin_only() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/users/{}", f.owner);
    let response = app.http.delete(app.url(&path)).send().await.unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .http
        .delete(app.url(&path))
        .header("X-API-Key", &f.key)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    let response = app
        .as_user(app.http.delete(app.url(&path)), &f.key, f.owner)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(app.count_rows("users", Some(f.owner)).await, 1);
    assert_eq!(
        app.count_rows("session_participants", Some(f.owner)).await,
        1
    );
    // Not a user id; a budget out of range.
    let response = app
        .http
        .delete(app.url("/api/users/me"))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST).await;
    let response = erase(&app, f.owner, "?max_seconds=201").await;
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

/// A run stopped by its budget says `completed: false`, has done what it
/// did, and the next run finishes the rest.
#[tokio::test]
async fn an_erasure_stopped_early_is_finished_by_running_it_again() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let other = Uuid::new_v4();
    let second = id(&app
        .create_session(&f.key, other, app.create_config(&f.key).await)
        .await);
    app.add_participant(&f.key, other, &second, f.owner, "editor")
        .await;
    append(&app, &f.key, f.owner, &second, json!([{"text": "mine"}])).await;

    // Only the first batch: their lone session.
    let first = expect_status(erase(&app, f.owner, "?max_seconds=0").await, StatusCode::OK).await;
    assert_eq!(first["completed"], false, "{first}");
    assert_eq!(first["counts"]["sessions_deleted"], 1, "{first}");
    assert_eq!(first["counts"]["participations_removed"], 0, "{first}");
    assert_eq!(app.count_rows("users", Some(f.owner)).await, 1);
    let partial: Value = app
        .scalar(
            "SELECT details FROM audit_events WHERE action = 'user.erased' AND target_id = $1",
            &[&first["erasure_id"].as_str().unwrap()],
        )
        .await;
    assert_eq!(partial["completed"], false);

    let rest = erased_receipt(&app, f.owner).await;
    assert_eq!(rest["completed"], true, "{rest}");
    assert_eq!(rest["counts"]["sessions_deleted"], 0, "{rest}");
    assert_eq!(rest["counts"]["participations_removed"], 1, "{rest}");
    assert_eq!(rest["counts"]["messages_tombstoned"], 1, "{rest}");
    assert_eq!(rest["counts"]["users_rows"], 1, "{rest}");
    assert_eq!(app.count_rows("users", Some(f.owner)).await, 0);
    assert_eq!(
        transcript(&app, &f.key, other, &second).await,
        [(1, erased())]
    );
}

/// The last owner's sessions go to the earliest-joined editor, else the
/// earliest-joined viewer; where another owner remains, nobody is promoted.
#[tokio::test]
async fn ownership_passes_to_the_earliest_joined_editor_else_viewer() {
    let app = spawn_app().await;
    let key = app.create_application("owners-app").await;
    let config_id = app.create_config(&key).await;
    let user = Uuid::new_v4();
    let [viewer1, editor1, editor2, viewer2, owner2] = [(); 5].map(|_| Uuid::new_v4());

    let to_editor = id(&app.create_session(&key, user, config_id).await);
    for (who, role) in [
        (viewer1, "viewer"),
        (editor1, "editor"),
        (editor2, "editor"),
    ] {
        app.add_participant(&key, user, &to_editor, who, role).await;
    }
    let to_viewer = id(&app.create_session(&key, user, config_id).await);
    for (who, role) in [(viewer1, "viewer"), (viewer2, "viewer")] {
        app.add_participant(&key, user, &to_viewer, who, role).await;
    }
    let co_owned = id(&app.create_session(&key, user, config_id).await);
    for (who, role) in [(editor1, "editor"), (owner2, "owner")] {
        app.add_participant(&key, user, &co_owned, who, role).await;
    }

    let receipt = erased_receipt(&app, user).await;
    assert_eq!(receipt["counts"]["ownerships_passed_on"], 2, "{receipt}");
    assert_eq!(receipt["counts"]["participations_removed"], 3, "{receipt}");
    assert_eq!(receipt["counts"]["owner_ids_replaced"], 3, "{receipt}");
    assert_eq!(receipt["counts"]["sessions_deleted"], 0, "{receipt}");

    let owner = |session: String, reader: Uuid| {
        let (app, key) = (&app, key.clone());
        async move {
            let session = get_json(app, &key, reader, &format!("/api/sessions/{session}")).await;
            session["owner_user_id"].as_str().unwrap().to_owned()
        }
    };
    let s = |u: Uuid, r: &str| (u.to_string(), r.to_owned());
    assert_eq!(
        roles(&app, &key, viewer1, &to_editor).await,
        [
            s(viewer1, "viewer"),
            s(editor1, "owner"),
            s(editor2, "editor")
        ]
    );
    assert_eq!(owner(to_editor, viewer1).await, editor1.to_string());
    assert_eq!(
        roles(&app, &key, viewer1, &to_viewer).await,
        [s(viewer1, "owner"), s(viewer2, "viewer")]
    );
    assert_eq!(owner(to_viewer, viewer1).await, viewer1.to_string());
    assert_eq!(
        roles(&app, &key, owner2, &co_owned).await,
        [s(editor1, "editor"), s(owner2, "owner")]
    );
    assert_eq!(owner(co_owned, owner2).await, owner2.to_string());
}

/// Reads an export: its lines as JSON.
async fn export_lines(response: Response) -> Vec<Value> {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The export holds the user's row, their sessions (whichever
/// application's) with their role, and the messages they appended, also
/// in a session they left; nobody else's messages. Only their own.
#[tokio::test]
async fn a_user_exports_their_sessions_and_the_messages_they_appended() {
    let app = spawn_app().await;
    let key = app.create_application("export-app").await;
    let other_key = app.create_application("other-app").await;
    let config_id = app.create_config(&key).await;
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());

    let own = id(&app.create_session(&key, user, config_id).await);
    append(&app, &key, user, &own, json!([{"n": 1}, {"n": 2}])).await;
    let viewed = id(&app.create_session(&key, other, config_id).await);
    app.add_participant(&key, other, &viewed, user, "viewer")
        .await;
    append(&app, &key, other, &viewed, json!([{"not": "mine"}])).await;
    let left = id(&app.create_session(&key, other, config_id).await);
    app.add_participant(&key, other, &left, user, "editor")
        .await;
    append(&app, &key, other, &left, json!([{"not": "mine"}])).await;
    append(&app, &key, user, &left, json!([{"n": 3}])).await;
    leave(&app, &key, user, &left).await;

    // Through another application, as list-user-sessions shows them.
    for path in [
        "/api/users/me/export".to_owned(),
        format!("/api/users/{user}/export"),
    ] {
        let lines = export_lines(
            app.as_user(app.get(&path), &other_key, user)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(lines[0]["kind"], "user");
        assert_eq!(lines[0]["user_id"], user.to_string());
        assert!(lines[0]["first_seen"].is_string());
        let mut sessions = vec![(own.clone(), "owner"), (viewed.clone(), "viewer")];
        sessions.sort();
        let exported: Vec<(String, &str)> = lines
            .iter()
            .filter(|l| l["kind"] == "session")
            .map(|l| {
                assert!(l["joined_at"].is_string() && l["config_id"].is_string());
                (
                    l["session_id"].as_str().unwrap().to_owned(),
                    l["role"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(exported, sessions);
        let mut messages = vec![
            (own.clone(), 1, json!({"n": 1})),
            (own.clone(), 2, json!({"n": 2})),
            (left.clone(), 2, json!({"n": 3})),
        ];
        messages.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let exported: Vec<(String, i64, Value)> = lines
            .iter()
            .filter(|l| l["kind"] == "message")
            .map(|l| {
                assert_eq!(l["app_id"], "export-app");
                (
                    l["session_id"].as_str().unwrap().to_owned(),
                    l["seq"].as_i64().unwrap(),
                    l["message"].clone(),
                )
            })
            .collect();
        assert_eq!(exported, messages);
        assert_eq!(lines.len(), 1 + 2 + 3, "nothing else");
    }

    // Someone else's export: 403; a bad key: 401.
    let response = app
        .as_user(app.get(&format!("/api/users/{user}/export")), &key, other)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    let response = app
        .as_user(app.get("/api/users/me/export"), "not-a-key", user)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
    // A user the service never saw: their (empty) row only.
    let lines = export_lines(
        app.as_user(app.get("/api/users/me/export"), &key, Uuid::new_v4())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["first_seen"].is_null());
}

/// An export larger than many pages (sessions and messages, by count and
/// by bytes) streams every line once, in order.
#[tokio::test]
async fn a_large_export_streams_every_line_once_in_order() {
    let app = spawn_app().await;
    let key = app.create_application("big-export").await;
    let config_id = app.create_config(&key).await;
    let user = Uuid::new_v4();
    let filler = "x".repeat(2000);
    let mut sessions = Vec::new();
    for _ in 0..60 {
        sessions.push(id(&app.create_session(&key, user, config_id).await));
    }
    sessions.sort();
    // About 2.4 MB in the first three sessions: pages end by bytes.
    for session in &sessions[..3] {
        for batch in 0..4 {
            let messages: Vec<_> = (0..100)
                .map(|i| json!({"i": batch * 100 + i, "text": filler}))
                .collect();
            append(&app, &key, user, session, json!(messages)).await;
        }
    }
    let lines = export_lines(
        app.as_user(app.get("/api/users/me/export"), &key, user)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(lines.len(), 1 + 60 + 1200);
    let exported: Vec<&str> = lines[1..61]
        .iter()
        .map(|l| l["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(exported, sessions);
    for (i, line) in lines[61..].iter().enumerate() {
        assert_eq!(line["kind"], "message");
        assert_eq!(line["session_id"], sessions[i / 400].as_str());
        assert_eq!(line["seq"], i % 400 + 1);
        assert_eq!(line["message"]["i"], i % 400);
    }
}

/// A user with more than a batch of everything: every batch boundary is
/// crossed (sessions, and an append whose messages two batches tombstone),
/// and nothing of them is left.
#[tokio::test]
async fn erasure_goes_through_many_batches() {
    let app = spawn_app().await;
    let key = app.create_application("batches-app").await;
    let config_id = app.create_config(&key).await;
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    let word = format!("zq{}", &Uuid::new_v4().simple().to_string()[..12]);
    for _ in 0..130 {
        app.create_session(&key, user, config_id).await;
    }
    let shared = id(&app.create_session(&key, other, config_id).await);
    app.add_participant(&key, other, &shared, user, "editor")
        .await;
    append(&app, &key, other, &shared, json!([{"text": "keepword"}])).await;
    // Messages 2..=351 in appends of 70: the tombstones' first batch (200)
    // ends inside the third append.
    for a in 0..5 {
        let messages: Vec<_> = (0..70)
            .map(|i| json!({"text": format!("{word} w{a}x{i}")}))
            .collect();
        append(&app, &key, user, &shared, json!(messages)).await;
    }
    assert_eq!(found(&app, &key, other, "w2x69").await, [shared.as_str()]);
    counted(&app, user, 130 + 5).await;

    let receipt = erased_receipt(&app, user).await;
    assert_eq!(receipt["completed"], true, "{receipt}");
    let counts = &receipt["counts"];
    assert_eq!(counts["sessions_deleted"], 130, "{receipt}");
    assert_eq!(counts["participations_removed"], 1, "{receipt}");
    assert_eq!(counts["messages_tombstoned"], 350, "{receipt}");
    // Five appends, the third rewritten by both batches.
    assert_eq!(counts["search_documents_rebuilt"], 6, "{receipt}");

    assert_eq!(rows_containing(&app, &user.to_string()).await, []);
    assert_eq!(rows_containing(&app, &word).await, []);
    for q in ["w0x0", "w2x0", "w2x69", "w4x69"] {
        assert!(found(&app, &key, other, q).await.is_empty(), "{q}");
    }
    assert_eq!(
        found(&app, &key, other, "keepword").await,
        [shared.as_str()]
    );
    let messages = transcript(&app, &key, other, &shared).await;
    assert_eq!(messages.len(), 351);
    assert_eq!(messages[0], (1, json!({"text": "keepword"})));
    assert!(
        messages[1..]
            .iter()
            .enumerate()
            .all(|(i, m)| *m == (i as i64 + 2, erased()))
    );
}
