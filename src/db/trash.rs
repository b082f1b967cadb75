//! The trash (issue 18): delete-session moves a session there
//! (`sessions.trashed_at`, migration V20), where only its owners see it, in
//! their trash listing, until they restore it, delete it permanently, or
//! the purge deletes it `TRASH_RETENTION_DAYS` after it was trashed. Every
//! other statement treats a trashed session as one that does not exist
//! (`caller::with_caller`). Each action here writes its audit row in the
//! same statement.
//!
//! Parameters shared by the audited statements ([`OwnerAct`]): `$1` the
//! key's hash, `$2` the session, `$3` the calling user, `$4` the audit
//! action, `$5` the request's invocation id, `$6` the roles that may do it
//! (owners).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use super::caller::{
    Guarded, check_key, guarded_select, verdict, verdict_from, with_app, with_caller,
};
use super::sessions::{Session, SessionView};
use crate::audit::{InvocationId, action};

/// The CTE `audit`: the row saying user `$3` (of the application in `app`)
/// did `$4` to each session the CTE `$done` returns (`session_id`,
/// `created_by_app_id`), in request `$5`.
macro_rules! audited {
    ($done:literal) => {
        concat!(
            ", audit AS (
                 INSERT INTO audit_events
                     (actor_kind, actor_app_id, actor_user_id, action, target_kind, target_id,
                      app_id, session_id, invocation_id)
                 SELECT 'user', app.app_id, $3, $4, 'session', d.session_id::text,
                        d.created_by_app_id, d.session_id, $5
                 FROM ",
            $done,
            " d, app
             )"
        )
    };
}

/// Moves the session to the trash if the caller's role is in `permitted`
/// and it is not there already (then, like a session that does not exist,
/// it is not visible). Its streams end (migration V22 notifies them).
#[tracing::instrument(name = "trash.trash", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "trash.trash",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn trash(
    client: &impl GenericClient,
    act: &OwnerAct<'_>,
) -> Result<Guarded<()>, DbError> {
    let row = run_audited(
        client,
        concat!(
            with_caller!(
                ", trashed AS (
                 UPDATE sessions s SET trashed_at = now()
                 FROM caller
                 WHERE s.session_id = $2 AND caller.role = ANY($6::text[]) AND s.trashed_at IS NULL
                 RETURNING s.session_id, s.created_by_app_id
             )",
                audited!("trashed"),
                " "
            ),
            guarded_select!(", trashed.session_id", " LEFT JOIN trashed ON true")
        ),
        act,
        action::SESSION_TRASHED,
    )
    .await?;
    Guarded::from_row(&row, |row| {
        Ok(row.get::<_, Option<Uuid>>("session_id").map(|_| ()))
    })
}

/// Deletes the session for good, in the trash or not, if the caller's role
/// is in `permitted` (participants and lineage cascade). A trashed session
/// is visible to those roles only: anyone else finds nothing. Its messages
/// are deleted later by the sweep (`messages::sweep_step`), except those its
/// forks share: the request costs the same whatever the transcript.
#[tracing::instrument(name = "trash.delete_permanently", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "trash.delete_permanently",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn delete_permanently(
    client: &impl GenericClient,
    act: &OwnerAct<'_>,
) -> Result<Guarded<()>, DbError> {
    let row = run_audited(
        client,
        concat!(
            with_app!(
                ", caller AS (
                 SELECT p.role FROM session_participants p
                 JOIN sessions s ON s.session_id = p.session_id
                 JOIN app ON app.is_active
                 WHERE p.session_id = $2 AND p.user_id = $3
                   AND (s.trashed_at IS NULL OR p.role = ANY($6::text[]))
             ), retired_config AS (
                 -- Locked before the session, in the order delete-config
                 -- takes them, for the trigger that deletes a retired
                 -- config with its last session (migration V16).
                 SELECT c.config_id FROM sessions s, configs c, caller
                 WHERE s.session_id = $2 AND caller.role = ANY($6::text[])
                   AND c.config_id = s.config_id AND c.retired
                 FOR NO KEY UPDATE OF c
             ), deleted AS (
                 DELETE FROM sessions s USING caller LEFT JOIN retired_config ON true
                 WHERE s.session_id = $2 AND caller.role = ANY($6::text[])
                 RETURNING s.session_id, s.created_by_app_id
             )",
                audited!("deleted"),
                " "
            ),
            guarded_select!(", deleted.session_id", " LEFT JOIN deleted ON true")
        ),
        act,
        action::SESSION_DELETED,
    )
    .await?;
    Guarded::from_row(&row, |row| {
        Ok(row.get::<_, Option<Uuid>>("session_id").map(|_| ()))
    })
}

