//! Pool shares (issue 16): one application's slow requests hold at most its
//! share of an instance's database connections, its excess is refused at
//! once (429), and every other application keeps being served. Slow
//! requests are made so by a row lock the test holds; the test waits until
//! PostgreSQL shows them blocked.

use futures::future::{Either, select};
use reqwest::StatusCode;

use crate::helpers::*;

/// A pool of 4: an application holds at most 2 connections, and 1 more of
/// its requests may wait. Waits are bounded only by the test (a minute).
const SHARES: [(&str, &str); 5] = [
    ("DATABASE_POOL_MAX_SIZE", "4"),
    ("DATABASE_POOL_APP_SHARE", "0.5"),
    ("DATABASE_POOL_APP_MAX_WAITING", "1"),
    ("DATABASE_POOL_TIMEOUT_MS", "60000"),
    ("DATABASE_STATEMENT_TIMEOUT_MS", "600000"),
];

fn get_session(app: &TestApp, f: &Fixture) -> reqwest::RequestBuilder {
    app.as_user(
        app.get(&format!("/api/sessions/{}", f.session_id)),
        &f.key,
        f.owner,
    )
}

/// A 429 problem that names the share and says when to retry.
async fn expect_over_share(response: reqwest::Response, detail_has: &str) {
    assert_eq!(response.headers()["retry-after"], "2");
    let detail = expect_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(detail.contains(detail_has), "{detail}");
}

#[tokio::test]
async fn an_application_over_its_share_is_refused_at_once_while_others_are_served() {
    let app = spawn_app_with(&SHARES).await;
    let (a, b) = (app.fixture().await, app.fixture().await);
    let blocker = app.hold_the_session_row(&a.session_id).await;

    // A's share: two requests blocked in PostgreSQL, holding connections.
    let holders: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get_session(&app, &a).send()))
        .collect();
    wait_for("A's share is blocked in PostgreSQL", || async {
        backends_waiting_for_a_lock(&app.database_url).await == 2
    })
    .await;

    // Two more: one takes A's waiting slot, the other is refused without
    // waiting for anything (which one is a race of the two).
    let third = tokio::spawn(get_session(&app, &a).send());
    let fourth = tokio::spawn(get_session(&app, &a).send());
    let (refused, waiter) = match select(third, fourth).await {
        Either::Left((done, other)) | Either::Right((done, other)) => (done, other),
    };
    expect_over_share(
        refused.unwrap().unwrap(),
        "already holds its share of 2 database connection(s) on this instance, and 1 more",
    )
    .await;
    // While A's waiting slot is taken, every further request is refused.
    expect_over_share(get_session(&app, &a).send().await.unwrap(), "share of 2").await;

    // B is served throughout, two at a time (what is left of the pool).
    for _ in 0..10 {
        let (r1, r2) = tokio::join!(get_session(&app, &b).send(), get_session(&app, &b).send());
        expect_status(r1.unwrap(), StatusCode::OK).await;
        expect_status(r2.unwrap(), StatusCode::OK).await;
    }
    // The admin and health are not limited by any share.
    let listed = app
        .get("/api/applications")
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    expect_status(listed, StatusCode::OK).await;
    expect_status(app.get("/api/health").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(backends_waiting_for_a_lock(&app.database_url).await, 2);

    // Released, A's blocked and waiting requests complete, and A is served.
    blocker.batch_execute("ROLLBACK").await.unwrap();
    for request in holders.into_iter().chain([waiter]) {
        expect_status(request.await.unwrap().unwrap(), StatusCode::OK).await;
    }
    expect_status(get_session(&app, &a).send().await.unwrap(), StatusCode::OK).await;
}

/// A request waiting for its application's share waits no longer than any
/// request waits for a connection (`DATABASE_POOL_TIMEOUT_MS`), then is a
/// 429 naming the wait.
#[tokio::test]
async fn a_request_waiting_for_its_share_gives_up_at_the_pool_timeout() {
    // Migrated first, so that building the pool fits the short timeout.
    let migrated = spawn_app().await;
    let app = spawn_app_on(
        &migrated.database_url,
        &[
            ("DATABASE_POOL_MAX_SIZE", "2"),
            ("DATABASE_POOL_TIMEOUT_MS", "1000"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "600000"),
        ],
    )
    .await;
    let (a, b) = (app.fixture().await, app.fixture().await);
    let blocker = app.hold_the_session_row(&a.session_id).await;
    let holder = tokio::spawn(get_session(&app, &a).send());
    wait_for("A's one connection is blocked in PostgreSQL", || async {
        backends_waiting_for_a_lock(&app.database_url).await == 1
    })
    .await;
    expect_over_share(
        get_session(&app, &a).send().await.unwrap(),
        "held its share of 1 database connection(s) on this instance for 1000 ms",
    )
    .await;
    expect_status(get_session(&app, &b).send().await.unwrap(), StatusCode::OK).await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    expect_status(holder.await.unwrap().unwrap(), StatusCode::OK).await;
}

/// Keyless development calls (`AUTH_REQUIRED=false`) are one application:
/// they share one share.
#[tokio::test]
async fn keyless_development_calls_share_one_share() {
    let mut vars = SHARES.to_vec();
    vars.extend([
        ("AUTH_REQUIRED", "false"),
        ("DATABASE_POOL_APP_MAX_WAITING", "0"),
    ]);
    let app = spawn_app_with(&vars).await;
    let (_, session) = app.keyless_session().await;
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    let blocker = app.hold_the_session_row(&session_id).await;
    let path = format!("/api/sessions/{session_id}");
    let holders: Vec<_> = (0..2)
        .map(|_| tokio::spawn(app.get(&path).send()))
        .collect();
    wait_for("the share is blocked in PostgreSQL", || async {
        backends_waiting_for_a_lock(&app.database_url).await == 2
    })
    .await;
    expect_over_share(app.get(&path).send().await.unwrap(), "share of 2").await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    for request in holders {
        expect_status(request.await.unwrap().unwrap(), StatusCode::OK).await;
    }
}
