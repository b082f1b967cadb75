//! What a hostile or careless tenant must not be able to do to another
//! tenant's data, and the bounds that keep tables and pages finite.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

async fn session_status(app: &TestApp, key: &str, user: Uuid, session: &str) -> StatusCode {
    app.as_user(app.get(&format!("/api/sessions/{session}")), key, user)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_config_shared_with_other_applications_keeps_their_sessions() {
    let app = spawn_app().await;
    let key_a = app.create_application("tenant-a").await;
    let key_b = app.create_application("tenant-b").await;
    let config = app.create_config_shared(&key_a, true).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let own = app.create_session(&key_a, alice, config).await;
    let foreign = app.create_session(&key_b, bob, config).await;
    let foreign_id = foreign["session_id"].as_str().unwrap();
    let path = format!("/api/configs/{config}");

    // A cannot take B's session down with its config, nor change what B's
    // session runs; renaming is fine.
    let detail = expect_problem(
        app.http
            .delete(app.url(&path))
            .header("X-API-Key", &key_a)
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(detail.contains("1 session"), "{detail}");
    let detail = expect_problem(
        app.http
            .patch(app.url(&path))
            .header("X-API-Key", &key_a)
            .json(&json!({"yaml_content": "model: other\n"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(detail.contains("yaml_content"), "{detail}");
    // Not even the admin may.
    expect_problem(
        app.http
            .delete(app.url(&path))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    expect_status(
        app.http
            .patch(app.url(&path))
            .header("X-API-Key", &key_a)
            .json(&json!({"name": "renamed"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        session_status(&app, &key_b, bob, foreign_id).await,
        StatusCode::OK
    );
    let yaml: String = app
        .scalar(
            "SELECT yaml_content FROM configs WHERE config_id = $1",
            &[&config],
        )
        .await;
    assert_eq!(yaml, "model: test\n", "unchanged");

    // Once only A's own sessions use it, A may delete it: they go with it.
    // B's session in the trash still uses it (B may restore it): only once
    // it is deleted for good.
    let delete_foreign = |query: &'static str| {
        app.as_user(
            app.http
                .delete(app.url(&format!("/api/sessions/{foreign_id}{query}"))),
            &key_b,
            bob,
        )
        .send()
    };
    assert_eq!(
        delete_foreign("").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let response = app
        .http
        .delete(app.url(&path))
        .header("X-API-Key", &key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "the trash holds it"
    );
    assert_eq!(
        delete_foreign("?permanent=true").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let response = app
        .http
        .delete(app.url(&path))
        .header("X-API-Key", &key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        session_status(&app, &key_a, alice, own["session_id"].as_str().unwrap()).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_deleted_application_id_is_never_registered_again() {
    let app = spawn_app().await;
    let old_key = app.create_application("reused-id").await;
    let config = app.create_config(&old_key).await;
    let response = app
        .http
        .delete(app.url("/api/applications/reused-id"))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let detail = expect_problem(
        app.post("/api/applications")
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({"app_id": "reused-id", "app_name": "Impostor"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(detail.contains("never reused"), "{detail}");
    for path in [
        "/api/applications/reused-id",
        "/api/applications/reused-id/rotate-key",
    ] {
        let request = if path.ends_with("rotate-key") {
            app.post(path)
        } else {
            app.get(path)
        };
        let response = request.header("X-API-Key", ADMIN_KEY).send().await.unwrap();
        expect_problem(response, StatusCode::NOT_FOUND).await;
    }
    let listed = expect_status(
        app.get("/api/applications")
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(!listed.to_string().contains("reused-id"));
    // The old key is dead, and the old configs belong to nobody who can
    // call: they stay readable, writable only by the admin.
    let response = app
        .http
        .patch(app.url(&format!("/api/configs/{config}")))
        .header("X-API-Key", &old_key)
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn nobody_can_move_another_users_activity() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let victim = Uuid::new_v4();
    // The victim works in their own session...
    let config = app.create_config(&f.key).await;
    let theirs = app.create_session(&f.key, victim, config).await;
    // ...and an attacker adds them to one of the attacker's, then re-adds
    // them, hoping to pin it to the top of the victim's list.
    let added = expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, victim, "viewer")
            .await,
        StatusCode::CREATED,
    )
    .await;
    for _ in 0..3 {
        let again = expect_status(
            app.add_participant(&f.key, f.owner, &f.session_id, victim, "viewer")
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(again, added, "unchanged, last_active_at included");
    }
    let list = expect_status(
        app.as_user(app.get("/api/users/me/sessions"), &f.key, victim)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["sessions"][0]["session_id"], theirs["session_id"]);
    assert_eq!(list["sessions"][1]["session_id"], f.session_id.as_str());
    assert_eq!(list["sessions"][1]["last_active_at"], Value::Null);
}

/// Without a valid application key a request learns nothing about the
/// token it carries: valid, expired or forged, the answer is the same.
#[tokio::test]
async fn no_token_oracle_without_an_application_key() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let valid = app.token(f.owner);
    let expired = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": f.owner.to_string(), "exp": get_current_timestamp() - 600}),
        &EncodingKey::from_secret(SECRET_KEY.as_bytes()),
    )
    .unwrap();
    let path = format!("/api/sessions/{}", f.session_id);
    for key in [
        None,
        Some("amp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let mut answers = Vec::new();
        for token in [&valid, &expired, &"forged.not.jwt".to_owned()] {
            let mut request = app.get(&path).bearer_auth(token);
            if let Some(key) = key {
                request = request.header("X-API-Key", key);
            }
            let response = request.send().await.unwrap();
            let challenge = response.headers()["www-authenticate"].clone();
            let detail = expect_problem(response, StatusCode::UNAUTHORIZED).await;
            answers.push((challenge, detail));
        }
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "key {key:?}: {answers:?}"
        );
        assert!(answers[0].1.contains("X-API-Key"), "{answers:?}");
    }
}

#[tokio::test]
async fn expired_idempotency_records_are_deleted() {
    let app = spawn_app_with(&[("IDEMPOTENCY_SWEEP_SECONDS", "1")]).await;
    let key = app.create_application("sweep-app").await;
    let config = app.create_config(&key).await;
    let user = Uuid::new_v4();
    for idempotency_key in ["old-request", "new-request"] {
        let response = app
            .as_user(app.post("/api/sessions"), &key, user)
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({"config_id": config, "metadata": {"note": "personal"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    app.db()
        .await
        .execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
             WHERE idempotency_key = 'old-request'",
            &[],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys: Vec<String> = app
            .db()
            .await
            .query("SELECT idempotency_key FROM idempotency_keys", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if keys == ["new-request"] {
            break;
        }
        assert!(Instant::now() < deadline, "never swept: {keys:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn objects_are_bounded_and_nul_is_refused_by_field() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let big = "x".repeat(65 * 1024);
    let config_id = app.create_config(&f.key).await;
    let cases = [
        (
            "/api/sessions",
            json!({"config_id": config_id, "metadata": {"blob": big}}),
            "metadata",
        ),
        (
            "/api/configs",
            json!({"name": "c", "yaml_content": "a: 1", "tags": {"blob": big}}),
            "tags",
        ),
        (
            "/api/sessions",
            json!({"config_id": config_id, "metadata": {"a": "nul\u{0}here"}}),
            "metadata",
        ),
        (
            "/api/configs",
            json!({"name": "c", "yaml_content": "a: 1", "description": "nul\u{0}"}),
            "description",
        ),
        (
            &format!("/api/sessions/{}/messages", f.session_id),
            json!({"messages": [{"text": "ok"}, {"text": "nul\u{0}"}]}),
            "messages",
        ),
    ];
    let sessions_before = app.count_rows("sessions", None).await;
    let configs_before = app.count_rows("configs", None).await;
    for (path, body, field) in cases {
        let response = app
            .as_user(app.post(path), &f.key, f.owner)
            .json(&body)
            .send()
            .await
            .unwrap();
        let detail = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(detail.starts_with(field), "{path}: {detail}");
        assert!(
            !detail.contains("Unicode escape"),
            "no server words: {detail}"
        );
    }
    assert_eq!(app.count_rows("sessions", None).await, sessions_before);
    assert_eq!(app.count_rows("configs", None).await, configs_before);
}

#[tokio::test]
async fn a_page_of_sessions_stays_within_its_byte_budget() {
    let app = spawn_app().await;
    let key = app.create_application("big-metadata").await;
    let config = app.create_config(&key).await;
    let user = Uuid::new_v4();
    let metadata = json!({"blob": "m".repeat(60 * 1024)});
    for _ in 0..80 {
        let response = app
            .as_user(app.post("/api/sessions"), &key, user)
            .json(&json!({"config_id": config, "metadata": metadata}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let mut seen = std::collections::HashSet::new();
    let mut path = "/api/users/me/sessions?limit=100".to_owned();
    loop {
        let response = app
            .as_user(app.get(&path), &key, user)
            .send()
            .await
            .unwrap();
        let text = response.text().await.unwrap();
        assert!(text.len() <= 4 * 1024 * 1024 + 1024, "{} bytes", text.len());
        let page: Value = serde_json::from_str(&text).unwrap();
        for s in page["sessions"].as_array().unwrap() {
            assert!(seen.insert(s["session_id"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/users/me/sessions?limit=100&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        80,
        "every session exactly once, over several pages"
    );
}

#[tokio::test]
async fn a_billion_laughs_config_is_refused_naming_the_line() {
    let app = spawn_app().await;
    let key = app.create_application("laughs").await;
    let mut yaml = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_owned();
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let (prev, name) = (pair[0], pair[1]);
        let refs = vec![format!("*{prev}"); 9].join(", ");
        yaml.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    let detail = expect_problem(
        app.post("/api/configs")
            .header("X-API-Key", &key)
            .json(&json!({"name": "laughs", "yaml_content": yaml}))
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        detail.contains("yaml_content") && detail.contains("line 5"),
        "{detail}"
    );
    assert_eq!(app.count_rows("configs", None).await, 0);
}
