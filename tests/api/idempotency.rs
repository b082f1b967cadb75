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
    let body = json!({"config_id": app.create_config(&other).await, "metadata": {"a": 1}});
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
    // Nothing was created again: every session is in the trash.
    let live: i64 = app
        .scalar(
            "SELECT count(*) FROM sessions WHERE trashed_at IS NULL",
            &[],
        )
        .await;
    assert_eq!(live, 0);
}

/// Keys belong to the caller, not to everyone using the application: user
/// B using `msg-12345` first neither blocks user A's request with that key
/// nor learns that A used it (the griefing of issue 16).
#[tokio::test]
async fn users_of_one_application_have_their_own_keys() {
    let app = spawn_app().await;
    let key = app.create_application("idem-app").await;
    let config = app.create_config(&key).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let for_alice = json!({"config_id": config, "metadata": {"for": "alice"}});
    let for_bob = json!({"config_id": config, "metadata": {"for": "bob"}});

    let bobs = create(&app, &key, bob, "msg-12345", &for_bob).await;
    assert_eq!(bobs.status(), StatusCode::CREATED);
    let bobs: Value = bobs.json().await.unwrap();
    let alices = create(&app, &key, alice, "msg-12345", &for_alice).await;
    assert_eq!(alices.status(), StatusCode::CREATED, "not blocked by Bob");
    assert!(alices.headers().get("idempotent-replayed").is_none());
    let alices: Value = alices.json().await.unwrap();
    assert_eq!(alices["owner_user_id"], alice.to_string());
    assert_ne!(alices["session_id"], bobs["session_id"]);

    // Each retry replays its own caller's response.
    for (user, body, first) in [(alice, &for_alice, &alices), (bob, &for_bob, &bobs)] {
        let again = create(&app, &key, user, "msg-12345", body).await;
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(&again, first);
    }
    assert_eq!(app.count_rows("sessions", None).await, 2);

    // Two participants appending to one session with the same key: both
    // appends happen; neither is a replay of the other's.
    let session = alices["session_id"].as_str().unwrap();
    let added = app
        .add_participant(&key, alice, session, bob, "editor")
        .await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let path = format!("/api/sessions/{session}/messages");
    for (user, text) in [(bob, "from bob"), (alice, "from alice")] {
        let response = app
            .as_user(app.post(&path), &key, user)
            .header("Idempotency-Key", "append-1")
            .json(&json!({"messages": [{"text": text}]}))
            .send()
            .await
            .unwrap();
        assert!(response.headers().get("idempotent-replayed").is_none());
        expect_status(response, StatusCode::OK).await;
    }
    let count: i32 = app
        .scalar(
            "SELECT message_count FROM sessions WHERE session_id = $1",
            &[&session.parse::<Uuid>().unwrap()],
        )
        .await;
    assert_eq!(count, 2);
}

/// Requests made by an application alone (no user) have keys of their
/// own per application: no user's key is theirs, nor another
/// application's. No such route takes a key yet, so this drives the
/// storage directly.
#[tokio::test]
async fn application_only_keys_are_per_application() {
    use amplifier_sessions::auth::api_key::hash;
    use amplifier_sessions::db::idempotency::{self, Claim, Recorded};

    let app = spawn_app().await;
    let keys = [
        app.create_application("app-one").await,
        app.create_application("app-two").await,
    ];
    let user = Uuid::new_v4();
    let pool = deadpool_postgres::Config {
        url: Some(app.database_url.clone()),
        ..Default::default()
    }
    .create_pool(None, tokio_postgres::NoTls)
    .unwrap();
    let mut db = pool.get().await.unwrap();
    let response = |n: u16| Recorded {
        status: 200,
        body: format!("{{\"n\": {n}}}"),
        location: None,
        session_id: None,
    };
    // Each caller claims "k" with a request of its own, and records it.
    let callers = [
        (&keys[0], None),
        (&keys[1], None),
        (&keys[0], Some(user)),
        (&keys[1], Some(user)),
    ];
    for (n, (key, user)) in callers.iter().enumerate() {
        let tx = db.transaction().await.unwrap();
        let request = format!("{n:064}"); // a SHA-256 in hex is 64 characters
        let (app_id, claim) = idempotency::claim(&tx, Some(&hash(key)), *user, "k", &request)
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Claimed), "{n}: {claim:?}");
        idempotency::record(&tx, &app_id, *user, "k", &response(n as u16))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    // Each finds its own record again, and only its own.
    for (n, (key, user)) in callers.iter().enumerate() {
        let tx = db.transaction().await.unwrap();
        let request = format!("{n:064}"); // a SHA-256 in hex is 64 characters
        let (_, claim) = idempotency::claim(&tx, Some(&hash(key)), *user, "k", &request)
            .await
            .unwrap();
        match claim {
            Claim::Replay(recorded) => assert_eq!(recorded.body, response(n as u16).body),
            other => panic!("{n}: {other:?}"),
        }
    }
    assert_eq!(app.count_rows("idempotency_keys", None).await, 4);
}

/// Records made before migration V15 belong to the application; each
/// about a session that still exists goes to that session's participants
/// (the request hash, which includes the sender, decides whose retry
/// replays it); records that cannot be attributed are dropped.
#[tokio::test]
async fn the_migration_gives_old_records_to_the_participants() {
    let database_url = fresh_database(&admin_url()).await;
    let config: tokio_postgres::Config = database_url.parse().unwrap();
    let tls = tokio_postgres::NoTls;
    amplifier_sessions::db::migrate::run_until(&config, tls, 14)
        .await
        .unwrap();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let db = pg_connect(&database_url).await;
    db.batch_execute(&format!(
        "INSERT INTO configs (config_id, name, yaml_content) VALUES
             ('00000000-0000-4000-8000-00000000c0f1', 'c', 'a: 1');
         INSERT INTO sessions (session_id, config_id, owner_user_id) VALUES
             ('00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-00000000c0f1',
              '{alice}');
         INSERT INTO session_participants (session_id, user_id, role) VALUES
             ('00000000-0000-4000-8000-0000000000a1', '{alice}', 'owner'),
             ('00000000-0000-4000-8000-0000000000a1', '{bob}', 'editor');
         INSERT INTO idempotency_keys (app_id, idempotency_key, request_hash, response_status,
                                       response_body, session_id) VALUES
             ('app', 'live', repeat('a', 64), 200, '{{}}', '00000000-0000-4000-8000-0000000000a1'),
             ('app', 'gone', repeat('b', 64), 201, '{{}}', '00000000-0000-4000-8000-0000000000a2'),
             ('app', 'old', repeat('c', 64), 201, '{{}}', NULL);"
    ))
    .await
    .unwrap();
    amplifier_sessions::db::migrate::run(&config, tls, None)
        .await
        .unwrap();
    let rows = db
        .query(
            "SELECT idempotency_key, user_id, request_hash FROM idempotency_keys ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let mut expected = [alice, bob];
    expected.sort();
    let rows: Vec<(String, Uuid, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        expected
            .iter()
            .map(|user| ("live".to_owned(), *user, "a".repeat(64)))
            .collect::<Vec<_>>()
    );
}
