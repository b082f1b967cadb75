//! Server-Sent Events framing (the `text/event-stream` format of the HTML
//! standard): blocks of `field: value` lines ended by a blank line. Data
//! is JSON on one line (serde_json escapes newlines in strings), so every
//! event is one `data:` line, and ASCII: characters beyond it are `\u`
//! escapes, so a client that reads the stream as Latin-1 or splits lines on
//! U+0085 or U+2028 (Python's `splitlines`, which the fuzzer's SSE parser
//! used: "Å" is the bytes C3 85) cannot cut an event in two.

use std::fmt::Write;
use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;

/// An event named `name` carrying `data` as JSON; with `id`, clients send
/// it back as `Last-Event-ID` when they reconnect.
pub fn event(name: &str, id: Option<i32>, data: &impl Serialize) -> Bytes {
    let json = ascii(serde_json::to_string(data).expect("event data serializes"));
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

/// `json` with every character beyond ASCII as a `\u` escape (UTF-16, as
/// JSON has it): the same JSON, since outside strings JSON is ASCII.
fn ascii(json: String) -> String {
    if json.is_ascii() {
        return json;
    }
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                write!(out, "\\u{unit:04x}").expect("writing to a String");
            }
        }
    }
    out
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

    #[test]
    fn data_is_ascii_and_means_the_same() {
        let value = serde_json::json!({"text": "Åland \u{2028} naïve 😀", "Ключ": ["\u{85}"]});
        let frame = event("message", Some(1), &value);
        assert!(frame.is_ascii(), "{frame:?}");
        let data = std::str::from_utf8(&frame)
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap();
        assert!(data.contains("\\u00c5land"), "{data}");
        assert!(data.contains("\\ud83d\\ude00"), "{data}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(data).unwrap(),
            value
        );
    }
}
