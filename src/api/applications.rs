//! Applications: the API's clients. Admin only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::extract::JsonBody;
use super::validate::{AppId, Name};
use crate::auth::{Admin, api_key};
use crate::db::applications;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApplication {
    app_id: AppId,
    app_name: Name,
    #[serde(default)]
    settings: Map<String, Value>,
}

/// The only response that ever contains the key.
#[derive(Debug, Serialize)]
pub struct CreatedApplication {
    app_id: String,
    app_name: String,
    api_key: String,
    is_active: bool,
    created_at: DateTime<Utc>,
}

/// `POST /api/applications`: registers an application and returns its key,
/// once. 409 when the `app_id` is taken.
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateApplication>,
) -> Result<(StatusCode, Json<CreatedApplication>), ApiError> {
    let (key, key_hash) = api_key::generate();
    let client = state.db.client().await?;
    let settings = Value::Object(body.settings);
    let app = applications::insert(
        &client,
        body.app_id.as_str(),
        body.app_name.as_str(),
        &key_hash,
        &settings,
    )
    .await?
    .ok_or_else(|| {
        ApiError::Conflict(format!(
            "application {} already exists",
            body.app_id.as_str()
        ))
    })?;
    tracing::info!(app_id = %app.app_id, "application created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedApplication {
            app_id: app.app_id,
            app_name: app.app_name,
            api_key: key,
            is_active: app.is_active,
            created_at: app.created_at,
        }),
    ))
}
