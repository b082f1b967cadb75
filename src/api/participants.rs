//! Participants of a session and their roles.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{JsonBody, PathParams};
use super::sessions::not_found;
use crate::auth::UserCaller;
use crate::db::participants::{self, AddOutcome, Participant};
use crate::error::ApiError;
use crate::roles::{self, Role};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddParticipant {
    user_id: Uuid,
    #[serde(default)]
    role: Role,
}

/// `POST /api/sessions/{session_id}/participants`: 201 with the new
/// participant, 200 with the existing one (only `last_active_at` bumped).
/// Owners add any role, editors add editors and viewers, viewers none (403).
pub async fn add(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    JsonBody(body): JsonBody<AddParticipant>,
) -> Result<(StatusCode, Json<Participant>), ApiError> {
    let client = state.db.client().await?;
    let allowed = roles::roles_that_may_add(body.role);
    let outcome = participants::add(
        &client,
        session_id,
        caller.user_id,
        body.user_id,
        body.role,
        &allowed,
    )
    .await?;
    match outcome {
        AddOutcome::NotVisible => Err(not_found(session_id)),
        AddOutcome::Forbidden { caller_role } => Err(ApiError::Forbidden(format!(
            "a session {} may not add a participant as {}",
            caller_role.as_str(),
            body.role.as_str()
        ))),
        AddOutcome::Added(p) => Ok((StatusCode::CREATED, Json(p))),
        AddOutcome::AlreadyPresent(p) => Ok((StatusCode::OK, Json(p))),
    }
}

#[derive(Debug, Serialize)]
pub struct ParticipantList {
    session_id: Uuid,
    participants: Vec<Participant>,
}

/// `GET /api/sessions/{session_id}/participants`: ordered by `joined_at`,
/// then `user_id`. 404 unless the caller participates.
pub async fn list(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
) -> Result<Json<ParticipantList>, ApiError> {
    let client = state.db.client().await?;
    let participants = participants::list(&client, session_id, caller.user_id)
        .await?
        .ok_or_else(|| not_found(session_id))?;
    Ok(Json(ParticipantList {
        session_id,
        participants,
    }))
}
