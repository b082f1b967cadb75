//! The retention purge (issue 18): the timer function in the Functions
//! host's protocol, what goes and what stays, the dry run, and one purge
//! at a time. Old data is made by moving timestamps back in the test's
//! database.

use amplifier_sessions::db::purge::LOCK_KEY;
use amplifier_sessions::lifecycle::{self, Outcome};
use amplifier_sessions::state::AppState;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// What the host POSTs to `/purge-expired` for the timer binding `timer`
/// (Learn, "Azure Functions custom handlers", Request payload;
/// azure-functions-host `ScriptInvocationContextExtensions.
/// ToHttpScriptInvocationContext`: the trigger's value under `Data`, the
/// other binding data, `sys` here, under `Metadata`).
fn host_invocation(past_due: bool) -> Value {
    json!({
        "Data": {
            "timer": {
                "Schedule": {"AdjustForDST": true},
                "ScheduleStatus": {
                    "Last": "2026-01-01T03:00:00+00:00",
                    "Next": "2026-01-02T03:00:00+00:00",
                    "LastUpdated": "2026-01-01T03:00:00.0123456+00:00"
                },
                "IsPastDue": past_due
            }
        },
        "Metadata": {
            "sys": {
                "MethodName": "purge-expired",
                "UtcNow": "2026-01-02T03:00:00.0191221Z",
                "RandGuid": "0f5a4b3c-2d1e-4f6a-8b9c-0d1e2f3a4b5c"
            }
        }
    })
}

/// POSTs as the host does (JSON, its invocation id and user agent); the
/// response must be what the host reads: 200, JSON, `Outputs`, `Logs`
/// and `ReturnValue`. Returns the logs.
async fn invoke_timer(app: &TestApp) -> Vec<String> {
    let response = app
        .post("/purge-expired")
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .header("X-Azure-Functions-InvocationId", Uuid::new_v4().to_string())
        .header("X-Azure-Functions-HostVersion", "4.1037.0")
        .header("User-Agent", "Azure-Functions-Host/4.1037.0")
        .body(host_invocation(false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_TYPE].to_str().unwrap(),
        "application/json"
    );
    let body: Value = response.json().await.unwrap();
    let mut fields: Vec<&String> = body.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(fields, ["Logs", "Outputs", "ReturnValue"], "{body}");
    assert_eq!(body["Outputs"], json!({}));
    assert_eq!(body["ReturnValue"], Value::Null);
    body["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap().to_owned())
        .collect()
}

/// A retention of 7 days, as the plan's development environment sets.
async fn spawn_with_retention() -> TestApp {
    spawn_app_with(&[
        ("MAX_SESSION_AGE_DAYS", "7"),
        ("TRASH_RETENTION_DAYS", "30"),
        ("AUDIT_RETENTION_DAYS", "365"),
    ])
    .await
}

/// An application with `settings`; its key.
async fn application(app: &TestApp, app_id: &str, settings: Value) -> String {
    let response = app
        .post("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"app_id": app_id, "app_name": app_id, "settings": settings}))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::CREATED).await["api_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

struct Caller<'a> {
    app: &'a TestApp,
    key: String,
    user: Uuid,
    config: Uuid,
}

impl<'a> Caller<'a> {
    async fn new(app: &'a TestApp, app_id: &str, settings: Value) -> Self {
        let key = application(app, app_id, settings).await;
        let config = app.create_config(&key).await;
        Self {
            app,
            key,
            user: Uuid::new_v4(),
            config,
        }
    }

    /// A session with two messages (so also search documents) and a
    /// viewer besides its owner.
    async fn session(&self) -> String {
        let session = self
            .app
            .create_session(&self.key, self.user, self.config)
            .await;
        let id = session["session_id"].as_str().unwrap().to_owned();
        let response = self
            .app
            .as_user(
                self.app.post(&format!("/api/sessions/{id}/messages")),
                &self.key,
                self.user,
            )
            .json(&json!({"messages": [{"text": "hello purge"}, {"text": "second words"}]}))
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::OK).await;
        let viewer = Uuid::new_v4();
        let added = self
            .app
            .add_participant(&self.key, self.user, &id, viewer, "viewer")
            .await;
        expect_status(added, StatusCode::CREATED).await;
        id
    }

    async fn get(&self, id: &str) -> StatusCode {
        self.app
            .as_user(
                self.app.get(&format!("/api/sessions/{id}")),
                &self.key,
                self.user,
            )
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// Moves the session's last activity `days` back (updated_at is set by
/// triggers only when content columns change, so this sticks).
async fn inactive_for(app: &TestApp, session: &str, days: i32) {
    app.db()
        .await
        .execute(
            "UPDATE sessions SET updated_at = now() - make_interval(days => $2)
             WHERE session_id = $1::text::uuid",
            &[&session, &days],
        )
        .await
        .unwrap();
}

/// Puts the session in the trash `days` ago (as the trash's delete does,
/// by setting trashed_at).
async fn trashed_for(app: &TestApp, session: &str, days: i32) {
    app.db()
        .await
        .execute(
            "UPDATE sessions SET trashed_at = now() - make_interval(days => $2)
             WHERE session_id = $1::text::uuid",
            &[&session, &days],
        )
        .await
        .unwrap();
}

/// Rows of `table` about `session`.
async fn rows_of(app: &TestApp, table: &str, session: &str) -> i64 {
    app.scalar(
        &format!("SELECT count(*) FROM {table} WHERE session_id = $1::text::uuid"),
        &[&session],
    )
    .await
}

async fn exists(app: &TestApp, session: &str) -> bool {
    rows_of(app, "sessions", session).await == 1
}

#[tokio::test]
async fn the_timer_answers_the_host_in_its_protocol() {
    let app = spawn_with_retention().await;
    let logs = invoke_timer(&app).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0].starts_with("purged: 0 inactive sessions"),
        "{logs:?}"
    );
    // A late run says so in the invocation's log.
    let response = app
        .post("/purge-expired")
        .json(&host_invocation(true))
        .send()
        .await
        .unwrap();
    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["Logs"][0], "the timer is past due: purging now");
    // Not a public function: not in the route table or the document.
    assert!(
        amplifier_sessions::api::functions()
            .iter()
            .all(|f| f.name != "purge-expired" && !f.path.contains("purge"))
    );
}

