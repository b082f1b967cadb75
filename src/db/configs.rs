//! `configs`: the YAML configurations sessions are created from. Each records
//! the application that created it; only that application or the admin may
//! change, retire or delete it. Other applications see it only if it is
//! shared, or if sessions of theirs use it (migration V16).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use super::caller::{check_key, verdict, verdict_from, with_app};
use crate::audit::{InvocationId, action};

#[derive(Debug, Serialize, ToSchema)]
pub struct Config {
    pub config_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub yaml_content: String,
    /// An object of strings.
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub tags: Value,
    /// Other applications may read it and create sessions from it.
    pub shared: bool,
    /// It takes no new sessions, is no longer listed, and is deleted with
    /// its last session.
    pub retired: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Row> for Config {
    fn from(row: &Row) -> Self {
        Self {
            config_id: row.get("config_id"),
            name: row.get("name"),
            description: row.get("description"),
            yaml_content: row.get("yaml_content"),
            tags: row.get::<_, Option<Value>>("tags").unwrap_or_default(),
            shared: row.get("shared"),
            retired: row.get("retired"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

pub struct NewConfig<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub yaml_content: &'a str,
    pub tags: &'a Value,
    pub shared: bool,
}

/// Whether the application in `app` may see config `c`: it created it, it
/// is shared, or sessions of this application use it (they were created
/// while it was shared; they keep their config readable).
macro_rules! visible_to_app {
    () => {
        "(c.created_by_app_id = app.app_id OR c.shared
          OR EXISTS (SELECT 1 FROM sessions s
                     WHERE s.config_id = c.config_id AND s.created_by_app_id = app.app_id))"
    };
}

/// Stores a config created by the application of `key` (see `caller`),
/// with an audit row when it is created shared.
#[tracing::instrument(name = "configs.insert", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "configs.insert",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn insert(
    client: &impl GenericClient,
    key: Option<&str>,
    new: &NewConfig<'_>,
    invocation: &InvocationId,
) -> Result<Config, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_app!(
                ", inserted AS (
                 INSERT INTO configs (name, description, yaml_content, tags, shared, created_by_app_id)
                 SELECT $2, $3, $4, $5, $6, app.app_id FROM app WHERE app.is_active
                 RETURNING *
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, actor_app_id, action, target_kind, target_id, app_id,
                      invocation_id)
                 SELECT 'application', inserted.created_by_app_id, $7, 'config',
                        inserted.config_id::text, inserted.created_by_app_id, $8
                 FROM inserted WHERE inserted.shared
             ) "
            ),
            verdict!(),
            ", inserted.*",
            verdict_from!(),
            " LEFT JOIN inserted ON true"
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &new.name,
                &new.description,
                &new.yaml_content,
                new.tags,
                &new.shared,
                &action::CONFIG_SHARED,
                &invocation.as_deref(),
            ],
        )
        .await?;
    check_key(&row)?;
    Ok(Config::from(&row))
}

/// The config, if the calling application may see it (retired or not).
#[tracing::instrument(name = "configs.get", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "configs.get",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn get(
    client: &impl GenericClient,
    key: Option<&str>,
    config_id: Uuid,
) -> Result<Option<Config>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_app!(" "),
            verdict!(),
            ", c.*",
            verdict_from!(),
            " LEFT JOIN configs c ON app.is_active AND c.config_id = $2 AND ",
            visible_to_app!()
        ))
        .await?;
    let row = client.query_one(&stmt, &[&key, &config_id]).await?;
    check_key(&row)?;
    Ok(row
        .get::<_, Option<Uuid>>("config_id")
        .map(|_| Config::from(&row)))
}

/// Where the previous page of configs ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConfigsAfter {
    pub created_at: DateTime<Utc>,
    pub config_id: Uuid,
}

