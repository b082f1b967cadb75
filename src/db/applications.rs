//! `applications`: the API clients, each authenticated by a hashed key.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::DbError;
use super::caller::{check_key as check_key_verdict, verdict, verdict_from, with_app};
use crate::audit::{InvocationId, action};

const COLUMNS: &str = "app_id, app_name, is_active, settings, created_at, updated_at";

/// An application as the admin sees it; never its key or key hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct Application {
    pub app_id: String,
    pub app_name: String,
    pub is_active: bool,
    #[schema(value_type = Object)]
    pub settings: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Row> for Application {
    fn from(row: &Row) -> Self {
        Self {
            app_id: row.get("app_id"),
            app_name: row.get("app_name"),
            is_active: row.get("is_active"),
            settings: row.get::<_, Option<Value>>("settings").unwrap_or_default(),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

/// Why an application id cannot be registered.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// An application has it.
    InUse,
    /// A deleted application had it: ids are never reused.
    Retired,
}

/// Inserts a new application, and its audit row (the admin registered
/// it); `Err(Taken)` when `app_id` is in use or was used by a deleted
/// application.
#[tracing::instrument(name = "applications.insert", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "applications.insert",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn insert(
    client: &impl GenericClient,
    app_id: &str,
    app_name: &str,
    api_key_hash: &str,
    settings: &Value,
    invocation: &InvocationId,
) -> Result<Result<Application, Taken>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "WITH inserted AS (
                 INSERT INTO applications (app_id, app_name, api_key_hash, settings)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (app_id) DO NOTHING
                 RETURNING {COLUMNS}
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, action, target_kind, target_id, app_id, invocation_id)
                 SELECT 'admin', $5, 'application', app_id, app_id, $6 FROM inserted
             )
             SELECT * FROM inserted"
        ))
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &app_id,
                &app_name,
                &api_key_hash,
                settings,
                &action::APPLICATION_REGISTERED,
                &invocation.as_deref(),
            ],
        )
        .await?;
    if let Some(row) = row {
        return Ok(Ok(Application::from(&row)));
    }
    let stmt = client
        .prepare_cached("SELECT deleted_at IS NOT NULL FROM applications WHERE app_id = $1")
        .await?;
    let retired = client
        .query_opt(&stmt, &[&app_id])
        .await?
        .is_some_and(|row| row.get(0));
    Ok(Err(if retired {
        Taken::Retired
    } else {
        Taken::InUse
    }))
}

/// Whether `key` (a key's SHA-256; `None`: the development application)
/// belongs to an active application. Only for answers that are errors
/// anyway: the statements of the functions check the key themselves.
#[tracing::instrument(name = "applications.check_key", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "applications.check_key",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn check_key(client: &impl GenericClient, key: Option<&str>) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(concat!(with_app!(" "), verdict!(), verdict_from!()))
        .await?;
    let row = client.query_one(&stmt, &[&key]).await?;
    check_key_verdict(&row)
}

/// All applications but deleted ones, oldest first (there are few: one per
/// client product).
#[tracing::instrument(name = "applications.list", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "applications.list",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn list(client: &impl GenericClient) -> Result<Vec<Application>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM applications WHERE deleted_at IS NULL
             ORDER BY created_at, app_id"
        ))
        .await?;
    let rows = client.query(&stmt, &[]).await?;
    crate::telemetry::record_rows(rows.len() as u64);
    Ok(rows.iter().map(Application::from).collect())
}

#[tracing::instrument(name = "applications.get", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "applications.get",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn get(
    client: &impl GenericClient,
    app_id: &str,
) -> Result<Option<Application>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM applications WHERE app_id = $1 AND deleted_at IS NULL"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&app_id])
        .await?
        .as_ref()
        .map(Application::from))
}

/// A partial update; `None` leaves a field unchanged.
pub struct ApplicationChanges<'a> {
    pub app_name: Option<&'a str>,
    pub is_active: Option<bool>,
    pub settings: Option<&'a Value>,
}

