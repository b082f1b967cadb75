//! Server-Sent Events framing (the `text/event-stream` format of the HTML
//! standard): blocks of `field: value` lines ended by a blank line. Data
//! is JSON on one line (serde_json escapes newlines in strings), so every
//! event is one `data:` line.

use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;

/// An event named `name` carrying `data` as JSON; with `id`, clients send
/// it back as `Last-Event-ID` when they reconnect.
pub fn event(name: &str, id: Option<i32>, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).expect("event data serializes");
    let mut frame = String::with_capacity(json.len() + name.len() + 32);
    if let Some(id) = id {
        frame.push_str(&format!("id: {id}\n"));
    }
    frame.push_str("event: ");
    frame.push_str(name);
    frame.push_str("\ndata: ");
    frame.push_str(&json);
    frame.push_str("\n\n");
    Bytes::from(frame)
}

/// A comment line: ignored by clients, but it keeps proxies from timing
/// out an idle response and finds out that a client went away.
pub fn heartbeat() -> Bytes {
    Bytes::from_static(b": heartbeat\n\n")
}

/// Sets how long a client waits before it reconnects.
pub fn retry(after: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n\n", after.as_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_data_line_whatever_the_text() {
        let frame = event(
            "message",
            Some(7),
            &serde_json::json!({"text": "two\nlines\r\n"}),
        );
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            "id: 7\nevent: message\ndata: {\"text\":\"two\\nlines\\r\\n\"}\n\n"
        );
        let frame = event("end", None, &serde_json::json!({"reason": "removed"}));
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            "event: end\ndata: {\"reason\":\"removed\"}\n\n"
        );
        assert_eq!(&retry(Duration::from_secs(2))[..], b"retry: 2000\n\n");
    }
}
