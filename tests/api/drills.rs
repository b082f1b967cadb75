//! Fault drills: concurrent writers that used to deadlock, a row deleted
//! under a request, and the identity provider and Key Vault going down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jsonwebtoken::get_current_timestamp;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::fake_azure::{FakeAzure, TOKEN};
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
    let app = spawn_app_on(
        &database_url,
        // Thousands of one user's writes in 10 s: over any rate limit.
        &[
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "0"),
            ("RATE_LIMIT_WRITES_PER_MINUTE", "0"),
        ],
    )
    .await;
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
        appends.len() >= 20 && flips.len() >= 20,
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
    wait_for("the insert waits for the deletion's lock", || async {
        backends_waiting_for_a_lock(&app.database_url).await >= 1
    })
    .await;
    tx.commit().await.unwrap();
    let response = response.await.unwrap().unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
}

/// How the services the refreshed values come from fail.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Connections are refused (the process is gone).
    Refused,
    /// Connections are accepted and never answered (the process is frozen).
    Hanging,
}

/// Once keys, secrets and a database token were fetched, the identity
/// provider, Key Vault and Entra ID may go down or hang: requests go on
/// with the values in hand, including those that must open a new database
/// connection, and never wait for a refresh.
async fn drill(outage: Outage) {
    const AUDIENCE: &str = "api://outage";
    let signer = signing_key("outage-key");
    let idp = start_idp(vec![jwk(&signer)]).await;
    // The database password is the identity's token (DATABASE_AUTH=entra).
    let role = OwnRole::create("drill", TOKEN).await;
    let admin = format!("vault-admin-{}", Uuid::new_v4().simple());
    let mut azure = FakeAzure::start(&json!({
        "postgresql-connection-string": role.url(None),
        "admin-api-key": admin,
    }));
    // Due for a refresh as soon as fetched (less than 5 minutes left),
    // usable for nearly three minutes more.
    std::fs::write(azure.dir.path().join("expires_in"), "200").unwrap();
    let mut vars = azure.vars(&closed_port_url());
    // A hanging fetch stays in flight for the whole drill; a refused one
    // gives up (the SDKs retry) soon enough to be seen in the log.
    let fetch_timeout = match outage {
        Outage::Refused => "2000",
        Outage::Hanging => "600000",
    };
    for (k, v) in [
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_ISSUER", idp.base.as_str()),
        ("JWT_AUDIENCE", AUDIENCE),
        ("JWT_USER_CLAIM", "oid"),
        ("JWT_JWKS_TTL_SECONDS", "1"),
        ("KEYVAULT_REFRESH_SECONDS", "1"),
        ("DATABASE_AUTH", "entra"),
        ("FETCH_TIMEOUT_MS", fetch_timeout),
        // Opening connections under load is the pool's business (faults.rs):
        // a generous wait keeps this drill about the refreshes alone.
        ("DATABASE_POOL_TIMEOUT_MS", "30000"),
    ] {
        vars.insert(k.to_owned(), v.to_owned());
    }
    let served = Served::start(vars).await;
    let http = reqwest::Client::builder()
        // A request that waited for a refresh would fail here, not hang.
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
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
    let fifty_calls_succeed = || async {
        let calls: Vec<_> = (0..50).map(|_| tokio::spawn(call())).collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        let admin_call = http
            .get(served.url("/api/applications"))
            .header("X-API-Key", &admin)
            .send()
            .await
            .unwrap();
        assert_eq!(admin_call.status(), StatusCode::OK, "the admin key too");
    };
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);

    match outage {
        Outage::Refused => {
            idp.up.store(false, Ordering::SeqCst);
            azure.stop();
        }
        Outage::Hanging => {
            idp.hanging.store(true, Ordering::SeqCst);
            azure.hang();
        }
    }
    // Keys and secrets are due (a lower bound on elapsed time, no guess
    // about speed); the next call starts their refreshes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    if outage == Outage::Hanging {
        // Every refresh now waits on a frozen service...
        wait_for("the signing keys' refresh hangs", || async {
            idp.hung.load(Ordering::SeqCst) >= 1
        })
        .await;
        let frozen = [azure.vault_port, azure.identity_port];
        wait_for("a request hangs at the frozen Azure stand-ins", || async {
            unanswered_requests_at(&frozen)
        })
        .await;
    }
    // ...and the database drops every connection: new ones log in with
    // the token in hand.
    role.end_sessions().await;
    fifty_calls_succeed().await;

    match outage {
        Outage::Hanging => {
            let printed = served.printed();
            assert!(
                !printed.contains("refresh failed"),
                "the refreshes are still in flight, so nobody waited for them: {printed}"
            );
        }
        Outage::Refused => {
            for what in [
                "token signing keys",
                "Key Vault secrets",
                "Entra ID token for PostgreSQL",
            ] {
                wait_for(&format!("a log line: {what} refresh failed"), || async {
                    served.printed().lines().any(|l| {
                        l.contains("refresh failed; serving the last good value")
                            && l.contains(what)
                    })
                })
                .await;
            }
            // After the failures the last good values are still served.
            fifty_calls_succeed().await;
        }
    }
    served.stop();
}

#[tokio::test]
async fn refused_identity_provider_key_vault_and_entra_serve_the_last_good_values() {
    drill(Outage::Refused).await;
}

#[tokio::test]
async fn hanging_identity_provider_key_vault_and_entra_never_hold_a_request() {
    drill(Outage::Hanging).await;
}
