//! `session_participants`: who may see a session, and in which role.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use super::caller::{
    Guarded, check_key, guarded_select, role as db_role, verdict, verdict_from, with_app,
    with_caller, with_caller_locking_session,
};
use super::statement::Statement;
use crate::audit::{InvocationId, action};
use crate::roles::Role;
use crate::search::Query;

#[derive(Debug, Serialize, ToSchema)]
pub struct Participant {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    /// Last write by this participant; `null` if they never acted.
    pub last_active_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub permissions: Value,
}

impl TryFrom<&Row> for Participant {
    type Error = DbError;
    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            session_id: row.get("session_id"),
            user_id: row.get("user_id"),
            role: db_role(row.get("role"))?,
            joined_at: row.get("joined_at"),
            last_active_at: row.get("last_active_at"),
            permissions: row
                .get::<_, Option<Value>>("permissions")
                .unwrap_or_default(),
        })
    }
}

/// Reads the participant columns of a guarded statement's row, if present.
fn done_participant(row: &Row) -> Result<Option<Participant>, DbError> {
    match row.get::<_, Option<Uuid>>("user_id") {
        None => Ok(None),
        Some(_) => Participant::try_from(row).map(Some),
    }
}

/// What add-participant did.
#[derive(Debug)]
pub struct Added {
    pub participant: Participant,
    /// `false` when the user was already a participant (the row is
    /// returned unchanged).
    pub inserted: bool,
}

/// Adds `user_id` with `role` if the caller's role is in `permitted`. The
/// check, the `users` row and the insert are one statement, so concurrent
/// adds of the same user cannot both insert. Adding someone who already
/// participates changes nothing: `last_active_at` is that participant's
/// own activity, which nobody else may move (the plan's upsert set it to
/// now(), which let anyone pin a session to the top of a victim's list).
/// The conflict arm rewrites a column with its own value only to return
/// the existing row, whichever transaction inserted it. The session's row
/// is locked first, as by every change of participants: a feed registering
/// for the session's events meanwhile either waits for this change or is
/// seen by its notification (migration V19). A participant actually
/// added gets an audit row (the calling user added them, with the role).
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(name = "participants.add", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "participants.add",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn add(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
    user_id: Uuid,
    role: Role,
    permitted: &[&str],
    invocation: &InvocationId,
) -> Result<Guarded<Added>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller_locking_session!(
                ", permitted AS (
                 SELECT 1 FROM caller WHERE role = ANY($6::text[])
             ), added_user AS (
                 INSERT INTO users (user_id) SELECT $4::uuid FROM permitted
                 ON CONFLICT (user_id) DO NOTHING
             ), upsert AS (
                 INSERT INTO session_participants (session_id, user_id, role)
                 SELECT $2::uuid, $4::uuid, $5::varchar FROM permitted
                 ON CONFLICT (session_id, user_id)
                 DO UPDATE SET permissions = session_participants.permissions
                 RETURNING session_id, user_id, role, joined_at, last_active_at, permissions,
                           (xmax = 0) AS inserted
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, actor_app_id, actor_user_id, action, target_kind, target_id,
                      app_id, session_id, subject_user_id, invocation_id, details)
                 SELECT 'user', app.app_id, $3, $7, 'participant', upsert.user_id::text,
                        s.created_by_app_id, upsert.session_id, upsert.user_id, $8,
                        jsonb_build_object('role', upsert.role)
                 FROM upsert
                 JOIN sessions s ON s.session_id = upsert.session_id
                 CROSS JOIN app
                 WHERE upsert.inserted
             ) "
            ),
            guarded_select!(", upsert.*", " LEFT JOIN upsert ON true")
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &session_id,
                &caller,
                &user_id,
                &role.as_str(),
                &permitted,
                &action::PARTICIPANT_ADDED,
                &invocation.as_deref(),
            ],
        )
        .await?;
    Guarded::from_row(&row, |row| {
        Ok(done_participant(row)?.map(|participant| Added {
            participant,
            inserted: row.get("inserted"),
        }))
    })
}

/// All participants, oldest first; `Ok(None)` unless `caller` is one of them.
#[tracing::instrument(name = "participants.list", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "participants.list",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn list(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
) -> Result<Option<Vec<Participant>>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(" "),
            guarded_select!(
                ", p.*",
                " LEFT JOIN LATERAL (
                 SELECT session_id, user_id, role, joined_at, last_active_at, permissions
                 FROM session_participants
                 WHERE caller.role IS NOT NULL AND session_id = $2
                 ORDER BY joined_at, user_id
             ) p ON true"
            )
        ))
        .await?;
    let rows = client.query(&stmt, &[&key, &session_id, &caller]).await?;
    crate::telemetry::record_rows(rows.len() as u64);
    check_key(&rows[0])?;
    if rows[0].get::<_, Option<&str>>("caller_role").is_none() {
        return Ok(None);
    }
    rows.iter()
        .map(Participant::try_from)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Sets `user_id`'s role if the caller's role is in `permitted`. Demoting
