//! Configs: the YAML a session is created from. Any application may read
//! them; the creating application is recorded.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

use super::extract::{JsonBody, PathParams};
use super::validate::{Name, YamlText};
use crate::auth::AppCaller;
use crate::db::configs::{self, Config, NewConfig};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConfig {
    name: Name,
    description: Option<String>,
    yaml_content: YamlText,
    #[serde(default)]
    tags: HashMap<String, String>,
}

/// `POST /api/configs`: 201 with the stored config; 422 (with the parser's
/// line and column) when `yaml_content` is not YAML.
pub async fn create(
    caller: AppCaller,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateConfig>,
) -> Result<(StatusCode, Json<Config>), ApiError> {
    let tags = serde_json::to_value(&body.tags).map_err(|e| ApiError::Internal(e.to_string()))?;
    let client = state.db.client().await?;
    let config = configs::insert(
        &client,
        &caller.app_id,
        &NewConfig {
            name: body.name.as_str(),
            description: body.description.as_deref(),
            yaml_content: body.yaml_content.as_str(),
            tags: &tags,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(config)))
}

/// `GET /api/configs/{config_id}`.
pub async fn get(
    _: AppCaller,
    State(state): State<AppState>,
    PathParams(config_id): PathParams<Uuid>,
) -> Result<Json<Config>, ApiError> {
    let client = state.db.client().await?;
    configs::get(&client, config_id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(config_id))
}

pub fn not_found(config_id: Uuid) -> ApiError {
    ApiError::NotFound(format!("config {config_id} does not exist"))
}
