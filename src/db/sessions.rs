//! `sessions` (and the rows a session creation writes with it).

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::DbError;
use crate::roles::Role;

#[derive(Debug, Serialize)]
pub struct Session {
    pub session_id: Uuid,
    pub config_id: Uuid,
    pub owner_user_id: Option<Uuid>,
    pub created_by_app_id: Option<String>,
    pub status: String,
    pub message_count: i32,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_accessed_at: Option<DateTime<Utc>>,
}

impl From<&tokio_postgres::Row> for Session {
    fn from(row: &tokio_postgres::Row) -> Self {
        Self {
            session_id: row.get("session_id"),
            config_id: row.get("config_id"),
            owner_user_id: row.get("owner_user_id"),
            created_by_app_id: row.get("created_by_app_id"),
            status: row.get("status"),
            message_count: row.get("message_count"),
            metadata: row.get::<_, Option<Value>>("metadata").unwrap_or_default(),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            last_accessed_at: row.get("last_accessed_at"),
        }
    }
}

/// A session as one of its participants reads it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    #[serde(flatten)]
    pub session: Session,
    pub transcript: Value,
    /// The caller's role in this session.
    pub role: Role,
}

/// Creates a session owned by `owner`, its owner participant row and the
/// owner's `users` row, in one statement (one round trip, atomic).
/// `Ok(None)` when `config_id` does not exist.
pub async fn create(
    client: &Client,
    config_id: Uuid,
    owner: Uuid,
    app_id: &str,
    metadata: &Value,
) -> Result<Option<Session>, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH new_session AS (
                 INSERT INTO sessions (config_id, owner_user_id, created_by_app_id, metadata)
                 SELECT config_id, $2::uuid, $3::varchar, $4::jsonb
                 FROM configs WHERE config_id = $1
                 RETURNING *
             ), owner_participant AS (
                 INSERT INTO session_participants (session_id, user_id, role, last_active_at)
                 SELECT session_id, owner_user_id, 'owner', created_at FROM new_session
             ), owner_user AS (
                 INSERT INTO users (user_id, last_seen_app_id, total_sessions)
                 SELECT owner_user_id, created_by_app_id, 1 FROM new_session
                 ON CONFLICT (user_id) DO UPDATE
                 SET last_seen = now(),
                     last_seen_app_id = EXCLUDED.last_seen_app_id,
                     total_sessions = users.total_sessions + 1
             )
             SELECT * FROM new_session",
        )
        .await?;
    let row = client
        .query_opt(&stmt, &[&config_id, &owner, &app_id, metadata])
        .await?;
    Ok(row.as_ref().map(Session::from))
}

/// The session with its transcript and the caller's role, recording the
/// access; `Ok(None)` when the caller does not participate (or it does not
/// exist: the two are deliberately indistinguishable).
pub async fn read(
    client: &Client,
    session_id: Uuid,
    user_id: Uuid,
    app_id: &str,
) -> Result<Option<SessionView>, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH caller AS (
                 SELECT role FROM session_participants WHERE session_id = $1 AND user_id = $2
             )
             UPDATE sessions s
             SET last_accessed_at = now(), last_accessed_by_app_id = $3
             FROM caller
             WHERE s.session_id = $1
             RETURNING s.*, caller.role AS caller_role",
        )
        .await?;
    let Some(row) = client
        .query_opt(&stmt, &[&session_id, &user_id, &app_id])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(SessionView {
        session: Session::from(&row),
        transcript: row.get("transcript"),
        role: Role::from_db(row.get("caller_role"))?,
    }))
}