/// the last owner fails with [`DbError::LastOwner`] (a trigger enforces it).
/// Each role set gets an audit row naming the new role (the statement's
/// snapshot may predate a concurrent change of the same participant, so
/// it does not claim to know the previous one).
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(name = "participants.update_role", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "participants.update_role",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn update_role(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
    user_id: Uuid,
    role: Role,
    permitted: &[&str],
    invocation: &InvocationId,
) -> Result<Guarded<Participant>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller_locking_session!(
                ", updated AS (
                 UPDATE session_participants p SET role = $5
                 FROM caller
                 WHERE p.session_id = $2 AND p.user_id = $4 AND caller.role = ANY($6::text[])
                 RETURNING p.*
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, actor_app_id, actor_user_id, action, target_kind, target_id,
                      app_id, session_id, subject_user_id, invocation_id, details)
                 SELECT 'user', app.app_id, $3, $7, 'participant', updated.user_id::text,
                        s.created_by_app_id, updated.session_id, updated.user_id, $8,
                        jsonb_build_object('role', updated.role)
                 FROM updated
                 JOIN sessions s ON s.session_id = updated.session_id
                 CROSS JOIN app
             ) "
            ),
            guarded_select!(", updated.*", " LEFT JOIN updated ON true")
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &session_id,
                &caller,
                &user_id,
                &role.as_str(),
                &permitted,
                &action::PARTICIPANT_ROLE_CHANGED,
                &invocation.as_deref(),
            ],
        )
        .await?;
    Guarded::from_row(&row, done_participant)
}

/// Removes `user_id` if the caller's role is in `permitted` or the caller
/// removes themself. Removing the last owner fails with [`DbError::LastOwner`].
/// The removal gets an audit row naming the role they had (a participant
/// who leaves is both its actor and its subject).
#[tracing::instrument(name = "participants.remove", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "participants.remove",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn remove(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
    user_id: Uuid,
    permitted: &[&str],
    invocation: &InvocationId,
) -> Result<Guarded<()>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller_locking_session!(
                ", removed AS (
                 DELETE FROM session_participants p USING caller
                 WHERE p.session_id = $2 AND p.user_id = $4
                   AND (caller.role = ANY($5::text[]) OR p.user_id = $3)
                 RETURNING p.session_id, p.user_id, p.role
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, actor_app_id, actor_user_id, action, target_kind, target_id,
                      app_id, session_id, subject_user_id, invocation_id, details)
                 SELECT 'user', app.app_id, $3, $6, 'participant', removed.user_id::text,
                        s.created_by_app_id, removed.session_id, removed.user_id, $7,
                        jsonb_build_object('role', removed.role)
                 FROM removed
                 JOIN sessions s ON s.session_id = removed.session_id
                 CROSS JOIN app
             ) "
            ),
            guarded_select!(", removed.user_id", " LEFT JOIN removed ON true")
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &session_id,
                &caller,
                &user_id,
                &permitted,
                &action::PARTICIPANT_REMOVED,
                &invocation.as_deref(),
            ],
        )
        .await?;
    Guarded::from_row(&row, |row| {
        Ok(row.get::<_, Option<Uuid>>("user_id").map(|_| ()))
    })
}

/// One row of a user's session list: the session without its transcript,
/// plus the user's participation.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSession {
    pub session_id: Uuid,
    pub config_id: Uuid,
    pub owner_user_id: Option<Uuid>,
    pub status: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub message_count: i32,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where the previous page of a user's sessions ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserSessionsAfter {
    pub last_active_at: Option<DateTime<Utc>>,
    pub session_id: Uuid,
}

/// Which of a user's sessions to list.
#[derive(Debug, Default)]
pub struct SessionFilter<'a> {
    pub status: Option<&'a str>,
    pub config_id: Option<Uuid>,
    /// Words the session's messages or metadata must contain, and must not.
    pub query: Option<&'a Query>,
}

