//! The trash: delete-session moves a session there, where only its owners
//! see it (list-trash, restore-session, delete with `permanent=true`);
//! every other function finds nothing, as for a session that does not
//! exist. Each action is audited by the statement that does it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::sse::Sse;

/// The invocation id as a proxying host (`enableProxyingHttpRequest`) and
/// a forwarding one (`enableForwardingHttpRequest`) send it.
const INVOCATION_HEADERS: [&str; 2] = ["x-ms-invocation-id", "x-azure-functions-invocationid"];

/// A request to `path` as `user` of the application of `key`.
fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    user: Uuid,
) -> reqwest::RequestBuilder {
    app.as_user(app.http.request(method, app.url(path)), key, user)
}

async fn trash(app: &TestApp, key: &str, user: Uuid, session: &str) -> StatusCode {
    status(call(
        app,
        Method::DELETE,
        &format!("/api/sessions/{session}"),
        key,
        user,
    ))
    .await
}

async fn delete_permanently(app: &TestApp, key: &str, user: Uuid, session: &str) -> StatusCode {
    status(call(
        app,
        Method::DELETE,
        &format!("/api/sessions/{session}?permanent=true"),
        key,
        user,
    ))
    .await
}

async fn restore(app: &TestApp, key: &str, user: Uuid, session: &str) -> reqwest::Response {
    call(
        app,
        Method::POST,
        &format!("/api/sessions/{session}/restore"),
        key,
        user,
    )
    .send()
    .await
    .unwrap()
}

