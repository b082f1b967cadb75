//! A small Server-Sent Events client for the tests: reads a
//! `text/event-stream` response block by block.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// One event of a stream.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }

    /// The `seq` of a `message` event (its id, checked against its data).
    pub fn seq(&self) -> i64 {
        assert_eq!(self.event, "message", "{self:?}");
        let seq = self.json()["seq"].as_i64().unwrap();
        assert_eq!(self.id.as_deref(), Some(seq.to_string().as_str()));
        seq
    }
}

pub struct Sse {
    response: Response,
    buffer: String,
    /// Comment lines seen (heartbeats).
    pub comments: usize,
    /// The last `retry:` hint, in milliseconds.
    pub retry: Option<u64>,
}

impl Sse {
    /// Sends `request` and expects a stream.
    pub async fn open(request: RequestBuilder) -> Self {
        let response = request.send().await.unwrap();
        let status = response.status();
        if status != StatusCode::OK {
            panic!("no stream: {status} {}", response.text().await.unwrap());
        }
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self::from_response(response)
    }

    pub fn from_response(response: Response) -> Self {
        Self {
            response,
            buffer: String::new(),
            comments: 0,
            retry: None,
        }
    }

    /// The next event, `None` once the stream has ended. Fails if nothing
    /// comes for 60 s (a bound for a hang; heartbeats come more often).
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.response.chunk())
                .await
                .expect("nothing on the stream for 60 s");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event, which must be named `name`.
    pub async fn expect(&mut self, name: &str) -> SseEvent {
        let event = self
            .next()
            .await
            .unwrap_or_else(|| panic!("the stream ended before a {name} event"));
        assert_eq!(event.event, name, "{event:?}");
        event
    }

    /// The seqs of the next `n` events, which must be messages.
    pub async fn messages(&mut self, n: usize) -> Vec<i64> {
        let mut seqs = Vec::new();
        for _ in 0..n {
            seqs.push(self.expect("message").await.seq());
        }
        seqs
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let mut event = SseEvent::default();
        let mut data: Vec<&str> = Vec::new();
        let mut dispatch = false;
        for line in block.lines() {
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.to_owned(),
                "id" => event.id = Some(value.to_owned()),
                "retry" => self.retry = Some(value.parse().unwrap()),
                "data" => {
                    data.push(value);
                    dispatch = true;
                }
                _ => {}
            }
        }
        event.data = data.join("\n");
        dispatch.then_some(event)
    }
}
