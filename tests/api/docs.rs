//! The docs page, rendered by a real headless browser.

use reqwest::StatusCode;

use crate::helpers::*;

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

    let dom = dump_dom(&app.url("/api/docs")).await;
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
