//! Browser callers: a page on an allowed origin creates a session with
//! `fetch` (preflight, credentials headers, exposed `Location`) in headless
//! Chromium; a page on another origin is refused by the browser.

use axum::response::Html;
use axum::routing::get;
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::*;

/// Serves `html` at `/` on a port of its own; returns the page's origin.
async fn serve_page(html: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/", get(move || async move { Html(html) }));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    origin
}

/// A page that creates a session through the API and writes what happened
/// into the document, where `--dump-dom` finds it.
fn page(api: &str, key: &str, token: &str, config_id: Uuid) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="result">pending</pre><script>
fetch("{api}/api/sessions", {{
  method: "POST",
  headers: {{"X-API-Key": "{key}", "Authorization": "Bearer {token}",
             "Content-Type": "application/json", "Idempotency-Key": "browser-1"}},
  body: JSON.stringify({{config_id: "{config_id}"}})
}}).then(r => r.json().then(body =>
  document.getElementById("result").textContent =
    ["RESULT", r.status, r.headers.get("Location"), body.session_id, ""].join("|")))
  .catch(e => document.getElementById("result").textContent = "RESULT|refused|" + e.name + "|");
</script></body></html>"#
    )
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_calls_the_api_and_others_are_refused() {
    // The allowed page's origin must be known before the API starts.
    let allowed_port = unused_port();
    let allowed = format!("http://127.0.0.1:{allowed_port}");
    let app = spawn_app_with(&[("ALLOWED_ORIGINS", &allowed)]).await;
    let key = app.create_application("browser-app").await;
    let config_id = app.create_config(&key).await;
    let user = Uuid::new_v4();
    let html = page(&app.address, &key, &app.token(user), config_id);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", allowed_port))
        .await
        .unwrap();
    let router = axum::Router::new().route(
        "/",
        get({
            let html = html.clone();
            move || async move { Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let dom = dump_dom(&format!("{allowed}/")).await;
    let result = dom
        .split("RESULT|")
        .nth(1)
        .unwrap_or_else(|| panic!("the page never finished: {dom}"));
    let words: Vec<&str> = result.split('|').take(3).collect();
    assert_eq!(words[0], "201", "{result}");
    assert_eq!(
        words[1],
        format!("/api/sessions/{}", words[2]),
        "Location is exposed to the page"
    );

    let other = serve_page(html).await;
    let dom = dump_dom(&format!("{other}/")).await;
    assert!(dom.contains("RESULT|refused|TypeError|"), "{dom}");
    assert_eq!(
        app.count_rows("sessions", None).await,
        1,
        "the refused page created nothing"
    );

    // What the browser saw, asked directly: a preflight from an allowed
    // origin is answered; one from elsewhere gets no CORS headers.
    let preflight = |origin: String| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/sessions"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "x-api-key,authorization,content-type,idempotency-key",
            )
            .send()
    };
    let response = preflight(allowed.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        allowed.as_str()
    );
    let response = preflight(other).await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    // A simple request from the allowed origin exposes the headers clients read.
    let response = app
        .as_user(app.get("/api/users/me/sessions"), &key, user)
        .header("Origin", &allowed)
        .send()
        .await
        .unwrap();
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in ["location", "retry-after", "idempotent-replayed"] {
        assert!(exposed.contains(header), "{exposed}");
    }
}

/// In Azure the platform answers CORS and cannot expose headers; the
/// service exposes them itself on every response.
#[tokio::test]
async fn without_allowed_origins_responses_still_expose_the_headers_clients_read() {
    let app = spawn_app().await;
    let response = app
        .get("/api/health")
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin"),
        "the platform decides origins"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("location") && exposed.contains("idempotent-replayed"));
}
