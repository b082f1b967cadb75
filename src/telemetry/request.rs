//! The one log line every request gets, and its server span.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::otel;

/// The headers the Functions host names the invocation with: proxying
/// (`enableProxyingHttpRequest`, the host's `DefaultHttpProxyService`,
/// which overwrites any the caller sent) and forwarding
/// (`enableForwardingHttpRequest`, `HttpWorkerConstants`). A host uses
/// one or the other; the proxy's goes first, as it cannot be forged.
const INVOCATION_ID_HEADERS: [&str; 2] = ["x-ms-invocation-id", "x-azure-functions-invocationid"];

/// The request's Functions invocation id, when the host sent one.
pub(crate) fn invocation_id(headers: &axum::http::HeaderMap) -> Option<&str> {
    INVOCATION_ID_HEADERS
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .find(|id| !id.is_empty())
}
/// The most of a caller's text (a header, the method) a log line carries:
/// the host's invocation ids are GUIDs (36 bytes), and a caller who forges
/// one of 8,000 bytes must not write 8,000 bytes into the logs per request.
const MAX_LOGGED_BYTES: usize = 128;
/// The route of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// One line per request, written when its response has been sent (or has
/// failed): method, route template (never the path itself, which holds
/// ids and cursors), status, the time until the last byte, the body bytes
/// sent, whether the body was sent whole, the Functions invocation id
/// when the host sent one, to join with the host's lines, and with
/// telemetry on, the trace and span ids of the request's server span.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // A method may be any token (an extension method), of any length.
    let method = bounded(request.method().as_str()).into_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let invocation_id = invocation_id(request.headers())
        .map(|id| bounded(id).into_owned())
        .unwrap_or_default();
    let span = super::enabled().then(|| server_span(&request, &method, &route, &invocation_id));
    let response = match &span {
        None => next.run(request).await,
        Some(span) => {
            REQUEST_SPAN
                .scope(span.clone(), next.run(request))
                .instrument(span.clone())
                .await
        }
    };
    let line = RequestLine {
        started,
        method,
        route,
        status: response.status().as_u16(),
        invocation_id,
        span,
    };
    response.map(|body| Body::new(LoggedBody::new(body, line)))
}

/// What the request's line says, besides what its body adds.
struct RequestLine {
    started: Instant,
    method: String,
    route: String,
    status: u16,
    invocation_id: String,
    /// The server span, ended with the line (after the last byte).
    span: Option<tracing::Span>,
}

impl RequestLine {
    fn write(self, bytes: u64, outcome: &str) {
        let elapsed = self.started.elapsed();
        let ids = self.span.as_ref().map(|span| {
            span.record("http.response.status_code", self.status);
            // Server spans are errors for 5xx only: a 4xx is the caller's.
            if self.status >= 500 {
                span.record("otel.status_code", "error");
            }
            let context = span.context();
            let ids = opentelemetry::trace::TraceContextExt::span(&context)
                .span_context()
                .clone();
            (ids.trace_id().to_string(), ids.span_id().to_string())
        });
        tracing::info!(
            target: "request",
            method = self.method,
            route = self.route,
            status = self.status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            bytes,
            outcome,
            invocation_id = self.invocation_id,
            trace_id = ids.as_ref().map(|(trace, _)| trace.as_str()),
            span_id = ids.as_ref().map(|(_, span)| span.as_str()),
            "request"
        );
        // Paths that matched no route are one series, not one per path.
        let route = (self.route != UNMATCHED).then_some(self.route);
        super::metrics::request(route, &self.method, self.status, elapsed);
    }
}

pin_project! {
    /// A response body that counts what it yields and writes the request's
    /// line when it ends: `complete`, `failed` (the body itself failed), or
    /// `aborted` (dropped before its end: the client went away or stopped
    /// reading).
    struct LoggedBody {
        #[pin]
        inner: Body,
        bytes: u64,
        line: Option<RequestLine>,
    }

    impl PinnedDrop for LoggedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(line) = this.line.take() {
                let outcome = if this.inner.is_end_stream() { "complete" } else { "aborted" };
                line.write(*this.bytes, outcome);
            }
        }
    }
}

impl LoggedBody {
    fn new(inner: Body, line: RequestLine) -> Self {
        Self {
            inner,
            bytes: 0,
            line: Some(line),
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                *this.bytes += frame.data_ref().map_or(0, |data| data.len() as u64);
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(line) = this.line.take() {
                    line.write(*this.bytes, "failed");
                }
            }
            Poll::Ready(None) => {
                if let Some(line) = this.line.take() {
                    line.write(*this.bytes, "complete");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

tokio::task_local! {
    /// The server span of the request being handled, for what is learnt
    /// about it on the way (the application, once its key is checked).
    static REQUEST_SPAN: tracing::Span;
}

/// The request's server span: its route template (never the path, which
/// holds ids), method and the host's invocation id; the status and the
/// application are recorded later. It continues the caller's W3C trace
/// (`traceparent`, `tracestate`) when there is one.
fn server_span(request: &Request, method: &str, route: &str, invocation_id: &str) -> tracing::Span {
    let name = format!("{method} {route}");
    let span = tracing::info_span!(
        "request",
        otel.name = name.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
        faas.invocation_id = (!invocation_id.is_empty()).then_some(invocation_id),
        amplifier.app_id = Empty,
    );
    // Fails only when the span is not exported (no layer wants it).
    let _ = span.set_parent(otel::parent(request.headers()));
    span
}

pub(super) fn record_app_id(app_id: &str) {
    let _ = REQUEST_SPAN.try_with(|span| {
        span.record("amplifier.app_id", app_id);
    });
}

/// `text` as a log line may carry it: whole up to [`MAX_LOGGED_BYTES`],
/// else cut there (at a character boundary) and marked with its length.
pub fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_LOGGED_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_LOGGED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}...(truncated, {} bytes)",
        &text[..end],
        text.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_marked() {
        let id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        assert_eq!(bounded(id), id);
        let exact = "x".repeat(MAX_LOGGED_BYTES);
        assert_eq!(bounded(&exact), exact);
        // 'a', then 2-byte characters: byte 128 falls inside one.
        let text = format!("a{}", "é".repeat(4000));
        let cut = bounded(&text);
        assert!(cut.starts_with(&text[..MAX_LOGGED_BYTES - 1]), "{cut}");
        assert!(cut.ends_with("...(truncated, 8001 bytes)"), "{cut}");
        assert!(cut.len() < MAX_LOGGED_BYTES + 32);
    }
}