/// A page of the calling application's configs but retired ones, newest
/// first, ties by id, read in the order of `idx_configs_app_created` from
/// the cursor on.
#[tracing::instrument(name = "configs.list", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "configs.list",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn list(
    client: &impl GenericClient,
    key: Option<&str>,
    after: Option<&ConfigsAfter>,
    limit: i64,
) -> Result<Vec<Config>, DbError> {
    let rows = match after {
        None => {
            let stmt = client
                .prepare_cached(concat!(
                    with_app!(" "),
                    verdict!(),
                    ", c.*",
                    verdict_from!(),
                    " LEFT JOIN LATERAL (
                         SELECT * FROM configs WHERE app.is_active AND created_by_app_id = app.app_id
                           AND NOT retired
                         ORDER BY created_at DESC, config_id LIMIT $2
                     ) c ON true"
                ))
                .await?;
            client.query(&stmt, &[&key, &limit]).await?
        }
        Some(after) => {
            let stmt = client
                .prepare_cached(concat!(
                    with_app!(" "),
                    verdict!(),
                    ", c.*",
                    verdict_from!(),
                    " LEFT JOIN LATERAL (
                         SELECT * FROM configs
                         WHERE app.is_active AND created_by_app_id = app.app_id
                           AND NOT retired
                           AND created_at <= $3 AND (created_at < $3 OR config_id > $4)
                         ORDER BY created_at DESC, config_id LIMIT $2
                     ) c ON true"
                ))
                .await?;
            client
                .query(&stmt, &[&key, &limit, &after.created_at, &after.config_id])
                .await?
        }
    };
    crate::telemetry::record_rows(rows.len() as u64);
    check_key(&rows[0])?;
    Ok(rows
        .iter()
        .filter(|row| row.get::<_, Option<Uuid>>("config_id").is_some())
        .map(Config::from)
        .collect())
}

/// Who is changing a config: an application (its key, limited to the
/// configs it created) or the admin.
#[derive(Debug, Clone, Copy)]
pub enum Writer<'a> {
    Admin,
    App(Option<&'a str>),
}

impl Writer<'_> {
    /// `$1` (the key; the admin's statements pass none and run as the
    /// development application, whose verdict is always valid) and `$2`
    /// (whether the writer may change any config).
    fn params(&self) -> (Option<&str>, bool) {
        match self {
            Writer::Admin => (None, true),
            Writer::App(key) => (*key, false),
        }
    }
}

/// The outcome of a write limited to a config's creator.
#[derive(Debug)]
pub enum ConfigWrite<T> {
    /// It does not exist, or the writer may not see it.
    NotFound,
    /// The writer sees it, but another application created it.
    NotYours,
    Done(T),
}

fn config_write<T>(row: &Row, done: impl FnOnce(&Row) -> Option<T>) -> ConfigWrite<T> {
    match row.get::<_, Option<Uuid>>("target_id") {
        None => ConfigWrite::NotFound,
        Some(_) => done(row).map_or(ConfigWrite::NotYours, ConfigWrite::Done),
    }
}

/// A partial update; `None` leaves a field unchanged. `description`
/// distinguishes "leave" (`None`) from "clear" (`Some(None)`); `retire`
/// only ever retires.
pub struct ConfigChanges<'a> {
    pub name: Option<&'a str>,
    pub description: Option<Option<&'a str>>,
    pub yaml_content: Option<&'a str>,
    pub tags: Option<&'a Value>,
    pub shared: Option<bool>,
    pub retire: bool,
}

