//! `sessions` (and the rows a session creation writes with it). Every
//! statement checks the caller's participation itself, so a permission
//! check and the write it guards are one atomic round trip.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DbError, Guarded, with_caller};
use crate::roles::Role;

#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub session_id: Uuid,
    pub config_id: Uuid,
    pub owner_user_id: Option<Uuid>,
    pub created_by_app_id: Option<String>,
    /// `active`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Messages in the transcript.
    pub message_count: i32,
    /// `seq` of the newest message (messages are numbered 1, 2, 3...); 0
    /// while there is none.
    pub last_seq: i32,
    /// The transcript's size: the messages' JSON text, in bytes.
    pub transcript_bytes: i64,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The session this one was forked from (`null` once that is deleted).
    pub parent_session_id: Option<Uuid>,
    /// The last message copied from the parent.
    pub forked_from_seq: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_accessed_at: Option<DateTime<Utc>>,
}

impl From<&Row> for Session {
    fn from(row: &Row) -> Self {
        Self {
            session_id: row.get("session_id"),
            config_id: row.get("config_id"),
            owner_user_id: row.get("owner_user_id"),
            created_by_app_id: row.get("created_by_app_id"),
            status: row.get("status"),
            message_count: row.get("message_count"),
            // Numbers run 1..=count without gaps (forks keep theirs).
            last_seq: row.get("message_count"),
            transcript_bytes: row.get("transcript_bytes"),
            metadata: row.get::<_, Option<Value>>("metadata").unwrap_or_default(),
            parent_session_id: row.get("parent_session_id"),
            forked_from_seq: row.get("forked_from_seq"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            last_accessed_at: row.get("last_accessed_at"),
        }
    }
}

/// A session as one of its participants reads it: its size does not
/// depend on the transcript (read that with list-messages or export).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    #[serde(flatten)]
    pub session: Session,
    /// The caller's role in this session.
    pub role: Role,
}

/// Creates a session owned by `owner`, its owner participant row and the
/// owner's `users` row, in one statement (one round trip, atomic).
/// `Ok(None)` when `config_id` does not exist.
pub async fn create(
    client: &impl GenericClient,
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

/// The session and the caller's role, recording the access; `Ok(None)`
/// when the caller does not participate (or it does not exist: the two are
/// deliberately indistinguishable).
pub async fn read(
    client: &impl GenericClient,
    session_id: Uuid,
    user_id: Uuid,
    app_id: &str,
) -> Result<Option<SessionView>, DbError> {
    let stmt = client
        .prepare_cached(with_caller!(
            "
             UPDATE sessions s
             SET last_accessed_at = now(), last_accessed_by_app_id = $3
             FROM caller
             WHERE s.session_id = $1
             RETURNING s.*, caller.role AS caller_role"
        ))
        .await?;
    let Some(row) = client
        .query_opt(&stmt, &[&session_id, &user_id, &app_id])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(SessionView {
        session: Session::from(&row),
        role: Role::from_db(row.get("caller_role"))?,
    }))
}

/// What update-session may change; `None` leaves a field as it is.
pub struct SessionChanges<'a> {
    pub status: Option<&'a str>,
    pub metadata: Option<&'a Value>,
}

/// Applies `changes` if the caller's role is in `permitted`, and marks the
/// caller active.
pub async fn update(
    client: &impl GenericClient,
    session_id: Uuid,
    caller: Uuid,
    permitted: &[&str],
    changes: &SessionChanges<'_>,
) -> Result<Guarded<Session>, DbError> {
    let stmt = client
        .prepare_cached(with_caller!(
            ", updated AS (
                 UPDATE sessions s
                 SET status = COALESCE($4::varchar, s.status),
                     metadata = COALESCE($5::jsonb, s.metadata)
                 FROM caller
                 WHERE s.session_id = $1 AND caller.role = ANY($3::text[])
                 RETURNING s.*
             ), active AS (
                 UPDATE session_participants SET last_active_at = now()
                 WHERE session_id = $1 AND user_id = $2 AND EXISTS (SELECT 1 FROM updated)
             )
             SELECT caller.role AS caller_role, updated.*
             FROM caller LEFT JOIN updated ON true"
        ))
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &session_id,
                &caller,
                &permitted,
                &changes.status,
                &changes.metadata,
            ],
        )
        .await?;
    Guarded::from_row(row, |row| {
        let done: Option<Uuid> = row.get("session_id");
        Ok(done.map(|_| Session::from(row)))
    })
}

