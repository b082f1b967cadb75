//! The statements of a user's export (`user_data::export`): their `users`
//! row, then their sessions and the messages they appended, each a keyset
//! page at a time in an order no later change moves (session id; session
//! id and seq), so that a long export neither skips nor repeats a line.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use super::caller::{check_key, verdict, verdict_from, with_app};
use super::messages::PAGE_BYTES;
use super::participants::UserSession;

/// The user's own row: when the service first and last saw them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRecord {
    pub user_id: Uuid,
    /// `null` for a user the service has no row for (they never created
    /// a session nor were added to one).
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_seen_app_id: Option<String>,
    pub total_sessions: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A message the user appended, in the session that holds it (the one it
/// was appended to).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthoredMessage {
    pub session_id: Uuid,
    pub seq: i32,
    pub created_at: DateTime<Utc>,
    /// The application it was appended through.
    pub app_id: Option<String>,
    #[schema(value_type = Object)]
    pub message: Value,
}

/// The user's row, if the application's key is valid (the only check of
/// an export: the caller is the user, the key is checked here once).
#[tracing::instrument(name = "user_export.user", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "user_export.user",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn user(
    client: &impl GenericClient,
    key: Option<&str>,
    user_id: Uuid,
) -> Result<UserRecord, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_app!(" "),
            verdict!(),
            ", u.first_seen, u.last_seen, u.last_seen_app_id, u.total_sessions, u.metadata",
            verdict_from!(),
            " LEFT JOIN users u ON app.is_active AND u.user_id = $2"
        ))
        .await?;
    let row = client.query_one(&stmt, &[&key, &user_id]).await?;
    check_key(&row)?;
    Ok(UserRecord {
        user_id,
        first_seen: row.get("first_seen"),
        last_seen: row.get("last_seen"),
        last_seen_app_id: row.get("last_seen_app_id"),
        total_sessions: row.get("total_sessions"),
        metadata: row.get("metadata"),
    })
}

/// Up to `limit` of the sessions `user_id` participates in, after session
/// `after` in id order, as list-user-sessions shows them (with the user's
/// role and activity); not those in the trash.
#[tracing::instrument(name = "user_export.sessions_page", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "user_export.sessions_page",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn sessions_page(
    client: &impl GenericClient,
    user_id: Uuid,
    after: Uuid,
    limit: i64,
) -> Result<Vec<UserSession>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT s.session_id, s.config_id, s.owner_user_id, s.status, p.role,
                    p.joined_at, p.last_active_at, s.message_count, s.metadata,
                    s.created_at, s.updated_at
             FROM session_participants p
             JOIN sessions s ON s.session_id = p.session_id
             WHERE p.user_id = $1 AND p.session_id > $2 AND s.trashed_at IS NULL
             ORDER BY p.session_id
             LIMIT $3",
        )
        .await?;
    let rows = client.query(&stmt, &[&user_id, &after, &limit]).await?;
    crate::telemetry::record_rows(rows.len() as u64);
    rows.iter().map(UserSession::try_from).collect()
}

/// Up to `limit` messages `user_id` appended, after (`session_id`, `seq`)
/// in that order, ending before [`PAGE_BYTES`] of messages past the first
/// (as export-session's pages do), wherever they are kept: in sessions
/// they left, in the trash, or read only by a fork.
#[tracing::instrument(name = "user_export.messages_page", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "user_export.messages_page",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn messages_page(
    client: &impl GenericClient,
    user_id: Uuid,
    after: (Uuid, i32),
    limit: i64,
) -> Result<Vec<AuthoredMessage>, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH page AS (
                 SELECT session_id, seq, octet_length(message::text) AS bytes
                 FROM session_messages
                 WHERE appended_by_user_id = $1 AND (session_id, seq) > ($2, $3)
                 ORDER BY session_id, seq
                 LIMIT $4
             ), budget AS (
                 SELECT session_id, seq, bytes,
                        sum(bytes) OVER (ORDER BY session_id, seq) AS through
                 FROM page
             )
             SELECT m.session_id, m.seq, m.created_at, m.appended_by_app_id, m.message
             FROM budget b
             JOIN session_messages m ON m.session_id = b.session_id AND m.seq = b.seq
             WHERE b.through = b.bytes OR b.through <= $5
             ORDER BY m.session_id, m.seq",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&user_id, &after.0, &after.1, &limit, &PAGE_BYTES])
        .await?;
    crate::telemetry::record_rows(rows.len() as u64);
    Ok(rows
        .iter()
        .map(|row| AuthoredMessage {
            session_id: row.get("session_id"),
            seq: row.get("seq"),
            created_at: row.get("created_at"),
            app_id: row.get("appended_by_app_id"),
            message: row.get("message"),
        })
        .collect())
}
