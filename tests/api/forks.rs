//! Forks share their source's messages instead of copying them: what a
//! fork reads, exports and is found by, forks of forks, deleting the
//! sessions a fork reads from, and the bound on how deep that goes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// One application and user, and the requests these tests make as them.
struct Caller<'a> {
    app: &'a TestApp,
    key: String,
    user: Uuid,
}

impl Caller<'_> {
    async fn new(app: &TestApp) -> Caller<'_> {
        let f = app.fixture().await;
        Caller {
            app,
            key: f.key,
            user: f.owner,
        }
    }

    async fn session(&self) -> String {
        let config = self.app.create_config(&self.key).await;
        let session = self.app.create_session(&self.key, self.user, config).await;
        session["session_id"].as_str().unwrap().to_owned()
    }

    /// Appends one message per word, `{"text": word}`.
    async fn append(&self, session: &str, words: &[&str]) -> Value {
        let messages: Vec<Value> = words.iter().map(|w| json!({ "text": w })).collect();
        let response = self
            .app
            .as_user(
                self.app.post(&format!("/api/sessions/{session}/messages")),
                &self.key,
                self.user,
            )
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::OK).await
    }

    async fn fork(&self, session: &str, body: Value) -> reqwest::Response {
        self.app
            .as_user(
                self.app.post(&format!("/api/sessions/{session}/fork")),
                &self.key,
                self.user,
            )
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Forks `session` at `up_to_seq`; the new session's id.
    async fn forked(&self, session: &str, up_to_seq: i32) -> String {
        let fork = expect_status(
            self.fork(session, json!({ "up_to_seq": up_to_seq })).await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(fork["forked_from_seq"], up_to_seq);
        assert_eq!(fork["message_count"], up_to_seq);
        fork["session_id"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .app
            .as_user(self.app.get(path), &self.key, self.user)
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::OK).await
    }

    /// The transcript's words read forwards `limit` at a time, checking the
    /// numbers run 1, 2, 3...
    async fn forwards(&self, session: &str, limit: i32) -> Vec<String> {
        let mut words = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .get(&format!(
                    "/api/sessions/{session}/messages?after_seq={after}&limit={limit}"
                ))
                .await;
            for m in page["messages"].as_array().unwrap() {
                assert_eq!(m["seq"], words.len() + 1, "{page}");
                words.push(m["message"]["text"].as_str().unwrap().to_owned());
            }
            match page["next_after_seq"].as_i64() {
                Some(next) => after = next,
                None => return words,
            }
        }
    }

    /// The same read backwards from the end (`before_seq` far beyond it),
    /// returned oldest first.
    async fn backwards(&self, session: &str, limit: i32) -> Vec<String> {
        let mut words = Vec::new();
        let mut before = 1_000_000;
        loop {
            let page = self
                .get(&format!(
                    "/api/sessions/{session}/messages?before_seq={before}&limit={limit}"
                ))
                .await;
            for m in page["messages"].as_array().unwrap() {
                words.push(m["message"]["text"].as_str().unwrap().to_owned());
            }
            match page["next_before_seq"].as_i64() {
                Some(next) => before = next,
                None => break,
            }
        }
        words.reverse();
        words
    }

    /// The export's messages, checking the first line is the session.
    async fn exported(&self, session: &str) -> Vec<String> {
        let response = self
            .app
            .as_user(
                self.app.get(&format!("/api/sessions/{session}/export")),
                &self.key,
                self.user,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        let mut lines = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap());
        let head = lines.next().unwrap();
        assert_eq!(head["session_id"], session);
        lines
            .enumerate()
            .map(|(i, line)| {
                assert_eq!(line["seq"], i + 1);
                line["message"]["text"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// Whether list-user-sessions with `q` lists `session`.
    async fn finds(&self, q: &str, session: &str) -> bool {
        let page = self.get(&format!("/api/users/me/sessions?q={q}")).await;
        page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["session_id"] == session)
    }

    async fn delete(&self, session: &str) {
        let response = self
            .app
            .as_user(
                self.app.http.delete(
                    self.app
                        .url(&format!("/api/sessions/{session}?permanent=true")),
                ),
                &self.key,
                self.user,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    /// Every way to read `session` gives `expected`, in order.
    async fn reads(&self, session: &str, expected: &[&str]) {
        for limit in [1, 3, 100] {
            assert_eq!(
                self.forwards(session, limit).await,
                expected,
                "limit {limit}"
            );
            assert_eq!(
                self.backwards(session, limit).await,
                expected,
                "limit {limit}"
            );
        }
        assert_eq!(self.exported(session).await, expected);
    }
}

async fn message_rows(app: &TestApp) -> i64 {
    app.count_rows("session_messages", None).await
}

/// A fork cutting through an append: it reads, exports and is found by
/// the messages up to the cut, its size is theirs, and it wrote no copy of
/// them; what either side appends later is its own.
#[tokio::test]
async fn a_fork_shares_its_source_up_to_the_cut_and_copies_nothing() {
    let app = spawn_app().await;
    let c = Caller::new(&app).await;
    let root = c.session().await;
    c.append(&root, &["one", "two", "three", "four"]).await;
    c.append(&root, &["five", "six", "seven"]).await;
    c.append(&root, &["eight", "nine", "ten"]).await;
    let (rows, before) = (
        message_rows(&app).await,
        c.get(&format!("/api/sessions/{root}")).await,
    );

    let fork = c.forked(&root, 6).await;
    assert_eq!(message_rows(&app).await, rows, "the fork copied messages");
    let shared = ["one", "two", "three", "four", "five", "six"];
    c.reads(&fork, &shared).await;
    let size: i64 = app
        .scalar(
            "SELECT sum(octet_length(message::text))::bigint FROM session_messages
             WHERE session_id = $1::text::uuid AND seq <= 6",
            &[&root],
        )
        .await;
    let got = c.get(&format!("/api/sessions/{fork}")).await;
    assert_eq!(got["transcript_bytes"], size);
    assert_eq!(got["last_seq"], 6);
    assert_eq!(got["parent_session_id"], root.as_str());

    // Search sees the shared messages only, up to the cut in that append.
    for (word, in_fork) in [
        ("two", true),
        ("six", true),
        ("seven", false),
        ("ten", false),
    ] {
        assert_eq!(c.finds(word, &fork).await, in_fork, "{word}");
        assert!(c.finds(word, &root).await, "{word}");
    }
    assert!(c.finds("five+-seven", &fork).await);
    assert!(!c.finds("five+-seven", &root).await);

    // Each goes on with its own messages; neither sees the other's.
    assert_eq!(c.append(&fork, &["fork7", "fork8"]).await["first_seq"], 7);
    c.append(&root, &["eleven"]).await;
    let mut forked: Vec<&str> = shared.to_vec();
    forked.extend(["fork7", "fork8"]);
    c.reads(&fork, &forked).await;
    assert!(c.finds("fork8", &fork).await && !c.finds("fork8", &root).await);
    assert!(!c.finds("eleven", &fork).await);
    let after = c.get(&format!("/api/sessions/{root}")).await;
    assert_eq!(after["message_count"], 11);
    assert_eq!(before["message_count"], 10);

    // A fork of everything, and of nothing.
    let whole = c.forked(&root, 11).await;
    assert_eq!(
        c.get(&format!("/api/sessions/{whole}")).await["transcript_bytes"],
        after["transcript_bytes"]
    );
    let empty = c.forked(&root, 0).await;
    c.reads(&empty, &[]).await;
    assert_eq!(c.append(&empty, &["fresh"]).await["first_seq"], 1);
    assert_eq!(message_rows(&app).await, rows + 2 + 1 + 1);
}

/// A fork of a fork reads through both ancestors, each up to its cut; with
/// those ancestors deleted it still reads (and is found by) every message,
/// and the sweep deletes only the rows nobody reads any more, then, with
/// the last fork gone (with its config), everything.
#[tokio::test]
async fn forks_of_forks_keep_their_messages_when_their_ancestors_go() {
    let app = spawn_app_with(&[("IDEMPOTENCY_SWEEP_SECONDS", "1")]).await;
    let c = Caller::new(&app).await;
    let root = c.session().await;
    let words: Vec<String> = (1..=10).map(|n| format!("root{n}")).collect();
    c.append(&root, &words.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let first = c.forked(&root, 6).await;
    c.append(&first, &["first7", "first8", "first9"]).await;
    let second = c.forked(&first, 8).await;
    c.append(&second, &["second9", "second10"]).await;
    c.append(&root, &["root11", "root12"]).await;
    assert_eq!(
        message_rows(&app).await,
        12 + 3 + 2,
        "forks copied messages"
    );

    let expected = [
        "root1", "root2", "root3", "root4", "root5", "root6", "first7", "first8", "second9",
        "second10",
    ];
    c.reads(&second, &expected).await;
    for (word, found) in [
        ("root6", true),
        ("root7", false),
        ("first8", true),
        ("first9", false),
        ("second10", true),
    ] {
        assert_eq!(c.finds(word, &second).await, found, "{word}");
    }

    c.delete(&root).await;
    c.delete(&first).await;
    let second_view = c.get(&format!("/api/sessions/{second}")).await;
    assert_eq!(second_view["parent_session_id"], Value::Null);
    assert_eq!(second_view["message_count"], 10);
    // The sweep keeps root's 1-6 and first's 7-8, which `second` reads.
    wait_for("the sweep deleted what no session reads", || async {
        message_rows(&app).await == 6 + 2 + 2
    })
    .await;
    c.reads(&second, &expected).await;
    for word in ["root3", "root6", "first7", "first8", "second9"] {
        assert!(c.finds(word, &second).await, "{word}");
    }
    assert!(!c.finds("root7", &second).await && !c.finds("first9", &second).await);

    // The last one goes with its config (a cascade, not delete-session).
    let config = c.get(&format!("/api/sessions/{second}")).await["config_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .http
        .delete(app.url(&format!("/api/configs/{config}")))
        .header("X-API-Key", &c.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    wait_for(
        "the sweep deleted everything of the deleted sessions",
        || async {
            message_rows(&app).await == 0
                && app
                    .scalar::<i64>(
                        "SELECT count(*) FROM session_search d
                     WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = d.session_id)",
                        &[],
                    )
                    .await
                    == 0
                && app.count_rows("transcripts_to_sweep", None).await == 0
        },
    )
    .await;
}

/// How many sessions a transcript may be read from is bounded: beyond
/// `SESSION_MAX_FORK_DEPTH` a fork is a 409 naming it, and writes nothing;
/// a fork at an earlier message still works.
#[tokio::test]
async fn fork_chains_are_bounded_in_depth() {
    let app = spawn_app_with(&[("SESSION_MAX_FORK_DEPTH", "2")]).await;
    let c = Caller::new(&app).await;
    let root = c.session().await;
    c.append(&root, &["a", "b"]).await;
    let first = c.forked(&root, 2).await;
    c.append(&first, &["c"]).await;
    let sessions = app.count_rows("sessions", None).await;
    let detail = expect_problem(c.fork(&first, json!({})).await, StatusCode::CONFLICT).await;
    assert!(detail.contains("SESSION_MAX_FORK_DEPTH"), "{detail}");
    assert_eq!(app.count_rows("sessions", None).await, sessions);
    // Up to 2 its messages come from root only; forking a fork that added
    // nothing adds no depth.
    let second = c.forked(&first, 2).await;
    let third = c.forked(&second, 2).await;
    c.reads(&third, &["a", "b"]).await;
}
