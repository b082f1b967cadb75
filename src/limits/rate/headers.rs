//! The rate limit header fields of draft-ietf-httpapi-ratelimit-headers:
//! every response to a counted request says, per policy, the quota
//! (`RateLimit-Policy: "user";q=1000;w=60`) and what is left of it
//! (`RateLimit: "user";r=997;t=42`), so that clients can pace themselves.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::window::WINDOW_SECS;

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Where a caller stands with one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub policy: &'static str,
    pub limit: u32,
    pub remaining: u64,
    /// Seconds until the current window ends.
    pub reset: u64,
}

pub type Standings = Vec<Standing>;

/// Writes the two fields for `standings` (nothing when there are none).
/// Every counted response carries them, so each is built straight into
/// one buffer, numbers through `itoa` (with `format!` this took about
/// 4,000 instructions a request, by callgrind).
pub fn write_headers(headers: &mut HeaderMap, standings: &[Standing]) {
    if standings.is_empty() {
        return;
    }
    let mut numbers = itoa::Buffer::new();
    let mut policy = String::with_capacity(32 * standings.len());
    let mut current = String::with_capacity(32 * standings.len());
    for (i, s) in standings.iter().enumerate() {
        if i > 0 {
            policy.push_str(", ");
            current.push_str(", ");
        }
        for field in [&mut policy, &mut current] {
            field.push('"');
            field.push_str(s.policy);
            field.push('"');
        }
        policy.push_str(";q=");
        policy.push_str(numbers.format(s.limit));
        policy.push_str(";w=");
        policy.push_str(numbers.format(WINDOW_SECS));
        current.push_str(";r=");
        current.push_str(numbers.format(s.remaining));
        current.push_str(";t=");
        current.push_str(numbers.format(s.reset));
    }
    for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, current)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}

/// Filled by the extractor that counted the request (`auth`), read when
/// its response goes out.
#[derive(Clone, Default)]
pub struct Slot(Arc<Mutex<Standings>>);

impl Slot {
    pub fn fill(&self, standings: Standings) {
        *self.0.lock().expect("rate slot") = standings;
    }
}

/// Middleware: the rate limit fields on every response to a counted
/// request, its errors included.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let slot = Slot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let standings = std::mem::take(&mut *slot.0.lock().expect("rate slot"));
    write_headers(response.headers_mut(), &standings);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_list_every_policy() {
        let mut headers = HeaderMap::new();
        let standing = |policy, limit, remaining| Standing {
            policy,
            limit,
            remaining,
            reset: 42,
        };
        write_headers(
            &mut headers,
            &[standing("app", 6000, 5990), standing("user", 600, 0)],
        );
        assert_eq!(
            headers[RATELIMIT_POLICY],
            "\"app\";q=6000;w=60, \"user\";q=600;w=60"
        );
        assert_eq!(headers[RATELIMIT], "\"app\";r=5990;t=42, \"user\";r=0;t=42");
    }
}
