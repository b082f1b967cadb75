//! Configs are shared on purpose only, and a shared config can always be
//! retired (issue 16): no application can pin another's config.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

async fn get_config(app: &TestApp, key: &str, config: Uuid) -> reqwest::Response {
    app.get(&format!("/api/configs/{config}"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap()
}

async fn patch_config(app: &TestApp, key: &str, config: Uuid, body: Value) -> reqwest::Response {
    app.http
        .patch(app.url(&format!("/api/configs/{config}")))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn try_session(app: &TestApp, key: &str, user: Uuid, config: Uuid) -> reqwest::Response {
    app.as_user(app.post("/api/sessions"), key, user)
        .json(&json!({"config_id": config}))
        .send()
        .await
        .unwrap()
}

async fn fork(app: &TestApp, key: &str, user: Uuid, session: &Value) -> reqwest::Response {
    let id = session["session_id"].as_str().unwrap();
    app.as_user(app.post(&format!("/api/sessions/{id}/fork")), key, user)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

/// Deletes the session for good (a session in the trash still pins its
/// config: `trash.rs` tests that).
async fn delete_session(app: &TestApp, key: &str, user: Uuid, session: &Value) -> StatusCode {
    let id = session["session_id"].as_str().unwrap();
    app.as_user(
        app.http
            .delete(app.url(&format!("/api/sessions/{id}?permanent=true"))),
        key,
        user,
    )
    .send()
    .await
    .unwrap()
    .status()
}

async fn listed(app: &TestApp, key: &str) -> Vec<String> {
    let page = expect_status(
        app.get("/api/configs")
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    page["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["config_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn config_exists(app: &TestApp, config: Uuid) -> bool {
    app.scalar(
        "SELECT EXISTS (SELECT 1 FROM configs WHERE config_id = $1)",
        &[&config],
    )
    .await
}

/// The griefing of issue 16: application A could read B's config and
/// create a session from it, after which B could neither delete it nor
/// change its yaml_content, and not even the admin could delete it. A new
/// config is private: to A it does not exist.
#[tokio::test]
async fn another_application_cannot_pin_a_private_config() {
    let app = spawn_app().await;
    let key_a = app.create_application("tenant-a").await;
    let key_b = app.create_application("tenant-b").await;
    let config = app.create_config(&key_b).await;

    let detail = expect_problem(
        get_config(&app, &key_a, config).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(detail.contains(&config.to_string()), "{detail}");
    let detail = expect_problem(
        try_session(&app, &key_a, Uuid::new_v4(), config).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(detail.contains(&config.to_string()), "{detail}");
    // Nor may A write it: to A it does not exist.
    expect_problem(
        patch_config(&app, &key_a, config, json!({"name": "mine"})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.count_rows("sessions", None).await, 0);

    // B keeps full control: its own sessions, its content, its deletion.
    app.create_session(&key_b, Uuid::new_v4(), config).await;
    expect_status(
        patch_config(
            &app,
            &key_b,
            config,
            json!({"yaml_content": "model: new\n"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let response = app
        .http
        .delete(app.url(&format!("/api/configs/{config}")))
        .header("X-API-Key", &key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(!config_exists(&app, config).await);
}

/// A shared config pins as before (other applications' sessions keep their
/// content), but its creator can always retire it: no new sessions, not
/// listed, still readable, gone with the last session using it.
#[tokio::test]
async fn retiring_a_shared_config_removes_the_pin() {
    let app = spawn_app().await;
    let key_a = app.create_application("tenant-a").await;
    let key_b = app.create_application("tenant-b").await;
    let config = app.create_config_shared(&key_b, true).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());

    expect_status(get_config(&app, &key_a, config).await, StatusCode::OK).await;
    let foreign = [
        app.create_session(&key_a, alice, config).await,
        app.create_session(&key_a, alice, config).await,
    ];
    let own = app.create_session(&key_b, bob, config).await;
    // A cannot change it (403: it may see it), B cannot delete it (409).
    expect_problem(
        patch_config(&app, &key_a, config, json!({"retired": true})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let detail = expect_problem(
        app.http
            .delete(app.url(&format!("/api/configs/{config}")))
            .header("X-API-Key", &key_b)
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(detail.contains("retire"), "{detail}");

    let retired = expect_status(
        patch_config(&app, &key_b, config, json!({"retired": true})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(retired["retired"], true);
    assert!(listed(&app, &key_b).await.is_empty(), "no longer listed");
    // No new sessions, from anyone, nor forks of the sessions using it.
    for (key, user) in [(&key_a, alice), (&key_b, bob)] {
        let detail = expect_problem(
            try_session(&app, key, user, config).await,
            StatusCode::CONFLICT,
        )
        .await;
        assert!(detail.contains("retired"), "{detail}");
    }
    let forked = fork(&app, &key_a, alice, &foreign[0]).await;
    let detail = expect_problem(forked, StatusCode::CONFLICT).await;
    assert!(detail.contains("retired"), "{detail}");
    // The sessions using it keep working, and their config stays readable.
    let path = format!(
        "/api/sessions/{}",
        foreign[0]["session_id"].as_str().unwrap()
    );
    let session = expect_status(
        app.as_user(app.get(&path), &key_a, alice)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(session["config_id"], config.to_string());
    let read = expect_status(get_config(&app, &key_a, config).await, StatusCode::OK).await;
    assert_eq!(read["retired"], true);
    let retire_again = patch_config(&app, &key_b, config, json!({"retired": false})).await;
    let detail = expect_problem(retire_again, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("retired"), "{detail}");

    // Gone with the last session using it, whoever's that is.
    assert_eq!(
        delete_session(&app, &key_b, bob, &own).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete_session(&app, &key_a, alice, &foreign[0]).await,
        StatusCode::NO_CONTENT
    );
    assert!(
        config_exists(&app, config).await,
        "one session still uses it"
    );
    assert_eq!(
        delete_session(&app, &key_a, alice, &foreign[1]).await,
        StatusCode::NO_CONTENT
    );
    assert!(!config_exists(&app, config).await);
    expect_problem(
        get_config(&app, &key_b, config).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// Retiring a config nobody uses deletes it at once; the admin may retire
/// any config, even one of a deleted application.
#[tokio::test]
async fn an_unused_retired_config_goes_at_once_and_the_admin_may_retire() {
    let app = spawn_app().await;
    let key = app.create_application("tenant-a").await;
    let unused = app.create_config(&key).await;
    let retired = expect_status(
        patch_config(&app, &key, unused, json!({"retired": true})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(retired["retired"], true);
    assert!(!config_exists(&app, unused).await);

    let other = app.create_application("tenant-b").await;
    let config = app.create_config_shared(&key, true).await;
    let user = Uuid::new_v4();
    let session = app.create_session(&other, user, config).await;
    let response = app
        .http
        .delete(app.url("/api/applications/tenant-a"))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_status(
        patch_config(&app, ADMIN_KEY, config, json!({"retired": true})).await,
        StatusCode::OK,
    )
    .await;
    assert!(config_exists(&app, config).await);
    assert_eq!(
        delete_session(&app, &other, user, &session).await,
        StatusCode::NO_CONTENT
    );
    assert!(!config_exists(&app, config).await);
}

/// Withdrawing sharing stops new sessions and forks by other applications;
/// theirs keep working and keep their config readable.
#[tokio::test]
async fn unsharing_keeps_existing_sessions_and_stops_new_ones() {
    let app = spawn_app().await;
    let key_a = app.create_application("tenant-a").await;
    let key_b = app.create_application("tenant-b").await;
    let key_c = app.create_application("tenant-c").await;
    let config = app.create_config_shared(&key_b, true).await;
    let alice = Uuid::new_v4();
    let session = app.create_session(&key_a, alice, config).await;
    let updated = expect_status(
        patch_config(&app, &key_b, config, json!({"shared": false})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["shared"], false);

    expect_problem(
        try_session(&app, &key_a, alice, config).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let forked = fork(&app, &key_a, alice, &session).await;
    let detail = expect_problem(forked, StatusCode::FORBIDDEN).await;
    assert!(detail.contains("private"), "{detail}");
    // A's session keeps its config readable to A; C never had one.
    expect_status(get_config(&app, &key_a, config).await, StatusCode::OK).await;
    expect_problem(
        get_config(&app, &key_c, config).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let path = format!("/api/sessions/{}", session["session_id"].as_str().unwrap());
    let read = expect_status(
        app.as_user(app.get(&path), &key_a, alice)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["config_id"], config.to_string());
    // B's own sessions and forks are unaffected.
    let bob = Uuid::new_v4();
    let own = app.create_session(&key_b, bob, config).await;
    let forked = fork(&app, &key_b, bob, &own).await;
    expect_status(forked, StatusCode::CREATED).await;
}

/// Configs made before migration V16 keep today's behaviour (shared);
/// configs inserted afterwards without saying are private.
#[tokio::test]
async fn the_migration_keeps_existing_configs_shared() {
    let database_url = fresh_database(&admin_url()).await;
    let config: tokio_postgres::Config = database_url.parse().unwrap();
    let tls = tokio_postgres::NoTls;
    amplifier_sessions::db::migrate::run_until(&config, tls, 15)
        .await
        .unwrap();
    let db = pg_connect(&database_url).await;
    db.execute(
        "INSERT INTO configs (config_id, name, yaml_content, created_by_app_id) VALUES
             ('00000000-0000-4000-8000-00000000c0f1', 'old', 'a: 1', 'tenant-b')",
        &[],
    )
    .await
    .unwrap();
    amplifier_sessions::db::migrate::run(&config, tls, None)
        .await
        .unwrap();
    db.execute(
        "INSERT INTO configs (config_id, name, yaml_content, created_by_app_id) VALUES
             ('00000000-0000-4000-8000-00000000c0f2', 'new', 'a: 1', 'tenant-b')",
        &[],
    )
    .await
    .unwrap();
    let rows = db
        .query(
            "SELECT name, shared, retired FROM configs ORDER BY name",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, bool, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("new".to_owned(), false, false),
            ("old".to_owned(), true, false)
        ]
    );

    // Through the API: another application still reads the old one.
    let app = spawn_app_on(&database_url, &[]).await;
    let key = app.create_application("tenant-a").await;
    let old: Uuid = "00000000-0000-4000-8000-00000000c0f1".parse().unwrap();
    expect_status(get_config(&app, &key, old).await, StatusCode::OK).await;
    app.create_session(&key, Uuid::new_v4(), old).await;
}

/// The last sessions of a retired config deleted at once still take it
/// with them (the trigger locks the config, so the last one sees none
/// left); a session created while its unused config is retired either is
/// refused or keeps the config, never a 201 for a session the retire
/// deleted.
#[tokio::test]
async fn retiring_races_neither_leak_configs_nor_lose_sessions() {
    let app = spawn_app().await;
    let key = app.create_application("tenant-a").await;
    let other = app.create_application("tenant-b").await;
    let config = app.create_config_shared(&key, true).await;
    let user = Uuid::new_v4();
    let mut sessions = Vec::new();
    for key in [&key, &other, &key, &other] {
        sessions.push(app.create_session(key, user, config).await);
    }
    expect_status(
        patch_config(&app, &key, config, json!({"retired": true})).await,
        StatusCode::OK,
    )
    .await;
    let deletes = sessions.iter().enumerate().map(|(n, session)| {
        let key = if n % 2 == 0 { &key } else { &other };
        delete_session(&app, key, user, session)
    });
    for status in futures::future::join_all(deletes).await {
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert!(!config_exists(&app, config).await, "gone with the last");

    let config = app.create_config_shared(&key, true).await;
    let (created, retired) = tokio::join!(
        try_session(&app, &other, user, config),
        patch_config(&app, &key, config, json!({"retired": true})),
    );
    assert_eq!(retired.status(), StatusCode::OK);
    match created.status() {
        StatusCode::CREATED => {
            let session: Value = created.json().await.unwrap();
            let id = session["session_id"].as_str().unwrap();
            let path = format!("/api/sessions/{id}");
            let read = app.as_user(app.get(&path), &other, user).send().await;
            assert_eq!(read.unwrap().status(), StatusCode::OK, "the session stays");
            assert!(config_exists(&app, config).await, "kept by its session");
        }
        StatusCode::CONFLICT | StatusCode::NOT_FOUND => {
            assert!(!config_exists(&app, config).await)
        }
        status => panic!("{status}: {}", created.text().await.unwrap()),
    }
}
