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
