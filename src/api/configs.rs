//! Configs: the YAML a session is created from. A config is private to
//! the application that created it unless created or updated as `shared`;
//! an application also reads a config its sessions use. Lists show an
//! application its own (not retired); only the creating application or the
//! admin may change, retire or delete one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::cursor;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::problems::{BodyProblems, CallerProblems, TargetProblems};
use super::validate::{Name, Tags, Text, YamlText, nullable};
use crate::audit::InvocationId;
use crate::auth::{AppCaller, AppOrAdmin};
use crate::db::configs::{self, Config, ConfigChanges, ConfigWrite, ConfigsAfter, NewConfig};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConfig {
    name: Name,
    description: Option<Text>,
    yaml_content: YamlText,
    /// String values; at most 64 KiB as JSON.
    #[serde(default)]
    tags: Tags,
    /// Other applications may read it and create sessions from it (default:
    /// only this application may).
    #[serde(default)]
    shared: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    name: Option<Name>,
    /// `null` clears the description.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<Text>>,
    /// Refused (409) while sessions of other applications use the config.
    yaml_content: Option<YamlText>,
    /// Replaces the tags: string values, at most 64 KiB as JSON.
    tags: Option<Tags>,
    /// Whether other applications may read it and create sessions from it;
    /// their existing sessions keep it either way.
    shared: Option<bool>,
    /// `true` retires it: no new sessions, no longer listed, deleted with
    /// its last session (at once if it has none). Cannot be undone.
    retired: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub(super) limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub(super) cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigPage {
    configs: Vec<Config>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

pub fn not_found(config_id: Uuid) -> ApiError {
    ApiError::NotFound(format!("config {config_id} does not exist"))
}

pub fn retired(config_id: Uuid) -> ApiError {
    ApiError::Conflict(format!(
        "config {config_id} is retired: it takes no new sessions"
    ))
}

fn settle<T>(write: ConfigWrite<T>, config_id: Uuid) -> Result<T, ApiError> {
    match write {
        ConfigWrite::Done(done) => Ok(done),
        ConfigWrite::NotFound => Err(not_found(config_id)),
        ConfigWrite::NotYours => Err(ApiError::Forbidden(format!(
            "config {config_id} belongs to another application"
        ))),
    }
}

/// Stores a config, private to the calling application unless `shared`.
/// `yaml_content` must parse as YAML (422 with the parser's line and
/// column otherwise).
#[utoipa::path(
    post, path = "/api/configs", operation_id = "create-config", tag = "configs",
    request_body = CreateConfig,
    responses(
        (status = 201, description = "Created", body = Config),
        CallerProblems, BodyProblems,
    ),
    security(("api_key" = [])),
)]
pub async fn create(
    caller: AppCaller,
    State(state): State<AppState>,
    invocation: InvocationId,
    JsonBody(body): JsonBody<CreateConfig>,
) -> Result<(StatusCode, Json<Config>), ApiError> {
    let tags = body.tags.to_value();
    let client = state.db.client().await?;
    let config = configs::insert(
        &*client,
        caller.key.hash(),
        &NewConfig {
            name: body.name.as_str(),
            description: body.description.as_ref().map(Text::as_str),
            yaml_content: body.yaml_content.as_str(),
            tags: &tags,
            shared: body.shared,
        },
        &invocation,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(config)))
}

