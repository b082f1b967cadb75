//! Fan-out on one instance: a feed per session that has subscribers here.
//! A notification wakes the session's feed; the feed reads what is new
//! once (one pooled statement per page, however many subscribers) and
//! broadcasts it, as ready-made SSE frames, to every subscriber. Idle, a
//! feed holds no connection; it ends with its last subscriber.
//!
//! Nothing is lost between a subscriber's own reads and the feed's: a
//! subscriber subscribes first, the feed knows the session's last `seq`
//! (its head) before any subscriber reads, and the listener was listening
//! before that. So every message is either read by the subscriber or
//! broadcast after it subscribed; a subscriber that sees a gap, or lags
//! behind the broadcast, reads from its own last `seq`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use serde::Deserialize;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::payloads::{ParticipantsChanged, SessionWithRole};
use super::sse;
use crate::db::events::{self as statements, SessionState};
use crate::db::{Database, DbError, messages};
use crate::roles::Role;

/// The channel every instance LISTENs on (migration V18 notifies it).
pub const CHANNEL: &str = "amplifier_events";
/// Messages a feed reads per statement (and at most `messages::PAGE_BYTES`).
pub const PAGE: i64 = 100;
/// Broadcasts a subscriber may fall behind before it reads for itself.
const BACKLOG: usize = 16;
/// How long a failed read waits before it is tried again (doubling).
const RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What a feed tells its subscribers.
pub enum Event {
    /// Consecutive messages, oldest first, as `message` events.
    Messages(Vec<(i32, Bytes)>),
    /// The session after a change (or after notifications may have been
    /// missed: then both flags are set).
    State(State),
    /// The valid key of an application now (`None`: it has none).
    Key {
        app_id: String,
        valid: Option<String>,
    },
}

pub struct State {
    pub session_changed: bool,
    pub participants_changed: bool,
    /// `None`: the session was deleted.
    pub current: Option<Current>,
}

/// A session's state as ready-made frames.
pub struct Current {
    /// Who participates, in which role.
    pub roles: HashMap<Uuid, Role>,
    /// The `session` event for each role (in `Role::ALL` order): it carries
    /// the subscriber's own role, as get-session does.
    sessions: Vec<Bytes>,
    /// The `participants` event.
    pub participants: Bytes,
}

impl Current {
    pub fn new(state: &SessionState) -> Self {
        Self {
            roles: state
                .participants
                .iter()
                .map(|p| (p.user_id, p.role))
                .collect(),
            sessions: Role::ALL
                .iter()
                .map(|&role| {
                    sse::event(
                        "session",
                        None,
                        &SessionWithRole {
                            session: &state.session,
                            role,
                        },
                    )
                })
                .collect(),
            participants: sse::event(
                "participants",
                None,
                &ParticipantsChanged {
                    session_id: state.session.session_id,
                    participants: &state.participants,
                },
            ),
        }
    }

    pub fn session(&self, role: Role) -> Bytes {
        let i = Role::ALL.iter().position(|&r| r == role).unwrap_or(0);
        self.sessions[i].clone()
    }
}

/// A notification's payload (migration V18).
#[derive(Deserialize)]
struct Notice {
    k: String,
    s: Option<Uuid>,
    q: Option<i32>,
    a: Option<String>,
}

pub struct Hub {
    db: Arc<Database>,
    /// Names this instance's rows in `watched_sessions`.
    instance: Uuid,
    /// A feed's registration (`watched_sessions`, migration V19) lasts
    /// this long (`EVENTS_WATCH_SECONDS`) unless renewed; the instance
    /// renews all of its own every fifth of it. A registration with less
    /// than a fifth left when it is renewed (renewals failed meanwhile) may
    /// lapse before an append sees it renewed: it is registered again
    /// instead, as a new one is, and its feed reads what is new.
    watch_ttl: Duration,
    /// Whether the renewal of this instance's registrations runs.
    renewing: std::sync::Once,
    feeds: Mutex<HashMap<Uuid, Arc<Feed>>>,
    /// Applications with streams here, and how many: their keys are checked
    /// again when notifications may have been missed.
    apps: Mutex<HashMap<String, usize>>,
}

