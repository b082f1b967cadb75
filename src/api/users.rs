//! A user's own view across sessions.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{PathParams, QueryParams};
use crate::auth::UserCaller;
use crate::db::participants::{self, UserSession};
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

/// `me` or a user id, as the `{user_id}` path segment.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct UserRef(Option<Uuid>);

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct UserSessions {
    user_id: Uuid,
    sessions: Vec<UserSession>,
}

/// `GET /api/users/{user_id}/sessions`: the sessions the caller participates
/// in, most recently active first; never transcripts. Only for oneself (403).
pub async fn sessions(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(user): PathParams<UserRef>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<UserSessions>, ApiError> {
    let user_id = user.0.unwrap_or(caller.user_id);
    if user_id != caller.user_id {
        return Err(ApiError::Forbidden(
            "a user may only list their own sessions".to_owned(),
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let client = state.db.client().await?;
    let sessions = participants::sessions_of_user(&client, user_id, limit).await?;
    Ok(Json(UserSessions { user_id, sessions }))
}
