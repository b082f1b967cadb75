//! Reading `audit_events` (migration V20): the admin's listing with
//! filters, and a session's trail for its owners. The rows themselves are
//! written by the statements that do the actions they record.
//!
//! Both read newest first by `event_id` from a cursor (the last id of the
//! previous page), through an index whose last key is `event_id`, so a
//! page costs its own rows whatever the table holds.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use super::caller::{Guarded, guarded_select, with_caller};
use super::statement::Statement;

const COLUMNS: &str = "event_id, occurred_at, actor_kind, actor_app_id, actor_user_id, action,
    target_kind, target_id, app_id, session_id, subject_user_id, invocation_id, details";

/// One recorded action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// Increases with every event; pages are ordered by it, newest first.
    pub event_id: i64,
    pub occurred_at: DateTime<Utc>,
    /// `admin` (the admin key), `application` (an application's key
    /// alone), `user` (an application acting for a user) or `system` (the
    /// service's own purge).
    pub actor_kind: String,
    /// The acting application (`null` for the admin and the system).
    pub actor_app_id: Option<String>,
    /// The acting user, for `user` actors.
    pub actor_user_id: Option<Uuid>,
    /// What happened, e.g. `participant.added`.
    pub action: String,
    /// `application`, `config`, `session`, `participant` or `user`.
    pub target_kind: String,
    /// The target's id (for a participant, their user id).
    pub target_id: String,
    /// The application the target belongs to (for a config or session, the
    /// one that created it).
    pub app_id: Option<String>,
    /// The session the action concerns, if any.
    pub session_id: Option<Uuid>,
    /// The user the action is about (e.g. the participant added).
    pub subject_user_id: Option<Uuid>,
    /// The request's `x-azure-functions-invocationid`, if it had one.
    pub invocation_id: Option<String>,
    /// What else the action recorded: a role, which limits changed, counts.
    /// Never personal data.
    #[schema(value_type = Object)]
    pub details: Value,
}

impl From<&Row> for AuditEvent {
    fn from(row: &Row) -> Self {
        Self {
            event_id: row.get("event_id"),
            occurred_at: row.get("occurred_at"),
            actor_kind: row.get("actor_kind"),
            actor_app_id: row.get("actor_app_id"),
            actor_user_id: row.get("actor_user_id"),
            action: row.get("action"),
            target_kind: row.get("target_kind"),
            target_id: row.get("target_id"),
            app_id: row.get("app_id"),
            session_id: row.get("session_id"),
            subject_user_id: row.get("subject_user_id"),
            invocation_id: row.get("invocation_id"),
            details: row.get("details"),
        }
    }
}

/// Which events the admin lists; `None` does not filter.
#[derive(Debug, Default)]
pub struct AuditFilter<'a> {
    pub action: Option<&'a str>,
    pub app_id: Option<&'a str>,
    pub session_id: Option<Uuid>,
    /// The user acted, or the action was about them.
    pub user_id: Option<Uuid>,
    /// Occurred at or after.
    pub since: Option<DateTime<Utc>>,
    /// Occurred before.
    pub until: Option<DateTime<Utc>>,
}

/// A page of events older than `before` (an `event_id`; `i64::MAX` for the
/// first page) among those `filter` lets through, newest first.
///
/// The statement names only the filters given. A user filter reads two
/// index ranges (the user as actor, then as subject but not actor), each
/// at most `limit` rows in order, and keeps the newest `limit` of both.
#[tracing::instrument(name = "audit.list", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "audit.list",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn list(
    client: &impl GenericClient,
    filter: &AuditFilter<'_>,
    before: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>, DbError> {
    let mut conditions = Statement {
        sql: String::new(),
        params: vec![&limit, &before],
    };
    if let Some(user_id) = &filter.user_id {
        conditions.params.push(user_id);
    }
    if let Some(action) = &filter.action {
        conditions.and("action = {0}", &[action]);
    }
    if let Some(app_id) = &filter.app_id {
        conditions.and("app_id = {0}", &[app_id]);
    }
    if let Some(session_id) = &filter.session_id {
        conditions.and("session_id = {0}", &[session_id]);
    }
    if let Some(since) = &filter.since {
        conditions.and("occurred_at >= {0}", &[since]);
    }
    if let Some(until) = &filter.until {
        conditions.and("occurred_at < {0}", &[until]);
    }
    let Statement {
        sql: and_conditions,
        params,
    } = conditions;
    let sql = if filter.user_id.is_some() {
        format!(
            "SELECT {COLUMNS} FROM (
                 (SELECT * FROM audit_events
                  WHERE actor_user_id = $3 AND event_id < $2{and_conditions}
                  ORDER BY event_id DESC LIMIT $1)
                 UNION ALL
                 (SELECT * FROM audit_events
                  WHERE subject_user_id = $3 AND actor_user_id IS DISTINCT FROM $3
                    AND event_id < $2{and_conditions}
                  ORDER BY event_id DESC LIMIT $1)
             ) e
             ORDER BY event_id DESC LIMIT $1"
        )
    } else {
        format!(
            "SELECT {COLUMNS} FROM audit_events
             WHERE event_id < $2{and_conditions}
             ORDER BY event_id DESC LIMIT $1"
        )
    };
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &params).await?;
    crate::telemetry::record_rows(rows.len() as u64);
    Ok(rows.iter().map(AuditEvent::from).collect())
}

/// A page of the session's events older than `before`, newest first, if
/// the calling user's role is in `permitted`.
#[tracing::instrument(name = "audit.session_trail", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "audit.session_trail",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn session_trail(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
    permitted: &[&str],
    before: i64,
    limit: i64,
) -> Result<Guarded<Vec<AuditEvent>>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(" "),
            guarded_select!(
                ", e.*",
                " LEFT JOIN LATERAL (
                 SELECT event_id, occurred_at, actor_kind, actor_app_id, actor_user_id, action,
                        target_kind, target_id, app_id, session_id, subject_user_id,
                        invocation_id, details
                 FROM audit_events
                 WHERE caller.role = ANY($4::text[]) AND session_id = $2 AND event_id < $5
                 ORDER BY event_id DESC
                 LIMIT $6
             ) e ON true"
            )
        ))
        .await?;
    let rows = client
        .query(
            &stmt,
            &[&key, &session_id, &caller, &permitted, &before, &limit],
        )
        .await?;
    crate::telemetry::record_rows(rows.len() as u64);
    Guarded::from_row(&rows[0], |_| {
        let allowed = rows[0]
            .get::<_, Option<&str>>("caller_role")
            .is_some_and(|role| permitted.contains(&role));
        Ok(allowed.then(|| {
            rows.iter()
                .filter(|row| row.get::<_, Option<i64>>("event_id").is_some())
                .map(AuditEvent::from)
                .collect()
        }))
    })
}
