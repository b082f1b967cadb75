//! `configs`: the YAML configurations sessions are created from. Each records
//! the application that created it.

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::DbError;

#[derive(Debug, Serialize)]
pub struct Config {
    pub config_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub yaml_content: String,
    pub tags: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Row> for Config {
    fn from(row: Row) -> Self {
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

pub async fn insert(client: &Client, app_id: &str, new: &NewConfig<'_>) -> Result<Config, DbError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO configs (name, description, yaml_content, tags, created_by_app_id)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING config_id, name, description, yaml_content, tags, created_at, updated_at",
        )
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
    Ok(row.into())
}

/// Any application may read any config; only writes are limited to its creator.
pub async fn get(client: &Client, config_id: Uuid) -> Result<Option<Config>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT config_id, name, description, yaml_content, tags, created_at, updated_at
             FROM configs WHERE config_id = $1",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&config_id])
        .await?
        .map(Config::from))
}
