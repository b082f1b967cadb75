//! Live sessions: event streams across processes, resumed without gaps or
//! repeats, ended when the caller may no longer read; limits, tickets and
//! long-polls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use amplifier_sessions::auth::token::issue_dev_token;
use amplifier_sessions::settings::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::process::Served;
use crate::sse::Sse;

fn events_path(session_id: &str) -> String {
    format!("/api/sessions/{session_id}/events")
}

/// Appends `n` messages as `user`; returns the last seq.
async fn append(app: &TestApp, key: &str, user: Uuid, session_id: &str, n: usize) -> i64 {
    let messages: Vec<Value> = (0..n).map(|i| json!({"text": format!("m{i}")})).collect();
    let body = expect_status(
        app.as_user(
            app.post(&format!("/api/sessions/{session_id}/messages")),
            key,
            user,
        )
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    body["last_seq"].as_i64().unwrap()
}

/// An application, a config, a user and their session, made over HTTP at
/// `base` (a served process).
struct Remote {
    http: reqwest::Client,
    base: String,
    key: String,
    settings: Settings,
    token: String,
    config_id: Value,
    session_id: String,
}

impl Remote {
    async fn create(base: &str, vars: &HashMap<String, String>, app_id: &str) -> Self {
        let http = reqwest::Client::new();
        let key = register_application(&http, base, ADMIN_KEY, app_id).await;
        let settings = Settings::from_vars(vars).unwrap();
        let token = issue_dev_token(&settings.auth, Uuid::new_v4(), 600);
        let config = expect_status(
            http.post(format!("{base}/api/configs"))
                .header("X-API-Key", &key)
                .json(&json!({"name": "c", "yaml_content": "a: 1"}))
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        let mut remote = Self {
            http,
            base: base.to_owned(),
            key,
            settings,
            token,
            config_id: config["config_id"].clone(),
            session_id: String::new(),
        };
        remote.session_id = remote.new_session().await;
        remote
    }

    async fn new_session(&self) -> String {
        let session = expect_status(
            self.as_owner(self.http.post(format!("{}/api/sessions", self.base)))
                .json(&json!({"config_id": self.config_id}))
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        session["session_id"].as_str().unwrap().to_owned()
    }

    fn as_owner(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        builder
            .header("X-API-Key", &self.key)
            .bearer_auth(&self.token)
    }
}

/// Opens a stream of the session as `user`.
async fn open(app: &TestApp, key: &str, user: Uuid, session_id: &str) -> Sse {
    Sse::open(app.as_user(app.get(&events_path(session_id)), key, user)).await
}

#[tokio::test]
async fn a_stream_starts_with_a_snapshot_then_every_append_in_order() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let viewer = Uuid::new_v4();
    expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, viewer, "viewer")
            .await,
        StatusCode::CREATED,
    )
    .await;
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    let mut stream = open(&app, &f.key, viewer, &f.session_id).await;
    let snapshot = stream.expect("snapshot").await.json();
    assert_eq!(snapshot["session"]["session_id"], f.session_id);
    assert_eq!(snapshot["session"]["last_seq"], 2);
    assert_eq!(snapshot["session"]["role"], "viewer");
    assert_eq!(snapshot["participants"].as_array().unwrap().len(), 2);
    // Without a position, a stream starts after the snapshot.
    append(&app, &f.key, f.owner, &f.session_id, 3).await;
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    assert_eq!(stream.messages(4).await, vec![3, 4, 5, 6]);
    let message = {
        append(&app, &f.key, f.owner, &f.session_id, 1).await;
        stream.expect("message").await
    };
    assert_eq!(message.json()["message"], json!({"text": "m0"}));
    assert!(message.json()["created_at"].is_string());
}

