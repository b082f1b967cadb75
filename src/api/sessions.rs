//! Sessions: created by a user through an application, visible to their
//! participants only.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::extract::{JsonBody, PathParams};
use crate::auth::UserCaller;
use crate::db::sessions::{self, Session, SessionView};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    config_id: Uuid,
    #[serde(default)]
    metadata: Map<String, Value>,
}

/// `POST /api/sessions`: 201 with the session and its `Location`. The caller
/// becomes its owner. 404 when the config does not exist.
pub async fn create(
    caller: UserCaller,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateSession>,
) -> Result<(StatusCode, HeaderMap, Json<Session>), ApiError> {
    let client = state.db.client().await?;
    let metadata = Value::Object(body.metadata);
    let session = sessions::create(
        &client,
        body.config_id,
        caller.user_id,
        &caller.app_id,
        &metadata,
    )
    .await?
    .ok_or_else(|| super::configs::not_found(body.config_id))?;
    let mut headers = HeaderMap::new();
    let location = format!("/api/sessions/{}", session.session_id);
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok((StatusCode::CREATED, headers, Json(session)))
}

/// `GET /api/sessions/{session_id}`: the session with its transcript and the
/// caller's role. 404 unless the caller participates.
pub async fn get(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
) -> Result<Json<SessionView>, ApiError> {
    let client = state.db.client().await?;
    sessions::read(&client, session_id, caller.user_id, &caller.app_id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(session_id))
}

/// Sessions the caller cannot see are reported exactly like missing ones.
pub fn not_found(session_id: Uuid) -> ApiError {
    ApiError::NotFound(format!("session {session_id} does not exist"))
}
