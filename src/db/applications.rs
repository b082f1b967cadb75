//! `applications`: the API clients, each authenticated by a hashed key.

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use serde::Serialize;
use serde_json::Value;

use super::DbError;

/// An application as the admin sees it; never its key or key hash.
#[derive(Debug, Serialize)]
pub struct Application {
    pub app_id: String,
    pub app_name: String,
    pub is_active: bool,
    pub settings: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What authentication needs to know about a presented key.
pub struct KeyOwner {
    pub app_id: String,
    pub is_active: bool,
}

/// Inserts a new application; `Ok(None)` when `app_id` is taken.
pub async fn insert(
    client: &Client,
    app_id: &str,
    app_name: &str,
    api_key_hash: &str,
    settings: &Value,
) -> Result<Option<Application>, DbError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO applications (app_id, app_name, api_key_hash, settings)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (app_id) DO NOTHING
             RETURNING app_id, app_name, is_active, settings, created_at, updated_at",
        )
        .await?;
    let row = client
        .query_opt(&stmt, &[&app_id, &app_name, &api_key_hash, settings])
        .await?;
    Ok(row.map(|row| Application {
        app_id: row.get("app_id"),
        app_name: row.get("app_name"),
        is_active: row.get("is_active"),
        settings: row.get::<_, Option<Value>>("settings").unwrap_or_default(),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }))
}

/// The application holding the key with this SHA-256 hash, if any.
pub async fn find_by_key_hash(
    client: &Client,
    api_key_hash: &str,
) -> Result<Option<KeyOwner>, DbError> {
    let stmt = client
        .prepare_cached("SELECT app_id, is_active FROM applications WHERE api_key_hash = $1")
        .await?;
    let row = client.query_opt(&stmt, &[&api_key_hash]).await?;
    Ok(row.map(|row| KeyOwner {
        app_id: row.get("app_id"),
        is_active: row.get("is_active"),
    }))
}
