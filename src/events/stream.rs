//! One stream's body: the snapshot, then the messages after the client's
//! position (read page by page, as the client takes them), then whatever
//! the session's feed broadcasts, each message exactly once and in order,
//! until the stream ends: by itself (`EVENTS_MAX_STREAM_SECONDS`,
//! shutdown) or because the caller may no longer read it. Polled by hyper
//! only as the client reads, it holds no database connection while idle.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use uuid::Uuid;

use super::Events;
use super::hub::{AppWatch, Current, Event, PAGE, Subscription};
use super::limits::Place;
use super::payloads::{EndReason, StreamEnd};
use super::sse;
use crate::db::events as statements;
use crate::db::{DbError, messages};
use crate::limits::pool_share::{self, Claim};
use crate::roles::Role;

/// How long a read that failed (the database is away) waits to be tried
/// again; heartbeats go on meanwhile.
const RETRY_READ: Duration = Duration::from_secs(1);

/// Who a stream is for and where it starts.
pub struct Opening {
    pub session_id: Uuid,
    pub user: Uuid,
    /// The key's SHA-256 (`None`: keyless development calls, never revoked).
    pub key: Option<String>,
    pub app_id: String,
    pub role: Role,
    /// The last `seq` the client has.
    pub after: i32,
    /// The session's last `seq` when the stream opened.
    pub head: i32,
    /// The `snapshot` event.
    pub snapshot: Bytes,
}

/// What a stream holds while it is open.
pub struct Held {
    pub subscription: Subscription,
    pub app: AppWatch,
    pub place: Place,
    /// The request's pool share claim, for the stream's own reads.
    pub claim: Option<Claim>,
}

pub fn body(events: Arc<Events>, held: Held, opening: Opening) -> Body {
    let heartbeat = events.settings.heartbeat;
    let mut heartbeats = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    heartbeats.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let live = Live {
        deadline: Instant::now() + events.settings.max_stream,
        shutdown: events.shutdown.subscribe(),
        behind: opening.after < opening.head,
        last: opening.after,
        first: Some(opening.snapshot),
        session_id: opening.session_id,
        user: opening.user,
        key: opening.key,
        app_id: opening.app_id,
        role: opening.role,
        recheck: false,
        retry_at: Instant::now(),
        heartbeats,
        done: false,
        events,
        held,
    };
    Body::from_stream(stream::unfold(live, |mut live| async move {
        live.next()
            .await
            .map(|frame| (Ok::<_, std::io::Error>(frame), live))
    }))
}

struct Live {
    events: Arc<Events>,
    held: Held,
    session_id: Uuid,
    user: Uuid,
    key: Option<String>,
    app_id: String,
    role: Role,
    /// The last `seq` sent.
    last: i32,
    /// Messages after `last` may exist that the feed will not broadcast
    /// again: read them.
    behind: bool,
    /// Broadcasts were missed: read the session's state and key again.
    recheck: bool,
    /// When a failed read may be tried again.
    retry_at: Instant,
    first: Option<Bytes>,
    deadline: Instant,
    heartbeats: Interval,
    shutdown: watch::Receiver<bool>,
    done: bool,
}

/// What woke a stream up.
enum Woke {
    Shutdown,
    Deadline,
    Heartbeat,
    Retry,
    Received(Result<Arc<Event>, RecvError>),
}