/// Applies `changes`, with an audit row for each change the trail records
/// (the admin acted): deactivation, reactivation, and a change of the
/// limits (`settings.rate_limits`, `settings.retention`), whose details
/// name which changed, not the values. The row is locked first, so
/// `before` is the version the update replaces, even after waiting for a
/// concurrent update.
#[tracing::instrument(name = "applications.update", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "applications.update",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn update(
    client: &impl GenericClient,
    app_id: &str,
    changes: &ApplicationChanges<'_>,
    invocation: &InvocationId,
) -> Result<Option<Application>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "WITH before AS (
                 SELECT app_id, is_active, settings FROM applications
                 WHERE app_id = $1 AND deleted_at IS NULL
                 FOR NO KEY UPDATE
             ), updated AS (
                 UPDATE applications a
                 SET app_name = COALESCE($2, a.app_name),
                     is_active = COALESCE($3, a.is_active),
                     settings = COALESCE($4::jsonb, a.settings)
                 FROM before
                 WHERE a.app_id = before.app_id
                 RETURNING a.*
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, action, target_kind, target_id, app_id, invocation_id, details)
                 SELECT 'admin', change.action, 'application', updated.app_id, updated.app_id,
                        $5, change.details
                 FROM updated
                 JOIN before ON before.app_id = updated.app_id
                 CROSS JOIN LATERAL (
                     SELECT array_agg(setting ORDER BY setting) AS names
                     FROM unnest(ARRAY['rate_limits', 'retention']) AS setting
                     WHERE before.settings -> setting IS DISTINCT FROM updated.settings -> setting
                 ) limits
                 CROSS JOIN LATERAL (VALUES
                     ($6, before.is_active AND NOT updated.is_active, '{{}}'::jsonb),
                     ($7, updated.is_active AND NOT before.is_active, '{{}}'::jsonb),
                     ($8, limits.names IS NOT NULL, jsonb_build_object('changed', limits.names))
                 ) AS change (action, happened, details)
                 WHERE change.happened
             )
             SELECT {COLUMNS} FROM updated"
        ))
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &app_id,
                &changes.app_name,
                &changes.is_active,
                &changes.settings,
                &invocation.as_deref(),
                &action::APPLICATION_DEACTIVATED,
                &action::APPLICATION_REACTIVATED,
                &action::APPLICATION_LIMITS_CHANGED,
            ],
        )
        .await?;
    Ok(row.as_ref().map(Application::from))
}

/// Replaces the key hash: the old key stops working with this statement,
/// which also writes the audit row (the admin rotated it).
#[tracing::instrument(name = "applications.rotate_key", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "applications.rotate_key",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn rotate_key(
    client: &impl GenericClient,
    app_id: &str,
    api_key_hash: &str,
    invocation: &InvocationId,
) -> Result<Option<Application>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "WITH rotated AS (
                 UPDATE applications SET api_key_hash = $2
                 WHERE app_id = $1 AND deleted_at IS NULL
                 RETURNING {COLUMNS}
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, action, target_kind, target_id, app_id, invocation_id)
                 SELECT 'admin', $3, 'application', app_id, app_id, $4 FROM rotated
             )
             SELECT * FROM rotated"
        ))
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &app_id,
                &api_key_hash,
                &action::APPLICATION_KEY_ROTATED,
                &invocation.as_deref(),
            ],
        )
        .await?;
    Ok(row.as_ref().map(Application::from))
}

/// Deletes the application; `false` when there was none. Its row stays as
/// a tombstone so that the id is never registered again; its key stops
/// working (a value no SHA-256 hex digest equals) and its idempotency
/// records go. Its configs and sessions stay (they belong to users). The
/// statement writes the audit row (the admin deleted it).
#[tracing::instrument(name = "applications.delete", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "applications.delete",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn delete(
    client: &impl GenericClient,
    app_id: &str,
    invocation: &InvocationId,
) -> Result<bool, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH retired AS (
                 UPDATE applications
                 SET deleted_at = now(), is_active = false, api_key_hash = 'deleted:' || app_id
                 WHERE app_id = $1 AND deleted_at IS NULL
                 RETURNING app_id
             ), forgotten AS (
                 DELETE FROM idempotency_keys WHERE app_id IN (SELECT app_id FROM retired)
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, action, target_kind, target_id, app_id, invocation_id)
                 SELECT 'admin', $2, 'application', app_id, app_id, $3 FROM retired
             )
             SELECT count(*) FROM retired",
        )
        .await?;
    let retired: i64 = client
        .query_one(
            &stmt,
            &[
                &app_id,
                &action::APPLICATION_DELETED,
                &invocation.as_deref(),
            ],
        )
        .await?
        .get(0);
    Ok(retired > 0)
}
