//! The docs page, rendered by a real headless browser.

use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::*;

fn chromium() -> String {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("a headless browser is needed: apt-get install chromium (scripts/test.sh does this as root)")
        .to_owned()
}

#[tokio::test]
async fn the_docs_page_renders_every_operation_in_a_browser() {
    let app = spawn_app().await;
    let page = app.get("/api/docs").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let response = app
        .get("/api/docs?asset=../../etc/passwd")
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;

    let profile = tempfile::tempdir().unwrap();
    let url = app.url("/api/docs");
    let browser = chromium();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--user-data-dir={}", profile.path().display()),
                "--virtual-time-budget=15000",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("opblock"),
        "Swagger UI did not render operations:\n{}",
        &dom[..dom.len().min(2000)]
    );
    for f in amplifier_sessions::api::functions() {
        assert!(
            dom.contains(&f.path),
            "{} missing from the rendered page",
            f.path
        );
    }
}
