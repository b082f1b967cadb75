//! Who is calling: request extractors that authenticate the admin, an
//! application (`X-API-Key`) and a user (`Authorization: Bearer <JWT>`).
//! A handler states what it needs by the extractor it takes.

pub mod api_key;
pub mod token;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::auth::token::TokenError;
use crate::db::{DbError, applications};
use crate::error::ApiError;
use crate::settings::{DEV_APP_ID, DEV_USER_ID};
use crate::state::AppState;

/// The header carrying an application's (or the admin's) key.
pub const API_KEY_HEADER: &str = "x-api-key";
const API_KEY_CHALLENGE: &str = "ApiKey realm=\"amplifier\", header=\"X-API-Key\"";

/// The admin: `X-API-Key` equal to `ADMIN_API_KEY`.
#[derive(Debug)]
pub struct Admin;

/// An active application.
#[derive(Debug)]
pub struct AppCaller {
    pub app_id: String,
}

/// An active application, or the admin (config writes accept either).
#[derive(Debug)]
pub enum AppOrAdmin {
    Admin,
    App(String),
}

impl AppOrAdmin {
    /// The application to limit a write to; `None` for the admin.
    pub fn app_id(&self) -> Option<&str> {
        match self {
            AppOrAdmin::Admin => None,
            AppOrAdmin::App(id) => Some(id),
        }
    }
}

/// An active application acting for a user.
#[derive(Debug)]
pub struct UserCaller {
    pub app_id: String,
    pub user_id: Uuid,
}

fn key_error(detail: &str) -> ApiError {
    ApiError::Unauthorized {
        detail: detail.to_owned(),
        challenge: API_KEY_CHALLENGE.to_owned(),
    }
}

fn api_key(parts: &Parts) -> Result<Option<&str>, ApiError> {
    parts
        .headers
        .get(API_KEY_HEADER)
        .map(|v| v.to_str().map_err(|_| key_error("X-API-Key is not valid")))
        .transpose()
}

async fn is_admin_key(state: &AppState, key: &str) -> Result<bool, ApiError> {
    let secrets = state.secrets.get().await.map_err(DbError::from)?;
    Ok(secrets
        .admin_api_key
        .as_ref()
        .is_some_and(|admin| api_key::secrets_match(key, admin.expose_secret())))
}

const NOT_AN_APPLICATION_KEY: &str =
    "X-API-Key is not a valid application key (unknown, deleted, or replaced by rotate-key)";

/// The application a key belongs to, if it is active.
async fn application_for_key(state: &AppState, key: &str) -> Result<String, ApiError> {
    let client = state.db.client().await?;
    match applications::find_by_key_hash(&client, &api_key::hash(key)).await? {
        Some(owner) if owner.is_active => Ok(owner.app_id),
        Some(_) => Err(key_error(
            "the application of this X-API-Key is deactivated",
        )),
        None => Err(key_error(NOT_AN_APPLICATION_KEY)),
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(key) = api_key(parts)? else {
            return Err(key_error("this function needs the admin key in X-API-Key"));
        };
        if is_admin_key(state, key).await? {
            return Ok(Admin);
        }
        // A valid application key is authenticated but not allowed here.
        match application_for_key(state, key).await {
            Ok(_) => Err(ApiError::Forbidden(
                "only the admin key may manage applications".to_owned(),
            )),
            Err(ApiError::Unauthorized { .. }) => Err(key_error(
                "X-API-Key is not the admin key (nor any application's key)",
            )),
            Err(other) => Err(other),
        }
    }
}

impl FromRequestParts<AppState> for AppCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(key) = api_key(parts)? else {
            if !state.settings.auth.required {
                return Ok(AppCaller {
                    app_id: DEV_APP_ID.to_owned(),
                });
            }
            return Err(key_error(
                "this function needs an application key in X-API-Key",
            ));
        };
        if is_admin_key(state, key).await? {
            return Err(ApiError::Forbidden(
                "the admin key only manages applications; call this function with an application key"
                    .to_owned(),
            ));
        }
        Ok(AppCaller {
            app_id: application_for_key(state, key).await?,
        })
    }
}

impl FromRequestParts<AppState> for AppOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match api_key(parts)? {
            Some(key) if is_admin_key(state, key).await? => Ok(AppOrAdmin::Admin),
            _ => Ok(AppOrAdmin::App(
                AppCaller::from_request_parts(parts, state).await?.app_id,
            )),
        }
    }
}

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The application key first: a caller without a valid key learns
        // nothing about the token it sends (no oracle for stolen tokens).
        let app = AppCaller::from_request_parts(parts, state).await?;
        let user_id = user(parts, state).await?;
        Ok(UserCaller {
            app_id: app.app_id,
            user_id,
        })
    }
}

fn bearer_error(detail: String, description: &str) -> ApiError {
    ApiError::Unauthorized {
        detail,
        challenge: format!(
            "Bearer realm=\"amplifier\", error=\"invalid_token\", error_description=\"{description}\""
        ),
    }
}

async fn user(parts: &Parts, state: &AppState) -> Result<Uuid, ApiError> {
    let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        if !state.settings.auth.required {
            return Ok(DEV_USER_ID);
        }
        return Err(ApiError::Unauthorized {
            detail: "this function needs a user token in Authorization: Bearer <token>".to_owned(),
            challenge: "Bearer realm=\"amplifier\"".to_owned(),
        });
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            bearer_error(
                "the Authorization header must be `Bearer <token>`".to_owned(),
                "malformed Authorization header",
            )
        })?;
    let secrets = state.secrets.get().await.map_err(DbError::from)?;
    match state.tokens.verify(token, &secrets.secret_key).await {
        Ok(user) => Ok(user),
        Err(TokenError::KeysUnavailable(cause)) => {
            tracing::warn!(%cause, "cannot fetch token signing keys");
            Err(ApiError::Unavailable(
                "the token signing keys cannot be fetched; retry shortly".to_owned(),
            ))
        }
        Err(TokenError::Malformed) if !state.settings.environment.is_deployed() => {
            Err(bearer_error(
                format!(
                    "{}; for local use, get one with `amplifier-sessions dev-token --user <uuid>`",
                    TokenError::Malformed
                ),
                "malformed token",
            ))
        }
        Err(e) => Err(bearer_error(e.to_string(), "the token was rejected")),
    }
}
