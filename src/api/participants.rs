//! Participants of a session and their roles.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{JsonBody, PathParams};
use super::problems::{BodyProblems, CallerProblems, TargetProblems};
use super::sessions::settle;
use crate::audit::InvocationId;
use crate::auth::UserCaller;
use crate::db::participants::{self, Participant};
use crate::error::{ApiError, Problem};
use crate::roles::{self, Action, Role};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddParticipant {
    user_id: Uuid,
    /// Default `viewer`.
    #[serde(default)]
    role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateParticipant {
    role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantList {
    session_id: Uuid,
    participants: Vec<Participant>,
}

fn not_a_participant(user_id: Uuid) -> ApiError {
    ApiError::NotFound(format!(
        "user {user_id} is not a participant of this session"
    ))
}

/// Adds a participant: 201 when new, 200 when already present (unchanged
/// but for `last_active_at`). Owners add any role; editors add editors and
/// viewers; viewers cannot add (403).
#[utoipa::path(
    post, path = "/api/sessions/{session_id}/participants", operation_id = "add-participant",
    tag = "participants",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    request_body = AddParticipant,
    responses(
        (status = 201, description = "Added", body = Participant),
        (status = 200, description = "Already a participant", body = Participant),
        CallerProblems, TargetProblems, BodyProblems,
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn add(
    caller: UserCaller,
    State(state): State<AppState>,
    invocation: InvocationId,
    PathParams(session_id): PathParams<Uuid>,
    JsonBody(body): JsonBody<AddParticipant>,
) -> Result<(StatusCode, Json<Participant>), ApiError> {
    let action = Action::AddParticipant(body.role);
    let permitted = roles::roles_permitted(action);
    let client = state.db.client().await?;
    let outcome = participants::add(
        &*client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        body.user_id,
        body.role,
        &permitted,
        &invocation,
    )
    .await?;
    let doing = format!("add a participant as {}", body.role.as_str());
    let added = settle(
        outcome,
        session_id,
        |role| roles::permits(role, action),
        &doing,
        || super::sessions::not_found(session_id),
    )?;
    let status = if added.inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(added.participant)))
}

/// All participants, ordered by `joined_at`, then `user_id`.
#[utoipa::path(
    get, path = "/api/sessions/{session_id}/participants", operation_id = "list-participants",
    tag = "participants",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The participants", body = ParticipantList),
        CallerProblems, TargetProblems,
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn list(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
) -> Result<Json<ParticipantList>, ApiError> {
    let client = state.db.client().await?;
    let participants = participants::list(&*client, caller.key.hash(), session_id, caller.user_id)
        .await?
        .ok_or_else(|| super::sessions::not_found(session_id))?;
    Ok(Json(ParticipantList {
        session_id,
        participants,
    }))
}

/// Changes a participant's role. Owners only; demoting the last owner is a
/// 409.
#[utoipa::path(
    patch, path = "/api/sessions/{session_id}/participants/{user_id}",
    operation_id = "update-participant", tag = "participants",
    params(
        ("session_id" = Uuid, Path, description = "The session's id"),
        ("user_id" = Uuid, Path, description = "The participant's user id"),
    ),
    request_body = UpdateParticipant,
    responses(
        (status = 200, description = "Updated", body = Participant),
        CallerProblems, TargetProblems, BodyProblems, (status = 409, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn update(
    caller: UserCaller,
    State(state): State<AppState>,
    invocation: InvocationId,
    PathParams((session_id, user_id)): PathParams<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<UpdateParticipant>,
) -> Result<Json<Participant>, ApiError> {
    let permitted = roles::roles_permitted(Action::ChangeRole);
    let client = state.db.client().await?;
    let outcome = participants::update_role(
        &*client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        user_id,
        body.role,
        &permitted,
        &invocation,
    )
    .await?;
    settle(
        outcome,
        session_id,
        |role| roles::permits(role, Action::ChangeRole),
        "change roles",
        || not_a_participant(user_id),
    )
    .map(Json)
}

/// Removes a participant. Owners remove anyone; anyone may remove
/// themself. Removing the last owner is a 409.
#[utoipa::path(
    delete, path = "/api/sessions/{session_id}/participants/{user_id}",
    operation_id = "remove-participant", tag = "participants",
    params(
        ("session_id" = Uuid, Path, description = "The session's id"),
        ("user_id" = Uuid, Path, description = "The participant's user id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        CallerProblems, TargetProblems, (status = 409, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn remove(
    caller: UserCaller,
    State(state): State<AppState>,
    invocation: InvocationId,
    PathParams((session_id, user_id)): PathParams<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let permitted = roles::roles_permitted(Action::RemoveParticipant);
    let client = state.db.client().await?;
    let outcome = participants::remove(
        &*client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        user_id,
        &permitted,
        &invocation,
    )
    .await?;
    settle(
        outcome,
        session_id,
        |role| roles::permits(role, Action::RemoveParticipant) || user_id == caller.user_id,
        "remove other participants",
        || not_a_participant(user_id),
    )?;
    Ok(StatusCode::NO_CONTENT)
}
