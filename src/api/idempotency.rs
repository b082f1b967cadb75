//! `Idempotency-Key` for create-session, fork-session and append-messages:
//! a retry with the same key, application, user and request within 24 hours gets
//! the first response again, and nothing is written twice. Should the
//! session that response is about have been deleted since, the retry gets
//! a 410 instead: the first response would point at nothing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deadpool_postgres::{Object, Transaction};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::UserCaller;
use crate::db::idempotency::{self, Claim, Recorded};
use crate::error::ApiError;

/// The request header naming an idempotent request, and the response header
/// marking a replay.
pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
const MAX_KEY_LENGTH: usize = 255;

/// The request's `Idempotency-Key`, if it sent one.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .filter(|k| {
                (1..=MAX_KEY_LENGTH).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(|k| Self(Some(k.to_owned())))
            .ok_or_else(|| {
                ApiError::Validation(format!(
                    "Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"
                ))
            })
    }
}

/// Identifies "the same request": who sent it where, and its parsed body
/// (so whitespace or key order do not matter).
pub fn request_hash(route: &str, user: uuid::Uuid, body: &impl Serialize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(user.as_bytes());
    hasher.update(serde_json::to_vec(body).expect("request bodies serialize"));
    format!("{:x}", hasher.finalize())
}

/// A JSON response kept as text, so that a replay is byte-for-byte the first.
pub struct JsonResponse {
    pub status: StatusCode,
    pub body: String,
    pub location: Option<String>,
    pub replayed: bool,
    /// The session the response is about: created, forked or appended to
    /// (unknown only in replays of records older than migration V11).
    pub session_id: Option<Uuid>,
}

impl JsonResponse {
    pub fn new(
        status: StatusCode,
        value: &impl Serialize,
        session_id: Uuid,
        location: Option<String>,
    ) -> Self {
        Self {
            status,
            body: serde_json::to_string(value).expect("responses serialize"),
            location,
            replayed: false,
            session_id: Some(session_id),
        }
    }
}

impl IntoResponse for JsonResponse {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if self.replayed {
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        response
    }
}

/// Runs `work` at most once per (application, user, key): in one transaction with
/// the key's record, so a failed `work` leaves the key unused, and a
/// concurrent duplicate waits for this one and then replays its response.
pub async fn run_once(
    client: &mut Object,
    caller: &UserCaller,
    key: &str,
    request_hash: &str,
    work: impl AsyncFnOnce(&Transaction<'_>) -> Result<JsonResponse, ApiError>,
) -> Result<JsonResponse, ApiError> {
    // Every route taking a key has a user; an application-only one would
    // claim with `None`.
    let user = Some(caller.user_id);
    let tx = client
        .transaction()
        .await
        .map_err(crate::db::DbError::from)?;
    let (app_id, claim) =
        idempotency::claim(&tx, caller.key.hash(), user, key, request_hash).await?;
    let app_id = app_id.as_str();
    match claim {
        Claim::Replay(recorded) => Ok(JsonResponse {
            status: StatusCode::from_u16(recorded.status)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            body: recorded.body,
            location: recorded.location,
            replayed: true,
            session_id: recorded.session_id,
        }),
        Claim::SessionDeleted(session_id) => Err(ApiError::Gone(format!(
            "this request was answered before (same Idempotency-Key), about session \
             {session_id}, which has been deleted since"
        ))),
        Claim::Mismatch => Err(ApiError::Validation(
            "Idempotency-Key was already used for a different request".to_owned(),
        )),
        Claim::Claimed => {
            let response = work(&tx).await?;
            let recorded = Recorded {
                status: response.status.as_u16(),
                body: response.body.clone(),
                location: response.location.clone(),
                session_id: response.session_id,
            };
            idempotency::record(&tx, app_id, user, key, &recorded).await?;
            tx.commit().await.map_err(crate::db::DbError::from)?;
            Ok(response)
        }
    }
}