impl Hub {
    pub fn new(db: Arc<Database>, watch_ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            db,
            instance: Uuid::new_v4(),
            watch_ttl,
            renewing: std::sync::Once::new(),
            feeds: Mutex::default(),
            apps: Mutex::default(),
        })
    }

    /// A subscription to `session_id`'s feed, once the feed knows the
    /// session's head (waiting at most `wait` for it).
    pub async fn subscribe(
        self: &Arc<Self>,
        session_id: Uuid,
        wait: Duration,
    ) -> Result<Subscription, DbError> {
        self.renewing.call_once(|| {
            tokio::spawn(renew(Arc::downgrade(self), self.watch_ttl / 5));
        });
        let (feed, events) = {
            let mut feeds = self.feeds.lock().expect("feeds");
            let feed = feeds
                .entry(session_id)
                .or_insert_with(|| {
                    Feed::start(session_id, self.instance, self.watch_ttl, self.db.clone())
                })
                .clone();
            let events = feed.shared.events.subscribe();
            (feed, events)
        };
        let mut ready = feed.shared.ready.subscribe();
        let subscription = Subscription {
            hub: self.clone(),
            feed: Some(feed),
            events,
        };
        match tokio::time::timeout(wait, ready.wait_for(|ready| *ready)).await {
            Ok(Ok(_)) => Ok(subscription),
            _ => Err(DbError::Unavailable(
                "the session's feed could not read the database".to_owned(),
            )),
        }
    }

    /// Counts a stream of `app_id` until the guard is dropped.
    pub fn watch_app(self: &Arc<Self>, app_id: &str) -> AppWatch {
        *self
            .apps
            .lock()
            .expect("apps")
            .entry(app_id.to_owned())
            .or_default() += 1;
        AppWatch {
            hub: self.clone(),
            app_id: app_id.to_owned(),
        }
    }

    /// Acts on one notification's payload.
    pub fn dispatch(self: &Arc<Self>, payload: &str) {
        let notice: Notice = match serde_json::from_str(payload) {
            Ok(notice) => notice,
            Err(e) => {
                tracing::warn!(error = %e, "a notification that is not ours");
                return;
            }
        };
        if notice.k == "a" {
            if let Some(app_id) = notice.a
                && self.apps.lock().expect("apps").contains_key(&app_id)
            {
                self.check_keys(vec![app_id]);
            }
            return;
        }
        let Some(session_id) = notice.s else { return };
        let shared = match self.feeds.lock().expect("feeds").get(&session_id) {
            Some(feed) => feed.shared.clone(),
            None => return,
        };
        shared.mark(|pending| match notice.k.as_str() {
            "m" => pending.through = pending.through.max(notice.q.unwrap_or(i32::MAX)),
            "s" => pending.session = true,
            "p" => pending.participants = true,
            _ => {
                pending.session = true;
                pending.participants = true;
            }
        });
    }

    /// After notifications may have been missed (the listening connection
    /// was lost and is back): this instance's registrations are renewed
    /// (in case they lapsed meanwhile), then every feed reads what is new,
    /// and the keys of every application with streams are checked.
    pub fn resync(self: &Arc<Self>) {
        let hub = self.clone();
        tokio::spawn(async move {
            if let Err(e) = hub.renew_watches().await {
                // The next renewal registers whatever lapsed again.
                tracing::warn!(error = %e, "cannot renew the sessions' watches");
            }
            hub.catch_up();
        });
    }

    /// Every feed reads whatever is new; keys are checked again.
    fn catch_up(self: &Arc<Self>) {
        let feeds: Vec<Arc<Shared>> = self
            .feeds
            .lock()
            .expect("feeds")
            .values()
            .map(|feed| feed.shared.clone())
            .collect();
        for shared in feeds {
            shared.mark(|pending| pending.resync = true);
        }
        let apps: Vec<String> = self.apps.lock().expect("apps").keys().cloned().collect();
        if !apps.is_empty() {
            self.check_keys(apps);
        }
    }

    /// Renews the registrations of this instance's feeds; those that may
    /// have lapsed are registered again, and their feeds read what is new
    /// (appends meanwhile did not notify). Returns how many lapsed.
    pub async fn renew_watches(&self) -> Result<usize, DbError> {
        let feeds: Vec<Arc<Shared>> = self
            .feeds
            .lock()
            .expect("feeds")
            .values()
            .filter(|feed| *feed.shared.ready.borrow())
            .map(|feed| feed.shared.clone())
            .collect();
        if feeds.is_empty() {
            return Ok(0);
        }
        let client = self.db.client().await?;
        let renewed: std::collections::HashSet<Uuid> = statements::renew_watches(
            &*client,
            self.instance,
            self.watch_ttl.as_secs_f64(),
            (self.watch_ttl / 5).as_secs_f64(),
        )
        .await?
        .into_iter()
        .collect();
        let lapsed: Vec<Arc<Shared>> = feeds
            .into_iter()
            .filter(|feed| !renewed.contains(&feed.feed_id))
            .collect();
        if lapsed.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = lapsed.iter().map(|feed| feed.feed_id).collect();
        let sessions: Vec<Uuid> = lapsed.iter().map(|feed| feed.session_id).collect();
        statements::rewatch(
            &*client,
            self.instance,
            &ids,
            &sessions,
            self.watch_ttl.as_secs_f64(),
        )
        .await?;
        for feed in &lapsed {
            feed.mark(|pending| pending.resync = true);
        }
        Ok(lapsed.len())
    }

    /// Reads which keys of `apps` are valid and tells every feed, whose
    /// subscribers with another key end.
    fn check_keys(self: &Arc<Self>, apps: Vec<String>) {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut delay = RETRY;
            let valid = loop {
                let read = async {
                    let client = hub.db.client().await?;
                    statements::active_keys(&*client, &apps).await
                };
                match read.await {
                    Ok(valid) => break valid,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot check the keys of streams; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(MAX_RETRY);
                    }
                }
            };
            let senders: Vec<broadcast::Sender<Arc<Event>>> = hub
                .feeds
                .lock()
                .expect("feeds")
                .values()
                .map(|feed| feed.shared.events.clone())
                .collect();
            for app_id in apps {
                let key = valid
                    .iter()
                    .find(|(app, _)| *app == app_id)
                    .map(|(_, key)| key.clone());
                let event = Arc::new(Event::Key { app_id, valid: key });
                for sender in &senders {
                    let _ = sender.send(event.clone());
                }
            }
        });
    }

    /// Feeds running now (for tests and the benchmark's numbers).
    pub fn feeds(&self) -> usize {
        self.feeds.lock().expect("feeds").len()
    }
}

