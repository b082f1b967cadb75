//! The HTTP API: one module per resource, and `router()` below, the single
//! list of routes. Every route is an Azure function: its `operation_id` is
//! the folder name in `functions/`, and a test keeps the two in step.

mod applications;
mod audit;
mod configs;
mod cursor;
mod docs;
mod events;
mod extract;
mod health;
pub mod idempotency;
mod messages;
mod numbers;
mod participants;
mod problems;
mod sessions;
mod trash;
mod user_data;
mod users;
mod validate;

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, PathItem, Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::Problem;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Amplifier sessions API",
        description = "Sessions owned by users, shared with participants who hold roles, \
                       called by registered applications. Errors are RFC 9457 problem details."
    ),
    servers((url = "/", description = "This service: every path starts with /api")),
    modifiers(&SecuritySchemes, &ProblemSchemaByName),
    components(schemas(Problem, crate::events::payloads::EventData), responses(Problem)),
    security(("api_key" = [], "bearer" = [])),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An application's key, or the admin key for /api/applications",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A user token; its user claim is a UUID"))
                    .build(),
            ),
        );
    }
}

/// The shared `Problem` response names its schema rather than repeating it,
/// so that generated clients get one `Problem` type.
struct ProblemSchemaByName;

impl Modify for ProblemSchemaByName {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        if let Some(RefOr::T(response)) = components.responses.get_mut("Problem") {
            for content in response.content.values_mut() {
                if let RefOr::T(content) = content {
                    content.schema = Some(RefOr::Ref(Ref::from_schema_name("Problem")));
                }
            }
        }
    }
}

/// Every function: the router and its OpenAPI document, from one list.
pub fn router() -> (Router<AppState>, OpenApiDoc) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::check))
        .routes(routes!(applications::create, applications::list))
        .routes(routes!(
            applications::get,
            applications::update,
            applications::delete
        ))
        .routes(routes!(applications::rotate_key))
        .routes(routes!(configs::create, configs::list))
        .routes(routes!(configs::get, configs::update, configs::delete))
        .routes(routes!(sessions::create))
        .routes(routes!(sessions::get, sessions::update, sessions::delete))
        .routes(routes!(trash::restore))
        .routes(routes!(messages::append, messages::list))
        .routes(routes!(messages::export))
        .routes(routes!(events::stream))
        .routes(routes!(events::create_ticket))
        .routes(routes!(sessions::fork))
        .routes(routes!(participants::add, participants::list))
        .routes(routes!(participants::update, participants::remove))
        .routes(routes!(users::sessions))
        .routes(routes!(trash::list))
        .routes(routes!(audit::list))
        .routes(routes!(audit::session_trail))
        .routes(routes!(user_data::erase))
        .routes(routes!(user_data::export))
        .routes(routes!(docs::openapi_json))
        .routes(routes!(docs::page))
        .split_for_parts()
}

/// The OpenAPI document of [`router`].
pub fn openapi() -> OpenApiDoc {
    router().1
}

/// One Azure function: its folder name, HTTP method and full path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Function {
    pub name: String,
    pub method: &'static str,
    pub path: String,
}

/// The functions of [`router`], read from its OpenAPI document.
pub fn functions() -> Vec<Function> {
    let mut functions = Vec::new();
    for (path, item) in openapi().paths.paths {
        let PathItem {
            get,
            put,
            post,
            delete,
            patch,
            ..
        } = item;
        let operations = [
            ("GET", get),
            ("PUT", put),
            ("POST", post),
            ("DELETE", delete),
            ("PATCH", patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                functions.push(Function {
                    name: operation.operation_id.unwrap_or_default(),
                    method,
                    path: path.clone(),
                });
            }
        }
    }
    functions
}
