//! The instance's one listening connection: opened when the first stream
//! or long-poll needs it, reopened (with backoff) whenever it is lost; once
//! it is back, every feed reads what it may have missed (`Hub::resync`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::hub::{CHANNEL, Hub};
use crate::db::listen::listen;
use crate::db::{Database, DbError};

/// How often the connection is checked (a failover can leave a socket
/// that neither delivers nor fails), and how long the check may take.
const PING: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Listener {
    started: AtomicBool,
    /// Whether the connection is listening now.
    listening: Arc<watch::Sender<bool>>,
}

/// Where the listening connection goes (`DATABASE_LISTEN_HOST`/`_PORT`).
#[derive(Clone)]
pub struct Target {
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl Listener {
    pub fn new() -> Self {
        Self {
            started: AtomicBool::new(false),
            listening: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Waits (at most `wait`) until the connection listens, starting it on
    /// first use.
    pub async fn ready(
        &self,
        hub: &Arc<Hub>,
        db: &Arc<Database>,
        target: &Target,
        wait: Duration,
    ) -> Result<(), DbError> {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(
                hub.clone(),
                db.clone(),
                target.clone(),
                self.listening.clone(),
            ));
        }
        let mut listening = self.listening.subscribe();
        match tokio::time::timeout(wait, listening.wait_for(|up| *up)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(DbError::Unavailable(
                "the connection that listens for session events is not up".to_owned(),
            )),
        }
    }
}

impl Default for Listener {
    fn default() -> Self {
        Self::new()
    }
}

async fn run(
    hub: Arc<Hub>,
    db: Arc<Database>,
    target: Target,
    listening: Arc<watch::Sender<bool>>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut connections = 0u64;
    loop {
        match listen(&db, target.host.as_deref(), target.port, CHANNEL).await {
            Ok(mut connection) => {
                connections += 1;
                backoff = MIN_BACKOFF;
                listening.send_replace(true);
                if connections == 1 {
                    tracing::info!("listening for session events");
                } else {
                    tracing::info!("listening for session events again; streams catch up");
                    hub.resync();
                }
                let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
                loop {
                    tokio::select! {
                        payload = connection.notifications.recv() => match payload {
                            Some(payload) => hub.dispatch(&payload),
                            None => break,
                        },
                        _ = ping.tick() => {
                            // LISTEN again: harmless, and what the
                            // connection shows in pg_stat_activity.
                            let answered = tokio::time::timeout(
                                PING_TIMEOUT,
                                connection.client.batch_execute(&format!("LISTEN {CHANNEL}")),
                            )
                            .await;
                            if !matches!(answered, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                listening.send_replace(false);
                tracing::warn!(
                    "the connection listening for session events was lost; reconnecting"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for session events; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
