//! Request extractors whose rejections are our problem+json errors instead
//! of axum's plain-text ones.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;

use crate::error::ApiError;

/// A JSON request body (`Content-Type: application/json`, at most `MAX_BODY_BYTES`).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// Typed path parameters; a malformed one (e.g. not a UUID) is a 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParams<T>(pub T);

/// Typed query parameters; an invalid one is a 422 naming it.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "the body must be JSON with Content-Type: application/json".to_owned(),
            ),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::BadRequest(format!("malformed JSON: {}", cause(&e)))
            }
            JsonRejection::JsonDataError(e) => ApiError::Validation(cause(&e)),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge("the body exceeds the size limit".to_owned())
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

/// What was wrong, without the framework's preamble ("Failed to
/// deserialize the JSON body into the target type: "): serde's message,
/// which names the field (`messages[0].role: invalid type ...`).
fn cause(rejection: &dyn std::error::Error) -> String {
    rejection
        .source()
        .map_or_else(|| rejection.to_string(), ToString::to_string)
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(format!("malformed path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        match rejection {
            QueryRejection::FailedToDeserializeQueryString(e) => {
                ApiError::Validation(format!("invalid query string: {}", cause(&e)))
            }
            other => ApiError::Validation(other.body_text()),
        }
    }
}
