//! The database going away, TLS, and many instances migrating at once.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// Requests while the server is down get a quick 503; the first request
/// after it returns succeeds (a failed pool build is not cached).
#[tokio::test]
async fn database_down_is_503_and_the_service_recovers() {
    let server = OwnServer::start(false);
    let database_url = fresh_database(&server.url("127.0.0.1")).await;
    let app = spawn_app_on(&database_url, &[]).await;
    let key = app.create_application("fault-app").await;
    let config_id = app.create_config(&key).await;
    let user = uuid::Uuid::new_v4();

    server.stop();
    let response = app.get("/api/health").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = app
        .as_user(app.post("/api/sessions"), &key, user)
        .json(&json!({"config_id": config_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "2");
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;

    server.resume();
    wait_until_healthy(&app.url("/api/health"), "health never recovered").await;
    app.create_session(&key, user, config_id).await;
}

#[tokio::test]
async fn a_failed_first_pool_build_is_retried() {
    let server = OwnServer::start(false);
    let database_url = fresh_database(&server.url("127.0.0.1")).await;
    server.stop();
    let app = spawn_app_on(&database_url, &[]).await;
    assert_eq!(
        app.get("/api/health").send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.resume();
    let body = expect_status(app.get("/api/health").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(body["database"], "ok");
}

/// A steady create-session load while PostgreSQL stops and starts again:
/// 503s (never a hang) while it is down, health back without a restart,
/// and every 201 kept with its owner.
#[tokio::test]
async fn a_restart_under_load_loses_no_acknowledged_session() {
    let server = OwnServer::start(false);
    let database_url = fresh_database(&server.url("127.0.0.1")).await;
    let app = spawn_app_on(&database_url, &[("DATABASE_POOL_TIMEOUT_MS", "1500")]).await;
    let key = app.create_application("load-app").await;
    let config_id = app.create_config(&key).await;
    let user = uuid::Uuid::new_v4();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, key, token, stop) = (
                app.http.clone(),
                app.url("/api/sessions"),
                key.clone(),
                app.token(user),
                stop.clone(),
            );
            tokio::spawn(async move {
                let (mut created, mut unavailable, mut slowest) = (Vec::new(), 0, Duration::ZERO);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let response = http
                        .post(&url)
                        .header("X-API-Key", &key)
                        .bearer_auth(&token)
                        .json(&json!({"config_id": config_id}))
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap();
                    match status {
                        StatusCode::CREATED => {
                            created.push(body["session_id"].as_str().unwrap().to_owned())
                        }
                        StatusCode::SERVICE_UNAVAILABLE => {
                            unavailable += 1;
                            slowest = slowest.max(started.elapsed());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
                (created, unavailable, slowest)
            })
        })
        .collect();

    let count = || async {
        pg_connect(&database_url)
            .await
            .query_one("SELECT count(*) FROM sessions", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = count().await;
    wait_for("sessions are being created", || async {
        count().await > before
    })
    .await;
    server.stop();
    wait_for("a 503 while the database is down", || async {
        app.get("/api/health").send().await.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    server.resume();
    wait_until_healthy(&app.url("/api/health"), "health never came back").await;
    let after = count().await;
    wait_for("sessions are created again", || async {
        count().await > after
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let (mut created, mut unavailable, mut slowest) = (Vec::new(), 0, Duration::ZERO);
    for worker in workers {
        let (c, u, s) = worker.await.unwrap();
        created.extend(c);
        unavailable += u;
        slowest = slowest.max(s);
    }
    assert!(unavailable > 0, "the outage was seen");
    // Bounded by the pool timeout (1.5 s); the margin is for a busy machine.
    assert!(slowest < Duration::from_secs(30), "a 503 took {slowest:?}");
    let db = pg_connect(&database_url).await;
    let ids: Vec<uuid::Uuid> = created.iter().map(|s| s.parse().unwrap()).collect();
    let kept: i64 = db
        .query_one(
            "SELECT count(*) FROM sessions WHERE session_id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        kept as usize,
        ids.len(),
        "every acknowledged session exists"
    );
    let ownerless: i64 = db
        .query_one(
            "SELECT count(*) FROM sessions s WHERE NOT EXISTS (
                 SELECT 1 FROM session_participants p
                 WHERE p.session_id = s.session_id AND p.role = 'owner')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ownerless, 0);
}

/// More concurrent slow requests than connections: the extra callers wait
/// for the pool timeout and get 503; afterwards the service is fine.
#[tokio::test]
async fn pool_exhaustion_is_503_after_the_wait_and_recovers() {
    let app = spawn_app_with(&[
        ("DATABASE_POOL_MAX_SIZE", "2"),
        ("DATABASE_POOL_TIMEOUT_MS", "1000"),
        // No pool shares (one application may take the whole pool): this
        // is about the pool (pool_shares.rs is about an application's share).
        ("DATABASE_POOL_APP_SHARE", "1"),
    ])
    .await;
    let f = app.fixture().await;
    // Hold the session's row lock so that reads of it (which record the
    // access) block while holding their pooled connection.
    let mut blocker = app.db().await;
    let tx = blocker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM sessions WHERE session_id = $1::text::uuid FOR UPDATE",
        &[&f.session_id],
    )
    .await
    .unwrap();

    let path = format!("/api/sessions/{}", f.session_id);
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let request = app.as_user(app.get(&path), &f.key, f.owner);
            tokio::spawn(async move {
                let started = Instant::now();
                let response = request.send().await.unwrap();
                (response.status(), started.elapsed())
            })
        })
        .collect();
    // Two requests hold the two connections, blocked on the lock; the
    // other two can only wait for the pool and get 503 while it is held.
    wait_for("two requests wait for the lock", || async {
        backends_waiting_for_a_lock(&app.database_url).await == 2
    })
    .await;
    wait_for("two requests gave up", || async {
        calls.iter().filter(|c| c.is_finished()).count() == 2
    })
    .await;
    tx.rollback().await.unwrap();

    let pool_timeout = app.settings.database.pool_timeout;
    let mut statuses = Vec::new();
    for call in calls {
        let (status, took) = call.await.unwrap();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                took >= pool_timeout,
                "a 503 before the pool timeout: {took:?}"
            );
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE
        ],
    );
    let response = app
        .as_user(app.get(&path), &f.key, f.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