/// Without a host the process runs the schedule itself, and nobody can
/// trigger a purge over HTTP.
#[tokio::test]
async fn without_a_host_there_is_no_timer_route() {
    let app = spawn_app_with(&[("PURGE_IN_PROCESS", "true")]).await;
    let response = app
        .post("/purge-expired")
        .json(&host_invocation(false))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::NOT_FOUND).await;
    assert!(detail.contains("no function"), "{detail}");
}

/// ... and purges on `PURGE_SCHEDULE` by itself (every second here).
#[tokio::test]
async fn without_a_host_the_process_purges_on_its_schedule() {
    let app = spawn_app_with(&[
        ("PURGE_IN_PROCESS", "true"),
        ("PURGE_SCHEDULE", "* * * * * *"),
        ("MAX_SESSION_AGE_DAYS", "7"),
    ])
    .await;
    let caller = Caller::new(&app, "scheduled-app", json!({})).await;
    let inactive = caller.session().await;
    let active = caller.session().await;
    inactive_for(&app, &inactive, 8).await;
    wait_for("the scheduled purge", || async {
        !exists(&app, &inactive).await
    })
    .await;
    assert!(exists(&app, &active).await);
}

#[tokio::test]
async fn the_purge_removes_what_is_past_retention_and_keeps_the_rest() {
    let app = spawn_with_retention().await;
    let default = Caller::new(&app, "default-app", json!({})).await;
    let month = Caller::new(
        &app,
        "month-app",
        json!({"retention": {"max_session_age_days": 30}}),
    )
    .await;
    let forever = Caller::new(
        &app,
        "forever-app",
        json!({"retention": {"max_session_age_days": 0}}),
    )
    .await;

    let inactive = default.session().await;
    inactive_for(&app, &inactive, 8).await;
    let active = default.session().await;
    inactive_for(&app, &active, 6).await;
    let within_override = month.session().await;
    inactive_for(&app, &within_override, 20).await;
    let past_override = month.session().await;
    inactive_for(&app, &past_override, 31).await;
    let kept_forever = forever.session().await;
    inactive_for(&app, &kept_forever, 4000).await;
    // The trash has its own retention; an inactive session in it waits.
    let old_trash = default.session().await;
    trashed_for(&app, &old_trash, 31).await;
    let recent_trash = default.session().await;
    inactive_for(&app, &recent_trash, 8).await;
    trashed_for(&app, &recent_trash, 5).await;
    // A fork of the inactive session, itself active, keeps reading the
    // messages it shares.
    let fork = expect_status(
        app.as_user(
            app.post(&format!("/api/sessions/{inactive}/fork")),
            &default.key,
            default.user,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap(),
        StatusCode::CREATED,
    )
    .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A user with no session left, long unseen, goes; one long unseen who
    // still takes part in a session stays.
    let gone_user = Uuid::new_v4();
    let db = app.db().await;
    db.execute(
        "INSERT INTO users (user_id, last_seen, last_seen_app_id)
         VALUES ($1, now() - interval '8 days', 'default-app')",
        &[&gone_user],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE users SET last_seen = now() - interval '400 days' WHERE user_id = $1",
        &[&forever.user],
    )
    .await
    .unwrap();
    // Audit events: one past AUDIT_RETENTION_DAYS, one within.
    db.batch_execute(
        "INSERT INTO audit_events (occurred_at, actor_kind, action, target_kind, target_id)
         VALUES (now() - interval '366 days', 'admin', 'application.registered', 'application', 'old'),
                (now() - interval '364 days', 'admin', 'application.registered', 'application', 'kept')",
    )
    .await
    .unwrap();

    let logs = invoke_timer(&app).await;
    assert!(
        logs[0]
            .starts_with("purged: 2 inactive sessions, 1 from the trash, 1 users, 1 audit events"),
        "{logs:?}"
    );

    for (session, why) in [
        (&inactive, "inactive for 8 days, retention 7"),
        (
            &past_override,
            "inactive for 31 days, its application's retention 30",
        ),
        (&old_trash, "in the trash for 31 days"),
    ] {
        assert!(!exists(&app, session).await, "{why}: still there");
        assert_eq!(
            rows_of(&app, "session_participants", session).await,
            0,
            "{why}"
        );
        assert_eq!(rows_of(&app, "session_lineage", session).await, 0, "{why}");
        let audit: Value = app
            .scalar(
                "SELECT jsonb_build_object('actor', actor_kind, 'target', target_id,
                                           'app', app_id, 'details', details)
                 FROM audit_events WHERE action = 'session.purged'
                   AND session_id = $1::text::uuid",
                &[session],
            )
            .await;
        assert_eq!(audit["actor"], "system", "{why}");
        assert_eq!(audit["target"], session.as_str(), "{why}");
    }
    assert_eq!(default.get(&inactive).await, StatusCode::NOT_FOUND);
    // The messages and documents nobody reads any more went with them.
    for session in [&past_override, &old_trash] {
        assert_eq!(rows_of(&app, "session_messages", session).await, 0);
        assert_eq!(rows_of(&app, "session_search", session).await, 0);
    }
    // The fork still reads the two messages it shares with its source.
    let messages = expect_status(
        app.as_user(
            app.get(&format!("/api/sessions/{fork}/messages")),
            &default.key,
            default.user,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(messages["messages"].as_array().unwrap().len(), 2);
    let reasons: Vec<String> = app
        .db()
        .await
        .query(
            "SELECT details->>'reason' FROM audit_events WHERE action = 'session.purged'
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons, ["inactive", "inactive", "trash"]);

    for (session, why) in [
        (&active, "inactive for 6 days"),
        (&within_override, "inactive for 20 days, retention 30"),
        (&kept_forever, "its application keeps sessions forever"),
        (&recent_trash, "in the trash for 5 days"),
        (&fork, "a fork, active"),
    ] {
        assert!(exists(&app, session).await, "{why}: purged");
    }
    assert_eq!(default.get(&active).await, StatusCode::OK);
    assert_eq!(rows_of(&app, "session_messages", &active).await, 2);
    assert_eq!(rows_of(&app, "session_participants", &active).await, 2);
    assert_eq!(app.count_rows("users", Some(gone_user)).await, 0);
    assert_eq!(app.count_rows("users", Some(forever.user)).await, 1);
    let targets: Vec<String> = app
        .db()
        .await
        .query(
            "SELECT target_id FROM audit_events
             WHERE action = 'application.registered' AND target_id IN ('old', 'kept')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(targets, ["kept"]);

    // Nothing more to do the second time.
    let logs = invoke_timer(&app).await;
    assert!(
        logs[0]
            .starts_with("purged: 0 inactive sessions, 0 from the trash, 0 users, 0 audit events"),
        "{logs:?}"
    );
}

/// With MAX_SESSION_AGE_DAYS unset sessions are kept forever, unless
/// their application says otherwise.
#[tokio::test]
async fn without_a_retention_only_applications_that_set_one_lose_sessions() {
    let app = spawn_app().await;
    let keeps = Caller::new(&app, "keeps-app", json!({})).await;
    let week = Caller::new(
        &app,
        "week-app",
        json!({"retention": {"max_session_age_days": 7}}),
    )
    .await;
    let kept = keeps.session().await;
    inactive_for(&app, &kept, 4000).await;
    let purged = week.session().await;
    inactive_for(&app, &purged, 8).await;
    invoke_timer(&app).await;
    assert!(exists(&app, &kept).await);
    assert!(!exists(&app, &purged).await);
}

#[tokio::test]
async fn a_dry_run_counts_and_changes_nothing() {
    let app = spawn_with_retention().await;
    let caller = Caller::new(&app, "dry-app", json!({})).await;
    let inactive = caller.session().await;
    inactive_for(&app, &inactive, 8).await;
    let trashed = caller.session().await;
    trashed_for(&app, &trashed, 40).await;
    let tables = [
        "sessions",
        "session_messages",
        "session_search",
        "session_participants",
        "users",
        "audit_events",
    ];
    let mut before = Vec::new();
    for table in tables {
        before.push(app.count_rows(table, None).await);
    }
    let state = AppState::new(app.settings.clone()).unwrap();
    let Outcome::Done(report) = lifecycle::run(&state.db, &state.settings, true)
        .await
        .unwrap()
    else {
        panic!("skipped");
    };
    assert!(report.dry_run);
    assert_eq!(report.counts.sessions_inactive, 1);
    assert_eq!(report.counts.sessions_from_trash, 1);
    let mut after = Vec::new();
    for table in tables {
        after.push(app.count_rows(table, None).await);
    }
    assert_eq!(before, after);
    assert!(exists(&app, &inactive).await);
}

/// One purge at a time: while another holds the advisory lock, a purge
/// does nothing; once it is released, the next one purges. 20 times.
#[tokio::test]
async fn a_purge_while_another_holds_the_lock_does_nothing() {
    let app = spawn_with_retention().await;
    let caller = Caller::new(&app, "lock-app", json!({})).await;
    for round in 0..20 {
        let session = caller.session().await;
        inactive_for(&app, &session, 8).await;
        let holder = app.db().await;
        holder
            .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .unwrap();
        let logs = invoke_timer(&app).await;
        assert_eq!(
            logs,
            ["skipped: another instance is purging"],
            "round {round}"
        );
        assert!(
            exists(&app, &session).await,
            "round {round}: purged under the lock"
        );
        holder
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await
            .unwrap();
        let logs = invoke_timer(&app).await;
        assert!(
            logs[0].starts_with("purged: 1 inactive"),
            "round {round}: {logs:?}"
        );
        assert!(!exists(&app, &session).await, "round {round}");
    }
}

/// The per-application override is checked like `rate_limits`.
#[tokio::test]
async fn the_retention_override_is_validated() {
    let app = spawn_app().await;
    for (settings, fragment) in [
        (json!({"retention": 7}), "retention must be an object"),
        (json!({"retention": {"days": 7}}), "retention.days is not"),
        (
            json!({"retention": {"max_session_age_days": -1}}),
            "whole number of days",
        ),
        (
            json!({"retention": {"max_session_age_days": 1.5}}),
            "whole number of days",
        ),
        (
            json!({"retention": {"max_session_age_days": 36501}}),
            "whole number of days",
        ),
        (
            json!({"retention": {"max_session_age_days": null}}),
            "whole number of days",
        ),
    ] {
        let response = app
            .post("/api/applications")
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({"app_id": "bad-retention", "app_name": "x", "settings": settings}))
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.contains(fragment), "{settings}: {detail}");
    }
    let key = application(
        &app,
        "good-retention",
        json!({"retention": {"max_session_age_days": 36500}}),
    )
    .await;
    assert!(!key.is_empty());
    let response = app
        .http
        .patch(app.url("/api/applications/good-retention"))
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"settings": {"retention": {"max_session_age_days": 0}}}))
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await;
}