/// Deletes the session (participants cascade) if the caller's role is in
/// `permitted`.
pub async fn delete(
    client: &impl GenericClient,
    session_id: Uuid,
    caller: Uuid,
    permitted: &[&str],
) -> Result<Guarded<()>, DbError> {
    let stmt = client
        .prepare_cached(with_caller!(
            ", deleted AS (
                 DELETE FROM sessions s USING caller
                 WHERE s.session_id = $1 AND caller.role = ANY($3::text[])
                 RETURNING s.session_id
             )
             SELECT caller.role AS caller_role, deleted.session_id
             FROM caller LEFT JOIN deleted ON true"
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&session_id, &caller, &permitted])
        .await?;
    Guarded::from_row(row, |row| {
        Ok(row.get::<_, Option<Uuid>>("session_id").map(|_| ()))
    })
}

/// The session for an export, if the caller participates (nothing is
/// recorded: exports are reads).
pub async fn for_export(
    client: &impl GenericClient,
    session_id: Uuid,
    caller: Uuid,
) -> Result<Option<Session>, DbError> {
    let stmt = client
        .prepare_cached(with_caller!(
            " SELECT s.* FROM sessions s, caller WHERE s.session_id = $1"
        ))
        .await?;
    let row = client.query_opt(&stmt, &[&session_id, &caller]).await?;
    Ok(row.as_ref().map(Session::from))
}

/// What a fork did.
#[derive(Debug)]
pub enum Forked {
    Done(Box<Session>),
    /// `up_to_seq` is beyond the source's last message.
    BeyondLast {
        last_seq: i32,
    },
}

/// A new session owned by `caller`, with the source's config, its
/// metadata (or `metadata`), and copies of its messages `1..=up_to_seq`
/// (default: all) under the same numbers, if the caller participates in
/// the source. One statement: the copy is consistent because messages
/// never change once appended.
pub async fn fork(
    client: &impl GenericClient,
    session_id: Uuid,
    caller: Uuid,
    app_id: &str,
    up_to_seq: Option<i32>,
    metadata: Option<&Value>,
) -> Result<Guarded<Forked>, DbError> {
    let stmt = client
        .prepare_cached(with_caller!(
            ", source AS (
                 SELECT s.config_id, s.metadata, s.message_count, s.transcript_bytes
                 FROM sessions s, caller WHERE s.session_id = $1
             ), cut AS (
                 SELECT COALESCE($4::int, message_count) AS up_to FROM source
             ), new_session AS (
                 INSERT INTO sessions (config_id, owner_user_id, created_by_app_id, metadata,
                                       message_count, transcript_bytes,
                                       parent_session_id, forked_from_seq)
                 SELECT source.config_id, $2, $3, COALESCE($5::jsonb, source.metadata),
                        cut.up_to,
                        CASE WHEN cut.up_to = source.message_count THEN source.transcript_bytes
                             ELSE (SELECT COALESCE(sum(octet_length(m.message::text)), 0)
                                   FROM session_messages m
                                   WHERE m.session_id = $1 AND m.seq <= cut.up_to)
                        END,
                        $1, cut.up_to
                 FROM source, cut
                 WHERE cut.up_to <= source.message_count
                 RETURNING *
             ), copied AS (
                 INSERT INTO session_messages (session_id, seq, created_at, message,
                                               appended_by_user_id, appended_by_app_id)
                 SELECT new_session.session_id, m.seq, m.created_at, m.message,
                        m.appended_by_user_id, m.appended_by_app_id
                 FROM new_session JOIN session_messages m
                   ON m.session_id = $1 AND m.seq <= new_session.forked_from_seq
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
             SELECT caller.role AS caller_role, source.message_count AS source_count, new_session.*
             FROM caller CROSS JOIN source LEFT JOIN new_session ON true"
        ))
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[&session_id, &caller, &app_id, &up_to_seq, &metadata],
        )
        .await?;
    Guarded::from_row(row, |row| {
        Ok(Some(match row.get::<_, Option<Uuid>>("session_id") {
            Some(_) => Forked::Done(Box::new(Session::from(row))),
            None => Forked::BeyondLast {
                last_seq: row.get("source_count"),
            },
        }))
    })
}
