//! No caller can hold the service: deadlines on request heads, stalled
//! bodies and stalled readers, and work refused before it is done. Each
//! test speaks raw HTTP/1.1 over TCP, as a hostile client would, and waits
//! for what the server does (bounded at 30 s: a bound for a hang, not a
//! measure of speed).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::*;
use crate::process::Served;

const HANG: Duration = Duration::from_secs(30);

async fn connect(address: &str) -> TcpStream {
    let addr: std::net::SocketAddr = address.trim_start_matches("http://").parse().unwrap();
    TcpStream::connect(addr).await.unwrap()
}

/// Everything the server sends until it closes the connection.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(HANG, stream.read_to_end(&mut received))
        .await
        .expect("the server kept the connection open")
        .unwrap_or_default();
    String::from_utf8_lossy(&received).into_owned()
}

/// Appends `count` messages of about 1 MiB each to the fixture's session.
async fn append_large_messages(app: &TestApp, f: &Fixture, count: usize) {
    let text = "x".repeat(1000 * 1024);
    for _ in 0..count {
        let response = app
            .as_user(
                app.post(&format!("/api/sessions/{}/messages", f.session_id)),
                &f.key,
                f.owner,
            )
            .json(&json!({"messages": [{"text": text}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// A head that announces 1 MiB of YAML and a key that is no key: the 401
/// comes without the body ever being sent, so its cost cannot depend on it.
#[tokio::test]
async fn an_unknown_key_is_refused_before_the_body_is_read() {
    let app = spawn_app().await;
    for path in ["/api/configs", "/api/sessions"] {
        let mut stream = connect(&app.address).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nX-API-Key: amp_not_a_real_key\r\n\
             Authorization: Bearer x.y.z\r\nContent-Type: application/json\r\n\
             Content-Length: 1048576\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 4096];
        let n = tokio::time::timeout(HANG, stream.read(&mut answer))
            .await
            .expect("no answer without the body: the server waited for it")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
    }
}

/// A client that never finishes its request head is disconnected.
#[tokio::test]
async fn an_unfinished_request_head_is_disconnected() {
    let app = spawn_app_with(&[("HTTP_HEADER_TIMEOUT_MS", "300")]).await;
    let mut stream = connect(&app.address).await;
    stream
        .write_all(b"POST /api/configs HTTP/1.1\r\nHost: test\r\nX-Api-")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(!answer.contains("HTTP/1.1 2"), "{answer}");
}

/// A body that stops arriving is a 408 problem, and nothing is written.
#[tokio::test]
async fn a_stalled_request_body_is_a_408() {
    let app = spawn_app_with(&[("HTTP_BODY_TIMEOUT_MS", "300")]).await;
    let key = app.create_application("stalling-app").await;
    app.create_config(&key).await; // the key is now known to be valid
    let mut stream = connect(&app.address).await;
    let head = format!(
        "POST /api/configs HTTP/1.1\r\nHost: test\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": "
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("HTTP_BODY_TIMEOUT_MS"), "{answer}");
    assert_eq!(app.count_rows("configs", None).await, 1, "only the first");
}

/// A client that stops reading an export is disconnected once a write has
/// waited `HTTP_WRITE_TIMEOUT_MS`, and the request's log line says how many
/// bytes it took: one line per request, written when the body ended.
#[tokio::test]
async fn a_stalled_reader_is_disconnected_and_logged_with_the_bytes_it_took() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}/export", f.session_id);
    stalled_reader_of(&app, &f, &path).await;
}

/// The same for a user's export (export-user): the stream of their data
/// ends with the connection of a client that stops reading.
#[tokio::test]
async fn a_stalled_reader_of_a_users_export_is_disconnected() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    stalled_reader_of(&app, &f, "/api/users/me/export").await;
}

async fn stalled_reader_of(app: &TestApp, f: &Fixture, path: &str) {
    // About 8 MiB of transcript: more than the socket buffers hold.
    append_large_messages(app, f, 8).await;
    let mut vars = base_vars(&app.database_url);
    vars.insert("LOG_FORMAT".into(), "json".into());
    vars.insert("HTTP_WRITE_TIMEOUT_MS".into(), "300".into());
    let served = Served::start(vars).await;
    let token = app.token(f.owner);
    let export = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nX-API-Key: {}\r\n\
         Authorization: Bearer {token}\r\n\r\n",
        f.key
    );

    // A reader that takes everything: one line, complete, every byte.
    let whole = reqwest::Client::new()
        .get(served.url(path))
        .header("X-API-Key", &f.key)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len() as u64;
    assert!(whole > 8_000_000);

    // A reader with a small window that takes 2 KiB and stops.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    let addr: std::net::SocketAddr = served
        .url("")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(export.as_bytes()).await.unwrap();
    let mut first = vec![0; 2048];
    stream.read_exact(&mut first).await.unwrap();
    let lines = |printed: String| -> Vec<Value> {
        printed
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| {
                l["message"] == "request" && l["route"].as_str().unwrap().ends_with("/export")
            })
            .collect()
    };
    wait_for("the stalled export is logged", || async {
        lines(served.printed()).len() == 2
    })
    .await;
    let logged = lines(served.stop());
    assert_eq!(logged[0]["outcome"], "complete");
    assert_eq!(logged[0]["bytes"], whole);
    assert_eq!(logged[1]["outcome"], "aborted");
    assert_eq!(logged[1]["status"], 200);
    assert!(
        logged[1]["bytes"].as_u64().unwrap() < whole,
        "{}",
        logged[1]
    );
    drop(stream);
}