/// Renews this instance's registrations every fifth of their lifetime,
/// for as long as the hub exists. (After renewals failed for long,
/// registrations may have lapsed: [`Hub::renew_watches`] registers them
/// again.)
async fn renew(hub: std::sync::Weak<Hub>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(hub) = hub.upgrade() else { return };
        match hub.renew_watches().await {
            Ok(0) => {}
            Ok(lapsed) => tracing::info!(lapsed, "lapsed watches of sessions registered again"),
            Err(e) => tracing::warn!(error = %e, "cannot renew the sessions' watches; retrying"),
        }
    }
}

/// A stream's count in [`Hub::watch_app`], given back when dropped.
pub struct AppWatch {
    hub: Arc<Hub>,
    app_id: String,
}

impl Drop for AppWatch {
    fn drop(&mut self) {
        let mut apps = self.hub.apps.lock().expect("apps");
        if let Some(n) = apps.get_mut(&self.app_id) {
            *n -= 1;
            if *n == 0 {
                apps.remove(&self.app_id);
            }
        }
    }
}

/// One subscriber's place on a feed; the feed stops with the last one.
pub struct Subscription {
    hub: Arc<Hub>,
    feed: Option<Arc<Feed>>,
    pub events: broadcast::Receiver<Arc<Event>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(feed) = self.feed.take() else { return };
        let session_id = feed.shared.session_id;
        // Feeds are cloned and dropped only under the lock, so the count
        // is exact: 1 is the map's own.
        let mut feeds = self.hub.feeds.lock().expect("feeds");
        drop(feed);
        if feeds
            .get(&session_id)
            .is_some_and(|feed| Arc::strong_count(feed) == 1)
        {
            feeds.remove(&session_id);
        }
    }
}

/// A session's feed: its task, stopped when the feed is dropped, and its
/// registration, then deleted.
struct Feed {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    db: Arc<Database>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
        let (db, feed_id) = (self.db.clone(), self.shared.feed_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let unwatched = async {
                    let client = db.client().await?;
                    statements::unwatch(&*client, feed_id).await
                };
                // Else it expires (EVENTS_WATCH_SECONDS).
                if let Err(e) = unwatched.await {
                    tracing::info!(error = %e, "a feed's watch was left to expire");
                }
            });
        }
    }
}

