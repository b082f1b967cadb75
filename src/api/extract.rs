//! Request extractors whose rejections are our problem+json errors instead
//! of axum's plain-text ones.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use tower_http::timeout::TimeoutError;
use utoipa::PartialSchema;
use utoipa::openapi::{RefOr, Schema};

use crate::error::ApiError;

const NOT_JSON: &str = "the body must be JSON with Content-Type: application/json";

/// A JSON object as the request body (`Content-Type: application/json`, at
/// most `MAX_BODY_BYTES`).
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned + PartialSchema,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(NOT_JSON.to_owned()));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge("the body exceeds the size limit".to_owned())
                } else if caused_by::<TimeoutError>(&rejection) {
                    ApiError::RequestTimeout(
                        "the request body stopped arriving (HTTP_BODY_TIMEOUT_MS)".to_owned(),
                    )
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })?;
        // serde would read an array as the struct's fields in order, and
        // say something about its first element that helps nobody.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::Validation(format!(
                "the body must be a JSON object such as {}, not an array",
                example::<T>()
            )));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// Whether an `E` is somewhere in `error`'s chain of sources.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<E>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// `application/json`, or a `+json` type, as axum's `Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The shape of `T`'s object from its schema: its required fields, or else
/// its fields (`{"messages": …}`).
fn example<T: PartialSchema>() -> String {
    let RefOr::T(Schema::Object(object)) = T::schema() else {
        return "{…}".to_owned();
    };
    let names: Vec<&String> = if object.required.is_empty() {
        object.properties.keys().take(3).collect()
    } else {
        object.required.iter().collect()
    };
    let fields: Vec<String> = names.iter().map(|n| format!("\"{n}\": …")).collect();
    format!("{{{}}}", fields.join(", "))
}

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
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType(NOT_JSON.to_owned())
            }
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
