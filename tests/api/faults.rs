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
    let started = Instant::now();
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
    let pool_timeout = app.settings.database.pool_timeout;
    assert!(
        started.elapsed() < 2 * pool_timeout,
        "503s must come within the pool timeout, took {:?}",
        started.elapsed()
    );

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = app.get("/api/health").send().await.unwrap().status();
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "health never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