/// The calling application's configs, newest first, a page at a time;
/// retired ones are left out.
#[utoipa::path(
    get, path = "/api/configs", operation_id = "list-configs", tag = "configs",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of configs", body = ConfigPage),
        CallerProblems, (status = 422, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    caller: AppCaller,
    State(state): State<AppState>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<ConfigPage>, ApiError> {
    let limit = cursor::limit(query.limit)?;
    let after: Option<ConfigsAfter> = query.cursor.as_deref().map(cursor::decode).transpose()?;
    let client = state.db.client().await?;
    let rows = configs::list(&*client, caller.key.hash(), after.as_ref(), limit + 1).await?;
    let (configs, next_cursor) = cursor::page(rows, limit, cursor::MAX_PAGE_BYTES, |c: &Config| {
        ConfigsAfter {
            created_at: c.created_at,
            config_id: c.config_id,
        }
    });
    Ok(Json(ConfigPage {
        configs,
        next_cursor,
    }))
}

/// One config (retired or not) the calling application may see: its own,
/// a shared one, or one its sessions use; any other is a 404.
#[utoipa::path(
    get, path = "/api/configs/{config_id}", operation_id = "get-config", tag = "configs",
    params(("config_id" = Uuid, Path, description = "The config's id")),
    responses(
        (status = 200, description = "The config", body = Config),
        CallerProblems, TargetProblems,
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    caller: AppCaller,
    State(state): State<AppState>,
    PathParams(config_id): PathParams<Uuid>,
) -> Result<Json<Config>, ApiError> {
    let client = state.db.client().await?;
    configs::get(&*client, caller.key.hash(), config_id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(config_id))
}

/// Changes `name`, `description`, `yaml_content`, `tags` and/or `shared`,
/// or retires the config; absent fields are unchanged. Only the creating
/// application or the admin (another application that may see the config:
/// 403). `yaml_content` may not change while other applications' sessions
/// use it (409): retiring may, and then the config goes with the last of
/// them.
#[utoipa::path(
    patch, path = "/api/configs/{config_id}", operation_id = "update-config", tag = "configs",
    params(("config_id" = Uuid, Path, description = "The config's id")),
    request_body = UpdateConfig,
    responses(
        (status = 200, description = "Updated", body = Config),
        CallerProblems, TargetProblems, BodyProblems, (status = 409, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn update(
    caller: AppOrAdmin,
    State(state): State<AppState>,
    invocation: InvocationId,
    PathParams(config_id): PathParams<Uuid>,
    JsonBody(body): JsonBody<UpdateConfig>,
) -> Result<Json<Config>, ApiError> {
    if body.name.is_none()
        && body.description.is_none()
        && body.yaml_content.is_none()
        && body.tags.is_none()
        && body.shared.is_none()
        && body.retired.is_none()
    {
        return Err(ApiError::Validation(
            "nothing to update: give name, description, yaml_content, tags, shared or retired"
                .to_owned(),
        ));
    }
    if body.retired == Some(false) {
        return Err(ApiError::Validation(
            "retired can only be set to true: retiring cannot be undone".to_owned(),
        ));
    }
    let tags = body.tags.as_ref().map(Tags::to_value);
    let changes = ConfigChanges {
        name: body.name.as_ref().map(Name::as_str),
        description: body
            .description
            .as_ref()
            .map(|d| d.as_ref().map(Text::as_str)),
        yaml_content: body.yaml_content.as_ref().map(YamlText::as_str),
        tags: tags.as_ref(),
        shared: body.shared,
        retire: body.retired == Some(true),
    };
    let client = state.db.client().await?;
    let write =
        configs::update(&*client, config_id, caller.writer(), &changes, &invocation).await?;
    settle(write, config_id).map(Json)
}

/// Deletes the config and every session created from it; refused (409)
/// while other applications' sessions use it (retire it instead).
#[utoipa::path(
    delete, path = "/api/configs/{config_id}", operation_id = "delete-config", tag = "configs",
    params(("config_id" = Uuid, Path, description = "The config's id")),
    responses(
        (status = 204, description = "Deleted, with its sessions"),
        CallerProblems, TargetProblems, (status = 409, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn delete(
    caller: AppOrAdmin,
    State(state): State<AppState>,
    invocation: InvocationId,
    PathParams(config_id): PathParams<Uuid>,
) -> Result<StatusCode, ApiError> {
    let client = state.db.client().await?;
    let write = configs::delete(&*client, config_id, caller.writer(), &invocation).await?;
    settle(write, config_id).map(|()| StatusCode::NO_CONTENT)
}