/// A session a request holds is skipped, not waited for (`SKIP LOCKED`):
/// the purge goes on with the rest, and a later one takes it. 20 times.
#[tokio::test]
async fn the_purge_skips_a_session_a_request_holds() {
    let app = spawn_with_retention().await;
    let caller = Caller::new(&app, "held-app", json!({})).await;
    for round in 0..20 {
        let held = caller.session().await;
        let free = caller.session().await;
        inactive_for(&app, &held, 8).await;
        inactive_for(&app, &free, 8).await;
        let blocker = app.hold_the_session_row(&held).await;
        let logs = tokio::time::timeout(std::time::Duration::from_secs(30), invoke_timer(&app))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the purge waited for the held row"));
        assert!(
            logs[0].starts_with("purged: 1 inactive"),
            "round {round}: {logs:?}"
        );
        assert!(exists(&app, &held).await, "round {round}");
        assert!(!exists(&app, &free).await, "round {round}");
        blocker.batch_execute("ROLLBACK").await.unwrap();
        let logs = invoke_timer(&app).await;
        assert!(
            logs[0].starts_with("purged: 1 inactive"),
            "round {round}: {logs:?}"
        );
        assert!(!exists(&app, &held).await, "round {round}");
    }
}

/// The purge works in batches of PURGE_BATCH_SIZE rows and rests between
/// them as BACKGROUND_BUSY_PERCENT says; its report says both.
#[tokio::test]
async fn the_purge_works_in_the_batches_and_at_the_pace_set() {
    let app = spawn_app_with(&[
        ("MAX_SESSION_AGE_DAYS", "7"),
        ("PURGE_BATCH_SIZE", "1"),
        ("BACKGROUND_BUSY_PERCENT", "10"),
    ])
    .await;
    let caller = Caller::new(&app, "paced-app", json!({})).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let session = caller.session().await;
        inactive_for(&app, &session, 8).await;
        sessions.push(session);
    }
    let logs = invoke_timer(&app).await;
    let summary = &logs[0];
    assert!(
        summary.starts_with("purged: 3 inactive sessions"),
        "{summary}"
    );
    assert!(summary.contains("batches of up to 1 "), "{summary}");
    assert!(summary.contains("busy 10% of"), "{summary}");
    // A batch looks at one session: the pass takes one batch per session
    // (and one that finds none left).
    let batches: u64 = summary
        .split("; ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch count in {summary}"));
    assert!(batches >= 4, "{summary}");
    for session in &sessions {
        assert!(!exists(&app, session).await);
    }
}
