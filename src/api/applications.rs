//! Applications: the API's clients. Admin only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{JsonBody, PathParams};
use super::problems::{BodyProblems, CallerProblems, TargetProblems};
use super::validate::{AppId, AppSettings, Name};
use crate::audit::InvocationId;
use crate::auth::{Admin, api_key};
use crate::db::applications::{self, Application, ApplicationChanges, Taken};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApplication {
    app_id: AppId,
    app_name: Name,
    /// Free-form settings; at most 64 KiB as JSON. Its `rate_limits`
    /// object overrides the rate limits for this application:
    /// `requests_per_minute` (one user), `writes_per_minute` (one user's
    /// writes), `app_requests_per_minute` (all its requests); 0 is
    /// unlimited, and instances apply a change within a sync interval. Its
    /// `retention` object, `{"max_session_age_days": n}`, overrides
    /// MAX_SESSION_AGE_DAYS for the sessions this application creates
    /// (0 keeps them forever).
    #[serde(default)]
    settings: AppSettings,
}

/// The only response that ever contains a key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationWithKey {
    app_id: String,
    app_name: String,
    /// Shown once; only its SHA-256 hash is stored.
    api_key: String,
    is_active: bool,
    created_at: DateTime<Utc>,
}

impl ApplicationWithKey {
    fn new(app: Application, api_key: String) -> Self {
        Self {
            app_id: app.app_id,
            app_name: app.app_name,
            api_key,
            is_active: app.is_active,
            created_at: app.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationList {
    applications: Vec<Application>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApplication {
    app_name: Option<Name>,
    is_active: Option<bool>,
    /// Replaces the settings (see create-application for `rate_limits`
    /// and `retention`);
    /// at most 64 KiB as JSON.
    settings: Option<AppSettings>,
}

fn not_found(app_id: &str) -> ApiError {
    ApiError::NotFound(format!("application {app_id} does not exist"))
}

/// Registers an application and returns its key, once.
#[utoipa::path(
    post, path = "/api/applications", operation_id = "create-application", tag = "applications",
    request_body = CreateApplication,
    responses(
        (status = 201, description = "Created", body = ApplicationWithKey),
        CallerProblems, BodyProblems, (status = 409, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    invocation: InvocationId,
    JsonBody(body): JsonBody<CreateApplication>,
) -> Result<(StatusCode, Json<ApplicationWithKey>), ApiError> {
    let (key, key_hash) = api_key::generate();
    let client = state.db.client().await?;
    let settings = body.settings.to_value();
    let app = applications::insert(
        &*client,
        body.app_id.as_str(),
        body.app_name.as_str(),
        &key_hash,
        &settings,
        &invocation,
    )
    .await?
    .map_err(|taken| {
        let app_id = body.app_id.as_str();
        ApiError::Conflict(match taken {
            Taken::InUse => format!("application {app_id} already exists"),
            Taken::Retired => format!(
                "application id {app_id} belonged to a deleted application; ids are never reused"
            ),
        })
    })?;
    tracing::info!(app_id = %app.app_id, "application created");
    Ok((StatusCode::CREATED, Json(ApplicationWithKey::new(app, key))))
}

/// Every application, oldest first; never keys or key hashes.
#[utoipa::path(
    get, path = "/api/applications", operation_id = "list-applications", tag = "applications",
    responses(
        (status = 200, description = "All applications", body = ApplicationList),
        CallerProblems,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<ApplicationList>, ApiError> {
    let client = state.db.client().await?;
    Ok(Json(ApplicationList {
        applications: applications::list(&*client).await?,
    }))
}

/// One application.
#[utoipa::path(
    get, path = "/api/applications/{app_id}", operation_id = "get-application", tag = "applications",
    params(("app_id" = String, Path, description = "The application's id")),
    responses(
        (status = 200, description = "The application", body = Application),
        CallerProblems, (status = 404, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn get(
    _: Admin,
    State(state): State<AppState>,
    PathParams(app_id): PathParams<String>,
) -> Result<Json<Application>, ApiError> {
    let client = state.db.client().await?;
    applications::get(&*client, &app_id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&app_id))
}

/// Changes `app_name`, `is_active` and/or `settings` (absent or `null`:
/// unchanged). A deactivated application's key is refused at once.
#[utoipa::path(
    patch, path = "/api/applications/{app_id}", operation_id = "update-application", tag = "applications",
    params(("app_id" = String, Path, description = "The application's id")),
    request_body = UpdateApplication,
    responses(
        (status = 200, description = "Updated", body = Application),
        CallerProblems, TargetProblems, BodyProblems,
    ),
    security(("api_key" = [])),
)]
pub async fn update(
    _: Admin,
    State(state): State<AppState>,
    invocation: InvocationId,
    PathParams(app_id): PathParams<String>,
    JsonBody(body): JsonBody<UpdateApplication>,
) -> Result<Json<Application>, ApiError> {
    if body.app_name.is_none() && body.is_active.is_none() && body.settings.is_none() {
        return Err(ApiError::Validation(
            "nothing to update: give app_name, is_active or settings".to_owned(),
        ));
    }
    let settings = body.settings.as_ref().map(AppSettings::to_value);
    let client = state.db.client().await?;
    let changes = ApplicationChanges {
        app_name: body.app_name.as_ref().map(Name::as_str),
        is_active: body.is_active,
        settings: settings.as_ref(),
    };
    let updated = applications::update(&*client, &app_id, &changes, &invocation)
        .await?
        .ok_or_else(|| not_found(&app_id))?;
    if body.is_active == Some(false) {
        state.known_keys.forget_all();
    }
    Ok(Json(updated))
}

/// Issues a new key; the old one is refused from this moment.
#[utoipa::path(
    post, path = "/api/applications/{app_id}/rotate-key", operation_id = "rotate-application-key",
    tag = "applications",
    params(("app_id" = String, Path, description = "The application's id")),
    responses(
        (status = 200, description = "The new key, shown once", body = ApplicationWithKey),
        CallerProblems, (status = 404, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn rotate_key(
    _: Admin,
    State(state): State<AppState>,
    invocation: InvocationId,
    PathParams(app_id): PathParams<String>,
) -> Result<Json<ApplicationWithKey>, ApiError> {
    let (key, key_hash) = api_key::generate();
    let client = state.db.client().await?;
    let app = applications::rotate_key(&*client, &app_id, &key_hash, &invocation)
        .await?
        .ok_or_else(|| not_found(&app_id))?;
    state.known_keys.forget_all();
    tracing::info!(app_id = %app.app_id, "application key rotated");
    Ok(Json(ApplicationWithKey::new(app, key)))
}

/// Deletes the application: its key is refused at once and its id is never
/// registered again. Its configs and sessions stay.
#[utoipa::path(
    delete, path = "/api/applications/{app_id}", operation_id = "delete-application", tag = "applications",
    params(("app_id" = String, Path, description = "The application's id")),
    responses(
        (status = 204, description = "Deleted"),
        CallerProblems, (status = 404, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    invocation: InvocationId,
    PathParams(app_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let client = state.db.client().await?;
    if applications::delete(&*client, &app_id, &invocation).await? {
        state.known_keys.forget_all();
        tracing::info!(%app_id, "application deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&app_id))
    }
}
