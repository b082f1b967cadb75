//! Fault drills: concurrent writers that used to deadlock, a row deleted
//! under a request, and the identity provider and Key Vault going down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::get_current_timestamp;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::fake_azure::FakeAzure;
use crate::helpers::*;
use crate::idp::{jwk, sign, signing_key, start_idp};
use crate::process::Served;

/// One owner appends in a loop while another flips the first one's role:
/// both touch the session row and the first owner's participant row, in
/// one order, so nothing deadlocks; any conflict would be a 503.
#[tokio::test]
async fn appends_and_role_flips_for_ten_seconds_never_deadlock() {
    let server = OwnServer::start(false);
    let database_url = fresh_database(&server.url("127.0.0.1")).await;
    let app = spawn_app_on(&database_url, &[]).await;
    let f = app.fixture().await;
    let other = Uuid::new_v4();
    expect_status(
        app.add_participant(&f.key, f.owner, &f.session_id, other, "owner")
            .await,
        StatusCode::CREATED,
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let append = {
        let (http, url, key, token, stop) = (
            app.http.clone(),
            app.url(&format!("/api/sessions/{}/messages", f.session_id)),
            f.key.clone(),
            app.token(f.owner),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let response = http
                    .post(&url)
                    .header("X-API-Key", &key)
                    .bearer_auth(&token)
                    .json(&json!({"messages": [{"text": "hello"}]}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status());
            }
            statuses
        })
    };
    let flip = {
        let (http, url, key, token, stop) = (
            app.http.clone(),
            app.url(&format!(
                "/api/sessions/{}/participants/{}",
                f.session_id, f.owner
            )),
            f.key.clone(),
            app.token(other),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for role in ["editor", "owner"].iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = http
                    .patch(&url)
                    .header("X-API-Key", &key)
                    .bearer_auth(&token)
                    .json(&json!({"role": role}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status());
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let appends = append.await.unwrap();
    let flips = flip.await.unwrap();
    for status in appends.iter().chain(&flips) {
        assert!(
            status.is_success() || *status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
    }
    assert!(
        appends.len() > 50 && flips.len() > 50,
        "both ran: {} {}",
        appends.len(),
        flips.len()
    );
    let log = std::fs::read_to_string(server.dir.path().join("postgres.log")).unwrap();
    assert!(!log.contains("deadlock detected"), "{log}");
}

/// A participant added while the session is being deleted: the insert
/// finds its session gone when the deletion commits. A 404, not a 500.
#[tokio::test]
async fn adding_to_a_session_deleted_meanwhile_is_a_404() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let mut db = app.db().await;
    let tx = db.transaction().await.unwrap();
    tx.execute(
        "DELETE FROM sessions WHERE session_id = $1::text::uuid",
        &[&f.session_id],
    )
    .await
    .unwrap();
    let request = app
        .as_user(
            app.post(&format!("/api/sessions/{}/participants", f.session_id)),
            &f.key,
            f.owner,
        )
        .json(&json!({"user_id": Uuid::new_v4()}))
        .send();
    let response = tokio::spawn(request);
    // The insert now waits for the deletion's lock on the session row.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.commit().await.unwrap();
    let response = response.await.unwrap().unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

/// Once keys and secrets were fetched, the identity provider and Key Vault
/// may go down: requests go on with the last good ones, at once (no one
/// waits for a timeout), and the log says so.
#[tokio::test]
async fn outages_of_the_identity_provider_and_key_vault_serve_the_last_good_keys() {
    const AUDIENCE: &str = "api://outage";
    let signer = signing_key("outage-key");
    let idp = start_idp(vec![jwk(&signer)]).await;
    let database_url = fresh_database(&admin_url()).await;
    let admin = format!("vault-admin-{}", Uuid::new_v4().simple());
    let mut azure = FakeAzure::start(&json!({
        "postgresql-connection-string": database_url,
        "admin-api-key": admin,
    }));
    let mut vars = azure.vars(&closed_port_url());
    for (k, v) in [
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_ISSUER", idp.base.as_str()),
        ("JWT_AUDIENCE", AUDIENCE),
        ("JWT_USER_CLAIM", "oid"),
        ("JWT_JWKS_TTL_SECONDS", "1"),
        ("KEYVAULT_REFRESH_SECONDS", "1"),
        // Bounds each attempt to reach the vault (its SDK retries for a minute).
        ("DATABASE_POOL_TIMEOUT_MS", "1000"),
    ] {
        vars.insert(k.to_owned(), v.to_owned());
    }
    let served = Served::start(vars).await;
    let http = reqwest::Client::new();
    let key = register_application(&http, &served.url(""), &admin, "outage-app").await;
    let token = sign(
        &signer,
        &json!({"oid": Uuid::new_v4().to_string(), "iss": idp.base, "aud": AUDIENCE,
                "exp": get_current_timestamp() + 600}),
    );
    let call = || {
        http.get(served.url("/api/users/me/sessions"))
            .header("X-API-Key", &key)
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);

    idp.up.store(false, Ordering::SeqCst);
    azure.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await; // both are due for a refresh
    let started = Instant::now();
    let calls: Vec<_> = (0..50).map(|_| tokio::spawn(call())).collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "nobody waited for a timeout: {:?}",
        started.elapsed()
    );
    let admin_call = http
        .get(served.url("/api/applications"))
        .header("X-API-Key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(admin_call.status(), StatusCode::OK, "the admin key too");
    tokio::time::sleep(Duration::from_millis(1500)).await; // the refreshes give up
    let logs = served.stop();
    for what in ["token signing keys", "Key Vault secrets"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("serving the last good value") && l.contains(what)),
            "{what}: {logs}"
        );
    }
}
