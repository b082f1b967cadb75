//! Sessions: created by a user through an application, visible to their
//! participants only, changed according to `roles`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{JsonBody, PathParams};
use super::idempotency::{self, IdempotencyKey, JsonResponse};
use super::validate::{JsonObject, Message};
use crate::auth::UserCaller;
use crate::db::Guarded;
use crate::db::sessions::{self, Session, SessionChanges, SessionView};
use crate::error::{ApiError, Problem};
use crate::roles::{self, Action, Role};
use crate::state::AppState;

const MAX_MESSAGES: usize = 100;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    config_id: Uuid,
    /// Free-form; at most 64 KiB as JSON.
    #[serde(default)]
    metadata: JsonObject,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Active,
    Completed,
    Failed,
    Cancelled,
}

impl SessionStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    status: Option<SessionStatus>,
    /// Replaces the whole metadata object; at most 64 KiB as JSON.
    metadata: Option<JsonObject>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendMessages {
    /// 1 to 100 message objects, appended in order.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 100)]
    messages: Vec<Message>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Appended {
    session_id: Uuid,
    /// Transcript entries after this append.
    message_count: i32,
}

/// Sessions the caller cannot see are reported exactly like missing ones.
pub fn not_found(session_id: Uuid) -> ApiError {
    ApiError::NotFound(format!("session {session_id} does not exist"))
}

/// Maps a guarded outcome to the API's answer: 404 when the caller cannot
/// see the session, 403 when its role does not permit `action` (named by
/// `doing`), `missing()` when it does but the target was not there.
pub fn settle<T>(
    outcome: Guarded<T>,
    session_id: Uuid,
    permitted: impl FnOnce(Role) -> bool,
    doing: &str,
    missing: impl FnOnce() -> ApiError,
) -> Result<T, ApiError> {
    match outcome {
        Guarded::NotVisible => Err(not_found(session_id)),
        Guarded::Seen {
            done: Some(done), ..
        } => Ok(done),
        Guarded::Seen { role, done: None } if permitted(role) => Err(missing()),
        Guarded::Seen { role, .. } => Err(ApiError::Forbidden(format!(
            "a session {} may not {doing}",
            role.as_str()
        ))),
    }
}

fn settle_action<T>(
    outcome: Guarded<T>,
    session_id: Uuid,
    action: Action,
    doing: &str,
) -> Result<T, ApiError> {
    settle(
        outcome,
        session_id,
        |role| roles::permits(role, action),
        doing,
        || not_found(session_id),
    )
}

async fn create_in(
    client: &impl GenericClient,
    caller: &UserCaller,
    body: &CreateSession,
) -> Result<JsonResponse, ApiError> {
    let metadata = body.metadata.to_value();
    let session = sessions::create(
        client,
        body.config_id,
        caller.user_id,
        &caller.app_id,
        &metadata,
    )
    .await?
    .ok_or_else(|| super::configs::not_found(body.config_id))?;
    let location = format!("/api/sessions/{}", session.session_id);
    Ok(JsonResponse::new(
        StatusCode::CREATED,
        &session,
        Some(location),
    ))
}

/// Creates a session from a config; the calling user becomes its owner.
/// With `Idempotency-Key`, a retry returns the first response instead of
/// creating another session.
#[utoipa::path(
    post, path = "/api/sessions", operation_id = "create-session", tag = "sessions",
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe for 24 hours (1-255 visible ASCII characters)")),
    request_body = CreateSession,
    responses(
        (status = 201, description = "Created", body = Session,
         headers(("Location" = String, description = "The new session's URL"))),
        (status = 400, response = Problem), (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 413, response = Problem), (status = 415, response = Problem),
        (status = 422, response = Problem), (status = 503, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn create(
    caller: UserCaller,
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<CreateSession>,
) -> Result<Response, ApiError> {
    let mut client = state.db.client().await?;
    let response = match key {
        None => create_in(&client, &caller, &body).await?,
        Some(key) => {
            let hash = idempotency::request_hash("POST /api/sessions", caller.user_id, &body);
            idempotency::run_once(&mut client, &caller.app_id, &key, &hash, async |tx| {
                create_in(tx, &caller, &body).await
            })
            .await?
        }
    };
    Ok(response.into_response())
}

/// The session with its transcript and the caller's role. Records the
/// access in `last_accessed_at`.
#[utoipa::path(
    get, path = "/api/sessions/{session_id}", operation_id = "get-session", tag = "sessions",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 400, response = Problem), (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 503, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
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

/// Changes `status` and/or replaces `metadata`. Owners and editors.
#[utoipa::path(
    patch, path = "/api/sessions/{session_id}", operation_id = "update-session", tag = "sessions",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    request_body = UpdateSession,
    responses(
        (status = 200, description = "Updated", body = Session),
        (status = 400, response = Problem), (status = 401, response = Problem),
        (status = 403, response = Problem), (status = 404, response = Problem),
        (status = 413, response = Problem), (status = 415, response = Problem),
        (status = 422, response = Problem), (status = 503, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn update(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    JsonBody(body): JsonBody<UpdateSession>,
) -> Result<Json<Session>, ApiError> {
    if body.status.is_none() && body.metadata.is_none() {
        return Err(ApiError::Validation(
            "nothing to update: give status or metadata".to_owned(),
        ));
    }
    let metadata = body.metadata.as_ref().map(JsonObject::to_value);
    let changes = SessionChanges {
        status: body.status.map(SessionStatus::as_str),
        metadata: metadata.as_ref(),
    };
    let permitted = roles::roles_permitted(Action::Update);
    let client = state.db.client().await?;
    let outcome =
        sessions::update(&client, session_id, caller.user_id, &permitted, &changes).await?;
    settle_action(outcome, session_id, Action::Update, "update it").map(Json)
}

/// Deletes the session with its participants and transcript. Owners only.
#[utoipa::path(
    delete, path = "/api/sessions/{session_id}", operation_id = "delete-session", tag = "sessions",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = Problem), (status = 401, response = Problem),
        (status = 403, response = Problem), (status = 404, response = Problem),
        (status = 503, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn delete(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
) -> Result<StatusCode, ApiError> {
    let permitted = roles::roles_permitted(Action::Delete);
    let client = state.db.client().await?;
    let outcome = sessions::delete(&client, session_id, caller.user_id, &permitted).await?;
    settle_action(outcome, session_id, Action::Delete, "delete it")?;
    Ok(StatusCode::NO_CONTENT)
}

async fn append_in(
    client: &impl GenericClient,
    caller: &UserCaller,
    session_id: Uuid,
    body: &AppendMessages,
) -> Result<JsonResponse, ApiError> {
    let messages =
        serde_json::to_value(&body.messages).map_err(|e| ApiError::Internal(e.to_string()))?;
    let permitted = roles::roles_permitted(Action::AppendMessages);
    let outcome =
        sessions::append_messages(client, session_id, caller.user_id, &permitted, &messages)
            .await?;
    let message_count = settle_action(
        outcome,
        session_id,
        Action::AppendMessages,
        "append messages",
    )?;
    Ok(JsonResponse::new(
        StatusCode::OK,
        &Appended {
            session_id,
            message_count,
        },
        None,
    ))
}

/// Appends messages to the transcript, in one statement (concurrent appends
/// all land). Owners and editors; bumps the caller's `last_active_at`.
/// With `Idempotency-Key`, a retry does not append again.
#[utoipa::path(
    post, path = "/api/sessions/{session_id}/messages", operation_id = "append-messages",
    tag = "sessions",
    params(
        ("session_id" = Uuid, Path, description = "The session's id"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "Makes retries safe for 24 hours (1-255 visible ASCII characters)"),
    ),
    request_body = AppendMessages,
    responses(
        (status = 200, description = "Appended", body = Appended),
        (status = 400, response = Problem), (status = 401, response = Problem),
        (status = 403, response = Problem), (status = 404, response = Problem),
        (status = 413, response = Problem), (status = 415, response = Problem),
        (status = 422, response = Problem), (status = 503, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn append_messages(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<AppendMessages>,
) -> Result<Response, ApiError> {
    if !(1..=MAX_MESSAGES).contains(&body.messages.len()) {
        return Err(ApiError::Validation(format!(
            "messages must hold 1 to {MAX_MESSAGES} objects"
        )));
    }
    let mut client = state.db.client().await?;
    let response = match key {
        None => append_in(&client, &caller, session_id, &body).await?,
        Some(key) => {
            let route = format!("POST /api/sessions/{session_id}/messages");
            let hash = idempotency::request_hash(&route, caller.user_id, &body);
            idempotency::run_once(&mut client, &caller.app_id, &key, &hash, async |tx| {
                append_in(tx, &caller, session_id, &body).await
            })
            .await?
        }
    };
    Ok(response.into_response())
}