/// A request that keeps its connection busy past
/// `DATABASE_STATEMENT_TIMEOUT_MS` is a 503, and its statement is
/// cancelled (it no longer waits in PostgreSQL, though the lock is held).
#[tokio::test]
async fn a_statement_past_its_timeout_is_cancelled_and_a_503() {
    let app = spawn_app_with(&[("DATABASE_STATEMENT_TIMEOUT_MS", "500")]).await;
    let f = app.fixture().await;
    let blocker = app.hold_the_session_row(&f.session_id).await;
    let path = format!("/api/sessions/{}", f.session_id);
    let response = app
        .as_user(app.get(&path), &f.key, f.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "2");
    let detail = expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(detail.contains("in time"), "{detail}");
    assert_eq!(backends_waiting_for_a_lock(&app.database_url).await, 0);
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let response = app
        .as_user(app.get(&path), &f.key, f.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A client that goes away while its request waits in PostgreSQL: the
/// statement is cancelled then, not when it would have finished.
#[tokio::test]
async fn a_client_that_leaves_has_its_statement_cancelled() {
    let app = spawn_app_with(&[("DATABASE_STATEMENT_TIMEOUT_MS", "600000")]).await;
    let f = app.fixture().await;
    let blocker = app.hold_the_session_row(&f.session_id).await;
    let mut stream = connect(&app.address).await;
    let request = format!(
        "GET /api/sessions/{} HTTP/1.1\r\nHost: test\r\nX-API-Key: {}\r\n\
         Authorization: Bearer {}\r\n\r\n",
        f.session_id,
        f.key,
        app.token(f.owner)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    wait_for("the request waits for the lock", || async {
        backends_waiting_for_a_lock(&app.database_url).await == 1
    })
    .await;
    drop(stream);
    wait_for("the statement is cancelled", || async {
        backends_waiting_for_a_lock(&app.database_url).await == 0
    })
    .await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
}

/// The attacks of issue 15 at once, bounded in count, against one
/// instance, while another application reads its own session: that
/// application is never refused (no 503), and nothing of the attackers'
/// is left running afterwards.
#[tokio::test]
async fn a_hostile_participant_cannot_take_the_service_from_another_application() {
    let app = spawn_app_with(&[("HTTP_WRITE_TIMEOUT_MS", "500")]).await;
    let hostile = app.fixture().await;
    let victim = app.fixture().await;
    // A transcript of large messages (16 × ~1 MiB).
    append_large_messages(&app, &hostile, 16).await;
    let token = app.token(hostile.owner);
    let mut attackers = Vec::new();
    // Stalled readers of exports.
    for _ in 0..6 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(8192).unwrap();
        let addr: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let request = format!(
            "GET /api/sessions/{}/export HTTP/1.1\r\nHost: test\r\nX-API-Key: {}\r\n\
             Authorization: Bearer {token}\r\n\r\n",
            hostile.session_id, hostile.key
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        attackers.push(stream);
    }
    // Unfinished request heads, and 1 MiB bodies under a wrong key.
    for _ in 0..20 {
        let mut stream = connect(&app.address).await;
        stream
            .write_all(b"POST /api/configs HTTP/1.1\r\nHost: t")
            .await
            .unwrap();
        attackers.push(stream);
    }
    // 1 MiB bodies announced under a wrong key (the body is never sent:
    // the 401 must not wait for it).
    let wrong_key = (0..5).map(|_| async {
        let mut stream = connect(&app.address).await;
        let head = "POST /api/configs HTTP/1.1\r\nHost: test\r\nX-API-Key: amp_not_a_real_key\r\n\
                    Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        read_until_closed(&mut stream).await
    });
    // Readers and forkers that take everything, concurrently.
    let heavy = (0..4).map(|i| {
        let request = if i % 2 == 0 {
            app.get(&format!(
                "/api/sessions/{}/messages?limit=1000",
                hostile.session_id
            ))
        } else {
            app.post(&format!("/api/sessions/{}/fork", hostile.session_id))
                .json(&json!({}))
        };
        app.as_user(request, &hostile.key, hostile.owner).send()
    });
    let attack = async {
        let (refused, done) = tokio::join!(
            futures::future::join_all(wrong_key),
            futures::future::join_all(heavy)
        );
        // Refused without the body: 401, or 503 should the lookup find no
        // connection free while the heavy requests run.
        for answer in refused {
            assert!(
                answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 503"),
                "{answer}"
            );
        }
        for response in done {
            let status = response.unwrap().status();
            assert!(status.is_success(), "{status}");
        }
    };
    let victim_path = format!("/api/sessions/{}", victim.session_id);
    let victim_reads = async {
        let mut statuses = Vec::new();
        for _ in 0..50 {
            let response = app
                .as_user(app.get(&victim_path), &victim.key, victim.owner)
                .send()
                .await
                .unwrap();
            statuses.push(response.status());
        }
        statuses
    };
    let ((), statuses) = tokio::join!(attack, victim_reads);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    drop(attackers);
}

/// Pages hold at most `PAGE_BYTES` of messages besides their first: a page
/// of 1,000 large messages is cut short, its cursor goes on, and reading on
/// (forwards or backwards) meets every message once.
#[tokio::test]
async fn pages_of_large_messages_end_at_their_byte_budget() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let text = "y".repeat(100 * 1024);
    for _ in 0..3 {
        let messages: Vec<Value> = (0..8).map(|_| json!({"text": text})).collect();
        let response = app
            .as_user(
                app.post(&format!("/api/sessions/{}/messages", f.session_id)),
                &f.key,
                f.owner,
            )
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let budget = amplifier_sessions::db::messages::PAGE_BYTES as usize;
    for (start, cursor_name) in [
        ("after_seq=0", "next_after_seq"),
        ("before_seq=25", "next_before_seq"),
    ] {
        let (mut query, mut seen, mut pages) = (start.to_owned(), Vec::new(), 0);
        loop {
            let page = expect_status(
                app.as_user(
                    app.get(&format!(
                        "/api/sessions/{}/messages?limit=1000&{query}",
                        f.session_id
                    )),
                    &f.key,
                    f.owner,
                )
                .send()
                .await
                .unwrap(),
                StatusCode::OK,
            )
            .await;
            let messages = page["messages"].as_array().unwrap();
            let bytes: usize = messages
                .iter()
                .map(|m| m["message"].to_string().len())
                .sum();
            assert!(bytes <= budget + 101 * 1024, "{bytes} bytes in one page");
            seen.extend(messages.iter().map(|m| m["seq"].as_i64().unwrap()));
            pages += 1;
            match page[cursor_name].as_i64() {
                Some(next) => query = format!("{}={next}", &cursor_name[5..]),
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, (1..=24).collect::<Vec<_>>(), "{start}");
        // Each page but the last held at least the budget less a message.
        assert!(
            pages >= 24 * 100 * 1024 / (budget + 101 * 1024),
            "{pages} pages from {start}"
        );
    }
}

/// A large append is checked against the caller's role before its words
/// are found: a viewer gets its 403, a stranger its 404, and an editor's
/// append goes through (and is searchable).
#[tokio::test]
async fn a_large_append_answers_for_the_callers_role_first() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let viewer = uuid::Uuid::new_v4();
    let editor = uuid::Uuid::new_v4();
    for (user, role) in [(viewer, "viewer"), (editor, "editor")] {
        expect_status(
            app.add_participant(&f.key, f.owner, &f.session_id, user, role)
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
    let words: Vec<String> = (0..20_000).map(|i| format!("word{i}")).collect();
    let body = json!({"messages": [{"text": words.join(" ")}]});
    let append = |user| {
        app.as_user(
            app.post(&format!("/api/sessions/{}/messages", f.session_id)),
            &f.key,
            user,
        )
        .json(&body)
        .send()
    };
    expect_problem(append(viewer).await.unwrap(), StatusCode::FORBIDDEN).await;
    expect_problem(
        append(uuid::Uuid::new_v4()).await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.scalar::<i64>("SELECT count(*) FROM session_messages", &[])
            .await,
        0
    );
    expect_status(append(editor).await.unwrap(), StatusCode::OK).await;
    let found = expect_status(
        app.as_user(
            app.get("/api/users/me/sessions?q=word19999"),
            &f.key,
            editor,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["sessions"].as_array().unwrap().len(), 1, "{found}");
}