impl Live {
    /// The next frame, `None` once the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            if (self.recheck || self.behind) && Instant::now() >= self.retry_at {
                // Boxed: a read's future is kilobytes, and inline it would
                // be part of every idle stream's state (docs/benchmarks.md).
                match Box::pin(self.read()).await {
                    Ok(Some(frame)) => return Some(frame),
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "a stream cannot read; retrying");
                        self.retry_at = Instant::now() + RETRY_READ;
                    }
                }
            }
            let waiting = self.recheck || self.behind;
            let woke = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|down| *down) => Woke::Shutdown,
                () = tokio::time::sleep_until(self.deadline) => Woke::Deadline,
                () = tokio::time::sleep_until(self.retry_at), if waiting => Woke::Retry,
                received = self.held.subscription.events.recv() => Woke::Received(received),
                _ = self.heartbeats.tick() => Woke::Heartbeat,
            };
            match woke {
                Woke::Shutdown => return Some(self.end(EndReason::Shutdown)),
                Woke::Deadline => return Some(self.end(EndReason::MaxDuration)),
                Woke::Heartbeat => return Some(sse::heartbeat()),
                Woke::Retry => {}
                Woke::Received(Ok(event)) => {
                    if let Some(frame) = self.handle(&event) {
                        return Some(frame);
                    }
                }
                Woke::Received(Err(RecvError::Lagged(_))) => {
                    self.behind = true;
                    self.recheck = true;
                }
                Woke::Received(Err(RecvError::Closed)) => {
                    return Some(self.end(EndReason::Shutdown));
                }
            }
        }
    }

    /// The frames a broadcast means for this stream, if any.
    fn handle(&mut self, event: &Event) -> Option<Bytes> {
        match event {
            Event::Messages(frames) => {
                if self.behind {
                    return None; // its own read will get them
                }
                let first = frames.first()?.0;
                if first > self.last + 1 {
                    self.behind = true;
                    return None;
                }
                let new: Vec<&(i32, Bytes)> =
                    frames.iter().filter(|(seq, _)| *seq > self.last).collect();
                let (last, _) = new.last()?;
                self.last = *last;
                Some(join(new.iter().map(|(_, frame)| frame)))
            }
            Event::State(state) => match &state.current {
                None => Some(self.end(EndReason::Deleted)),
                Some(current) => {
                    self.apply(current, state.session_changed, state.participants_changed)
                }
            },
            Event::Key { app_id, valid } => {
                let revoked = *app_id == self.app_id
                    && self.key.is_some()
                    && valid.as_deref() != self.key.as_deref();
                revoked.then(|| self.end(EndReason::KeyRevoked))
            }
        }
    }

    /// The `session` and `participants` events of a new state, or the end
    /// if the caller no longer participates.
    fn apply(&mut self, current: &Current, session: bool, participants: bool) -> Option<Bytes> {
        let Some(&role) = current.roles.get(&self.user) else {
            return Some(self.end(EndReason::Removed));
        };
        self.role = role;
        let mut frames = Vec::new();
        if session {
            frames.push(current.session(role));
        }
        if participants {
            frames.push(current.participants.clone());
        }
        (!frames.is_empty()).then(|| join(frames.iter()))
    }

    /// Reads for this stream alone: the state and key after missed
    /// broadcasts, or the next page of messages after `last`.
    async fn read(&mut self) -> Result<Option<Bytes>, DbError> {
        let db = self.events.db.clone();
        let (session_id, last) = (self.session_id, self.last);
        if self.recheck {
            let (app_id, key) = (self.app_id.clone(), self.key.clone());
            let (state, valid) = pool_share::carried(self.held.claim.clone(), async {
                let client = db.client().await?;
                let state = statements::state(&*client, session_id).await?;
                let valid = match key {
                    Some(_) => statements::active_keys(&*client, &[app_id])
                        .await?
                        .pop()
                        .map(|(_, key)| key),
                    None => None,
                };
                Ok::<_, DbError>((state, valid))
            })
            .await?;
            self.recheck = false;
            if self.key.is_some() && valid != self.key {
                return Ok(Some(self.end(EndReason::KeyRevoked)));
            }
            return Ok(match state {
                None => Some(self.end(EndReason::Deleted)),
                Some(state) => self.apply(&Current::new(&state), true, true),
            });
        }
        let page = pool_share::carried(self.held.claim.clone(), async {
            let client = db.client().await?;
            messages::export_page(&*client, session_id, last, i32::MAX, PAGE).await
        })
        .await?;
        tracing::debug!(messages = page.len(), "a stream read messages for itself");
        let Some(newest) = page.last().map(|m| m.seq) else {
            self.behind = false;
            return Ok(None);
        };
        self.last = newest;
        let frames: Vec<Bytes> = page
            .iter()
            .map(|m| sse::event("message", Some(m.seq), m))
            .collect();
        Ok(Some(join(frames.iter())))
    }

    /// The last frame: an `end` event saying why, after a `retry:` hint
    /// when the client should reconnect (jittered, so that the clients of
    /// an instance shutting down do not all come back at once).
    fn end(&mut self, reason: EndReason) -> Bytes {
        self.done = true;
        let end = sse::event("end", None, &StreamEnd { reason });
        if !reason.resumable() {
            return end;
        }
        let retry = sse::retry(Duration::from_millis(rand::random_range(500..1500)));
        join([&retry, &end].into_iter())
    }
}

/// One body chunk of `frames`; a single frame is shared, not copied (the
/// feed's frames go to every subscriber).
fn join<'a>(frames: impl Iterator<Item = &'a Bytes>) -> Bytes {
    let mut frames = frames.peekable();
    let Some(first) = frames.next() else {
        return Bytes::new();
    };
    if frames.peek().is_none() {
        return first.clone();
    }
    let mut joined = first.to_vec();
    for frame in frames {
        joined.extend_from_slice(frame);
    }
    Bytes::from(joined)
}
