//! The audit trail: each audited action writes exactly one row, by the
//! statement that does it (so a refused action writes none); the admin's
//! listing and a session's trail for its owners; the table is append-only.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const INVOCATION_HEADER: &str = "x-azure-functions-invocationid";

/// The rows written since the last call, oldest first, without the two
/// columns the database fills (`event_id`, `occurred_at`).
struct Trail {
    last: i64,
}

impl Trail {
    fn new() -> Self {
        Self { last: 0 }
    }

    async fn new_rows(&mut self, app: &TestApp) -> Vec<Value> {
        let rows = app
            .db()
            .await
            .query(
                "SELECT event_id, to_jsonb(e) - 'event_id' - 'occurred_at'
                 FROM audit_events e WHERE event_id > $1 ORDER BY event_id",
                &[&self.last],
            )
            .await
            .unwrap();
        if let Some(last) = rows.last() {
            self.last = last.get(0);
        }
        rows.iter().map(|row| row.get(1)).collect()
    }

    /// Asserts that nothing was written since the last call.
    async fn none(&mut self, app: &TestApp, why: &str) {
        assert_eq!(self.new_rows(app).await, Vec::<Value>::new(), "{why}");
    }

    /// Asserts that exactly `expected` was written since the last call.
    async fn exactly(&mut self, app: &TestApp, expected: Vec<Value>) {
        assert_eq!(self.new_rows(app).await, expected);
    }
}

/// A row as [`Trail`] reads it: every column, `null` where not given.
fn row(fields: Value) -> Value {
    let mut row = json!({
        "actor_kind": null, "actor_app_id": null, "actor_user_id": null, "action": null,
        "target_kind": null, "target_id": null, "app_id": null, "session_id": null,
        "subject_user_id": null, "invocation_id": null, "details": {},
    });
    for (k, v) in fields.as_object().unwrap() {
        assert!(row.get(k).is_some(), "no column {k}");
        row[k] = v.clone();
    }
    row
}

/// The request with a fresh invocation id, returned for the row to name.
fn invoked(builder: RequestBuilder) -> (RequestBuilder, String) {
    let id = Uuid::new_v4().to_string();
    (builder.header(INVOCATION_HEADER, &id), id)
}

async fn send(builder: RequestBuilder, status: StatusCode) -> Value {
    expect_status(builder.send().await.unwrap(), status).await
}