/// GET `path` as `user`, expecting 200; its body.
async fn read(app: &TestApp, key: &str, user: Uuid, path: &str) -> Value {
    expect_status(
        call(app, Method::GET, path, key, user)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await
}

async fn status(request: reqwest::RequestBuilder) -> StatusCode {
    request.send().await.unwrap().status()
}

async fn append(app: &TestApp, key: &str, user: Uuid, session: &str, text: &str) {
    expect_status(
        call(
            app,
            Method::POST,
            &format!("/api/sessions/{session}/messages"),
            key,
            user,
        )
        .json(&json!({"messages": [{"text": text}]}))
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
}

/// The ids of the sessions `user` lists (optionally those matching `q`).
async fn listed(app: &TestApp, key: &str, user: Uuid, q: Option<&str>) -> Vec<String> {
    let path = match q {
        Some(q) => format!("/api/users/me/sessions?q={q}"),
        None => "/api/users/me/sessions".to_owned(),
    };
    let page = read(app, key, user, &path).await;
    ids(&page["sessions"])
}

fn ids(sessions: &Value) -> Vec<String> {
    sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The status of every session function called by `user` on `session`,
/// by operation; participant changes are about `bystander` (left as they
/// are: the same role) or a new user. Removing someone is left to the
/// caller: `remove-participant` only when `removing`.
async fn every_function(
    app: &TestApp,
    key: &str,
    user: Uuid,
    session: &str,
    bystander: Uuid,
    removing: bool,
) -> Vec<(&'static str, StatusCode)> {
    let stranger = Uuid::new_v4();
    let s = format!("/api/sessions/{session}");
    let requests: Vec<(&'static str, reqwest::RequestBuilder)> = vec![
        ("get-session", call(app, Method::GET, &s, key, user)),
        (
            "update-session",
            call(app, Method::PATCH, &s, key, user).json(&json!({"metadata": {"k": "v"}})),
        ),
        (
            "list-messages",
            call(app, Method::GET, &format!("{s}/messages"), key, user),
        ),
        (
            "append-messages",
            call(app, Method::POST, &format!("{s}/messages"), key, user)
                .json(&json!({"messages": [{"text": "more"}]})),
        ),
        (
            "list-participants",
            call(app, Method::GET, &format!("{s}/participants"), key, user),
        ),
        (
            "add-participant",
            call(app, Method::POST, &format!("{s}/participants"), key, user)
                .json(&json!({"user_id": stranger, "role": "viewer"})),
        ),
        (
            "update-participant",
            call(
                app,
                Method::PATCH,
                &format!("{s}/participants/{bystander}"),
                key,
                user,
            )
            .json(&json!({"role": "viewer"})),
        ),
        (
            "export-session",
            call(app, Method::GET, &format!("{s}/export"), key, user),
        ),
        (
            "session-events",
            call(app, Method::GET, &format!("{s}/events"), key, user),
        ),
        (
            "create-events-ticket",
            call(app, Method::POST, &format!("{s}/events/tickets"), key, user),
        ),
        (
            "fork-session",
            call(app, Method::POST, &format!("{s}/fork"), key, user).json(&json!({})),
        ),
    ];
    let mut requests = requests;
    if removing {
        requests.push((
            "remove-participant",
            call(
                app,
                Method::DELETE,
                &format!("{s}/participants/{bystander}"),
                key,
                user,
            ),
        ));
    }
    let mut statuses = Vec::new();
    for (name, request) in requests {
        statuses.push((name, request.send().await.unwrap().status()));
    }
    statuses
}

#[tokio::test]
async fn a_trashed_session_is_invisible_to_every_function_until_its_owner_restores_it() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let (editor, viewer) = (Uuid::new_v4(), Uuid::new_v4());
    for (user, role) in [(editor, "editor"), (viewer, "viewer")] {
        expect_status(
            app.add_participant(&f.key, f.owner, &f.session_id, user, role)
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
    append(&app, &f.key, f.owner, &f.session_id, "zebra crossing").await;
    assert_eq!(
        trash(&app, &f.key, editor, &f.session_id).await,
        StatusCode::FORBIDDEN,
        "owners only, as before"
    );

    assert_eq!(
        trash(&app, &f.key, f.owner, &f.session_id).await,
        StatusCode::NO_CONTENT
    );
    for user in [f.owner, editor, viewer] {
        for (function, status) in
            every_function(&app, &f.key, user, &f.session_id, viewer, true).await
        {
            assert_eq!(status, StatusCode::NOT_FOUND, "{function} while trashed");
        }
        assert!(listed(&app, &f.key, user, None).await.is_empty());
        assert!(listed(&app, &f.key, user, Some("zebra")).await.is_empty());
    }
    assert_eq!(
        trash(&app, &f.key, f.owner, &f.session_id).await,
        StatusCode::NOT_FOUND,
        "deleting it again finds nothing, as for a deleted session"
    );
    // The rows are kept: nothing was deleted.
    let kept: i64 = app
        .scalar(
            "SELECT count(*) FROM session_messages WHERE session_id = $1::text::uuid",
            &[&f.session_id],
        )
        .await;
    assert_eq!(kept, 1);

    // Only an owner restores; to anyone else it does not exist.
    for user in [editor, Uuid::new_v4()] {
        expect_problem(
            restore(&app, &f.key, user, &f.session_id).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let restored = expect_status(
        restore(&app, &f.key, f.owner, &f.session_id).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(restored["session_id"], f.session_id.as_str());
    assert_eq!(restored["role"], "owner");
    assert_eq!(restored["message_count"], 1);
    let view = read(
        &app,
        &f.key,
        f.owner,
        &format!("/api/sessions/{}", f.session_id),
    )
    .await;
    assert_eq!(view["updated_at"], restored["updated_at"]);
    expect_problem(
        restore(&app, &f.key, f.owner, &f.session_id).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Nobody was removed meanwhile, and every function finds it again
    // (the editor's and viewer's roles may forbid some: 403, not 404).
    let participants = read(
        &app,
        &f.key,
        f.owner,
        &format!("/api/sessions/{}/participants", f.session_id),
    )
    .await;
    assert_eq!(participants["participants"].as_array().unwrap().len(), 3);
    for user in [f.owner, editor, viewer] {
        for (function, status) in
            every_function(&app, &f.key, user, &f.session_id, viewer, false).await
        {
            let expected = match (user == f.owner, function) {
                (true, _)
                | (
                    false,
                    "get-session"
                    | "list-messages"
                    | "list-participants"
                    | "export-session"
                    | "session-events"
                    | "create-events-ticket"
                    | "fork-session",
                ) => true,
                (false, _) => {
                    user == editor
                        && matches!(
                            function,
                            "update-session" | "append-messages" | "add-participant"
                        )
                }
            };
            if expected {
                assert!(
                    status.is_success(),
                    "{function} by {user} after restore: {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{function} by {user} after restore"
                );
            }
        }
        assert!(
            listed(&app, &f.key, user, None)
                .await
                .contains(&f.session_id)
        );
        assert!(
            listed(&app, &f.key, user, Some("zebra"))
                .await
                .contains(&f.session_id)
        );
    }
}

/// A trash is an UPDATE, not a DELETE: open streams still end with
/// `deleted`, and a ticket issued before cannot open one after.
#[tokio::test]
async fn trashing_ends_open_streams_and_unused_tickets() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let events = format!("/api/sessions/{}/events", f.session_id);
    let mut stream = Sse::open(call(&app, Method::GET, &events, &f.key, f.owner)).await;
    stream.expect("snapshot").await;
    let ticket = expect_status(
        call(
            &app,
            Method::POST,
            &format!("{events}/tickets"),
            &f.key,
            f.owner,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::CREATED,
    )
    .await;

    assert_eq!(
        trash(&app, &f.key, f.owner, &f.session_id).await,
        StatusCode::NO_CONTENT
    );
    let end = loop {
        let event = stream.next().await.expect("an end event");
        if event.event == "end" {
            break event;
        }
    };
    assert_eq!(end.json()["reason"], "deleted");
    assert!(stream.next().await.is_none(), "the stream closed");

    let ticket = ticket["ticket"].as_str().unwrap();
    let opened = app
        .get(&format!("{events}?ticket={ticket}"))
        .send()
        .await
        .unwrap();
    expect_problem(opened, StatusCode::NOT_FOUND).await;
}

/// Forking a trashed session is refused (404); a fork of it made before
/// keeps its whole transcript, its words and its own forks.
#[tokio::test]
async fn a_fork_outlives_its_trashed_parent() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    append(&app, &f.key, f.owner, &f.session_id, "giraffe").await;
    append(&app, &f.key, f.owner, &f.session_id, "okapi").await;
    let fork = |session: String| {
        call(
            &app,
            Method::POST,
            &format!("/api/sessions/{session}/fork"),
            &f.key,
            f.owner,
        )
        .json(&json!({}))
        .send()
    };
    let child = expect_status(
        fork(f.session_id.clone()).await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let child = child["session_id"].as_str().unwrap().to_owned();

    assert_eq!(
        trash(&app, &f.key, f.owner, &f.session_id).await,
        StatusCode::NO_CONTENT
    );
    expect_problem(
        fork(f.session_id.clone()).await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;

    let page = read(
        &app,
        &f.key,
        f.owner,
        &format!("/api/sessions/{child}/messages"),
    )
    .await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["giraffe", "okapi"]);
    assert_eq!(
        listed(&app, &f.key, f.owner, Some("okapi")).await,
        std::slice::from_ref(&child)
    );
    let grandchild = expect_status(fork(child.clone()).await.unwrap(), StatusCode::CREATED).await;
    assert_eq!(grandchild["message_count"], 2);
}

#[tokio::test]
async fn list_trash_pages_an_owners_trashed_sessions_newest_first_with_their_purge_date() {
    let app = spawn_app_with(&[("TRASH_RETENTION_DAYS", "7")]).await;
    let f = app.fixture().await;
    let config: Uuid = app
        .scalar(
            "SELECT config_id FROM sessions WHERE session_id = $1::text::uuid",
            &[&f.session_id],
        )
        .await;
    let (co_owner, editor) = (Uuid::new_v4(), Uuid::new_v4());
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let session = app.create_session(&f.key, f.owner, config).await;
        sessions.push(session["session_id"].as_str().unwrap().to_owned());
    }
    for (user, role) in [(co_owner, "owner"), (editor, "editor")] {
        expect_status(
            app.add_participant(&f.key, f.owner, &sessions[0], user, role)
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
    for session in &sessions {
        assert_eq!(
            trash(&app, &f.key, f.owner, session).await,
            StatusCode::NO_CONTENT
        );
    }

    let page = |user: Uuid, query: String| {
        call(
            &app,
            Method::GET,
            &format!("/api/users/me/trash{query}"),
            &f.key,
            user,
        )
        .send()
    };
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let body = expect_status(page(f.owner, query).await.unwrap(), StatusCode::OK).await;
        pages += 1;
        assert_eq!(body["user_id"], f.owner.to_string());
        for s in body["sessions"].as_array().unwrap() {
            let trashed =
                chrono::DateTime::parse_from_rfc3339(s["trashed_at"].as_str().unwrap()).unwrap();
            let purge =
                chrono::DateTime::parse_from_rfc3339(s["purge_after"].as_str().unwrap()).unwrap();
            assert_eq!(purge - trashed, chrono::Duration::days(7));
            assert_eq!(s["config_id"], config.to_string());
            seen.push(s["session_id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = sessions.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first, "newest trashed first, the live one not");

    // A co-owner sees it in their trash; an editor does not.
    let co = expect_status(page(co_owner, String::new()).await.unwrap(), StatusCode::OK).await;
    assert_eq!(ids(&co["sessions"]), [sessions[0].clone()]);
    let ed = expect_status(page(editor, String::new()).await.unwrap(), StatusCode::OK).await;
    assert_eq!(ed["sessions"], json!([]));
    // Only one's own trash.
    let other = call(
        &app,
        Method::GET,
        &format!("/api/users/{}/trash", f.owner),
        &f.key,
        editor,
    );
    expect_problem(other.send().await.unwrap(), StatusCode::FORBIDDEN).await;
    expect_problem(
        page(f.owner, "?cursor=nonsense".to_owned()).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Restored or deleted for good: out of the trash.
    expect_status(
        restore(&app, &f.key, co_owner, &sessions[0]).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        delete_permanently(&app, &f.key, f.owner, &sessions[1]).await,
        StatusCode::NO_CONTENT
    );
    let body = expect_status(page(f.owner, String::new()).await.unwrap(), StatusCode::OK).await;
    assert_eq!(ids(&body["sessions"]), newest_first[..3]);
}

#[tokio::test]
async fn permanent_delete_removes_a_live_or_trashed_session_for_owners_only() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let editor = Uuid::new_v4();
    let config: Uuid = app
        .scalar(
            "SELECT config_id FROM sessions WHERE session_id = $1::text::uuid",
            &[&f.session_id],
        )
        .await;
    let trashed = app.create_session(&f.key, f.owner, config).await;
    let trashed = trashed["session_id"].as_str().unwrap().to_owned();
    for session in [&f.session_id, &trashed] {
        expect_status(
            app.add_participant(&f.key, f.owner, session, editor, "editor")
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
    assert_eq!(
        trash(&app, &f.key, f.owner, &trashed).await,
        StatusCode::NO_CONTENT
    );
    let db = &app;
    let exists = |session: String| async move {
        db.scalar::<bool>(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE session_id = $1::text::uuid)",
            &[&session],
        )
        .await
    };

    // Not an owner: 403 on a live session (as delete-session), nothing on a trashed one.
    assert_eq!(
        delete_permanently(&app, &f.key, editor, &f.session_id).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        delete_permanently(&app, &f.key, editor, &trashed).await,
        StatusCode::NOT_FOUND
    );
    let bad = call(
        &app,
        Method::DELETE,
        &format!("/api/sessions/{}?permanent=maybe", f.session_id),
        &f.key,
        f.owner,
    );
    expect_problem(bad.send().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(exists(f.session_id.clone()).await && exists(trashed.clone()).await);

    for session in [&f.session_id, &trashed] {
        assert_eq!(
            delete_permanently(&app, &f.key, f.owner, session).await,
            StatusCode::NO_CONTENT
        );
        assert!(!exists(session.clone()).await);
        assert_eq!(
            delete_permanently(&app, &f.key, f.owner, session).await,
            StatusCode::NOT_FOUND
        );
        expect_problem(
            restore(&app, &f.key, f.owner, session).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
}

/// Config retirement (migration V16) deletes a retired config with its
/// last session: a session in the trash still holds it (it may be
/// restored), until it is deleted for good.
#[tokio::test]
async fn a_trashed_session_keeps_its_retired_config_until_deleted_for_good() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let config = app.create_config(&f.key).await;
    let session = app.create_session(&f.key, f.owner, config).await;
    let session = session["session_id"].as_str().unwrap().to_owned();
    expect_status(
        app.http
            .patch(app.url(&format!("/api/configs/{config}")))
            .header("X-API-Key", &f.key)
            .json(&json!({"retired": true}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let config_exists = || async {
        app.scalar::<bool>(
            "SELECT EXISTS (SELECT 1 FROM configs WHERE config_id = $1)",
            &[&config],
        )
        .await
    };
    assert_eq!(
        trash(&app, &f.key, f.owner, &session).await,
        StatusCode::NO_CONTENT
    );
    assert!(config_exists().await, "the trashed session holds it");
    let restored = expect_status(
        restore(&app, &f.key, f.owner, &session).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(restored["config_id"], config.to_string());
    assert_eq!(
        trash(&app, &f.key, f.owner, &session).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete_permanently(&app, &f.key, f.owner, &session).await,
        StatusCode::NO_CONTENT
    );
    assert!(!config_exists().await, "gone with its last session");
}

/// Trash, restore and permanent delete each write one audit row, in the
/// statement that acts: the user and their application as the actor, the
/// session and its application as the target, the request's invocation
/// id (under either header the host may use). Refused attempts write
/// nothing.
#[tokio::test]
async fn trash_restore_and_permanent_delete_are_audited() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let editor = Uuid::new_v4();
    expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, editor, "editor")
            .await,
        StatusCode::CREATED,
    )
    .await;
    let app_id: String = app
        .scalar(
            "SELECT created_by_app_id FROM sessions WHERE session_id = $1::text::uuid",
            &[&f.session_id],
        )
        .await;
    let path = format!("/api/sessions/{}", f.session_id);
    let acts = [
        (Method::DELETE, path.clone(), "session.trashed"),
        (Method::POST, format!("{path}/restore"), "session.restored"),
        (
            Method::DELETE,
            format!("{path}?permanent=true"),
            "session.deleted",
        ),
    ];
    for (n, (method, path, action)) in acts.iter().enumerate() {
        // Refused first: no row.
        let refused = call(&app, method.clone(), path, &f.key, editor)
            .header(INVOCATION_HEADERS[n % 2], "refused")
            .send()
            .await
            .unwrap();
        assert!(
            refused.status().is_client_error(),
            "{action}: {}",
            refused.status()
        );
        let invocation = format!("inv-{n}-{}", Uuid::new_v4());
        let done = call(&app, method.clone(), path, &f.key, f.owner)
            .header(INVOCATION_HEADERS[n % 2], &invocation)
            .send()
            .await
            .unwrap();
        assert!(done.status().is_success(), "{action}: {}", done.status());
        let rows = app
            .db()
            .await
            .query(
                "SELECT actor_kind, actor_app_id, actor_user_id, target_kind, target_id,
                        app_id, session_id::text, subject_user_id, invocation_id
                 FROM audit_events WHERE action = $1",
                &[action],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{action}");
        let row = &rows[0];
        assert_eq!(row.get::<_, String>("actor_kind"), "user");
        assert_eq!(
            row.get::<_, Option<String>>("actor_app_id"),
            Some(app_id.clone())
        );
        assert_eq!(row.get::<_, Option<Uuid>>("actor_user_id"), Some(f.owner));
        assert_eq!(row.get::<_, String>("target_kind"), "session");
        assert_eq!(row.get::<_, String>("target_id"), f.session_id);
        assert_eq!(row.get::<_, Option<String>>("app_id"), Some(app_id.clone()));
        assert_eq!(
            row.get::<_, Option<String>>("session_id"),
            Some(f.session_id.clone())
        );
        assert_eq!(row.get::<_, Option<Uuid>>("subject_user_id"), None);
        assert_eq!(
            row.get::<_, Option<String>>("invocation_id"),
            Some(invocation)
        );
    }
    // (The fixture's own actions, e.g. registering the application, have
    // rows of their own.)
    let total: i64 = app
        .scalar(
            "SELECT count(*) FROM audit_events WHERE action LIKE 'session.%'",
            &[],
        )
        .await;
    assert_eq!(total, 3, "refused attempts wrote nothing");
}

/// Appends racing a trash: each one either committed before it (200, and
/// it is in the transcript when the session comes back) or finds no
/// session (404); never a limit it did not reach (an append that waited
/// for the trash's lock skips the trashed row).
#[tokio::test]
async fn appends_racing_a_trash_are_kept_or_not_found() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}/messages", f.session_id);
    let appends = (0..8).map(|n| {
        call(&app, Method::POST, &path, &f.key, f.owner)
            .json(&json!({"messages": [{"text": format!("m{n}")}]}))
            .send()
    });
    let (appended, trashed) = tokio::join!(
        futures::future::join_all(appends),
        trash(&app, &f.key, f.owner, &f.session_id)
    );
    assert_eq!(trashed, StatusCode::NO_CONTENT);
    let mut kept = 0;
    for response in appended {
        match response.unwrap().status() {
            StatusCode::OK => kept += 1,
            StatusCode::NOT_FOUND => {}
            status => panic!("an append racing the trash: {status}"),
        }
    }
    let restored = expect_status(
        restore(&app, &f.key, f.owner, &f.session_id).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(restored["message_count"], kept);
}
