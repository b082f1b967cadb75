//! Live sessions: participants learn of appends and changes as they
//! happen, on whichever instance they are connected to.
//!
//! The statement that writes also notifies (`pg_notify`, migration V18);
//! each instance has one connection that LISTENs (`listener`), and a feed
//! per session with subscribers here that reads what is new once and
//! broadcasts it (`hub`) to the streams (`stream`, framed as SSE by
//! `sse`) and long-polls. Browsers open streams with tickets (`tickets`);
//! `limits` bounds how many streams an instance and a user hold.

pub mod hub;
pub mod limits;
pub mod listener;
pub mod payloads;
pub mod sse;
pub mod stream;
pub mod tickets;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::db::{Database, DbError};
use crate::error::ApiError;
use crate::settings::{EventSettings, Settings};
use crate::telemetry::metrics::{self, StreamRefusal};
use hub::{Event, Hub, Subscription};
use limits::{Full, Place, StreamLimits};
use listener::{Listener, Target};

/// Seconds a user or application over their streams should wait: one of
/// theirs may end.
const FULL_RETRY_AFTER: u64 = 5;

/// How a long-poll's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    Message,
    Changed,
    TimedOut,
    ShutDown,
}

pub struct Events {
    settings: EventSettings,
    db: Arc<Database>,
    hub: Arc<Hub>,
    listener: Listener,
    limits: Arc<StreamLimits>,
    /// How long opening a stream waits for the listener and the feed.
    wait: Duration,
    /// Set when the instance shuts down: every stream ends at once.
    shutdown: watch::Sender<bool>,
}

impl Events {
    pub fn new(settings: &Settings, db: Arc<Database>) -> Arc<Self> {
        Arc::new(Self {
            hub: Hub::new(db.clone(), settings.events.watch),
            listener: Listener::new(),
            limits: StreamLimits::new(
                settings.events.max_streams,
                settings.events.max_streams_per_app,
                settings.events.max_streams_per_user,
            ),
            wait: settings.database.pool_timeout,
            settings: settings.events.clone(),
            shutdown: watch::Sender::new(false),
            db,
        })
    }

    /// A place for one more stream (or waiting long-poll) of `user`, whose
    /// application's key has the SHA-256 `key` (`None`: keyless development
    /// calls, one application): 503 when the instance holds
    /// `EVENTS_MAX_STREAMS`, 429 when the application holds its share
    /// (`EVENTS_APP_SHARE`) or the user `EVENTS_MAX_STREAMS_PER_USER`, all
    /// with `Retry-After`.
    pub fn admit(&self, key: Option<&str>, user: Uuid) -> Result<Place, ApiError> {
        let tenant: std::sync::Arc<str> = key.unwrap_or_default().into();
        self.limits.admit(tenant, user).map_err(|full| {
            metrics::stream_refused(match full {
                Full::Instance(_) => StreamRefusal::Instance,
                Full::Application(_) => StreamRefusal::Application,
                Full::User(_) => StreamRefusal::User,
            });
            match full {
            Full::Instance(max) => ApiError::Unavailable(format!(
                "this instance holds its maximum of {max} streams (EVENTS_MAX_STREAMS); retry shortly"
            )),
            Full::Application(max) => ApiError::TooManyRequests {
                detail: format!(
                    "this application already holds its share of {max} streams on this \
                     instance (EVENTS_APP_SHARE of EVENTS_MAX_STREAMS); retry when one has ended"
                ),
                retry_after: FULL_RETRY_AFTER,
            },
            Full::User(max) => ApiError::TooManyRequests {
                detail: format!(
                    "this user already holds {max} streams on this instance \
                     (EVENTS_MAX_STREAMS_PER_USER); close one, or retry when one has ended"
                ),
                retry_after: FULL_RETRY_AFTER,
            },
            }
        })
    }

    /// Subscribes to `session_id`'s feed, once this instance listens and
    /// the feed knows the session's head: from then on nothing committed
    /// is missed. Checks nothing about the caller: do that after.
    pub async fn subscribe(&self, session_id: Uuid) -> Result<Subscription, DbError> {
        let target = Target {
            host: self.settings.listen_host.clone(),
            port: self.settings.listen_port,
        };
        self.listener
            .ready(&self.hub, &self.db, &target, self.wait)
            .await?;
        self.hub.subscribe(session_id, self.wait).await
    }

    /// Waits until `subscription` broadcasts a message after `after_seq`,
    /// a change of the session, `deadline` or shutdown. Holds no database
    /// connection.
    pub async fn wait_for_message(
        &self,
        subscription: &mut Subscription,
        after_seq: i32,
        deadline: tokio::time::Instant,
    ) -> Waited {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let received = tokio::select! {
                _ = shutdown.wait_for(|down| *down) => return Waited::ShutDown,
                () = tokio::time::sleep_until(deadline) => return Waited::TimedOut,
                received = subscription.events.recv() => received,
            };
            match received.as_deref() {
                Ok(Event::Messages(frames)) if frames.iter().any(|(seq, _)| *seq > after_seq) => {
                    return Waited::Message;
                }
                Ok(Event::Messages(_) | Event::Key { .. }) => {}
                // The session changed (perhaps deleted, or the caller
                // removed), or broadcasts were missed: worth a look.
                Ok(Event::State(_)) | Err(_) => return Waited::Changed,
            }
        }
    }

    /// Ends every stream and long-poll (the instance is shutting down).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Streams (and waiting long-polls) open now.
    pub fn open_streams(&self) -> usize {
        self.limits.open()
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}
