//! The retention purge's statements (`lifecycle::purge` runs them): each
//! does one bounded batch in its own transaction and skips rows that live
//! requests hold (`FOR UPDATE SKIP LOCKED`), so a request never waits for
//! the purge, and the purge never waits for a request.
//!
//! Deleting a session here is what delete-session does, no more: its
//! participants, lineage and stream tickets cascade; the BEFORE DELETE
//! trigger of migration V13 queues its transcript for the sweep
//! (`messages::sweep_step`, which keeps the messages forks still read); V16's
//! trigger deletes a retired config with its last session; V18/V19's
//! notify the session's followers.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::DbError;

/// The key of the session-level advisory lock that one purge at a time
/// holds (any number; this one spells "amp_purg").
pub const LOCK_KEY: i64 = 0x616d_705f_7075_7267;

/// The retention in days of the application `$app` (a row of
/// `applications`, NULL when the session or user has none): its
/// `settings.retention.max_session_age_days`, else `$global`
/// (MAX_SESSION_AGE_DAYS). 0: kept forever.
macro_rules! retention_days {
    ($app:literal, $global:literal) => {
        concat!(
            "COALESCE(CASE WHEN jsonb_typeof(",
            $app,
            ".settings #> '{retention,max_session_age_days}') = 'number'
                       THEN (",
            $app,
            ".settings #>> '{retention,max_session_age_days}')::int END, ",
            $global,
            ")"
        )
    };
}

/// Session `s` (joined to its application `a`) has been inactive for
/// longer than its retention `days`, and is not in the trash (the trash
/// has its own).
macro_rules! expired {
    ($days:literal) => {
        concat!(
            "s.trashed_at IS NULL AND ",
            $days,
            " > 0 AND s.updated_at < now() - make_interval(days => ",
            $days,
            ")"
        )
    };
}

/// CTEs that delete the sessions of CTE `candidates (session_id, days)`
/// that `$recheck` still holds for once locked, skipping those a request
/// holds (`purged`), and write one audit row each (action `$action`, a
/// parameter; actor 'system'; why in `details`). As delete-session does, a
/// retired config is locked before its session (the order delete-config
/// takes them in, for V16's trigger); one another transaction holds keeps
/// its sessions for a later batch.
macro_rules! purge_candidates {
    ($recheck:literal, $reason:literal, $action:literal) => {
        concat!(
            ", retired AS (
                 SELECT c.config_id FROM configs c
                 WHERE c.retired AND c.config_id IN (
                     SELECT s.config_id FROM sessions s JOIN candidates USING (session_id))
                 FOR NO KEY UPDATE OF c SKIP LOCKED
             ), doomed AS (
                 SELECT s.session_id, s.created_by_app_id, c.days
                 FROM sessions s
                 JOIN candidates c USING (session_id)
                 LEFT JOIN configs rc ON rc.config_id = s.config_id AND rc.retired
                 WHERE ",
            $recheck,
            "
                   AND (rc.config_id IS NULL OR rc.config_id IN (SELECT config_id FROM retired))
                 FOR UPDATE OF s SKIP LOCKED
             ), purged AS (
                 DELETE FROM sessions s USING doomed d
                 WHERE s.session_id = d.session_id
                 RETURNING s.session_id, s.created_by_app_id, d.days
             ), audited AS (
                 INSERT INTO audit_events (actor_kind, action, target_kind, target_id,
                                           app_id, session_id, details)
                 SELECT 'system', ",
            $action,
            ", 'session', session_id::text, created_by_app_id, session_id,
                        jsonb_build_object('reason', '",
            $reason,
            "', 'retention_days', days)
                 FROM purged
             )"
        )
    };
}

/// One batch of the pass over all sessions for inactive ones: the
/// `scan` sessions after `after` in `session_id` order are looked at, and
/// those expired are purged. Returns the last session looked at (`None`:
/// the pass is done) and how many were purged. A pass by key rather than
/// by an index on `updated_at`: such an index would make every append
/// (which sets `updated_at`) update every index of `sessions` instead of
/// none (a heap-only update); the purge reads the table once a day
/// instead.
pub async fn expired_sessions(
    client: &impl GenericClient,
    after: Option<Uuid>,
    scan: i64,
    global_days: i32,
) -> Result<(Option<Uuid>, u64), DbError> {
    let stmt = client
        .prepare_cached(concat!(
            "WITH scanned AS (
                 SELECT session_id FROM sessions
                 WHERE $1::uuid IS NULL OR session_id > $1::uuid
                 ORDER BY session_id LIMIT $2
             ), candidates AS (
                 SELECT s.session_id, p.days
                 FROM scanned
                 JOIN sessions s USING (session_id)
                 LEFT JOIN applications a ON a.app_id = s.created_by_app_id
                 CROSS JOIN LATERAL (SELECT ",
            retention_days!("a", "$3::int"),
            " AS days) p
                 WHERE ",
            expired!("p.days"),
            "
             )",
            purge_candidates!(
                "s.trashed_at IS NULL AND s.updated_at < now() - make_interval(days => c.days)",
                "inactive",
                "$4"
            ),
            " SELECT (SELECT session_id FROM scanned ORDER BY session_id DESC LIMIT 1) AS last,
                     (SELECT count(*) FROM purged) AS purged"
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &after,
                &scan,
                &global_days,
                &crate::audit::action::SESSION_PURGED,
            ],
        )
        .await?;
    Ok((row.get("last"), row.get::<_, i64>("purged") as u64))
}

/// One batch of sessions in the trash for longer than `days`, oldest
/// first; returns how many were purged (fewer than `limit`: none left,
/// or the rest are held by requests).
pub async fn trashed_sessions(
    client: &impl GenericClient,
    days: i32,
    limit: i64,
) -> Result<u64, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            "WITH candidates AS (
                 SELECT session_id, $1::int AS days FROM sessions
                 WHERE trashed_at < now() - make_interval(days => $1::int)
                 ORDER BY trashed_at LIMIT $2
             )",
            purge_candidates!(
                "s.trashed_at < now() - make_interval(days => c.days)",
                "trash",
                "$3"
            ),
            " SELECT count(*) AS purged FROM purged"
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[&days, &limit, &crate::audit::action::SESSION_PURGED],
        )
        .await?;
    Ok(row.get::<_, i64>("purged") as u64)
}

