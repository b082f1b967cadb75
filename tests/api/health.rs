use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn health_reports_ok_with_a_database() {
    let app = spawn_app().await;
    let body = expect_status(app.get("/api/health").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(body, json!({"status": "ok", "database": "ok"}));
}

#[tokio::test]
async fn health_is_degraded_without_a_database() {
    let url = closed_port_url();
    let app = spawn_app_on(&url, &[]).await;
    let response = app.get("/api/health").send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "2");
    let body = expect_status(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        body,
        json!({"status": "degraded", "database": "unavailable"})
    );
}

#[tokio::test]
async fn readiness_probe_answers_without_touching_the_database() {
    let url = closed_port_url();
    let app = spawn_app_on(&url, &[]).await;
    let response = app.get("/").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The admin key adds what the instance holds and has refused; a wrong
/// key gets exactly the public answer.
#[tokio::test]
async fn health_adds_detail_for_the_admin_key_only() {
    let app = spawn_app_with(&[
        ("DATABASE_POOL_MAX_SIZE", "6"),
        ("RATE_LIMIT_REQUESTS_PER_MINUTE", "1"),
    ])
    .await;
    let key = app.create_application("health-app").await;
    // One request over a user's limit, to be counted.
    let user = uuid::Uuid::new_v4();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let response = app
            .as_user(app.get(&format!("/api/users/{user}/sessions")), &key, user)
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    assert_eq!(statuses, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    for wrong in ["not-the-admin-key", key.as_str()] {
        let body = expect_status(
            app.get("/api/health")
                .header("X-API-Key", wrong)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(body, json!({"status": "ok", "database": "ok"}));
    }
    let body = expect_status(
        app.get("/api/health")
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    let detail = &body["detail"];
    let pool = &detail["pool"];
    assert_eq!(pool["max_size"], 6, "{body}");
    let size = pool["size"].as_u64().unwrap();
    assert!((1..=6).contains(&size), "{body}");
    assert!(pool["available"].as_u64().unwrap() <= size, "{body}");
    assert_eq!(pool["waiting"], 0, "{body}");
    assert_eq!(detail["event_streams_open"], 0, "{body}");
    assert!(detail["rate_limit_callers"].is_u64(), "{body}");
    // Counts are of the whole process (the other tests' too): at least.
    assert!(
        detail["counts"]["rate_limited"]["user"].as_u64().unwrap() >= 1,
        "{body}"
    );
    for count in [
        "pool_timeouts",
        "rate_limited",
        "pool_share_refused",
        "event_streams_refused",
        "export_failures",
    ] {
        assert!(!detail["counts"][count].is_null(), "{count}: {body}");
    }
    // Tests run in one process without an exporter.
    assert_eq!(
        detail["telemetry"],
        json!({"traces": false, "metrics": false})
    );
    // No secret, in any form.
    let text = body.to_string();
    for secret in [ADMIN_KEY, key.as_str(), app.database_url.as_str()] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}
