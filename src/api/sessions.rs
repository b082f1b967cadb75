//! Sessions: created by a user through an application, visible to their
//! participants only, changed according to `roles`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{JsonBody, PathParams, QueryParams};
use super::idempotency::{self, IdempotencyKey, JsonResponse};
use super::problems::{BodyProblems, CallerProblems, ReplayProblems, TargetProblems};
use super::validate::JsonObject;
use crate::audit::InvocationId;
use crate::auth::UserCaller;
use crate::db::Guarded;
use crate::db::sessions::{self, Created, Forked, Session, SessionChanges, SessionView};
use crate::db::trash::{self, OwnerAct};
use crate::error::{ApiError, Problem};
use crate::roles::{self, Action, Role};
use crate::search;
use crate::state::AppState;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    config_id: Uuid,
    /// Free-form; at most 64 KiB as JSON.
    #[serde(default)]
    metadata: JsonObject,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkSession {
    /// The fork holds messages 1 to this `seq` (default: all).
    #[schema(minimum = 0)]
    up_to_seq: Option<i32>,
    /// The new session's metadata (default: the source's); at most 64 KiB
    /// as JSON.
    metadata: Option<JsonObject>,
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
    pub fn as_str(self) -> &'static str {
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

pub fn settle_action<T>(
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
    let words = search::document(&search::words(&metadata));
    let session = match sessions::create(
        client,
        caller.key.hash(),
        body.config_id,
        caller.user_id,
        &metadata,
        &words,
    )
    .await?
    {
        Created::Done(session) => session,
        Created::NoConfig => return Err(super::configs::not_found(body.config_id)),
        Created::ConfigRetired => return Err(super::configs::retired(body.config_id)),
    };
    let location = format!("/api/sessions/{}", session.session_id);
    Ok(JsonResponse::new(
        StatusCode::CREATED,
        &session,
        session.session_id,
        Some(location),
    ))
}

/// Creates a session from a config; the calling user becomes its owner.
/// The config must be the calling application's or shared (else 404), and
/// not retired (409). With `Idempotency-Key`, a retry by the same user
/// returns the first response instead of creating another session (410 if
/// that session was deleted since).
#[utoipa::path(
    post, path = "/api/sessions", operation_id = "create-session", tag = "sessions",
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries safe for 24 hours (1-255 visible ASCII characters)")),
    request_body = CreateSession,
    responses(
        (status = 201, description = "Created", body = Session,
         headers(("Location" = String, description = "The new session's URL"))),
        CallerProblems, TargetProblems, BodyProblems, ReplayProblems,
        (status = 409, response = Problem),
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
        None => create_in(&*client, &caller, &body).await?,
        Some(key) => {
            let hash = idempotency::request_hash("POST /api/sessions", caller.user_id, &body);
            idempotency::run_once(&mut client, &caller, &key, &hash, async |tx| {
                create_in(tx, &caller, &body).await
            })
            .await?
        }
    };
    Ok(response.into_response())
}

/// The session (with `message_count` and `last_seq`, never the transcript:
/// read that with list-messages or export-session) and the caller's role.
/// Records the access in `last_accessed_at`.
#[utoipa::path(
    get, path = "/api/sessions/{session_id}", operation_id = "get-session", tag = "sessions",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        CallerProblems, TargetProblems,
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn get(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
) -> Result<Json<SessionView>, ApiError> {
    let client = state.db.client().await?;
    sessions::read(&*client, caller.key.hash(), session_id, caller.user_id)
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
        CallerProblems, TargetProblems, BodyProblems,
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
    let words = metadata
        .as_ref()
        .map(|m| search::document(&search::words(m)));
    let changes = SessionChanges {
        status: body.status.map(SessionStatus::as_str),
        metadata: metadata.as_ref().zip(words.as_deref()),
    };
    let permitted = roles::roles_permitted(Action::Update);
    let client = state.db.client().await?;
    let outcome = sessions::update(
        &*client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        &permitted,
        &changes,
    )
    .await?;
    settle_action(outcome, session_id, Action::Update, "update it").map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// `true`: delete the session for good now, with its participants and
    /// transcript, whether it is in the trash or not (default `false`:
    /// move it to the trash).
    #[serde(default)]
    permanent: bool,
}

