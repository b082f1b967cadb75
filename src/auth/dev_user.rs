//! With `AUTH_REQUIRED=false`, a call without a token acts as the
//! development user. When such a call finds nothing (404), the answer says
//! so: otherwise a forgotten token looks like a missing session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::settings::DEV_USER_ID;

/// Problem bodies are small; anything larger is passed on untouched.
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// Set by the user extractor when it fell back to the development user.
#[derive(Clone, Default)]
pub struct ActedAsDevUser(Arc<AtomicBool>);

impl ActedAsDevUser {
    pub(super) fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Middleware: adds the explanation to the 404s of calls that acted as the
/// development user. Installed only where `AUTH_REQUIRED=false`.
pub async fn explain_not_found(mut request: Request, next: Next) -> Response {
    let acted = ActedAsDevUser::default();
    request.extensions_mut().insert(acted.clone());
    let response = next.run(request).await;
    if response.status() != StatusCode::NOT_FOUND || !acted.0.load(Ordering::Relaxed) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut problem) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(detail) = problem
        .get_mut("detail")
        .and_then(|d| d.as_str().map(str::to_owned))
    {
        problem["detail"] = format!(
            "{detail} (no token was sent, so this call acted as the development user \
             {DEV_USER_ID}; send `Authorization: Bearer <token>` to act as another user)"
        )
        .into();
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(problem.to_string()))
}
