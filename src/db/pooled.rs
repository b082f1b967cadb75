//! A pooled connection as one request holds it, with two bounds on the
//! database work done through it:
//!
//! - held longer than `DATABASE_STATEMENT_TIMEOUT_MS`, its running
//!   statement is cancelled (PostgreSQL answers 57014, the request 503);
//! - dropped by a request that was abandoned (the client went away), its
//!   running statement is cancelled at once.
//!
//! A connection that may have a cancel on its way is never returned to the
//! pool, so a cancel cannot land on another request's statement. Cancels
//! go through PostgreSQL's cancel protocol (a connection of their own,
//! which PgBouncer forwards too), so no session state is involved.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Object;
use postgres_native_tls::MakeTlsConnector;
use tokio::task::JoinHandle;
use tokio_postgres::{CancelToken, NoTls};

use crate::limits::abandoned::{self, Abandoned};
use crate::limits::pool_share::Share;

/// How cancel requests reach the server: as the pool's connections do.
#[derive(Clone)]
pub enum CancelTls {
    Plain,
    Tls(MakeTlsConnector),
}

pub struct Pooled {
    object: Option<Object>,
    token: CancelToken,
    tls: CancelTls,
    state: Arc<Mutex<Held>>,
    watchdog: JoinHandle<()>,
    abandoned: Option<Arc<Abandoned>>,
    /// The application's place in its share of the pool; a field, so it is
    /// given back after the connection (`drop` runs first).
    _share: Option<Share>,
}

#[derive(Default)]
struct Held {
    /// The request let go of it.
    released: bool,
    /// The watchdog cancelled its statement.
    overdue: bool,
}

impl Pooled {
    pub(super) fn new(
        object: Object,
        tls: CancelTls,
        limit: Duration,
        share: Option<Share>,
    ) -> Self {
        let token = object.cancel_token();
        let state = Arc::new(Mutex::new(Held::default()));
        let watchdog = {
            let (state, token, tls) = (state.clone(), token.clone(), tls.clone());
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                {
                    let mut held = state.lock().expect("held connection");
                    if held.released {
                        return;
                    }
                    held.overdue = true;
                }
                tracing::warn!(
                    limit_ms = limit.as_millis() as u64,
                    "a request held its database connection past DATABASE_STATEMENT_TIMEOUT_MS; cancelling its statement"
                );
                cancel(&token, &tls).await;
            })
        };
        Self {
            object: Some(object),
            token,
            tls,
            state,
            watchdog,
            abandoned: abandoned::current(),
            _share: share,
        }
    }
}

async fn cancel(token: &CancelToken, tls: &CancelTls) {
    let sent = match tls {
        CancelTls::Plain => token.cancel_query(NoTls).await,
        CancelTls::Tls(tls) => token.cancel_query(tls.clone()).await,
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not cancel a statement");
    }
}

impl Deref for Pooled {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.object.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Object {
        self.object.as_mut().expect("held until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.watchdog.abort();
        let overdue = {
            let mut held = self.state.lock().expect("held connection");
            held.released = true;
            held.overdue
        };
        let abandoned = self.abandoned.as_ref().is_some_and(|a| a.is_set());
        let Some(object) = self.object.take() else {
            return;
        };
        if !overdue && !abandoned {
            return; // back to the pool
        }
        let client = Object::take(object);
        if abandoned && !overdue {
            let (token, tls) = (self.token.clone(), self.tls.clone());
            tokio::spawn(async move {
                cancel(&token, &tls).await;
                drop(client);
            });
        }
    }
}
