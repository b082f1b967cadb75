//! `session_participants`: who may see a session, and in which role.

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::DbError;
use crate::roles::Role;

#[derive(Debug, Serialize)]
pub struct Participant {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub permissions: Value,
}

impl TryFrom<&Row> for Participant {
    type Error = DbError;
    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            session_id: row.get("session_id"),
            user_id: row.get("user_id"),
            role: Role::from_db(row.get("role"))?,
            joined_at: row.get("joined_at"),
            last_active_at: row.get("last_active_at"),
            permissions: row
                .get::<_, Option<Value>>("permissions")
                .unwrap_or_default(),
        })
    }
}

pub enum AddOutcome {
    /// The caller does not participate in the session (or it does not exist).
    NotVisible,
    /// The caller participates, but its role may not grant the requested one.
    Forbidden {
        caller_role: Role,
    },
    Added(Participant),
    /// Already a participant: unchanged but for `last_active_at`.
    AlreadyPresent(Participant),
}

/// Adds `user_id` with `role`, provided the caller's role is one of
/// `allowed_caller_roles` (decided by `roles`). The permission check, the
/// `users` row and the upsert run as one statement, so concurrent adds of the
/// same user cannot both insert.
pub async fn add(
    client: &Client,
    session_id: Uuid,
    caller: Uuid,
    user_id: Uuid,
    role: Role,
    allowed_caller_roles: &[&str],
) -> Result<AddOutcome, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH caller AS (
                 SELECT role FROM session_participants WHERE session_id = $1 AND user_id = $2
             ), permitted AS (
                 SELECT 1 FROM caller WHERE role = ANY($5::text[])
             ), added_user AS (
                 INSERT INTO users (user_id) SELECT $3::uuid FROM permitted
                 ON CONFLICT (user_id) DO NOTHING
             ), upsert AS (
                 INSERT INTO session_participants (session_id, user_id, role)
                 SELECT $1::uuid, $3::uuid, $4::varchar FROM permitted
                 ON CONFLICT (session_id, user_id) DO UPDATE SET last_active_at = now()
                 RETURNING session_id, user_id, role, joined_at, last_active_at, permissions,
                           (xmax = 0) AS inserted
             )
             SELECT caller.role AS caller_role, upsert.*
             FROM caller LEFT JOIN upsert ON true",
        )
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &session_id,
                &caller,
                &user_id,
                &role.as_str(),
                &allowed_caller_roles,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(AddOutcome::NotVisible);
    };
    let caller_role = Role::from_db(row.get("caller_role"))?;
    match row.get::<_, Option<bool>>("inserted") {
        None => Ok(AddOutcome::Forbidden { caller_role }),
        Some(true) => Ok(AddOutcome::Added(Participant::try_from(&row)?)),
        Some(false) => Ok(AddOutcome::AlreadyPresent(Participant::try_from(&row)?)),
    }
}

/// All participants, oldest first; `Ok(None)` unless `caller` is one of them.
pub async fn list(
    client: &Client,
    session_id: Uuid,
    caller: Uuid,
) -> Result<Option<Vec<Participant>>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT p.session_id, p.user_id, p.role, p.joined_at, p.last_active_at, p.permissions
             FROM session_participants p
             WHERE p.session_id = $1
               AND EXISTS (SELECT 1 FROM session_participants c
                           WHERE c.session_id = $1 AND c.user_id = $2)
             ORDER BY p.joined_at, p.user_id",
        )
        .await?;
    let rows = client.query(&stmt, &[&session_id, &caller]).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    rows.iter()
        .map(Participant::try_from)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// One row of a user's session list: the session without its transcript,
/// plus the user's participation.
#[derive(Debug, Serialize)]
pub struct UserSession {
    pub session_id: Uuid,
    pub config_id: Uuid,
    pub owner_user_id: Option<Uuid>,
    pub status: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub message_count: i32,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The sessions `user_id` participates in, most recently active first
/// (never-active last), ties broken by id.
pub async fn sessions_of_user(
    client: &Client,
    user_id: Uuid,
    limit: i64,
) -> Result<Vec<UserSession>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT s.session_id, s.config_id, s.owner_user_id, s.status, p.role, p.joined_at,
                    p.last_active_at, s.message_count, s.metadata, s.created_at, s.updated_at
             FROM session_participants p
             JOIN sessions s ON s.session_id = p.session_id
             WHERE p.user_id = $1
             ORDER BY p.last_active_at DESC NULLS LAST, p.session_id
             LIMIT $2",
        )
        .await?;
    let rows = client.query(&stmt, &[&user_id, &limit]).await?;
    rows.iter()
        .map(|row| {
            Ok(UserSession {
                session_id: row.get("session_id"),
                config_id: row.get("config_id"),
                owner_user_id: row.get("owner_user_id"),
                status: row.get("status"),
                role: Role::from_db(row.get("role"))?,
                joined_at: row.get("joined_at"),
                last_active_at: row.get("last_active_at"),
                message_count: row.get("message_count"),
                metadata: row.get::<_, Option<Value>>("metadata").unwrap_or_default(),
                created_at: row.get("created_at"),
                updated_at: row.get("updated_at"),
            })
        })
        .collect()
}
