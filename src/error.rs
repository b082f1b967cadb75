//! The one error type of the HTTP layer, rendered as RFC 9457
//! `application/problem+json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::db::DbError;

/// Seconds a client should wait before retrying a 503, or a 429 for a
/// pool share (connections come back within milliseconds to seconds).
const RETRY_AFTER_SECONDS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request syntax: JSON, path parameters.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or invalid credentials; `challenge` becomes `WWW-Authenticate`.
    #[error("{detail}")]
    Unauthorized { detail: String, challenge: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// The client stopped sending its request body.
    #[error("{0}")]
    RequestTimeout(String),
    /// What the request would answer with existed and was deleted: a
    /// replayed Idempotency-Key whose session is gone.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but invalid content; the message names the field.
    #[error("{0}")]
    Validation(String),
    /// The caller is over a rate limit, or its application holds its share
    /// of this instance's database connections (others are still served);
    /// `retry_after` seconds becomes `Retry-After`.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// The database or another service we depend on cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of ours. The cause is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

/// RFC 9457 problem details: the body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema, utoipa::ToResponse)]
#[response(
    description = "An error, as RFC 9457 problem details",
    content_type = "application/problem+json"
)]
pub struct Problem {
    /// A URI reference naming the kind of problem, e.g. `/problems/not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong with this request.
    pub detail: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            RequestTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            Gone(_) => (StatusCode::GONE, "gone", "Gone"),
            PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-error",
                "Validation failed",
            ),
            TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal server error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let detail = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(cause = %cause, "request failed with an internal error");
                "the server failed to handle this request".to_owned()
            }
            other => other.to_string(),
        };
        let body = Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::Unauthorized { challenge, .. } => {
                if let Ok(value) = HeaderValue::from_str(challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(cause) | DbError::PasswordRejected(cause) => {
                tracing::warn!(cause = %cause, "database unavailable");
                ApiError::Unavailable("the database is unavailable; retry shortly".to_owned())
            }
            DbError::Secrets(cause) => {
                tracing::error!(cause = %cause, "secrets unavailable");
                ApiError::Unavailable(
                    "the service's secrets are unavailable; retry shortly".to_owned(),
                )
            }
            DbError::SchemaUnusable(cause) => {
                tracing::error!(cause = %cause, "the database schema is not usable; was the deployment's migrate --grant-to run?");
                ApiError::Unavailable(
                    "the service is not ready: its database schema is not usable".to_owned(),
                )
            }
            // Input is checked field by field before it is stored; should
            // PostgreSQL still refuse a value, its words (which may echo
            // the value or name a constraint) stay in the log.
            DbError::InvalidValue(cause) => {
                tracing::warn!(%cause, "PostgreSQL refused a value");
                ApiError::Validation("a value in this request cannot be stored".to_owned())
            }
            DbError::Conflict(cause) => {
                tracing::info!(%cause, "transaction conflict; the client may retry");
                ApiError::Unavailable(
                    "the request collided with a concurrent one and changed nothing; retry it"
                        .to_owned(),
                )
            }
            DbError::Vanished(cause) => {
                tracing::info!(%cause, "a referenced row was deleted concurrently");
                ApiError::NotFound(
                    "what this request refers to was deleted while it ran".to_owned(),
                )
            }
            DbError::Cancelled(cause) => {
                tracing::warn!(%cause, "statement cancelled");
                ApiError::Unavailable(
                    "the database did not finish this request in time and it changed nothing; retry shortly"
                        .to_owned(),
                )
            }
            DbError::OverShare(over) => {
                tracing::info!(%over, "an application's request refused: over its pool share");
                ApiError::TooManyRequests {
                    detail: over.to_string(),
                    retry_after: RETRY_AFTER_SECONDS,
                }
            }
            DbError::KeyRefused(refusal) => crate::auth::key_refused(refusal),
            DbError::LastOwner => {
                ApiError::Conflict("a session must keep at least one owner".to_owned())
            }
            DbError::ConfigShared(sessions) => ApiError::Conflict(format!(
                "the config is used by {sessions} session(s) of other applications: \
                 it cannot be deleted and its yaml_content cannot change; retire it instead \
                 (retired: true) and it is deleted with the last session using it"
            )),
            DbError::UniqueViolation(constraint) => {
                tracing::info!(%constraint, "unique violation");
                ApiError::Conflict("the request conflicts with an existing record".to_owned())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}
