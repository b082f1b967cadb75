//! `configs`: the YAML configurations sessions are created from. Each records
//! the application that created it; only that application or the admin may
//! change or delete it.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;

const COLUMNS: &str = "config_id, name, description, yaml_content, tags, created_at, updated_at";

#[derive(Debug, Serialize, ToSchema)]
pub struct Config {
    pub config_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub yaml_content: String,
    /// An object of strings.
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub tags: Value,
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
}

pub async fn insert(
    client: &impl GenericClient,
    app_id: &str,
    new: &NewConfig<'_>,
) -> Result<Config, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO configs (name, description, yaml_content, tags, created_by_app_id)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING {COLUMNS}"
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &new.name,
                &new.description,
                &new.yaml_content,
                new.tags,
                &app_id,
            ],
        )
        .await?;
    Ok(Config::from(&row))
}

/// Any application may read any config; only writes are limited to its creator.
pub async fn get(client: &impl GenericClient, config_id: Uuid) -> Result<Option<Config>, DbError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM configs WHERE config_id = $1"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&config_id])
        .await?
        .as_ref()
        .map(Config::from))
}

/// Where the previous page of configs ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConfigsAfter {
    pub created_at: DateTime<Utc>,
    pub config_id: Uuid,
}

/// A page of `app_id`'s configs, newest first, ties by id, read in the
/// order of `idx_configs_app_created` from the cursor on.
pub async fn list(
    client: &impl GenericClient,
    app_id: &str,
    after: Option<&ConfigsAfter>,
    limit: i64,
) -> Result<Vec<Config>, DbError> {
    let rows = match after {
        None => {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM configs WHERE created_by_app_id = $1
                     ORDER BY created_at DESC, config_id LIMIT $2"
                ))
                .await?;
            client.query(&stmt, &[&app_id, &limit]).await?
        }
        Some(after) => {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM configs
                     WHERE created_by_app_id = $1 AND created_at <= $2
                       AND (created_at < $2 OR config_id > $3)
                     ORDER BY created_at DESC, config_id LIMIT $4"
                ))
                .await?;
            client
                .query(
                    &stmt,
                    &[&app_id, &after.created_at, &after.config_id, &limit],
                )
                .await?
        }
    };
    Ok(rows.iter().map(Config::from).collect())
}

/// Who is changing a config: its creator, or the admin (`None`).
pub type Writer<'a> = Option<&'a str>;

/// The outcome of a write limited to a config's creator.
#[derive(Debug)]
pub enum ConfigWrite<T> {
    NotFound,
    /// It exists but belongs to another application.
    NotYours,
    Done(T),
}

fn config_write<T>(row: Option<Row>, done: impl FnOnce(&Row) -> Option<T>) -> ConfigWrite<T> {
    match row {
        None => ConfigWrite::NotFound,
        Some(row) => done(&row).map_or(ConfigWrite::NotYours, ConfigWrite::Done),
    }
}

/// A partial update; `None` leaves a field unchanged. `description`
/// distinguishes "leave" (`None`) from "clear" (`Some(None)`).
pub struct ConfigChanges<'a> {
    pub name: Option<&'a str>,
    pub description: Option<Option<&'a str>>,
    pub yaml_content: Option<&'a str>,
    pub tags: Option<&'a Value>,
}

pub async fn update(
    client: &impl GenericClient,
    config_id: Uuid,
    writer: Writer<'_>,
    changes: &ConfigChanges<'_>,
) -> Result<ConfigWrite<Config>, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH target AS (
                 SELECT config_id FROM configs WHERE config_id = $1
             ), updated AS (
                 UPDATE configs c
                 SET name = COALESCE($3, c.name),
                     description = CASE WHEN $4 THEN $5 ELSE c.description END,
                     yaml_content = COALESCE($6, c.yaml_content),
                     tags = COALESCE($7::jsonb, c.tags)
                 WHERE c.config_id = $1 AND ($2::varchar IS NULL OR c.created_by_app_id = $2)
                 RETURNING c.*
             )
             SELECT updated.* FROM target LEFT JOIN updated ON true",
        )
        .await?;
    let description_given = changes.description.is_some();
    let description = changes.description.flatten();
    let row = client
        .query_opt(
            &stmt,
            &[
                &config_id,
                &writer,
                &changes.name,
                &description_given,
                &description,
                &changes.yaml_content,
                &changes.tags,
            ],
        )
        .await?;
    Ok(config_write(row, |row| {
        row.get::<_, Option<Uuid>>("config_id")
            .map(|_| Config::from(row))
    }))
}

/// Deletes the config and, through the foreign key, its sessions.
pub async fn delete(
    client: &impl GenericClient,
    config_id: Uuid,
    writer: Writer<'_>,
) -> Result<ConfigWrite<()>, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH target AS (
                 SELECT config_id FROM configs WHERE config_id = $1
             ), deleted AS (
                 DELETE FROM configs c
                 WHERE c.config_id = $1 AND ($2::varchar IS NULL OR c.created_by_app_id = $2)
                 RETURNING c.config_id
             )
             SELECT deleted.config_id FROM target LEFT JOIN deleted ON true",
        )
        .await?;
    let row = client.query_opt(&stmt, &[&config_id, &writer]).await?;
    Ok(config_write(row, |row| {
        row.get::<_, Option<Uuid>>("config_id").map(|_| ())
    }))
}
