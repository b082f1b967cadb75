//! A user's own view across sessions.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::cursor;
use super::extract::{PathParams, QueryParams};
use super::problems::CallerProblems;
use super::sessions::SessionStatus;
use crate::auth::UserCaller;
use crate::db::participants::{self, SessionFilter, UserSession, UserSessionsAfter};
use crate::error::{ApiError, Problem};
use crate::search::Query;
use crate::state::AppState;

/// `me` or a user id, as the `{user_id}` path segment.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct UserRef(pub(super) Option<Uuid>);

impl TryFrom<String> for UserRef {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value == "me" {
            return Ok(Self(None));
        }
        Uuid::parse_str(&value)
            .map(|id| Self(Some(id)))
            .map_err(|_| format!("user_id must be `me` or a UUID, not {value:?}"))
    }
}

impl UserRef {
    /// The user named, `me` being `caller`.
    pub fn id_or(&self, caller: Uuid) -> Uuid {
        self.0.unwrap_or(caller)
    }
}

/// The longest text query accepted.
const MAX_QUERY_CHARS: usize = 256;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 50); a page also ends before 4 MiB.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page (pass the same filters).
    cursor: Option<String>,
    /// Only sessions with this status.
    status: Option<SessionStatus>,
    /// Only sessions created from this config.
    config_id: Option<Uuid>,
    /// Only sessions whose messages or metadata contain all these words
    /// (anywhere in the session; in string values; any case; whole words,
    /// no stemming) and none of the `-excluded` ones. Words are runs of
    /// letters and digits: anything else separates them. At most 16 words.
    #[param(min_length = 1, max_length = 256)]
    q: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserSessions {
    user_id: Uuid,
    sessions: Vec<UserSession>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The sessions the caller participates in, most recently active first
/// (never-active last), a page at a time; never transcripts. Only one's
/// own. Filters: `status`, `config_id`, and `q`, full-text search over the
/// string values of each session's messages and metadata.
#[utoipa::path(
    get, path = "/api/users/{user_id}/sessions", operation_id = "list-user-sessions", tag = "users",
    params(
        ("user_id" = String, Path, description = "`me` or the caller's own user id"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "A page of sessions", body = UserSessions),
        CallerProblems, (status = 400, response = Problem), (status = 422, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn sessions(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(user): PathParams<UserRef>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<UserSessions>, ApiError> {
    let user_id = user.id_or(caller.user_id);
    if user_id != caller.user_id {
        return Err(ApiError::Forbidden(
            "a user may only list their own sessions".to_owned(),
        ));
    }
    let limit = cursor::limit(query.limit)?;
    let after: Option<UserSessionsAfter> =
        query.cursor.as_deref().map(cursor::decode).transpose()?;
    let words = match &query.q {
        Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
            return Err(ApiError::Validation(format!(
                "q must be at most {MAX_QUERY_CHARS} characters"
            )));
        }
        Some(q) => Some(Query::parse(q).map_err(ApiError::Validation)?),
        None => None,
    };
    let filter = SessionFilter {
        status: query.status.map(SessionStatus::as_str),
        config_id: query.config_id,
        query: words.as_ref(),
    };
    let client = state.db.client().await?;
    let rows = participants::sessions_of_user(
        &*client,
        caller.key.hash(),
        user_id,
        after.as_ref(),
        &filter,
        limit + 1,
    )
    .await?;
    let (sessions, next_cursor) =
        cursor::page(rows, limit, cursor::MAX_PAGE_BYTES, |s: &UserSession| {
            UserSessionsAfter {
                last_active_at: s.last_active_at,
                session_id: s.session_id,
            }
        });
    Ok(Json(UserSessions {
        user_id,
        sessions,
        next_cursor,
    }))
}
