//! Logging to stdout, which the Functions host forwards to Application
//! Insights, and the one log line every request gets.

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
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// The header the Functions host sets on each request it passes on.
pub(crate) const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
/// The most of a caller's text (a header, the method) a log line carries:
/// the host's invocation ids are GUIDs (36 bytes), and a caller who forges
/// one of 8,000 bytes must not write 8,000 bytes into the logs per request.
const MAX_LOGGED_BYTES: usize = 128;

/// `RUST_LOG` wins when set; otherwise `LOG_LEVEL`. tokio-postgres logs
/// statement parameters at debug level, so it stays at info unless asked.
pub fn init(log_level: &str, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(log_level))
        .with_ansi(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// What gets logged for `LOG_LEVEL=log_level`.
pub fn filter(log_level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{log_level},tokio_postgres=info")))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// One line per request, written when its response has been sent (or has
/// failed): method, route template (never the path itself, which holds
/// ids and cursors), status, the time until the last byte, the body bytes
/// sent, whether the body was sent whole, and the Functions invocation id
/// when the host sent one, to join with the host's lines.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // A method may be any token (an extension method), of any length.
    let method = bounded(request.method().as_str()).into_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let invocation_id = request
        .headers()
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|id| bounded(id).into_owned())
        .unwrap_or_default();
    let response = next.run(request).await;
    let line = RequestLine {
        started,
        method,
        route,
        status: response.status().as_u16(),
        invocation_id,
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
}

impl RequestLine {
    fn write(&self, bytes: u64, outcome: &str) {
        tracing::info!(
            target: "request",
            method = self.method,
            route = self.route,
            status = self.status,
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            bytes,
            outcome,
            invocation_id = self.invocation_id,
            "request"
        );
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
