//! One user's data: erasure (the admin) and export (the user themself).

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{PathParams, QueryParams};
use super::problems::CallerProblems;
use super::users::UserRef;
use crate::audit::InvocationId;
use crate::auth::{Admin, UserCaller};
use crate::db::user_export;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::user_data::erasure::{self, Receipt};
use crate::user_data::export;

/// How long an erasure runs by default before it answers (completed or
/// not): well within the 230 s Azure's front end waits for an answer.
const DEFAULT_ERASURE_SECONDS: u64 = 100;
const MAX_ERASURE_SECONDS: u64 = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EraseQuery {
    /// Start no batch after this many seconds (0 to 200, default 100; one
    /// batch always runs): then the answer says `completed: false`, and
    /// the same call continues where this one stopped.
    #[param(minimum = 0, maximum = 200)]
    max_seconds: Option<u64>,
}

/// Erases a user: sessions only they take part in are deleted for good;
/// where they were the last owner, the earliest-joined editor (else
/// viewer) becomes owner; their participations are removed; messages they
/// appended that others still read become tombstones that keep their
/// `seq` (and those sessions' search no longer finds their words); their
/// `users` row, idempotency records, stream tickets and rate-limit counts
/// are deleted; audit rows no longer name them. Works in batches (each a
/// short transaction); running it again after an interruption continues,
/// and running it for a user with nothing left answers zeros. Writes a
/// `user.erased` audit row named by the receipt's `erasure_id`. Admin only.
#[utoipa::path(
    delete, path = "/api/users/{user_id}", operation_id = "erase-user", tag = "users",
    params(("user_id" = Uuid, Path, description = "The user to erase"), EraseQuery),
    responses(
        (status = 200, description = "What was done; `completed: false` means: call again",
         body = Receipt),
        CallerProblems, (status = 400, response = Problem), (status = 409, response = Problem),
        (status = 422, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn erase(
    _: Admin,
    State(state): State<AppState>,
    InvocationId(invocation_id): InvocationId,
    PathParams(user_id): PathParams<Uuid>,
    QueryParams(query): QueryParams<EraseQuery>,
) -> Result<Json<Receipt>, ApiError> {
    let seconds = query.max_seconds.unwrap_or(DEFAULT_ERASURE_SECONDS);
    if seconds > MAX_ERASURE_SECONDS {
        return Err(ApiError::Validation(format!(
            "max_seconds must be between 0 and {MAX_ERASURE_SECONDS}"
        )));
    }
    let receipt = erasure::erase(
        &state.db,
        user_id,
        Duration::from_secs(seconds),
        invocation_id.as_deref(),
    )
    .await?;
    Ok(Json(receipt))
}

/// The caller's own data as NDJSON, one object per line with its `kind`:
/// `user` (their row: first and last seen), then a `session` per session
/// they participate in (as list-user-sessions shows it, whichever
/// application's, not those in the trash), then a `message` per message
/// they appended (`session_id`, `seq`, `created_at`, `app_id`, `message`),
/// wherever it is kept (also sessions they left). Streamed a page at a
/// time as the client reads (memory stays flat). Only one's own.
#[utoipa::path(
    get, path = "/api/users/{user_id}/export", operation_id = "export-user", tag = "users",
    params(("user_id" = String, Path, description = "`me` or the caller's own user id")),
    responses(
        (status = 200, description = "The user, their sessions, their messages: one JSON object per line",
         content_type = "application/x-ndjson"),
        CallerProblems, (status = 400, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn export(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(user): PathParams<UserRef>,
) -> Result<Response, ApiError> {
    let user_id = user.id_or(caller.user_id);
    if user_id != caller.user_id {
        return Err(ApiError::Forbidden(
            "a user may only export their own data".to_owned(),
        ));
    }
    let first = {
        let client = state.db.client().await?;
        user_export::user(&*client, caller.key.hash(), user_id).await?
    };
    let body = export::lines(state, user_id, first);
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}
