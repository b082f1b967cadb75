//! Refused credentials per source address: a source whose requests were
//! refused with 401 `RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE` times in a
//! minute is refused with 429 before its credentials are looked at, so
//! guessing keys or sending forged tokens cannot burn an instance's CPU or
//! its database lookups. Counted per instance: what it protects is the
//! instance, and an attacker must not make us write to the database.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::window::{Counts, Moment, secs_until_room};
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::metrics;

const HEALTH_PATH: &str = "/api/health";

/// Sources remembered at most (a few dozen bytes each).
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct RefusedSources {
    counts: Mutex<HashMap<IpAddr, Counts>>,
}

impl RefusedSources {
    /// Seconds to wait when `source` is over `limit`.
    fn over(&self, source: IpAddr, limit: u32, at: Moment) -> Option<u64> {
        let counts = self.counts.lock().expect("refused sources");
        let counts = counts.get(&source)?;
        (counts.estimate(at) + 1.0 > f64::from(limit))
            .then(|| secs_until_room(*counts, limit.into(), at))
    }

    fn count(&self, source: IpAddr, at: Moment) {
        let mut counts = self.counts.lock().expect("refused sources");
        if counts.len() >= CAPACITY && !counts.contains_key(&source) {
            counts.retain(|_, c| c.window + 1 >= at.window);
            if counts.len() >= CAPACITY {
                counts.clear();
            }
        }
        let entry = counts.entry(source).or_insert(Counts {
            window: at.window,
            ..Counts::default()
        });
        entry.roll(at.window);
        entry.current += 1;
    }
}

/// The client's address: the peer's, or, when the peer is on this machine
/// (the Functions host forwarding a request), the last address in
/// `X-Forwarded-For`, the one Azure's front end appended (the ones before
/// it are the client's own words).
fn source(request: &Request) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    if !peer.is_loopback() {
        return Some(peer);
    }
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|last| parse_forwarded(last.trim()));
    Some(forwarded.unwrap_or(peer))
}

/// `203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_forwarded(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Middleware: refuses sources over their limit, and counts 401s. Health
/// is never refused: it takes no credentials.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limit) = state.settings.rate_limits.unauthenticated else {
        return next.run(request).await;
    };
    if request.uri().path() == HEALTH_PATH {
        return next.run(request).await;
    }
    let Some(source) = source(&request) else {
        return next.run(request).await;
    };
    if let Some(retry_after) = state.refused_sources.over(source, limit, Moment::now()) {
        metrics::rate_limited(metrics::RateLimitPolicy::Source);
        return ApiError::TooManyRequests {
            detail: format!(
                "too many requests with refused credentials from this address \
                 (limit {limit} per minute); retry in {retry_after} s"
            ),
            retry_after,
        }
        .into_response();
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        state.refused_sources.count(source, Moment::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_with_or_without_ports() {
        for (text, ip) in [
            ("203.0.113.7", "203.0.113.7"),
            ("203.0.113.7:4711", "203.0.113.7"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            assert_eq!(parse_forwarded(text), Some(ip.parse().unwrap()), "{text}");
        }
        assert_eq!(parse_forwarded("unknown"), None);
    }

    #[test]
    fn a_source_is_over_once_its_refusals_reach_the_limit() {
        let sources = RefusedSources::default();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let at = Moment::at_unix_millis(600_000);
        for _ in 0..3 {
            assert_eq!(sources.over(ip, 3, at), None);
            sources.count(ip, at);
        }
        assert!(sources.over(ip, 3, at).is_some());
        assert_eq!(sources.over("198.51.100.2".parse().unwrap(), 3, at), None);
    }
}