/// Moves the session to the trash: from then on it is invisible to every
/// function (404, not listed, not found by search; open event streams end
/// with `deleted`) except its owners' list-trash and restore-session, for
/// `TRASH_RETENTION_DAYS`, after which the purge deletes it for good. With
/// `permanent=true` the session is deleted for good at once, from the
/// trash or not. Owners only; each is audited (`session.trashed`,
/// `session.deleted`). Deleting a session that is already in the trash
/// without `permanent` is a 404, as deleting a deleted session was.
#[utoipa::path(
    delete, path = "/api/sessions/{session_id}", operation_id = "delete-session", tag = "sessions",
    params(("session_id" = Uuid, Path, description = "The session's id"), DeleteQuery),
    responses(
        (status = 204, description = "Moved to the trash (or, with `permanent=true`, deleted)"),
        CallerProblems, TargetProblems, (status = 422, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn delete(
    caller: UserCaller,
    invocation: InvocationId,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    QueryParams(query): QueryParams<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let permitted = roles::roles_permitted(Action::Delete);
    let client = state.db.client().await?;
    let act = OwnerAct {
        key: caller.key.hash(),
        session_id,
        user: caller.user_id,
        invocation: &invocation,
        permitted: &permitted,
    };
    let outcome = if query.permanent {
        trash::delete_permanently(&*client, &act).await?
    } else {
        trash::trash(&*client, &act).await?
    };
    settle_action(outcome, session_id, Action::Delete, "delete it")?;
    Ok(StatusCode::NO_CONTENT)
}

async fn fork_in(
    client: &impl GenericClient,
    state: &AppState,
    caller: &UserCaller,
    session_id: Uuid,
    body: &ForkSession,
) -> Result<JsonResponse, ApiError> {
    let metadata = body.metadata.as_ref().map(JsonObject::to_value);
    let words = metadata
        .as_ref()
        .map(|m| search::document(&search::words(m)));
    let outcome = sessions::fork(
        client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        body.up_to_seq,
        metadata.as_ref().zip(words.as_deref()),
        state.settings.limits.max_fork_depth,
    )
    .await?;
    match settle_action(outcome, session_id, Action::Read, "read it")? {
        Forked::Done(session) => {
            let location = format!("/api/sessions/{}", session.session_id);
            Ok(JsonResponse::new(
                StatusCode::CREATED,
                &session,
                session.session_id,
                Some(location),
            ))
        }
        Forked::BeyondLast { last_seq } => Err(ApiError::Validation(format!(
            "up_to_seq is beyond the session's last message ({last_seq})"
        ))),
        Forked::ConfigPrivate { config_id } => Err(ApiError::Forbidden(format!(
            "this session's config {config_id} is private to another application: only that \
             application may start sessions from it"
        ))),
        Forked::ConfigRetired { config_id } => Err(super::configs::retired(config_id)),
        Forked::TooDeep { limit } => Err(ApiError::Conflict(format!(
            "messages up to up_to_seq already come from {limit} sessions (this one and those \
             it was forked from), the most a fork may read from (SESSION_MAX_FORK_DEPTH): \
             fork at an earlier message"
        ))),
    }
}

/// A new session from this one: the same config, the caller as its owner,
/// messages 1 to `up_to_seq` (default: all) under the same numbers, and
/// `parent_session_id`/`forked_from_seq` saying where it came from. The
/// fork shares those messages rather than copying them, so it costs the
/// same whatever the transcript's length; what either session appends
/// afterwards is its own. Any participant may fork what they can read. A
/// fork's messages may come from at most `SESSION_MAX_FORK_DEPTH`
/// sessions (it, its source, and the source's own ancestors that added
/// messages before the cut): beyond, 409. A fork is a new session of the
/// same config: refused (403) when that config is private to another
/// application than the caller's, and (409) when it is retired. With
/// `Idempotency-Key`, a retry by the same user returns the first fork
/// (410 if that fork was deleted since).
#[utoipa::path(
    post, path = "/api/sessions/{session_id}/fork", operation_id = "fork-session",
    tag = "sessions",
    params(
        ("session_id" = Uuid, Path, description = "The session to fork"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "Makes retries safe for 24 hours (1-255 visible ASCII characters)"),
    ),
    request_body = ForkSession,
    responses(
        (status = 201, description = "Forked", body = Session,
         headers(("Location" = String, description = "The new session's URL"))),
        CallerProblems, TargetProblems, BodyProblems, ReplayProblems,
        (status = 409, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn fork(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<ForkSession>,
) -> Result<Response, ApiError> {
    if body.up_to_seq.is_some_and(|seq| seq < 0) {
        return Err(ApiError::Validation(
            "up_to_seq must be 0 or more".to_owned(),
        ));
    }
    let mut client = state.db.client().await?;
    let response = match key {
        None => fork_in(&*client, &state, &caller, session_id, &body).await?,
        Some(key) => {
            let route = format!("POST /api/sessions/{session_id}/fork");
            let hash = idempotency::request_hash(&route, caller.user_id, &body);
            idempotency::run_once(&mut client, &caller, &key, &hash, async |tx| {
                fork_in(tx, &state, &caller, session_id, &body).await
            })
            .await?
        }
    };
    Ok(response.into_response())
}