/// Takes the session out of the trash if the caller's role is in
/// `permitted`, and returns it as get-session does; `Ok(None)` when it is
/// not in the trash, does not exist, or the caller may not restore it (the
/// three are indistinguishable). Restoring counts as activity: it sets
/// `updated_at`, so a restored session gets its full retention again.
#[tracing::instrument(name = "trash.restore", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "trash.restore",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn restore(
    client: &impl GenericClient,
    act: &OwnerAct<'_>,
) -> Result<Option<SessionView>, DbError> {
    let row = run_audited(
        client,
        concat!(
            with_app!(
                ", caller AS (
                 SELECT p.role FROM session_participants p
                 JOIN sessions s ON s.session_id = p.session_id AND s.trashed_at IS NOT NULL
                 JOIN app ON app.is_active
                 WHERE p.session_id = $2 AND p.user_id = $3 AND p.role = ANY($6::text[])
             ), restored AS (
                 UPDATE sessions s SET trashed_at = NULL, updated_at = now()
                 FROM caller
                 WHERE s.session_id = $2 AND s.trashed_at IS NOT NULL
                 RETURNING s.*
             )",
                audited!("restored"),
                " "
            ),
            guarded_select!(", restored.*", " LEFT JOIN restored ON true")
        ),
        act,
        action::SESSION_RESTORED,
    )
    .await?;
    match Guarded::from_row(&row, |row| {
        Ok(row
            .get::<_, Option<Uuid>>("session_id")
            .map(|_| Session::from(row)))
    })? {
        Guarded::Seen {
            role,
            done: Some(session),
        } => Ok(Some(SessionView { session, role })),
        _ => Ok(None),
    }
}

/// Who does what to which session: the parameters of every audited
/// statement here.
pub struct OwnerAct<'a> {
    /// The application key's hash (`caller`).
    pub key: Option<&'a str>,
    pub session_id: Uuid,
    /// The calling user.
    pub user: Uuid,
    pub invocation: &'a InvocationId,
    /// The roles that may do it (owners).
    pub permitted: &'a [&'a str],
}

/// Runs audited statement `sql` for `act` as `action`; its one row.
async fn run_audited(
    client: &impl GenericClient,
    sql: &str,
    act: &OwnerAct<'_>,
    action: &str,
) -> Result<Row, DbError> {
    let stmt = client.prepare_cached(sql).await?;
    let params: [&(dyn ToSql + Sync); 6] = [
        &act.key,
        &act.session_id,
        &act.user,
        &action,
        &act.invocation.0,
        &act.permitted,
    ];
    Ok(client.query_one(&stmt, &params).await?)
}

/// A session in its owners' trash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrashedSession {
    #[serde(flatten)]
    pub session: Session,
    /// When it was deleted (moved to the trash).
    pub trashed_at: DateTime<Utc>,
    /// When the purge may delete it for good, unless it is restored first:
    /// `trashed_at` plus `TRASH_RETENTION_DAYS`; `null` when that is 0
    /// (the trash is kept until emptied by hand).
    pub purge_after: Option<DateTime<Utc>>,
}

impl From<&Row> for TrashedSession {
    fn from(row: &Row) -> Self {
        Self {
            session: Session::from(row),
            trashed_at: row.get("trashed_at"),
            purge_after: row.get("purge_after"),
        }
    }
}

/// Where the previous page of a trash listing ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrashAfter {
    pub trashed_at: DateTime<Utc>,
    pub session_id: Uuid,
}

/// A page of the trashed sessions in which `user_id` holds a role in
/// `permitted` (owners), most recently trashed first, ties by id, each
/// with when the purge may delete it (`retention_days` after it was
/// trashed). Reads the user's participations (`idx_session_participants_user_id`)
/// and keeps the trashed sessions: its cost grows with the sessions the
/// user takes part in, as a page of list-user-sessions with a filter does.
#[tracing::instrument(name = "trash.list", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "trash.list",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn list(
    client: &impl GenericClient,
    key: Option<&str>,
    user_id: Uuid,
    after: Option<&TrashAfter>,
    permitted: &[&str],
    retention_days: i32,
    limit: i64,
) -> Result<Vec<TrashedSession>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_app!(" "),
            verdict!(),
            ", r.*",
            verdict_from!(),
            " LEFT JOIN LATERAL (
                 SELECT s.*, CASE WHEN $4 > 0 THEN s.trashed_at + make_interval(days => $4) END
                        AS purge_after
                 FROM session_participants p
                 JOIN sessions s ON s.session_id = p.session_id AND s.trashed_at IS NOT NULL
                 WHERE app.is_active AND p.user_id = $2 AND p.role = ANY($7::text[])
                   AND ($5::timestamptz IS NULL
                        OR s.trashed_at < $5::timestamptz
                        OR (s.trashed_at = $5::timestamptz AND s.session_id > $6::uuid))
                 ORDER BY s.trashed_at DESC, s.session_id
                 LIMIT $3
             ) r ON true"
        ))
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &key,
                &user_id,
                &limit,
                &retention_days,
                &after.map(|a| a.trashed_at),
                &after.map(|a| a.session_id),
                &permitted,
            ],
        )
        .await?;
    crate::telemetry::record_rows(rows.len() as u64);
    check_key(&rows[0])?;
    Ok(rows
        .iter()
        .filter(|row| row.get::<_, Option<Uuid>>("session_id").is_some())
        .map(TrashedSession::from)
        .collect())
}
