//! Who is calling: request extractors for the admin, an application
//! (`X-API-Key`) and a user (`Authorization: Bearer <JWT>`). A handler
//! states what it needs by the extractor it takes.
//!
//! An application's key is not looked up here: the statement that does the
//! work checks it (`db::caller`), so a request is one database round trip
//! and a rotated or deactivated key is refused at once on every instance.
//! Everything that needs no database is decided here: a missing key, the
//! admin key where an application's is needed, the user token.

pub mod api_key;
pub mod dev_user;
pub mod known_keys;
pub mod token;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::auth::token::TokenError;
use crate::db::{DbError, KeyRefusal, applications};
use crate::error::ApiError;
use crate::limits::pool_share;
use crate::limits::rate::{self, Refusal};
use crate::settings::DEV_USER_ID;
use crate::state::AppState;
use crate::telemetry::metrics;

/// The header carrying an application's (or the admin's) key.
pub const API_KEY_HEADER: &str = "x-api-key";
const API_KEY_CHALLENGE: &str = "ApiKey realm=\"amplifier\", header=\"X-API-Key\"";

/// The admin: `X-API-Key` equal to `ADMIN_API_KEY`.
#[derive(Debug)]
pub struct Admin;

/// An application's key, as statements check it: the SHA-256 of the key
/// sent, or `None` for a call without a key where `AUTH_REQUIRED=false`
/// (which acts as the development application).
#[derive(Debug, Clone)]
pub struct AppKey(Option<String>);

impl AppKey {
    fn of(key: &str) -> Self {
        Self(Some(api_key::hash(key)))
    }

