//! Rate limits: per application, per user and per user's writes, the
//! draft-ietf-httpapi-ratelimit-headers fields on every counted response,
//! 429s that say which limit, overrides by the admin, refused credentials
//! per source, and one limit held by three processes on one database.

use std::collections::HashMap;
use std::time::Instant;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;
use crate::process::Served;

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn list_sessions(app: &TestApp, key: &str, user: Uuid) -> Response {
    app.as_user(app.get(&format!("/api/users/{user}/sessions")), key, user)
        .send()
        .await
        .unwrap()
}

/// Asserts a 429 naming `policy`, with `Retry-After` and the fields.
async fn expect_limited(response: Response, policy: &str) {
    let retry_after: u64 = header(&response, "retry-after")
        .parse()
        .expect("Retry-After");
    assert!((1..=120).contains(&retry_after), "{retry_after}");
    assert!(header(&response, "ratelimit").contains(&format!("\"{policy}\";r=0;")));
    assert!(header(&response, "ratelimit-policy").contains(&format!("\"{policy}\";q=")));
    let detail = expect_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(
        detail.contains(&format!("\"{policy}\" rate limit")),
        "{detail}"
    );
}

#[tokio::test]
async fn a_user_is_held_to_their_limit_and_told_what_is_left() {
    let app = spawn_app_with(&[("RATE_LIMIT_REQUESTS_PER_MINUTE", "4")]).await;
    let key = app.create_application("rate-user").await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());

    let mut remaining = Vec::new();
    for _ in 0..4 {
        let response = list_sessions(&app, &key, alice).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(header(&response, "ratelimit-policy").contains("\"user\";q=4;w=60"));
        let fields = header(&response, "ratelimit");
        let user = fields
            .split(", ")
            .find(|f| f.starts_with("\"user\""))
            .unwrap();
        remaining.push(
            user.split(";r=")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["3", "2", "1", "0"]);
    expect_limited(list_sessions(&app, &key, alice).await, "user").await;

    // Another user of the same application has a limit of their own.
    assert_eq!(
        list_sessions(&app, &key, bob).await.status(),
        StatusCode::OK
    );
}

/// A fresh instance has no lease yet: a burst waits for one sync that
/// asks room for all of it, and nobody under the limit is refused.
#[tokio::test]
async fn a_burst_under_the_limit_is_admitted_whole() {
    let app = spawn_app_with(&[("RATE_LIMIT_REQUESTS_PER_MINUTE", "100")]).await;
    let key = app.create_application("rate-burst").await;
    let user = Uuid::new_v4();
    // (40: an application's requests beyond its pool share's waiting
    // slots, 55 by default, are refused by the pool share instead.)
    let burst: Vec<_> = (0..40).map(|_| list_sessions(&app, &key, user)).collect();
    for response in futures::future::join_all(burst).await {
        let status = response.status();
        assert_eq!(status, StatusCode::OK, "{}", response.text().await.unwrap());
    }
}