/// Applies `changes` for `writer`, with an audit row when the config
/// becomes shared and when it is retired. `target` locks the row, so its
/// `shared` and `retired` are those of the version the update replaces.
#[tracing::instrument(name = "configs.update", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "configs.update",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn update(
    client: &impl GenericClient,
    config_id: Uuid,
    writer: Writer<'_>,
    changes: &ConfigChanges<'_>,
    invocation: &InvocationId,
) -> Result<ConfigWrite<Config>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_app!(
                ", target AS (
                 SELECT c.config_id, c.shared, c.retired FROM configs c, app
                 WHERE app.is_active AND c.config_id = $3 AND ($2 OR ",
                visible_to_app!(),
                ")
                 FOR NO KEY UPDATE OF c
             ), updated AS (
                 UPDATE configs c
                 SET name = COALESCE($4, c.name),
                     description = CASE WHEN $5 THEN $6 ELSE c.description END,
                     yaml_content = COALESCE($7, c.yaml_content),
                     tags = COALESCE($8::jsonb, c.tags),
                     shared = COALESCE($9, c.shared),
                     retired = c.retired OR $10
                 FROM target, app
                 WHERE c.config_id = target.config_id
                   AND ($2 OR c.created_by_app_id = app.app_id)
                 RETURNING c.*
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, actor_app_id, action, target_kind, target_id, app_id,
                      invocation_id)
                 SELECT CASE WHEN $2 THEN 'admin' ELSE 'application' END,
                        CASE WHEN NOT $2 THEN app.app_id END,
                        change.action, 'config', updated.config_id::text,
                        updated.created_by_app_id, $11
                 FROM updated
                 JOIN target ON target.config_id = updated.config_id
                 CROSS JOIN app
                 CROSS JOIN LATERAL (VALUES
                     ($12, updated.shared AND NOT target.shared),
                     ($13, updated.retired AND NOT target.retired)
                 ) AS change (action, happened)
                 WHERE change.happened
             ) "
            ),
            verdict!(),
            ", target.config_id AS target_id, updated.*",
            verdict_from!(),
            " LEFT JOIN target ON true LEFT JOIN updated ON true"
        ))
        .await?;
    let (key, admin) = writer.params();
    let description_given = changes.description.is_some();
    let description = changes.description.flatten();
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &admin,
                &config_id,
                &changes.name,
                &description_given,
                &description,
                &changes.yaml_content,
                &changes.tags,
                &changes.shared,
                &changes.retire,
                &invocation.as_deref(),
                &action::CONFIG_SHARED,
                &action::CONFIG_RETIRED,
            ],
        )
        .await?;
    check_key(&row)?;
    Ok(config_write(&row, |row| {
        row.get::<_, Option<Uuid>>("config_id")
            .map(|_| Config::from(row))
    }))
}

/// Deletes the config and, through the foreign key, its sessions (refused
/// while other applications' sessions use it: migration V9; retiring is
/// the way out then), with its audit row.
#[tracing::instrument(name = "configs.delete", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "configs.delete",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn delete(
    client: &impl GenericClient,
    config_id: Uuid,
    writer: Writer<'_>,
    invocation: &InvocationId,
) -> Result<ConfigWrite<()>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_app!(
                ", target AS (
                 SELECT c.config_id FROM configs c, app
                 WHERE app.is_active AND c.config_id = $3 AND ($2 OR ",
                visible_to_app!(),
                ")
             ), deleted AS (
                 DELETE FROM configs c USING app
                 WHERE app.is_active AND c.config_id = $3
                   AND ($2 OR c.created_by_app_id = app.app_id)
                 RETURNING c.config_id, c.created_by_app_id
             ), audited AS (
                 INSERT INTO audit_events
                     (actor_kind, actor_app_id, action, target_kind, target_id, app_id,
                      invocation_id)
                 SELECT CASE WHEN $2 THEN 'admin' ELSE 'application' END,
                        CASE WHEN NOT $2 THEN app.app_id END,
                        $4, 'config', deleted.config_id::text, deleted.created_by_app_id, $5
                 FROM deleted CROSS JOIN app
             ) "
            ),
            verdict!(),
            ", target.config_id AS target_id, deleted.config_id",
            verdict_from!(),
            " LEFT JOIN target ON true LEFT JOIN deleted ON true"
        ))
        .await?;
    let (key, admin) = writer.params();
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &admin,
                &config_id,
                &action::CONFIG_DELETED,
                &invocation.as_deref(),
            ],
        )
        .await?;
    check_key(&row)?;
    Ok(config_write(&row, |row| {
        row.get::<_, Option<Uuid>>("config_id").map(|_| ())
    }))
}