/// One batch of the pass over `users`: of the `scan` users after `after`,
/// deletes those who take part in no session any more and were last seen
/// longer ago than the retention of the application they were last seen
/// through (as their sessions would be). Returns the last user looked at
/// (`None`: done) and how many were deleted.
pub async fn users(
    client: &impl GenericClient,
    after: Option<Uuid>,
    scan: i64,
    global_days: i32,
) -> Result<(Option<Uuid>, u64), DbError> {
    let stmt = client
        .prepare_cached(concat!(
            "WITH scanned AS (
                 SELECT user_id FROM users
                 WHERE $1::uuid IS NULL OR user_id > $1::uuid
                 ORDER BY user_id LIMIT $2
             ), doomed AS (
                 SELECT u.user_id
                 FROM scanned
                 JOIN users u USING (user_id)
                 LEFT JOIN applications a ON a.app_id = u.last_seen_app_id
                 CROSS JOIN LATERAL (SELECT ",
            retention_days!("a", "$3::int"),
            " AS days) p
                 WHERE p.days > 0 AND u.last_seen < now() - make_interval(days => p.days)
                   AND NOT EXISTS (SELECT 1 FROM session_participants sp
                                   WHERE sp.user_id = u.user_id)
                 FOR UPDATE OF u SKIP LOCKED
             ), deleted AS (
                 DELETE FROM users u USING doomed d WHERE u.user_id = d.user_id
                 RETURNING 1
             )
             SELECT (SELECT user_id FROM scanned ORDER BY user_id DESC LIMIT 1) AS last,
                    (SELECT count(*) FROM deleted) AS deleted"
        ))
        .await?;
    let row = client
        .query_one(&stmt, &[&after, &scan, &global_days])
        .await?;
    Ok((row.get("last"), row.get::<_, i64>("deleted") as u64))
}