#[tokio::test]
async fn application_actions_write_one_row_each() {
    let app = spawn_app().await;
    let mut trail = Trail::new();
    let admin = |b: RequestBuilder| b.header("X-API-Key", ADMIN_KEY);
    let path = "/api/applications/audited";
    let application = |action: &str, invocation: &str, details: Value| {
        row(json!({
            "actor_kind": "admin", "action": action, "target_kind": "application",
            "target_id": "audited", "app_id": "audited", "invocation_id": invocation,
            "details": details,
        }))
    };

    let (request, id) = invoked(admin(app.post("/api/applications")));
    send(
        request.json(&json!({"app_id": "audited", "app_name": "A"})),
        StatusCode::CREATED,
    )
    .await;
    trail
        .exactly(
            &app,
            vec![application("application.registered", &id, json!({}))],
        )
        .await;

    let (request, id) = invoked(admin(app.post(&format!("{path}/rotate-key"))));
    send(request, StatusCode::OK).await;
    trail
        .exactly(
            &app,
            vec![application("application.key_rotated", &id, json!({}))],
        )
        .await;

    let patch = |body: Value| invoked(admin(app.http.patch(app.url(path))).json(&body));
    let (request, id) = patch(json!({"is_active": false}));
    send(request, StatusCode::OK).await;
    trail
        .exactly(
            &app,
            vec![application("application.deactivated", &id, json!({}))],
        )
        .await;
    let (request, id) = patch(json!({"is_active": true}));
    send(request, StatusCode::OK).await;
    trail
        .exactly(
            &app,
            vec![application("application.reactivated", &id, json!({}))],
        )
        .await;

    let limits = json!({"rate_limits": {"requests_per_minute": 5}, "other": 1});
    let (request, id) = patch(json!({"settings": limits}));
    send(request, StatusCode::OK).await;
    trail
        .exactly(
            &app,
            vec![application(
                "application.limits_changed",
                &id,
                json!({"changed": ["rate_limits"]}),
            )],
        )
        .await;
    // The same limits again, another setting, the name, an active
    // application activated: nothing the trail records.
    let unchanged = json!({"rate_limits": {"requests_per_minute": 5}, "other": 2});
    for body in [
        json!({"settings": unchanged}),
        json!({"app_name": "B"}),
        json!({"is_active": true}),
    ] {
        send(patch(body.clone()).0, StatusCode::OK).await;
        trail.none(&app, &format!("{body}")).await;
    }
    // Deactivating and taking the limits away at once: two rows.
    let (request, id) = patch(json!({"is_active": false, "settings": {}}));
    send(request, StatusCode::OK).await;
    trail
        .exactly(
            &app,
            vec![
                application("application.deactivated", &id, json!({})),
                application(
                    "application.limits_changed",
                    &id,
                    json!({"changed": ["rate_limits"]}),
                ),
            ],
        )
        .await;

    // Refused: taken id (409), an application's key (403 or 401), missing
    // targets (404).
    let response = admin(app.post("/api/applications"))
        .json(&json!({"app_id": "audited", "app_name": "again"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::CONFLICT).await;
    let other_key = app.create_application("other").await;
    trail.new_rows(&app).await;
    let response = app
        .http
        .patch(app.url(path))
        .header("X-API-Key", &other_key)
        .json(&json!({"is_active": true}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    for request in [
        admin(app.post("/api/applications/missing/rotate-key")),
        admin(app.http.delete(app.url("/api/applications/missing"))),
        admin(app.http.patch(app.url("/api/applications/missing")))
            .json(&json!({"is_active": false})),
    ] {
        expect_problem(request.send().await.unwrap(), StatusCode::NOT_FOUND).await;
    }
    trail.none(&app, "refused actions").await;

    let (request, id) = invoked(admin(app.http.delete(app.url(path))));
    send(request, StatusCode::NO_CONTENT).await;
    trail
        .exactly(
            &app,
            vec![application("application.deleted", &id, json!({}))],
        )
        .await;
    let response = admin(app.http.delete(app.url(path))).send().await.unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
    trail.none(&app, "deleting twice").await;
}

#[tokio::test]
async fn config_actions_write_one_row_each() {
    let app = spawn_app().await;
    let mut trail = Trail::new();
    let key = app.create_application("owner-app").await;
    let other = app.create_application("other-app").await;
    trail.new_rows(&app).await;
    let config = |actor: &str, action: &str, config_id: &str, invocation: &str| {
        let actor_app = (actor == "application").then_some("owner-app");
        row(json!({
            "actor_kind": actor, "actor_app_id": actor_app, "action": action,
            "target_kind": "config", "target_id": config_id, "app_id": "owner-app",
            "invocation_id": invocation,
        }))
    };
    let create = |shared: bool| {
        invoked(
            app.post("/api/configs")
                .header("X-API-Key", &key)
                .json(&json!({"name": "c", "yaml_content": "a: 1", "shared": shared})),
        )
    };

    let private = send(create(false).0, StatusCode::CREATED).await;
    let private = private["config_id"].as_str().unwrap().to_owned();
    trail.none(&app, "a private config").await;
    let (request, id) = create(true);
    let shared = send(request, StatusCode::CREATED).await;
    let shared = shared["config_id"].as_str().unwrap().to_owned();
    trail
        .exactly(
            &app,
            vec![config("application", "config.shared", &shared, &id)],
        )
        .await;

    let patch = |config_id: &str, caller: &str, body: Value| {
        invoked(
            app.http
                .patch(app.url(&format!("/api/configs/{config_id}")))
                .header("X-API-Key", caller)
                .json(&body),
        )
    };
    let (request, id) = patch(&private, &key, json!({"shared": true, "name": "n"}));
    send(request, StatusCode::OK).await;
    trail
        .exactly(
            &app,
            vec![config("application", "config.shared", &private, &id)],
        )
        .await;
    for body in [
        json!({"shared": true}),
        json!({"name": "m"}),
        json!({"shared": false}),
    ] {
        send(patch(&private, &key, body.clone()).0, StatusCode::OK).await;
        trail.none(&app, &format!("{body}")).await;
    }

    // Another application may see the shared config but not change it; a
    // config in use by another application's session is not deleted.
    let response = patch(&shared, &other, json!({"retired": true})).0;
    expect_problem(response.send().await.unwrap(), StatusCode::FORBIDDEN).await;
    let user = Uuid::new_v4();
    app.create_session(&other, user, shared.parse().unwrap())
        .await;
    let response = app
        .http
        .delete(app.url(&format!("/api/configs/{shared}")))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::CONFLICT).await;
    let response = app
        .http
        .delete(app.url(&format!("/api/configs/{}", Uuid::new_v4())))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
    trail.none(&app, "refused config writes").await;

    // Retiring (here by the admin), once; then deleting.
    let (request, id) = patch(&shared, ADMIN_KEY, json!({"retired": true}));
    send(request, StatusCode::OK).await;
    trail
        .exactly(&app, vec![config("admin", "config.retired", &shared, &id)])
        .await;
    send(
        patch(&shared, ADMIN_KEY, json!({"retired": true})).0,
        StatusCode::OK,
    )
    .await;
    trail.none(&app, "retired twice").await;

    let (request, id) = invoked(
        app.http
            .delete(app.url(&format!("/api/configs/{private}")))
            .header("X-API-Key", &key),
    );
    send(request, StatusCode::NO_CONTENT).await;
    trail
        .exactly(
            &app,
            vec![config("application", "config.deleted", &private, &id)],
        )
        .await;
}

#[tokio::test]
async fn participant_actions_write_one_row_each() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let app_id: String = app
        .scalar("SELECT created_by_app_id FROM sessions", &[])
        .await;
    let mut trail = Trail::new();
    trail.new_rows(&app).await;
    let (editor, stranger) = (Uuid::new_v4(), Uuid::new_v4());
    let base = format!("/api/sessions/{}/participants", f.session_id);
    let participant = |action: &str, actor: Uuid, subject: Uuid, role: &str, invocation: &str| {
        row(json!({
            "actor_kind": "user", "actor_app_id": app_id, "actor_user_id": actor,
            "action": action, "target_kind": "participant", "target_id": subject,
            "app_id": app_id, "session_id": f.session_id, "subject_user_id": subject,
            "invocation_id": invocation, "details": {"role": role},
        }))
    };
    let as_user = |builder: RequestBuilder, user: Uuid| invoked(app.as_user(builder, &f.key, user));

    let (request, id) = as_user(app.post(&base), f.owner);
    send(
        request.json(&json!({"user_id": editor, "role": "viewer"})),
        StatusCode::CREATED,
    )
    .await;
    trail
        .exactly(
            &app,
            vec![participant(
                "participant.added",
                f.owner,
                editor,
                "viewer",
                &id,
            )],
        )
        .await;
    // Already there (200), a viewer adding (403), a stranger (404).
    let add = |caller: Uuid| {
        app.as_user(app.post(&base), &f.key, caller)
            .json(&json!({"user_id": editor, "role": "viewer"}))
    };
    send(add(f.owner), StatusCode::OK).await;
    expect_problem(add(editor).send().await.unwrap(), StatusCode::FORBIDDEN).await;
    expect_problem(add(stranger).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    trail.none(&app, "adds that add nobody").await;

    let (request, id) = as_user(
        app.http.patch(app.url(&format!("{base}/{editor}"))),
        f.owner,
    );
    send(request.json(&json!({"role": "editor"})), StatusCode::OK).await;
    trail
        .exactly(
            &app,
            vec![participant(
                "participant.role_changed",
                f.owner,
                editor,
                "editor",
                &id,
            )],
        )
        .await;
    // The last owner demoted (409), an editor changing roles (403).
    let demote = app
        .as_user(
            app.http.patch(app.url(&format!("{base}/{}", f.owner))),
            &f.key,
            f.owner,
        )
        .json(&json!({"role": "viewer"}));
    expect_problem(demote.send().await.unwrap(), StatusCode::CONFLICT).await;
    let by_editor = app
        .as_user(
            app.http.patch(app.url(&format!("{base}/{editor}"))),
            &f.key,
            editor,
        )
        .json(&json!({"role": "owner"}));
    expect_problem(by_editor.send().await.unwrap(), StatusCode::FORBIDDEN).await;
    trail.none(&app, "refused role changes").await;

    // The last owner leaving (409); an owner removing; one leaving.
    let leave = app.as_user(
        app.http.delete(app.url(&format!("{base}/{}", f.owner))),
        &f.key,
        f.owner,
    );
    expect_problem(leave.send().await.unwrap(), StatusCode::CONFLICT).await;
    trail.none(&app, "the last owner may not leave").await;
    let (request, id) = as_user(
        app.http.delete(app.url(&format!("{base}/{editor}"))),
        f.owner,
    );
    send(request, StatusCode::NO_CONTENT).await;
    trail
        .exactly(
            &app,
            vec![participant(
                "participant.removed",
                f.owner,
                editor,
                "editor",
                &id,
            )],
        )
        .await;
    let response = app
        .add_participant(&f.key, f.owner, &f.session_id, editor, "editor")
        .await;
    expect_status(response, StatusCode::CREATED).await;
    trail.new_rows(&app).await;
    let (request, id) = as_user(
        app.http.delete(app.url(&format!("{base}/{editor}"))),
        editor,
    );
    send(request, StatusCode::NO_CONTENT).await;
    trail
        .exactly(
            &app,
            vec![participant(
                "participant.removed",
                editor,
                editor,
                "editor",
                &id,
            )],
        )
        .await;
}

/// A small history over two applications and a session: registrations,
/// a shared config, participants added and removed.
struct History {
    app: TestApp,
    key: String,
    owner: Uuid,
    guest: Uuid,
    session_id: String,
}

async fn history() -> History {
    let app = spawn_app().await;
    let key = app.create_application("first").await;
    app.create_application("second").await;
    let config = app.create_config_shared(&key, true).await;
    let owner = Uuid::new_v4();
    let session = app.create_session(&key, owner, config).await;
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    let guest = Uuid::new_v4();
    for role in ["viewer", "editor"] {
        let response = app
            .add_participant(&key, owner, &session_id, Uuid::new_v4(), role)
            .await;
        expect_status(response, StatusCode::CREATED).await;
    }
    let response = app
        .add_participant(&key, owner, &session_id, guest, "viewer")
        .await;
    expect_status(response, StatusCode::CREATED).await;
    let leave = app.as_user(
        app.http
            .delete(app.url(&format!("/api/sessions/{session_id}/participants/{guest}"))),
        &key,
        guest,
    );
    send(leave, StatusCode::NO_CONTENT).await;
    History {
        app,
        key,
        owner,
        guest,
        session_id,
    }
}

/// A GET of `path` with `params` encoded as its query string.
fn get_with_query(app: &TestApp, path: &str, params: &[(&str, String)]) -> RequestBuilder {
    let mut url = reqwest::Url::parse(&app.url(path)).unwrap();
    for (name, value) in params {
        url.query_pairs_mut().append_pair(name, value);
    }
    app.http.get(url)
}

/// Every page of `path` (with `query`) at `limit`, as sent by `auth`.
async fn all_pages(
    app: &TestApp,
    path: &str,
    query: &[(&str, String)],
    limit: usize,
    auth: impl Fn(RequestBuilder) -> RequestBuilder,
) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = query.to_vec();
        params.push(("limit", limit.to_string()));
        if let Some(cursor) = &cursor {
            params.push(("cursor", cursor.clone()));
        }
        let page = send(auth(get_with_query(app, path, &params)), StatusCode::OK).await;
        let rows = page["events"].as_array().unwrap();
        assert!(rows.len() <= limit);
        events.extend(rows.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

fn ids(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["event_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_admin_lists_events_newest_first_with_filters_and_pages() {
    let h = history().await;
    let app = &h.app;
    let admin = |b: RequestBuilder| b.header("X-API-Key", ADMIN_KEY);
    let everything = all_pages(app, "/api/audit-events", &[], 100, admin).await;
    let in_db: Vec<i64> = app
        .db()
        .await
        .query(
            "SELECT event_id FROM audit_events ORDER BY event_id DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids(&everything), in_db, "every row, newest first");
    assert_eq!(
        everything.len(),
        7,
        "2 registered, 1 shared, 3 added, 1 removed"
    );

    // Pages of every size give the same sequence: no duplicate, no gap.
    for limit in [1, 2, 3] {
        let paged = all_pages(app, "/api/audit-events", &[], limit, admin).await;
        assert_eq!(ids(&paged), in_db, "limit {limit}");
    }

    // Each filter lets through exactly the rows it names, also when paged.
    let middle = everything[3]["occurred_at"].as_str().unwrap().to_owned();
    let at = |e: &Value| {
        chrono::DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap()).unwrap()
    };
    let middle_at = at(&everything[3]);
    type Keep<'a> = Box<dyn Fn(&Value) -> bool + 'a>;
    let filters: Vec<(Vec<(&str, String)>, Keep)> = vec![
        (
            vec![("action", "participant.added".to_owned())],
            Box::new(|e| e["action"] == "participant.added"),
        ),
        (
            vec![("app_id", "second".to_owned())],
            Box::new(|e| e["app_id"] == "second"),
        ),
        (
            vec![("session_id", h.session_id.clone())],
            Box::new(|e| e["session_id"] == h.session_id.as_str()),
        ),
        (
            vec![("user_id", h.guest.to_string())],
            Box::new(|e| {
                e["subject_user_id"] == h.guest.to_string()
                    || e["actor_user_id"] == h.guest.to_string()
            }),
        ),
        (
            vec![("user_id", h.owner.to_string())],
            Box::new(|e| {
                e["subject_user_id"] == h.owner.to_string()
                    || e["actor_user_id"] == h.owner.to_string()
            }),
        ),
        (
            vec![
                ("user_id", h.guest.to_string()),
                ("action", "participant.removed".to_owned()),
            ],
            Box::new(|e| {
                e["subject_user_id"] == h.guest.to_string() && e["action"] == "participant.removed"
            }),
        ),
        (
            vec![("since", middle.clone())],
            Box::new(|e| at(e) >= middle_at),
        ),
        (
            vec![("until", middle.clone()), ("app_id", "first".to_owned())],
            Box::new(|e| at(e) < middle_at && e["app_id"] == "first"),
        ),
    ];
    for (query, keep) in &filters {
        let expected: Vec<Value> = everything.iter().filter(|e| keep(e)).cloned().collect();
        for limit in [1, 100] {
            let listed = all_pages(app, "/api/audit-events", query, limit, admin).await;
            assert_eq!(listed, expected, "{query:?} limit {limit}");
        }
    }
    let guest_events = all_pages(
        app,
        "/api/audit-events",
        &[("user_id", h.guest.to_string())],
        100,
        admin,
    )
    .await;
    assert_eq!(
        guest_events
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["participant.removed", "participant.added"],
        "the guest as subject, and as actor of their leaving, once"
    );
}

#[tokio::test]
async fn only_the_admin_lists_audit_events_and_bad_queries_are_refused() {
    let h = history().await;
    let app = &h.app;
    let response = app.get("/api/audit-events").send().await.unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .get("/api/audit-events")
        .header("X-API-Key", &h.key)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    let response = app
        .as_user(app.get("/api/audit-events"), &h.key, h.owner)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    for query in [
        "limit=0",
        "limit=101",
        "cursor=nonsense",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "session_id=42",
        "user_id=me",
        "colour=red",
    ] {
        let response = app
            .get(&format!("/api/audit-events?{query}"))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let long = "a".repeat(65);
    let response = get_with_query(app, "/api/audit-events", &[("action", long)])
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn owners_read_their_sessions_trail_and_nobody_else_does() {
    let h = history().await;
    let app = &h.app;
    let path = format!("/api/sessions/{}/audit-events", h.session_id);
    let as_owner = |b: RequestBuilder| app.as_user(b, &h.key, h.owner);
    let trail = all_pages(app, &path, &[], 100, as_owner).await;
    let admin_view = all_pages(
        app,
        "/api/audit-events",
        &[("session_id", h.session_id.clone())],
        100,
        |b| b.header("X-API-Key", ADMIN_KEY),
    )
    .await;
    assert_eq!(trail, admin_view);
    assert_eq!(
        trail
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "participant.removed",
            "participant.added",
            "participant.added",
            "participant.added"
        ]
    );
    for limit in [1, 3] {
        assert_eq!(all_pages(app, &path, &[], limit, as_owner).await, trail);
    }

    // A participant who is not an owner: 403; anyone else, and any
    // session that does not exist: 404.
    let editor: Uuid = app
        .scalar(
            "SELECT user_id FROM session_participants WHERE role = 'editor'",
            &[],
        )
        .await;
    let response = app
        .as_user(app.get(&path), &h.key, editor)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    for (user, path) in [
        (h.guest, path.clone()),
        (Uuid::new_v4(), path.clone()),
        (
            h.owner,
            format!("/api/sessions/{}/audit-events", Uuid::new_v4()),
        ),
    ] {
        let response = app
            .as_user(app.get(&path), &h.key, user)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::NOT_FOUND).await;
    }
    let response = app
        .get(&path)
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn the_service_role_cannot_change_or_remove_audit_rows() {
    let h = history().await;
    let app = &h.app;
    let role = format!("svc_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let superuser = app.db().await;
    superuser
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        .await
        .unwrap();
    amplifier_sessions::db::migrate::grant(&superuser, &role)
        .await
        .unwrap();
    let url = app
        .database_url
        .replacen("postgres:postgres@", &format!("{role}:pw@"), 1);
    let service = pg_connect(&url).await;
    let before: i64 = service
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(before > 0);
    for sql in [
        "UPDATE audit_events SET action = 'nothing.happened'",
        "DELETE FROM audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "TRUNCATE audit_events",
    ] {
        let error = service.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error}"
        );
    }
    // The role holds UPDATE and DELETE on the table (granted on every
    // table): the refusals above are the trigger's. It may add rows.
    let granted: bool = service
        .query_one(
            "SELECT has_table_privilege('audit_events', 'UPDATE')
                AND has_table_privilege('audit_events', 'DELETE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(granted);
    service
        .batch_execute(
            "INSERT INTO audit_events (actor_kind, action, target_kind, target_id)
             VALUES ('system', 'test.appended', 'user', 'x')",
        )
        .await
        .unwrap();
    let after: i64 = service
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, before + 1);
}