/// A page of the sessions `user_id` participates in, most recently active
/// first (never active last), ties by id, among those `filter` lets
/// through; never one in the trash (`db::trash` lists those). The statement reads the `idx_session_participants_user_activity`
/// index in order from the cursor; a text query probes each session's
/// documents (`session_search`) through `idx_session_search`, one word at
/// a time (session id and word are the index's keys), for each session its
/// messages come from (`session_lineage`: itself, and for a fork the
/// documents of what it shares, those ending at or before its cut).
///
/// The statement names only the filters given (one cached statement per
/// combination). A catch-all condition such as `($4 IS NULL OR s.status =
/// $4)` would serve all with one text, but once PostgreSQL switches the
/// prepared statement to its generic plan it cannot know which side holds;
/// with statistics lagging behind a fast-growing table the benchmark saw
/// that plan scan every session (100 ms instead of 0.4 ms).
#[tracing::instrument(name = "participants.sessions_of_user", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "participants.sessions_of_user",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn sessions_of_user(
    client: &impl GenericClient,
    key: Option<&str>,
    user_id: Uuid,
    after: Option<&UserSessionsAfter>,
    filter: &SessionFilter<'_>,
    limit: i64,
) -> Result<Vec<UserSession>, DbError> {
    const HEAD: &str = concat!(
        with_app!(" "),
        verdict!(),
        ", r.*",
        verdict_from!(),
        " LEFT JOIN LATERAL (
             SELECT s.session_id, s.config_id, s.owner_user_id, s.status, p.role,
                    p.joined_at, p.last_active_at, s.message_count, s.metadata,
                    s.created_at, s.updated_at
             FROM session_participants p
             JOIN sessions s ON s.session_id = p.session_id AND s.trashed_at IS NULL
             WHERE app.is_active AND p.user_id = $2"
    );
    const TAIL: &str = "
             ORDER BY COALESCE(p.last_active_at, '-infinity'::timestamptz) DESC, p.session_id
             LIMIT $3
         ) r ON true";
    let mut statement = Statement {
        sql: String::from(HEAD),
        params: vec![&key, &user_id, &limit],
    };
    if let Some(status) = &filter.status {
        statement.and("s.status = {0}", &[status]);
    }
    if let Some(config_id) = &filter.config_id {
        statement.and("s.config_id = {0}", &[config_id]);
    }
    if let Some(query) = filter.query {
        if !query.required.is_empty() {
            statement.and(
                "NOT EXISTS (
                   SELECT 1 FROM unnest({0}::text[]) AS w (word)
                   WHERE NOT EXISTS (
                       SELECT 1 FROM session_lineage l
                       JOIN session_search d
                         ON d.session_id = l.origin_id AND d.last_seq <= l.through_seq
                       WHERE l.session_id = p.session_id AND d.words @@ w.word::tsquery
                         AND (d.first_seq > 0 OR l.origin_id = p.session_id)))",
                &[&query.required],
            );
        }
        if !query.excluded.is_empty() {
            statement.and(
                "NOT EXISTS (
                   SELECT 1 FROM unnest({0}::text[]) AS w (word)
                   JOIN session_lineage l ON l.session_id = p.session_id
                   JOIN session_search d
                     ON d.session_id = l.origin_id AND d.last_seq <= l.through_seq
                    AND d.words @@ w.word::tsquery
                    AND (d.first_seq > 0 OR l.origin_id = p.session_id))",
                &[&query.excluded],
            );
        }
    }
    if let Some(after) = after {
        // The first condition is the index range start; the second skips
        // the rows of the previous page that share its sort value.
        statement.and(
            "COALESCE(p.last_active_at, '-infinity'::timestamptz)
                   <= COALESCE({0}::timestamptz, '-infinity'::timestamptz)
               AND (COALESCE(p.last_active_at, '-infinity'::timestamptz)
                    < COALESCE({0}::timestamptz, '-infinity'::timestamptz)
                    OR p.session_id > {1})",
            &[&after.last_active_at, &after.session_id],
        );
    }
    let Statement { mut sql, params } = statement;
    sql += TAIL;
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &params).await?;
    crate::telemetry::record_rows(rows.len() as u64);
    check_key(&rows[0])?;
    rows.iter()
        .filter(|row| row.get::<_, Option<Uuid>>("session_id").is_some())
        .map(UserSession::try_from)
        .collect()
}

impl TryFrom<&Row> for UserSession {
    type Error = DbError;
    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(UserSession {
            session_id: row.get("session_id"),
            config_id: row.get("config_id"),
            owner_user_id: row.get("owner_user_id"),
            status: row.get("status"),
            role: db_role(row.get("role"))?,
            joined_at: row.get("joined_at"),
            last_active_at: row.get("last_active_at"),
            message_count: row.get("message_count"),
            metadata: row.get::<_, Option<Value>>("metadata").unwrap_or_default(),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        })
    }
}
