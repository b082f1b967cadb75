//! The OpenAPI document and the interactive docs page (Swagger UI, served
//! from the binary: no CDN, which many deployments block).

use std::sync::{Arc, OnceLock};

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::QueryParams;
use crate::error::{ApiError, Problem};

const OPENAPI_PATH: &str = "/api/openapi.json";

/// Assets are fetched from the same route (`?asset=`), because the
/// Functions host only forwards paths that some function declares.
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Amplifier sessions API</title>
  <link rel="stylesheet" href="/api/docs?asset=swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs?asset=swagger-ui-bundle.js"></script>
  <script>window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui" });</script>
</body>
</html>
"##;

/// The OpenAPI 3.1 document of every function.
#[utoipa::path(
    get, path = "/api/openapi.json", operation_id = "openapi", tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")),
    security(()),
)]
pub async fn openapi_json() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        super::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DocsQuery {
    /// One of the page's own assets: `swagger-ui.css` or `swagger-ui-bundle.js`.
    asset: Option<String>,
}

/// Interactive API docs rendered from `/api/openapi.json`.
#[utoipa::path(
    get, path = "/api/docs", operation_id = "docs", tag = "docs",
    params(DocsQuery),
    responses(
        (status = 200, description = "The docs page (HTML), or the asset asked for",
         content_type = "text/html"),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ),
    security(()),
)]
pub async fn page(QueryParams(query): QueryParams<DocsQuery>) -> Result<Response, ApiError> {
    let Some(name) = query.asset else {
        return Ok(Html(PAGE).into_response());
    };
    let config = Arc::new(utoipa_swagger_ui::Config::from(OPENAPI_PATH));
    let file = ["swagger-ui.css", "swagger-ui-bundle.js"]
        .contains(&name.as_str())
        .then(|| utoipa_swagger_ui::serve(&name, config).ok().flatten())
        .flatten()
        .ok_or_else(|| ApiError::NotFound(format!("the docs have no asset named {name:?}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, file.content_type),
            (header::CACHE_CONTROL, "public, max-age=86400".to_owned()),
        ],
        file.bytes.into_owned(),
    )
        .into_response())
}