/// Two service processes on one database: a stream on one receives, in
/// order and exactly once, appends made through the other, including
/// concurrent ones.
#[tokio::test]
async fn a_stream_on_one_process_receives_appends_made_through_another() {
    let database_url = fresh_database(&admin_url()).await;
    let mut vars = base_vars(&database_url);
    // Eight writers at once through one process, two processes sharing
    // the limits: over them by design.
    for limit in [
        "RATE_LIMIT_WRITES_PER_MINUTE",
        "RATE_LIMIT_REQUESTS_PER_MINUTE",
        "RATE_LIMIT_APP_REQUESTS_PER_MINUTE",
    ] {
        vars.insert(limit.into(), "0".into());
    }
    let a = Served::start(vars.clone()).await;
    let b = Served::start(vars.clone()).await;
    // Everything is made through the other process.
    let remote = Remote::create(&b.url(""), &vars, "two-processes").await;
    let session_id = remote.session_id.clone();
    let mut stream =
        Sse::open(remote.as_owner(remote.http.get(a.url(&events_path(&session_id))))).await;
    stream.expect("snapshot").await;
    // Eight writers at once through the other process, two messages each.
    let appends: Vec<_> = (0..8)
        .map(|_| {
            let request = remote
                .as_owner(
                    remote
                        .http
                        .post(b.url(&format!("/api/sessions/{session_id}/messages"))),
                )
                .json(&json!({"messages": [{"text": "x"}, {"text": "y"}]}));
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    for append in appends {
        assert_eq!(append.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(stream.messages(16).await, (1..=16).collect::<Vec<_>>());
    drop(stream);
    a.stop();
    b.stop();
}

/// Fan-out: many streams of one session on an instance share one feed,
/// which reads each append once for all of them (the processes log each
/// read at debug level): ten streams on each of two processes, three
/// appends, three reads per process, none by the streams themselves.
#[tokio::test]
async fn many_streams_of_one_session_cost_one_read_per_append_per_instance() {
    let database_url = fresh_database(&admin_url()).await;
    let mut vars = base_vars(&database_url);
    vars.insert(
        "LOG_LEVEL".into(),
        "info,amplifier_sessions::events=debug".into(),
    );
    let a = Served::start(vars.clone()).await;
    let b = Served::start(vars.clone()).await;
    let remote = Remote::create(&a.url(""), &vars, "fan-out").await;
    let path = events_path(&remote.session_id);
    let mut streams = Vec::new();
    for served in [&a, &b] {
        for _ in 0..10 {
            let mut stream = Sse::open(remote.as_owner(remote.http.get(served.url(&path)))).await;
            stream.expect("snapshot").await;
            streams.push(stream);
        }
    }
    for seq in 1..=3 {
        expect_status(
            remote
                .as_owner(
                    remote
                        .http
                        .post(a.url(&format!("/api/sessions/{}/messages", remote.session_id))),
                )
                .json(&json!({"messages": [{"text": "x"}]}))
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        for stream in &mut streams {
            assert_eq!(stream.messages(1).await, vec![seq]);
        }
    }
    drop(streams);
    for printed in [a.stop(), b.stop()] {
        let reads = printed
            .lines()
            .filter(|line| line.contains("a session's feed read new messages"))
            .count();
        assert_eq!(reads, 3, "one read per append: {printed}");
        assert!(
            !printed.contains("a stream read messages for itself"),
            "{printed}"
        );
    }
}

#[tokio::test]
async fn a_stream_resumed_with_last_event_id_gets_exactly_the_missed_messages() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let mut stream = open(&app, &f.key, f.owner, &f.session_id).await;
    stream.expect("snapshot").await;
    append(&app, &f.key, f.owner, &f.session_id, 3).await;
    assert_eq!(stream.messages(3).await, vec![1, 2, 3]);
    drop(stream);
    // Missed while disconnected.
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    let mut stream = Sse::open(
        app.as_user(app.get(&events_path(&f.session_id)), &f.key, f.owner)
            .header("Last-Event-ID", "3"),
    )
    .await;
    assert_eq!(
        stream.expect("snapshot").await.json()["session"]["last_seq"],
        7
    );
    assert_eq!(stream.messages(4).await, vec![4, 5, 6, 7]);
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    assert_eq!(stream.messages(1).await, vec![8]);
    drop(stream);

    // after_seq does the same (Last-Event-ID wins when both are sent).
    let mut stream = Sse::open(app.as_user(
        app.get(&format!("{}?after_seq=6", events_path(&f.session_id))),
        &f.key,
        f.owner,
    ))
    .await;
    stream.expect("snapshot").await;
    assert_eq!(stream.messages(2).await, vec![7, 8]);
    drop(stream);
    let mut stream = Sse::open(
        app.as_user(
            app.get(&format!("{}?after_seq=0", events_path(&f.session_id))),
            &f.key,
            f.owner,
        )
        .header("Last-Event-ID", "7"),
    )
    .await;
    stream.expect("snapshot").await;
    assert_eq!(stream.messages(1).await, vec![8]);
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    assert_eq!(stream.messages(1).await, vec![9]);
}

#[tokio::test]
async fn changes_to_the_session_and_its_participants_arrive_as_events() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let mut stream = open(&app, &f.key, f.owner, &f.session_id).await;
    stream.expect("snapshot").await;
    let editor = Uuid::new_v4();
    expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, editor, "editor")
            .await,
        StatusCode::CREATED,
    )
    .await;
    let participants = stream.expect("participants").await.json();
    assert_eq!(participants["session_id"], f.session_id);
    let users: Vec<&str> = participants["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, vec![f.owner.to_string(), editor.to_string()]);
    expect_status(
        app.as_user(
            app.http
                .patch(app.url(&format!("/api/sessions/{}", f.session_id))),
            &f.key,
            f.owner,
        )
        .json(&json!({"status": "completed", "metadata": {"title": "done"}}))
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    let session = stream.expect("session").await.json();
    assert_eq!(session["status"], "completed");
    assert_eq!(session["metadata"], json!({"title": "done"}));
    assert_eq!(session["role"], "owner");
    // Reading the session (which records the access) is no event.
    app.as_user(
        app.get(&format!("/api/sessions/{}", f.session_id)),
        &f.key,
        f.owner,
    )
    .send()
    .await
    .unwrap();
    append(&app, &f.key, editor, &f.session_id, 1).await;
    assert_eq!(stream.messages(1).await, vec![1]);
}

/// Removed, deleted, or the key rotated or deactivated: the affected
/// streams end with an `end` event saying why; the others go on.
#[tokio::test]
async fn streams_end_when_their_caller_may_no_longer_read() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let viewer = Uuid::new_v4();
    expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, viewer, "viewer")
            .await,
        StatusCode::CREATED,
    )
    .await;
    let mut owners = open(&app, &f.key, f.owner, &f.session_id).await;
    let mut viewers = open(&app, &f.key, viewer, &f.session_id).await;
    owners.expect("snapshot").await;
    viewers.expect("snapshot").await;
    expect_status(
        app.as_user(
            app.http.delete(app.url(&format!(
                "/api/sessions/{}/participants/{viewer}",
                f.session_id
            ))),
            &f.key,
            f.owner,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(viewers.expect("end").await.json()["reason"], "removed");
    assert!(viewers.next().await.is_none(), "the stream closed");
    assert_eq!(viewers.retry, None, "no hint to come back");
    owners.expect("participants").await;

    // Deleted.
    expect_status(
        app.as_user(
            app.http
                .delete(app.url(&format!("/api/sessions/{}", f.session_id))),
            &f.key,
            f.owner,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::NO_CONTENT,
    )
    .await;
    let end = loop {
        let event = owners.next().await.expect("an end event");
        if event.event == "end" {
            break event;
        }
    };
    assert_eq!(end.json()["reason"], "deleted");

    // The key rotated, then (with the new key) the application deactivated.
    let app_id = format!("rotating-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let key = app.create_application(&app_id).await;
    let config = app.create_config(&key).await;
    let session = app.create_session(&key, f.owner, config).await;
    let session_id = session["session_id"].as_str().unwrap();
    let mut stream = open(&app, &key, f.owner, session_id).await;
    stream.expect("snapshot").await;
    let rotated = expect_status(
        app.post(&format!("/api/applications/{app_id}/rotate-key"))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(stream.expect("end").await.json()["reason"], "key_revoked");
    let key = rotated["api_key"].as_str().unwrap().to_owned();
    let mut stream = open(&app, &key, f.owner, session_id).await;
    stream.expect("snapshot").await;
    expect_status(
        app.http
            .patch(app.url(&format!("/api/applications/{app_id}")))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({"is_active": false}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(stream.expect("end").await.json()["reason"], "key_revoked");
}

/// A stream ends by itself with a `retry:` hint (well before Azure's 230 s
/// front-end limit), with heartbeats until then; the client resumes.
#[tokio::test]
async fn a_stream_ends_by_itself_with_a_retry_hint_and_heartbeats_until_then() {
    let app = spawn_app_with(&[
        ("EVENTS_MAX_STREAM_SECONDS", "3"),
        ("EVENTS_HEARTBEAT_SECONDS", "1"),
    ])
    .await;
    let f = app.fixture().await;
    let mut stream = open(&app, &f.key, f.owner, &f.session_id).await;
    stream.expect("snapshot").await;
    assert_eq!(stream.expect("end").await.json()["reason"], "max_duration");
    assert!(stream.comments >= 1, "heartbeats came meanwhile");
    let retry = stream.retry.expect("a retry hint");
    assert!((500..1500).contains(&retry), "{retry}");
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn streams_over_the_limits_are_refused_with_retry_after() {
    // Four on the instance, three for one application, two for one user.
    let app = spawn_app_with(&[
        ("EVENTS_MAX_STREAMS", "4"),
        ("EVENTS_APP_SHARE", "0.75"),
        ("EVENTS_MAX_STREAMS_PER_USER", "2"),
    ])
    .await;
    let f = app.fixture().await;
    let other = Uuid::new_v4();
    expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, other, "viewer")
            .await,
        StatusCode::CREATED,
    )
    .await;
    let refused = |key: String, user: Uuid, session_id: String| {
        let app = &app;
        async move {
            let response = app
                .as_user(app.get(&events_path(&session_id)), &key, user)
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(response.headers().contains_key("retry-after"));
            (status, expect_problem(response, status).await)
        }
    };
    let first = open(&app, &f.key, f.owner, &f.session_id).await;
    let _second = open(&app, &f.key, f.owner, &f.session_id).await;
    let (status, detail) = refused(f.key.clone(), f.owner, f.session_id.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(detail.contains("EVENTS_MAX_STREAMS_PER_USER"), "{detail}");
    let _third = open(&app, &f.key, other, &f.session_id).await;
    // The application holds its share; another application does not.
    let (status, detail) = refused(f.key.clone(), other, f.session_id.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(detail.contains("EVENTS_APP_SHARE"), "{detail}");
    let g = app.fixture().await;
    let _fourth = open(&app, &g.key, g.owner, &g.session_id).await;
    let (status, detail) = refused(g.key.clone(), g.owner, g.session_id.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(detail.contains("EVENTS_MAX_STREAMS"), "{detail}");
    // A closed stream gives its place back.
    drop(first);
    wait_for("a place is free again", || async {
        app.as_user(app.get(&events_path(&f.session_id)), &f.key, f.owner)
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn opening_a_stream_checks_the_caller_and_its_position() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let stranger = Uuid::new_v4();
    let response = app
        .as_user(app.get(&events_path(&f.session_id)), &f.key, stranger)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .get(&events_path(&f.session_id))
        .bearer_auth(app.token(f.owner))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
    for (query, last_event_id) in [("?after_seq=-1", None), ("", Some("x"))] {
        let mut request = app.as_user(
            app.get(&format!("{}{query}", events_path(&f.session_id))),
            &f.key,
            f.owner,
        );
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        expect_problem(
            request.send().await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
}

/// Tickets: one stream, once, for the user, key and session they were
/// made for; never in the logs.
#[tokio::test]
async fn a_ticket_opens_one_stream_once() {
    let database_url = fresh_database(&admin_url()).await;
    let vars = base_vars(&database_url);
    let served = Served::start(vars.clone()).await;
    let remote = Remote::create(&served.url(""), &vars, "tickets").await;
    let sessions = [remote.session_id.clone(), remote.new_session().await];
    let (http, settings) = (&remote.http, &remote.settings);
    let new_ticket = || async {
        expect_status(
            remote
                .as_owner(http.post(served.url(&format!("{}/tickets", events_path(&sessions[0])))))
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await
    };
    let issued = new_ticket().await;
    let ticket = issued["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("amt_"));
    assert_eq!(
        issued["url"],
        format!("{}?ticket={ticket}", events_path(&sessions[0]))
    );
    // Not for another session (and that does not use it up).
    let response = http
        .get(served.url(&format!("{}?ticket={ticket}", events_path(&sessions[1]))))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
    let mut stream = Sse::open(http.get(served.url(&format!(
        "{}?ticket={ticket}&after_seq=0",
        events_path(&sessions[0])
    ))))
    .await;
    assert_eq!(
        stream.expect("snapshot").await.json()["session"]["role"],
        "owner"
    );
    // Used up.
    let response = http
        .get(served.url(issued["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::UNAUTHORIZED).await;
    assert!(detail.contains("single-use"), "{detail}");
    // A ticket with headers too is ambiguous.
    let other = new_ticket().await;
    let response = http
        .get(served.url(other["url"].as_str().unwrap()))
        .header("X-API-Key", &remote.key)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST).await;
    // A stranger cannot get one.
    let response = http
        .post(served.url(&format!("{}/tickets", events_path(&sessions[0]))))
        .header("X-API-Key", &remote.key)
        .bearer_auth(issue_dev_token(&settings.auth, Uuid::new_v4(), 600))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
    drop(stream);
    let printed = served.stop();
    assert!(
        printed.contains("/events"),
        "requests are logged: {printed}"
    );
    assert!(!printed.contains(&ticket), "a ticket in the log: {printed}");
    assert!(!printed.contains("amt_"), "a ticket in the log: {printed}");
}

/// A graceful shutdown ends open streams at once (with a hint to come
/// back), so the drain does not wait for them.
#[tokio::test]
async fn a_shutdown_ends_open_streams_with_an_end_event() {
    let database_url = fresh_database(&admin_url()).await;
    let vars = base_vars(&database_url);
    let served = Served::start(vars.clone()).await;
    let remote = Remote::create(&served.url(""), &vars, "shutdown").await;
    let mut stream = Sse::open(
        remote.as_owner(
            remote
                .http
                .get(served.url(&events_path(&remote.session_id))),
        ),
    )
    .await;
    stream.expect("snapshot").await;
    let stopped = tokio::task::spawn_blocking(move || served.stop());
    assert_eq!(stream.expect("end").await.json()["reason"], "shutdown");
    assert!(stream.retry.is_some());
    assert!(stream.next().await.is_none());
    let printed = stopped.await.unwrap();
    assert!(
        !printed.contains("did not finish in time"),
        "the drain did not wait: {printed}"
    );
}

/// PostgreSQL restarts under an open stream: the listening connection
/// comes back and the stream gets what was appended meanwhile (whose
/// notifications nobody heard), each message once.
#[tokio::test]
async fn after_postgres_restarts_under_a_stream_it_gets_the_appends_made_meanwhile_once() {
    let server = OwnServer::start(false);
    let database_url = fresh_database(&server.url("127.0.0.1")).await;
    let app = spawn_app_on(&database_url, &[]).await;
    wait_until_healthy(&app.url("/api/health"), "the database").await;
    let f = app.fixture().await;
    let mut stream = open(&app, &f.key, f.owner, &f.session_id).await;
    stream.expect("snapshot").await;
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    assert_eq!(stream.messages(2).await, vec![1, 2]);

    server.stop();
    server.resume();
    wait_until_healthy(&app.url("/api/health"), "the database is back").await;
    // Appended as soon as the database is back: likely before the
    // listener reconnected (its notifications are then lost); either way
    // the stream gets them.
    append(&app, &f.key, f.owner, &f.session_id, 3).await;
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    // Whatever else comes (a session or participants event after the
    // reconnection), the messages come once each, in order.
    assert_eq!(next_messages(&mut stream, 4).await, vec![3, 4, 5, 6]);
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    assert_eq!(next_messages(&mut stream, 1).await, vec![7]);
}

/// A TCP proxy to the suite's PostgreSQL that can be cut (its connections
/// closed, new ones refused) and restored.
struct Cuttable {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl Cuttable {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = tokio::sync::watch::Sender::new(true);
        let mut state = up.subscribe();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*state.borrow_and_update() {
                    continue; // refused: closed at once
                }
                let mut cut = state.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// The listening connection goes where `DATABASE_LISTEN_PORT` says; while
/// it is away, appends notify nobody; once it is back, open streams get
/// those appends, each once.
#[tokio::test]
async fn appends_whose_notifications_nobody_heard_reach_the_stream_once_the_listener_is_back() {
    let server: tokio_postgres::Config = admin_url().parse().unwrap();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], server.get_ports()[0]));
    let proxy = Cuttable::start(target).await;
    let app = spawn_app_with(&[("DATABASE_LISTEN_PORT", &proxy.port.to_string())]).await;
    let f = app.fixture().await;
    let mut stream = open(&app, &f.key, f.owner, &f.session_id).await;
    stream.expect("snapshot").await;
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    assert_eq!(stream.messages(1).await, vec![1]);

    proxy.set(false);
    wait_for("the listening connection is gone", || async {
        !listening(&app.database_url).await
    })
    .await;
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    proxy.set(true);
    assert_eq!(next_messages(&mut stream, 3).await, vec![2, 3, 4]);
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    assert_eq!(next_messages(&mut stream, 1).await, vec![5], "none twice");
}

/// Long-poll: list-messages with `wait` answers as soon as a message
/// follows `after_seq`, or with an empty page after the wait.
#[tokio::test]
async fn a_long_poll_answers_on_an_append_or_with_an_empty_page_after_its_wait() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let poll = |query: &str| {
        app.as_user(
            app.get(&format!("/api/sessions/{}/messages?{query}", f.session_id)),
            &f.key,
            f.owner,
        )
        .send()
    };
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    // Something follows: at once.
    let page = expect_status(poll("after_seq=1&wait=30").await.unwrap(), StatusCode::OK).await;
    assert_eq!(page["messages"][0]["seq"], 2);

    // Nothing follows: an empty page, after the wait.
    let started = Instant::now();
    let page = expect_status(poll("after_seq=2&wait=1").await.unwrap(), StatusCode::OK).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert_eq!(page["messages"], json!([]));
    assert_eq!(page["next_after_seq"], Value::Null);

    // An append while it waits: answered with it, before the wait is over.
    let started = Instant::now();
    let waiting = tokio::spawn(poll("after_seq=2&wait=30"));
    wait_for("the long-poll listens", || async {
        listening(&app.database_url).await
    })
    .await;
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    let page = expect_status(waiting.await.unwrap().unwrap(), StatusCode::OK).await;
    assert_eq!(page["messages"][0]["seq"], 3);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "before the wait"
    );

    for query in ["before_seq=2&wait=1", "after_seq=0&wait=31"] {
        expect_problem(poll(query).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    }
}

/// The registrations of `session_id` (migration V19): each a feed's, with
/// its expiry.
async fn watches(db: &tokio_postgres::Client, session_id: &str) -> Vec<(Uuid, f64)> {
    db.query(
        "SELECT feed_id, extract(epoch FROM expires_at)::float8 FROM watched_sessions
         WHERE session_id = $1::text::uuid ORDER BY feed_id",
        &[&session_id],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

/// Only sessions that someone follows notify (migration V19): a feed
/// registers its session when it starts, renews the registration while it
/// lives and removes it when it ends (the session notifies until the time
/// it was registered for); the sweep deletes expired registrations.
#[tokio::test]
async fn a_session_notifies_while_a_feed_follows_it_and_not_after() {
    let app = spawn_app_with(&[
        ("EVENTS_WATCH_SECONDS", "5"),
        ("IDEMPOTENCY_SWEEP_SECONDS", "1"),
    ])
    .await;
    let f = app.fixture().await;
    let config_id = app.create_config(&f.key).await;
    let unwatched = app.create_session(&f.key, f.owner, config_id).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = pg_connect(&app.database_url).await;
    let (listener, mut notices) = listen_raw(&app.database_url).await;
    assert!(watches(&db, &f.session_id).await.is_empty());

    let mut stream = open(&app, &f.key, f.owner, &f.session_id).await;
    stream.expect("snapshot").await;
    let registered = watches(&db, &f.session_id).await;
    assert_eq!(registered.len(), 1, "one feed: {registered:?}");
    // Appends to a session nobody follows notify nothing; notifications
    // come in commit order, so the first one heard is the followed one's.
    append(&app, &f.key, f.owner, &unwatched, 1).await;
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    let heard: Value = serde_json::from_str(&notices.recv().await.unwrap()).unwrap();
    assert_eq!(heard, json!({"k": "m", "s": f.session_id, "q": 1}));
    assert_eq!(stream.messages(1).await, vec![1]);

    // Renewed while the feed lives (every fifth of EVENTS_WATCH_SECONDS).
    wait_for("the registration is renewed", || async {
        let now = watches(&db, &f.session_id).await;
        now.len() == 1 && now[0].0 == registered[0].0 && now[0].1 > registered[0].1
    })
    .await;
    drop(stream);
    wait_for("the registration is removed with the feed", || async {
        watches(&db, &f.session_id).await.is_empty()
    })
    .await;
    wait_for("the session's registered time is over", || async {
        db.query_one(
            "SELECT watched_until < now() FROM sessions WHERE session_id = $1::text::uuid",
            &[&f.session_id],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    })
    .await;
    // Nobody follows it now: its appends notify nothing.
    db.execute(
        "UPDATE sessions SET watched_until = now() + interval '1 hour'
         WHERE session_id = $1::text::uuid",
        &[&unwatched],
    )
    .await
    .unwrap();
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    append(&app, &f.key, f.owner, &unwatched, 1).await;
    let heard: Value = serde_json::from_str(&notices.recv().await.unwrap()).unwrap();
    assert_eq!(
        heard,
        json!({"k": "m", "s": unwatched, "q": 2}),
        "only a session registered until later notifies"
    );
    db.batch_execute(&format!(
        "INSERT INTO watched_sessions VALUES (gen_random_uuid(), '{}', gen_random_uuid(), now() + interval '1 hour');
         INSERT INTO watched_sessions VALUES (gen_random_uuid(), '{}', gen_random_uuid(), now() - interval '1 second')",
        unwatched, f.session_id
    ))
    .await
    .unwrap();
    wait_for("the sweep deletes the expired registration", || async {
        watches(&db, &f.session_id).await.is_empty()
    })
    .await;
    assert_eq!(watches(&db, &unwatched).await.len(), 1, "a live one stays");
    drop(listener);
}

/// A registration that lapsed (its instance could not renew it in time):
/// appends meanwhile did not notify; the next renewal registers it again
/// and the stream gets them, then later appends notify again.
#[tokio::test]
async fn a_lapsed_registration_is_made_again_and_its_stream_catches_up() {
    let app = spawn_app_with(&[("EVENTS_WATCH_SECONDS", "5")]).await;
    let f = app.fixture().await;
    let db = pg_connect(&app.database_url).await;
    let mut stream = open(&app, &f.key, f.owner, &f.session_id).await;
    stream.expect("snapshot").await;
    let registered = watches(&db, &f.session_id).await;
    db.execute(
        "WITH lapsed AS (
             UPDATE watched_sessions SET expires_at = now() - interval '1 second'
             WHERE session_id = $1::text::uuid
         )
         UPDATE sessions SET watched_until = now() - interval '1 second'
         WHERE session_id = $1::text::uuid",
        &[&f.session_id],
    )
    .await
    .unwrap();
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    // The feed catches up as after a lost listener: the session's state
    // comes too.
    assert_eq!(next_messages(&mut stream, 2).await, vec![1, 2]);
    let now = watches(&db, &f.session_id).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].0, registered[0].0, "the same feed, registered again");
    append(&app, &f.key, f.owner, &f.session_id, 1).await;
    assert_eq!(next_messages(&mut stream, 1).await, vec![3]);
}

/// The seqs of the next `n` messages, skipping `session` and
/// `participants` events.
async fn next_messages(stream: &mut Sse, n: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let event = stream.next().await.expect("the stream goes on");
        match event.event.as_str() {
            "message" => seqs.push(event.seq()),
            "session" | "participants" => {}
            other => panic!("unexpected {other} event"),
        }
    }
    seqs
}

/// Appends racing a new feed's registration: whether an append committed
/// before the registration (counted in the feed's first head) or after it
/// (it notifies), the stream gets every message once, in order, without
/// any later append to wake it. Several rounds, each a new session (a new
/// feed) opened while four writers append.
#[tokio::test]
async fn appends_racing_a_feeds_registration_all_reach_its_stream() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_WRITES_PER_MINUTE", "0"),
        ("RATE_LIMIT_REQUESTS_PER_MINUTE", "0"),
        ("RATE_LIMIT_APP_REQUESTS_PER_MINUTE", "0"),
    ])
    .await;
    let f = app.fixture().await;
    let config_id = app.create_config(&f.key).await;
    for _ in 0..5 {
        let session_id = app.create_session(&f.key, f.owner, config_id).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let request = app
                    .as_user(
                        app.post(&format!("/api/sessions/{session_id}/messages")),
                        &f.key,
                        f.owner,
                    )
                    .json(&json!({"messages": [{"text": "x"}]}));
                tokio::spawn(async move {
                    for _ in 0..10 {
                        let response = request.try_clone().unwrap().send().await.unwrap();
                        assert_eq!(response.status(), StatusCode::OK);
                    }
                })
            })
            .collect();
        let mut stream = Sse::open(app.as_user(
            app.get(&format!("{}?after_seq=0", events_path(&session_id))),
            &f.key,
            f.owner,
        ))
        .await;
        stream.expect("snapshot").await;
        for writer in writers {
            writer.await.unwrap();
        }
        assert_eq!(stream.messages(40).await, (1..=40).collect::<Vec<_>>());
    }
}

/// A connection of its own that LISTENs on the events' channel, and the
/// payloads it hears.
async fn listen_raw(
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute("LISTEN amplifier_events")
        .await
        .unwrap();
    (client, rx)
}

/// Whether a connection LISTENs on the database of `url`.
async fn listening(url: &str) -> bool {
    let database = url.rsplit('/').next().unwrap().to_owned();
    let n: i64 = pg_connect(&admin_url())
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND query ILIKE 'LISTEN%'",
            &[&database],
        )
        .await
        .unwrap()
        .get(0);
    n > 0
}

/// A real browser: a page on an allowed origin follows a session with the
/// native `EventSource` (a ticket in the URL, since it cannot send
/// headers) and shows what another client appends; its stream ends by
/// itself (a short `EVENTS_MAX_STREAM_SECONDS`) and the page resumes with
/// a new ticket and `after_seq`, without gaps or repeats.
#[tokio::test]
async fn a_browser_follows_a_session_with_event_source_and_resumes_without_gaps() {
    use axum::extract::Query;
    use axum::response::Html;
    use axum::routing::get;

    let allowed_port = unused_port();
    let allowed = format!("http://127.0.0.1:{allowed_port}");
    let app = spawn_app_with(&[
        ("ALLOWED_ORIGINS", &allowed),
        ("EVENTS_MAX_STREAM_SECONDS", "2"),
    ])
    .await;
    let f = app.fixture().await;
    let html = format!(
        r#"<!doctype html><html><body><pre id="result">pending</pre><script>
const api = "{api}", session = "{session}";
const headers = {{"X-API-Key": "{key}", "Authorization": "Bearer {token}"}};
const seen = [];
let opened = 0;
const report = what => fetch("/report?what=" + encodeURIComponent(what));
async function connect() {{
  const response = await fetch(`${{api}}/api/sessions/${{session}}/events/tickets`,
                               {{method: "POST", headers}});
  const ticket = await response.json();
  const after = seen.length ? "&after_seq=" + seen[seen.length - 1] : "";
  const source = new EventSource(api + ticket.url + after);
  opened += 1;
  source.addEventListener("snapshot", () => report("open " + opened));
  source.addEventListener("message", event => {{
    const seq = JSON.parse(event.data).seq;
    if (String(seq) !== event.lastEventId) seen.push("bad-id");
    seen.push(seq);
    if (seen.length >= 7) {{
      source.close();
      document.getElementById("result").textContent =
        "RESULT|" + seen.join(",") + "|" + opened + "|";
      report("done");
    }}
  }});
  source.addEventListener("end", event => {{
    source.close();
    report("end " + JSON.parse(event.data).reason).then(connect);
  }});
  source.onerror = () => {{
    source.close();
    document.getElementById("result").textContent = "RESULT|error|" + opened + "|";
    report("error");
  }};
}}
connect();
</script></body></html>"#,
        api = app.address,
        session = f.session_id,
        key = f.key,
        token = app.token(f.owner),
    );
    let (reports, mut reported) = tokio::sync::mpsc::unbounded_channel::<String>();
    let router = axum::Router::new()
        .route("/", get(move || async move { Html(html) }))
        .route(
            "/report",
            get(move |Query(q): Query<HashMap<String, String>>| async move {
                let _ = reports.send(q["what"].clone());
            }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", allowed_port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let mut next_report = async || {
        tokio::time::timeout(Duration::from_secs(60), reported.recv())
            .await
            .expect("the page reported nothing for 60 s")
            .unwrap()
    };

    let page = format!("{allowed}/");
    let dom = tokio::spawn(async move { dump_dom(&page).await });
    assert_eq!(next_report().await, "open 1");
    append(&app, &f.key, f.owner, &f.session_id, 3).await;
    assert_eq!(next_report().await, "end max_duration");
    // Appended while the page reconnects: it resumes after what it has.
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    assert_eq!(next_report().await, "open 2");
    append(&app, &f.key, f.owner, &f.session_id, 2).await;
    let mut last = next_report().await;
    while last.starts_with("end") || last.starts_with("open") {
        last = next_report().await; // a stream ended meanwhile: resumed
    }
    assert_eq!(last, "done");
    let dom = dom.await.unwrap();
    let result = dom
        .split("RESULT|")
        .nth(1)
        .unwrap_or_else(|| panic!("the page never finished: {dom}"));
    let words: Vec<&str> = result.split('|').take(2).collect();
    assert_eq!(words[0], "1,2,3,4,5,6,7", "every message once, in order");
    assert!(words[1].parse::<u32>().unwrap() >= 2, "it reconnected");
}