#[tokio::test]
async fn writes_have_a_tighter_limit_than_reads() {
    let app = spawn_app_with(&[("RATE_LIMIT_WRITES_PER_MINUTE", "2")]).await;
    let key = app.create_application("rate-writes").await;
    let config = app.create_config(&key).await;
    let user = Uuid::new_v4();
    app.create_session(&key, user, config).await;
    app.create_session(&key, user, config).await;
    let third = app
        .as_user(app.post("/api/sessions"), &key, user)
        .json(&json!({"config_id": config}))
        .send()
        .await
        .unwrap();
    expect_limited(third, "writes").await;
    assert_eq!(
        app.count_rows("sessions", None).await,
        2,
        "the refused write wrote nothing"
    );
    // Reading is still allowed.
    assert_eq!(
        list_sessions(&app, &key, user).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_application_is_held_to_its_limit_whoever_it_calls_for() {
    let app = spawn_app_with(&[("RATE_LIMIT_APP_REQUESTS_PER_MINUTE", "3")]).await;
    let key = app.create_application("rate-app").await;
    let other = app.create_application("rate-other").await;
    for _ in 0..3 {
        let response = list_sessions(&app, &key, Uuid::new_v4()).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    expect_limited(list_sessions(&app, &key, Uuid::new_v4()).await, "app").await;
    // Application-only calls count too.
    let configs = app
        .get("/api/configs")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    expect_limited(configs, "app").await;
    // Other applications are not affected.
    assert_eq!(
        list_sessions(&app, &other, Uuid::new_v4()).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_admin_overrides_an_applications_limits() {
    let app = spawn_app().await;
    let key = app.create_application("rate-override").await;
    let user = Uuid::new_v4();
    let response = list_sessions(&app, &key, user).await;
    assert!(header(&response, "ratelimit-policy").contains("\"user\";q=1000;w=60"));

    let patch = |settings: serde_json::Value| {
        app.http
            .patch(app.url("/api/applications/rate-override"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({"settings": settings}))
    };
    let invalid = patch(json!({"rate_limits": {"requests_per_minute": -1}}));
    let detail = expect_problem(
        invalid.send().await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        detail.contains("rate_limits.requests_per_minute"),
        "{detail}"
    );
    let unknown = patch(json!({"rate_limits": {"per_hour": 5}}));
    let detail = expect_problem(
        unknown.send().await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(detail.contains("per_hour"), "{detail}");

    let response = patch(json!({"rate_limits": {"requests_per_minute": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Instances learn of it at their next sync.
    wait_for("the override applies", || async {
        let response = list_sessions(&app, &key, user).await;
        header(&response, "ratelimit-policy").contains("\"user\";q=2;w=60")
    })
    .await;
    expect_limited(list_sessions(&app, &key, user).await, "user").await;
}

#[tokio::test]
async fn the_admin_and_health_are_not_limited() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_APP_REQUESTS_PER_MINUTE", "1"),
        ("RATE_LIMIT_REQUESTS_PER_MINUTE", "1"),
    ])
    .await;
    for _ in 0..5 {
        let response = app
            .get("/api/applications")
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none());
        assert_eq!(
            app.get("/api/health").send().await.unwrap().status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn refused_credentials_are_limited_per_source() {
    let app = spawn_app_with(&[("RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE", "3")]).await;
    let key = app.create_application("rate-sources").await;
    // The Functions host forwards from this machine; the client is the
    // address Azure's front end appended last.
    let from = |builder: RequestBuilder, address: &str| {
        builder.header("X-Forwarded-For", format!("192.0.2.99, {address}"))
    };
    let wrong_key =
        |address: &str| from(app.get("/api/configs"), address).header("X-API-Key", "guess");
    for _ in 0..3 {
        let response = wrong_key("198.51.100.7").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = wrong_key("198.51.100.7").send().await.unwrap();
    let detail = expect_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(detail.contains("refused credentials"), "{detail}");
    // Refused before its credentials are looked at, even valid ones.
    let valid = from(app.get("/api/configs"), "198.51.100.7").header("X-API-Key", &key);
    assert_eq!(
        valid.send().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other sources are not.
    let other = from(app.get("/api/configs"), "198.51.100.8").header("X-API-Key", &key);
    assert_eq!(other.send().await.unwrap().status(), StatusCode::OK);
}

/// The README's bound: K instances serving a caller admit at most its
/// limit plus K (each instance's first request of a minute is admitted on
/// trust), plus what the sliding minute lets back in while the test runs.
#[tokio::test]
async fn three_processes_hold_one_global_limit() {
    const LIMIT: u64 = 30;
    const PROCESSES: u64 = 3;
    let database_url = fresh_database(&admin_url()).await;
    let mut vars: HashMap<String, String> = base_vars(&database_url);
    vars.insert("RATE_LIMIT_REQUESTS_PER_MINUTE".into(), LIMIT.to_string());
    vars.insert("RATE_LIMIT_SYNC_MS".into(), "50".into());
    let mut served = Vec::new();
    for _ in 0..PROCESSES {
        served.push(Served::start(vars.clone()).await);
    }
    let http = reqwest::Client::new();
    for s in &served {
        wait_until_healthy(&s.url("/api/health"), "a service process").await;
    }
    let key = register_application(&http, &served[0].url(""), ADMIN_KEY, "rate-global").await;
    let user = Uuid::new_v4();
    let token = amplifier_sessions::auth::token::issue_dev_token(
        &amplifier_sessions::settings::Settings::from_vars(&vars)
            .unwrap()
            .auth,
        user,
        600,
    );
    let call = |i: usize| {
        http.get(served[i % served.len()].url(&format!("/api/users/{user}/sessions")))
            .header("X-API-Key", &key)
            .bearer_auth(&token)
            .send()
    };

    let started = Instant::now();
    let mut admitted = 0u64;
    // Eight callers at a time, spread over the three processes, until each
    // process has refused a request as over the limit.
    let mut refused_by = [false; 3];
    let mut i = 0;
    while !refused_by.iter().all(|r| *r) {
        let batch: Vec<_> = (i..i + 8).map(|j| (j % 3, call(j))).collect();
        i += 8;
        for (process, response) in batch {
            let response = response.await.unwrap();
            match response.status() {
                StatusCode::OK => admitted += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    if header(&response, "ratelimit").contains("\"user\";r=0;") {
                        refused_by[process] = true;
                    }
                }
                other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
            }
        }
        assert!(
            i < 10_000,
            "the processes never refused: admitted {admitted}"
        );
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprintln!(
        "admitted {admitted} of {LIMIT} in {:.2} s over {i} requests",
        minutes * 60.0
    );
    let bound = LIMIT + PROCESSES + (LIMIT as f64 * minutes).ceil() as u64;
    assert!(
        admitted <= bound,
        "admitted {admitted} over {:.1} s, bound {bound}",
        minutes * 60.0
    );
    // And the processes did not refuse early: together they admitted the limit.
    assert!(
        admitted + PROCESSES >= LIMIT,
        "admitted only {admitted} of {LIMIT}"
    );
}