struct Shared {
    session_id: Uuid,
    /// Its row in `watched_sessions`.
    feed_id: Uuid,
    instance: Uuid,
    watch_ttl: Duration,
    events: broadcast::Sender<Arc<Event>>,
    pending: Mutex<Pending>,
    wake: Notify,
    /// Set once the feed knows the session's head.
    ready: watch::Sender<bool>,
}

/// What notifications asked a feed to read.
#[derive(Default, Clone, Copy)]
struct Pending {
    /// Messages up to this seq were appended.
    through: i32,
    session: bool,
    participants: bool,
    /// Notifications may have been missed: read whatever is new.
    resync: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.through == 0 && !self.session && !self.participants && !self.resync
    }

    fn merge(&mut self, other: Pending) {
        self.through = self.through.max(other.through);
        self.session |= other.session;
        self.participants |= other.participants;
        self.resync |= other.resync;
    }
}

impl Shared {
    fn mark(&self, change: impl FnOnce(&mut Pending)) {
        change(&mut self.pending.lock().expect("pending"));
        self.wake.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("pending"))
    }

    /// Reads what `pending` asks for after `head` and broadcasts it.
    async fn read(&self, db: &Database, head: &mut i32, pending: Pending) -> Result<(), DbError> {
        if pending.resync || pending.through > *head {
            loop {
                let page = {
                    let client = db.client().await?;
                    messages::export_page(&*client, self.session_id, *head, i32::MAX, PAGE).await?
                };
                // Once for all of its subscribers (tests count these lines).
                tracing::debug!(
                    messages = page.len(),
                    subscribers = self.events.receiver_count(),
                    "a session's feed read new messages"
                );
                let Some(last) = page.last().map(|m| m.seq) else {
                    break;
                };
                let frames = page
                    .iter()
                    .map(|m| (m.seq, sse::event("message", Some(m.seq), m)))
                    .collect();
                *head = last;
                let _ = self.events.send(Arc::new(Event::Messages(frames)));
                if !pending.resync && *head >= pending.through {
                    break;
                }
            }
        }
        if pending.resync || pending.session || pending.participants {
            let state = {
                let client = db.client().await?;
                statements::state(&*client, self.session_id).await?
            };
            let _ = self.events.send(Arc::new(Event::State(State {
                session_changed: pending.session || pending.resync,
                participants_changed: pending.participants || pending.resync,
                current: state.as_ref().map(Current::new),
            })));
        }
        Ok(())
    }
}

impl Feed {
    fn start(
        session_id: Uuid,
        instance: Uuid,
        watch_ttl: Duration,
        db: Arc<Database>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(BACKLOG);
        let shared = Arc::new(Shared {
            session_id,
            feed_id: Uuid::new_v4(),
            instance,
            watch_ttl,
            events,
            pending: Mutex::default(),
            wake: Notify::new(),
            ready: watch::Sender::new(false),
        });
        let task = tokio::spawn(run(shared.clone(), db.clone()));
        Arc::new(Self { shared, task, db })
    }
}

async fn run(shared: Arc<Shared>, db: Arc<Database>) {
    let mut delay = RETRY;
    let mut head = loop {
        let read = async {
            let client = db.client().await?;
            statements::watch(
                &*client,
                shared.session_id,
                shared.feed_id,
                shared.instance,
                shared.watch_ttl.as_secs_f64(),
            )
            .await
        };
        match read.await {
            Ok(head) => break head,
            Err(e) => {
                tracing::warn!(error = %e, "a session's feed cannot register; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
    };
    shared.ready.send_replace(true);
    delay = RETRY;
    loop {
        let pending = shared.take();
        if pending.is_empty() {
            shared.wake.notified().await;
            continue;
        }
        match shared.read(&db, &mut head, pending).await {
            Ok(()) => delay = RETRY,
            Err(e) => {
                tracing::warn!(error = %e, "a session's feed cannot read; retrying");
                // Whatever was asked is asked again, with all that is new.
                shared.pending.lock().expect("pending").merge(Pending {
                    resync: true,
                    ..pending
                });
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
    }
}