    /// The statement parameter `$1`.
    pub fn hash(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// An application (its key still to be checked by the statement).
#[derive(Debug)]
pub struct AppCaller {
    pub key: AppKey,
}

/// An application, or the admin (config writes accept either).
#[derive(Debug)]
pub enum AppOrAdmin {
    Admin,
    App(AppKey),
}

impl AppOrAdmin {
    /// Who a config write is for.
    pub fn writer(&self) -> crate::db::configs::Writer<'_> {
        match self {
            AppOrAdmin::Admin => crate::db::configs::Writer::Admin,
            AppOrAdmin::App(key) => crate::db::configs::Writer::App(key.hash()),
        }
    }
}

/// An application acting for a user whose token was verified.
#[derive(Debug)]
pub struct UserCaller {
    pub key: AppKey,
    pub user_id: Uuid,
}

fn key_error(detail: &str) -> ApiError {
    ApiError::Unauthorized {
        detail: detail.to_owned(),
        challenge: API_KEY_CHALLENGE.to_owned(),
    }
}

/// The answer to a key a statement refused.
pub fn key_refused(refusal: KeyRefusal) -> ApiError {
    key_error(match refusal {
        KeyRefusal::Unknown => {
            "X-API-Key is not a valid application key (unknown, deleted, or replaced by rotate-key)"
        }
        KeyRefusal::Deactivated => "the application of this X-API-Key is deactivated",
    })
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

/// Checks a key with a statement of its own: only on paths that end in an
/// error anyway (so the error tells the right story), never on success.
async fn check_key(state: &AppState, key: &AppKey) -> Result<(), ApiError> {
    let client = state.db.client().await?;
    applications::check_key(&*client, key.hash()).await?;
    Ok(())
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
        // A valid application key is authenticated but not allowed here;
        // its lookup counts against the application's pool share.
        let key = AppKey::of(key);
        pool_share::claim(key.hash());
        match check_key(state, &key).await {
            Ok(()) => Err(ApiError::Forbidden(
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
        let key = app_key(parts, state).await?;
        count(parts, state, &key, None).await?;
        Ok(AppCaller { key })
    }
}

/// The application's key, refused before the body is read if it is not
/// one (extractors of the head run first): a key this instance has not
/// seen valid lately is looked up once.
async fn app_key(parts: &Parts, state: &AppState) -> Result<AppKey, ApiError> {
    let Some(key) = api_key(parts)? else {
        if !state.settings.auth.required {
            pool_share::claim(None);
            return Ok(AppKey(None));
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
    let key = AppKey::of(key);
    // Every database call of the request counts against the key's share
    // of the pool, its lookup below included.
    pool_share::claim(key.hash());
    if let Some(hash) = key.hash()
        && !state.known_keys.contains(hash)
    {
        check_key(state, &key).await?;
        state.known_keys.insert(hash);
    }
    Ok(key)
}

/// Counts the request against the rate limits of its application and
/// user (`limits::rate`), before any of its work is done; the response
/// then carries the caller's standing.
async fn count(
    parts: &Parts,
    state: &AppState,
    key: &AppKey,
    user: Option<Uuid>,
) -> Result<(), ApiError> {
    let caller = rate::Caller {
        api_key_hash: key.hash(),
        user,
        writes: !parts.method.is_safe(),
    };
    let admitted = state.rate.admit(caller).await;
    let slot = parts.extensions.get::<rate::Slot>();
    match admitted {
        Ok(standings) => {
            if let Some(slot) = slot {
                slot.fill(standings);
            }
            Ok(())
        }
        Err(Refusal::OverLimit {
            policy,
            counted,
            limit,
            retry_after,
            standings,
        }) => {
            if let Some(slot) = slot {
                slot.fill(standings);
            }
            count_refusal(policy);
            Err(ApiError::TooManyRequests {
                detail: format!(
                    "over the \"{policy}\" rate limit: {limit} {counted} per minute; \
                     retry in {retry_after} s"
                ),
                retry_after,
            })
        }
        Err(Refusal::ShareUsedUp { policy, standings }) => {
            if let Some(slot) = slot {
                slot.fill(standings);
            }
            count_refusal(policy);
            Err(ApiError::TooManyRequests {
                detail: format!(
                    "near the \"{policy}\" rate limit, this instance's share of what is left \
                     is used up until it learns the other instances' use; retry in 1 s"
                ),
                retry_after: 1,
            })
        }
        Err(refusal @ Refusal::Unsynced) => {
            tracing::warn!(%refusal, "rate limits could not be checked");
            Err(ApiError::Unavailable(
                "the database is unavailable, so rate limits cannot be checked; retry shortly"
                    .to_owned(),
            ))
        }
    }
}

fn count_refusal(policy: &str) {
    if let Some(policy) = metrics::RateLimitPolicy::from_policy(policy) {
        metrics::rate_limited(policy);
    }
}

/// Whether the request carries the admin key: a wrong key, or none, is
/// not (never an error: for answers that only add detail for the admin).
pub async fn is_admin(headers: &axum::http::HeaderMap, state: &AppState) -> bool {
    match headers.get(API_KEY_HEADER).map(|v| v.to_str()) {
        Some(Ok(key)) => is_admin_key(state, key).await.unwrap_or(false),
        _ => false,
    }
}

impl FromRequestParts<AppState> for AppOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match api_key(parts)? {
            Some(key) if is_admin_key(state, key).await? => Ok(AppOrAdmin::Admin),
            _ => Ok(AppOrAdmin::App(
                AppCaller::from_request_parts(parts, state).await?.key,
            )),
        }
    }
}

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = app_key(parts, state).await?;
        match user(parts, state).await {
            Ok(user_id) => {
                count(parts, state, &key, Some(user_id)).await?;
                Ok(UserCaller { key, user_id })
            }
            // A caller without a valid key learns nothing about its token
            // (no oracle for stolen tokens): the key's refusal wins.
            Err(token_error @ ApiError::Unauthorized { .. }) => {
                check_key(state, &key).await?;
                Err(token_error)
            }
            Err(other) => Err(other),
        }
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
            if let Some(acted) = parts.extensions.get::<dev_user::ActedAsDevUser>() {
                acted.mark();
            }
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