/// One batch of audit events older than `days`, oldest first, in a
/// transaction that says it is the retention purge (the only thing,
/// besides erasure, that migration V20's trigger lets remove a row).
pub async fn audit_events(
    client: &mut deadpool_postgres::ClientWrapper,
    days: i32,
    limit: i64,
) -> Result<u64, DbError> {
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "SELECT set_config('amplifier.audit_maintenance', 'on', true)",
            &[],
        )
        .await?;
    let stmt = transaction
        .prepare_cached(
            "DELETE FROM audit_events
             WHERE event_id IN (
                 SELECT event_id FROM audit_events
                 WHERE occurred_at < now() - make_interval(days => $1::int)
                 ORDER BY occurred_at LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )",
        )
        .await?;
    let deleted = transaction.execute(&stmt, &[&days, &limit]).await?;
    transaction.commit().await?;
    Ok(deleted)
}

/// What a purge would remove now (nothing is changed): sessions inactive
/// past their retention, sessions in the trash past `trash_days`, users
/// who already take part in no session and were last seen past their
/// retention (the users of the sessions purged join them on the next
/// run), and audit events older than `audit_days`. A retention of 0
/// counts nothing.
pub async fn would_purge(
    client: &impl GenericClient,
    global_days: i32,
    trash_days: i32,
    audit_days: i32,
) -> Result<Counts, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            "SELECT
                 (SELECT count(*) FROM sessions s
                  LEFT JOIN applications a ON a.app_id = s.created_by_app_id
                  CROSS JOIN LATERAL (SELECT ",
            retention_days!("a", "$1::int"),
            " AS days) p
                  WHERE ",
            expired!("p.days"),
            ") AS expired,
                 (SELECT count(*) FROM sessions
                  WHERE $2::int > 0 AND trashed_at < now() - make_interval(days => $2::int))
                     AS trashed,
                 (SELECT count(*) FROM users u
                  LEFT JOIN applications a ON a.app_id = u.last_seen_app_id
                  CROSS JOIN LATERAL (SELECT ",
            retention_days!("a", "$1::int"),
            " AS days) p
                  WHERE p.days > 0 AND u.last_seen < now() - make_interval(days => p.days)
                    AND NOT EXISTS (SELECT 1 FROM session_participants sp
                                    WHERE sp.user_id = u.user_id)) AS users,
                 (SELECT count(*) FROM audit_events
                  WHERE $3::int > 0 AND occurred_at < now() - make_interval(days => $3::int))
                     AS audit_events"
        ))
        .await?;
    let row = client
        .query_one(&stmt, &[&global_days, &trash_days, &audit_days])
        .await?;
    let count = |name: &str| row.get::<_, i64>(name) as u64;
    Ok(Counts {
        sessions_inactive: count("expired"),
        sessions_from_trash: count("trashed"),
        users: count("users"),
        audit_events: count("audit_events"),
        transcript_rows: 0,
    })
}

/// Whether any application (or MAX_SESSION_AGE_DAYS, `global_days`)
/// limits how long sessions are kept: if none does, the pass over all
/// sessions and users is skipped.
pub async fn any_retention(client: &impl GenericClient, global_days: i32) -> Result<bool, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            "SELECT $1::int > 0 OR EXISTS (
                 SELECT 1 FROM applications a WHERE ",
            retention_days!("a", "0"),
            " > 0) AS any"
        ))
        .await?;
    Ok(client.query_one(&stmt, &[&global_days]).await?.get("any"))
}

/// Takes the purge's advisory lock for this connection's session, if no
/// other session holds it; it is released when the connection closes.
pub async fn try_lock(client: &tokio_postgres::Client) -> Result<bool, DbError> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1) AS locked", &[&LOCK_KEY])
        .await?;
    Ok(row.get("locked"))
}

/// How many rows of each kind a purge removed (or, dry, would remove).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Sessions inactive for longer than their retention.
    pub sessions_inactive: u64,
    /// Sessions in the trash for longer than TRASH_RETENTION_DAYS.
    pub sessions_from_trash: u64,
    /// `users` rows with no session left.
    pub users: u64,
    /// Audit events older than AUDIT_RETENTION_DAYS.
    pub audit_events: u64,
    /// Messages and search documents of purged sessions that no fork
    /// reads (the sweep's count; 0 in a dry run).
    pub transcript_rows: u64,
}
