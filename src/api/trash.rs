//! The trash: delete-session (`sessions::delete`) moves a session here; its
//! owners list their trash and restore from it. Anyone else, and every
//! other function, finds a trashed session as if it did not exist.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::cursor;
use super::extract::{PathParams, QueryParams};
use super::problems::{CallerProblems, TargetProblems};
use super::sessions::not_found;
use super::users::UserRef;
use crate::audit::InvocationId;
use crate::auth::UserCaller;
use crate::db::sessions::SessionView;
use crate::db::trash::{self, OwnerAct, TrashAfter, TrashedSession};
use crate::error::{ApiError, Problem};
use crate::roles::{self, Action};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrashQuery {
    /// Page size, 1 to 100 (default 50); a page also ends before 4 MiB.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trash {
    user_id: Uuid,
    sessions: Vec<TrashedSession>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The sessions in the caller's trash: those deleted (not permanently) in
/// which the caller is an owner, most recently deleted first, a page at a
/// time, each with `trashed_at` and `purge_after` (`trashed_at` plus
/// `TRASH_RETENTION_DAYS`: after it, the purge may delete it for good).
/// Only one's own.
#[utoipa::path(
    get, path = "/api/users/{user_id}/trash", operation_id = "list-trash", tag = "users",
    params(
        ("user_id" = String, Path, description = "`me` or the caller's own user id"),
        TrashQuery,
    ),
    responses(
        (status = 200, description = "A page of trashed sessions", body = Trash),
        CallerProblems, (status = 400, response = Problem), (status = 422, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn list(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(user): PathParams<UserRef>,
    QueryParams(query): QueryParams<TrashQuery>,
) -> Result<Json<Trash>, ApiError> {
    let user_id = user.0.unwrap_or(caller.user_id);
    if user_id != caller.user_id {
        return Err(ApiError::Forbidden(
            "a user may only list their own trash".to_owned(),
        ));
    }
    let limit = cursor::limit(query.limit)?;
    let after: Option<TrashAfter> = query.cursor.as_deref().map(cursor::decode).transpose()?;
    let client = state.db.client().await?;
    let rows = trash::list(
        &*client,
        caller.key.hash(),
        user_id,
        after.as_ref(),
        &roles::roles_permitted(Action::Delete),
        i32::try_from(state.settings.lifecycle.trash_retention_days).unwrap_or(i32::MAX),
        limit + 1,
    )
    .await?;
    let (sessions, next_cursor) =
        cursor::page(rows, limit, cursor::MAX_PAGE_BYTES, |s: &TrashedSession| {
            TrashAfter {
                trashed_at: s.trashed_at,
                session_id: s.session.session_id,
            }
        });
    Ok(Json(Trash {
        user_id,
        sessions,
        next_cursor,
    }))
}

/// Takes the session out of the trash, as it was when deleted, and returns
/// it as get-session does. Owners only; audited (`session.restored`). A
/// session that is not in the trash, does not exist, or in which the
/// caller is not an owner is a 404 alike. Restoring counts as activity (it
/// sets `updated_at`), so the retention starts again.
#[utoipa::path(
    post, path = "/api/sessions/{session_id}/restore", operation_id = "restore-session",
    tag = "sessions",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The restored session", body = SessionView),
        CallerProblems, TargetProblems,
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn restore(
    caller: UserCaller,
    invocation: InvocationId,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
) -> Result<Json<SessionView>, ApiError> {
    let client = state.db.client().await?;
    let act = OwnerAct {
        key: caller.key.hash(),
        session_id,
        user: caller.user_id,
        invocation: &invocation,
        permitted: &roles::roles_permitted(Action::Delete),
    };
    trash::restore(&*client, &act)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(session_id))
}
