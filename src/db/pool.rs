//! The one lazily built connection pool, its TLS, and the warm-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use secrecy::ExposeSecret;
use tokio::sync::RwLock;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{NoTls, Socket};

use super::entra::{EntraConnect, EntraPassword};
use super::pooled::{CancelTls, Pooled};
use super::{DbError, migrate};
use crate::limits::pace::Pace;
use crate::limits::pool_share::{self, OverShare, PoolShares};
use crate::secrets::{Resolved, Secrets};
use crate::settings::DatabaseSettings;
use crate::telemetry::metrics::{self, PoolShareRefusal};

/// The one pool every handler shares. It is built on first use, never at
/// start-up (the Functions host needs the port open within milliseconds), and
/// a failed build is not cached: the next request tries again. When the
/// server rejects the password and the secrets come from Key Vault, they
/// are re-resolved once and the pool rebuilt (rotation without restart).
pub struct Database {
    settings: DatabaseSettings,
    secrets: Arc<Secrets>,
    /// Set for `DATABASE_AUTH=entra`: the token used as the password.
    entra: Option<Arc<EntraPassword>>,
    /// The pool, the database settings it was built from, and how its
    /// connections' statements are cancelled.
    pool: RwLock<Option<(Pool, tokio_postgres::Config, CancelTls)>>,
    /// Whether the warm-up (`DATABASE_POOL_MIN_SIZE`) has begun.
    warming: AtomicBool,
    /// What each application may hold of the pool; `None` when a share is
    /// the whole pool (it would limit nothing but how many wait).
    shares: Option<Arc<PoolShares>>,
}

impl Database {
    pub fn new(
        settings: DatabaseSettings,
        secrets: Arc<Secrets>,
        entra: Option<Arc<EntraPassword>>,
    ) -> Self {
        Self {
            shares: (settings.pool_app_connections < settings.pool_max_size).then(|| {
                PoolShares::new(settings.pool_app_connections, settings.pool_app_max_waiting)
            }),
            settings,
            secrets,
            entra,
            pool: RwLock::new(None),
            warming: AtomicBool::new(false),
        }
    }

    /// Whether a rejected password can be cured by fetching it again.
    fn can_rotate(&self) -> bool {
        self.entra.is_some() || self.secrets.from_key_vault()
    }

    /// A pooled connection, waiting at most the pool timeout in total
    /// (for the application's share and building the pool included) so
    /// callers never hang; the work done through it is bounded too
    /// (`pooled`). A request of an application over its share is refused
    /// at once (`limits::pool_share`).
    #[tracing::instrument(name = "pool.checkout", skip_all)]
    pub async fn client(&self) -> Result<Pooled, DbError> {
        let timeout = self.settings.pool_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let share = match (&self.shares, pool_share::tenant()) {
            (Some(shares), Some(tenant)) => Some(
                tokio::time::timeout_at(deadline, shares.acquire(tenant))
                    .await
                    .map_err(|_| {
                        metrics::pool_share_refused(PoolShareRefusal::TimedOut);
                        DbError::OverShare(OverShare::TimedOut {
                            connections: shares.connections(),
                            waited: timeout,
                        })
                    })?
                    .map_err(|over| {
                        metrics::pool_share_refused(PoolShareRefusal::Full);
                        DbError::OverShare(over)
                    })?,
            ),
            _ => None,
        };
        let (object, tls) = tokio::time::timeout_at(deadline, self.client_with_rotation())
            .await
            .map_err(|_| {
                metrics::pool_timeout();
                DbError::Unavailable(format!("no connection within {timeout:?}"))
            })??;
        Ok(Pooled::new(
            object,
            tls,
            self.settings.statement_timeout,
            share,
        ))
    }

    async fn client_with_rotation(&self) -> Result<(Object, CancelTls), DbError> {
        if let Some(entra) = &self.entra {
            entra.ensure_fresh().await?;
        }
        let resolved = self.secrets.get().await?;
        let (pool, tls) = match self.pool(&resolved).await {
            Err(DbError::PasswordRejected(_)) if self.can_rotate() => {
                return self.rotate(&resolved).await;
            }
            other => other?,
        };
        let client = match checkout(&pool).await.map_err(DbError::from) {
            Err(DbError::PasswordRejected(_)) if self.can_rotate() => {
                return self.rotate(&resolved).await;
            }
            other => other?,
        };
        // The first request has its connection: only now do the others
        // open, so they do not compete with it.
        if !self.warming.swap(true, Ordering::Relaxed) {
            warm_up(pool, self.settings.pool_min_size.saturating_sub(1));
        }
        Ok((client, tls))
    }

    /// Fetches the password again after the one `seen` was rejected (a new
    /// Entra token, or the secrets from Key Vault), and tries once more.
    async fn rotate(&self, seen: &Arc<Resolved>) -> Result<(Object, CancelTls), DbError> {
        tracing::warn!("the database rejected the password; fetching it again");
        if let Some(entra) = &self.entra {
            entra.invalidate();
            entra.ensure_fresh().await?;
        }
        let resolved = if self.secrets.from_key_vault() {
            self.secrets.refresh(seen).await?
        } else {
            seen.clone()
        };
        let (pool, tls) = self.pool(&resolved).await?;
        Ok((checkout(&pool).await?, tls))
    }

    /// The pool for the database `resolved` names: built on first use, and
    /// again when refreshed secrets name another database or password (the
    /// old pool is closed, which also ends its background work).
    async fn pool(&self, resolved: &Resolved) -> Result<(Pool, CancelTls), DbError> {
        if let Some((pool, database, tls)) = self.pool.read().await.as_ref()
            && *database == resolved.database
        {
            return Ok((pool.clone(), tls.clone()));
        }
        let mut slot = self.pool.write().await;
        if let Some((pool, database, tls)) = slot.as_ref()
            && *database == resolved.database
        {
            return Ok((pool.clone(), tls.clone()));
        }
        let (pool, tls) =
            build_pool(&self.settings, &resolved.database, self.entra.clone()).await?;
        let built = (pool.clone(), resolved.database.clone(), tls.clone());
        if let Some((old, _, _)) = slot.replace(built) {
            old.close();
        }
        Ok((pool, tls))
    }

    /// The settings of a connection of its own, outside the pool (the
    /// listening connection, `db::listen`): the pool's database, and its
    /// password (an Entra token, fetched first if due).
    pub async fn direct_config(&self) -> Result<tokio_postgres::Config, DbError> {
        if let Some(entra) = &self.entra {
            entra.ensure_fresh().await?;
        }
        let resolved = self.secrets.get().await?;
        let mut config = connect_config(&self.settings, &resolved.database);
        if let Some(password) = self.entra.as_ref().and_then(|e| e.password()) {
            config.password(password.expose_secret());
        }
        Ok(config)
    }

    /// The pool's connections now (`None` before it is built, or while it
    /// is being rebuilt): read by metrics and the admin's health detail.
    pub fn pool_status(&self) -> Option<deadpool_postgres::Status> {
        let slot = self.pool.try_read().ok()?;
        slot.as_ref().map(|(pool, _, _)| pool.status())
    }

    /// Cheap proof the service can use its schema, not only connect: with
    /// `LIMIT 0` nothing is read, but every table must exist and be
    /// readable by the service's role.
    pub async fn check_schema(&self) -> Result<(), DbError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT NULL FROM applications, configs, sessions, session_participants,
                                  session_messages, session_search, session_lineage,
                                  transcripts_to_sweep, users, idempotency_keys, event_tickets,
                                  watched_sessions, rate_limit_counts, audit_events
                 LIMIT 0",
            )
            .await?;
        client.query(&stmt, &[]).await?;
        Ok(())
    }
}

/// A connection from `pool`, its wait timed for metrics (cut short too)
/// and a wait that reached the pool's own timeout counted.
async fn checkout(pool: &Pool) -> Result<Object, deadpool_postgres::PoolError> {
    let _wait = metrics::connection_wait();
    pool.get().await.inspect_err(|e| {
        if matches!(e, deadpool_postgres::PoolError::Timeout(_)) {
            metrics::pool_timeout();
        }
    })
}

/// Connection settings plus what this service always sets.
pub fn connect_config(
    settings: &DatabaseSettings,
    database: &tokio_postgres::Config,
) -> tokio_postgres::Config {
    let mut config = database.clone();
    config.connect_timeout(settings.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name(env!("CARGO_PKG_NAME"));
    }
    config
}

async fn build_pool(
    settings: &DatabaseSettings,
    database: &tokio_postgres::Config,
    entra: Option<Arc<EntraPassword>>,
) -> Result<(Pool, CancelTls), DbError> {
    let config = connect_config(settings, database);
    if config.get_ssl_mode() == SslMode::Disable {
        let pool = build_pool_with(settings, config, entra, NoTls).await?;
        Ok((pool, CancelTls::Plain))
    } else {
        let tls = super::tls::connector_async().await?;
        let pool = build_pool_with(settings, config, entra, tls.clone()).await?;
        Ok((pool, CancelTls::Tls(tls)))
    }
}

async fn build_pool_with<T>(
    settings: &DatabaseSettings,
    config: tokio_postgres::Config,
    entra: Option<Arc<EntraPassword>>,
    tls: T,
) -> Result<Pool, DbError>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    if settings.migrate_on_start {
        let mut config = config.clone();
        if let Some(password) = entra.as_ref().and_then(|e| e.password()) {
            config.password(password.expose_secret());
        }
        migrate::run(&config, tls.clone(), None).await?;
    }
    // Fast: a checkout costs no round trip; a connection the server closed
    // is noticed by tokio-postgres and dropped.
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let mut builder = match &entra {
        None => Pool::builder(Manager::from_config(config, tls, manager_config)),
        Some(password) => {
            let connect = EntraConnect {
                tls,
                password: password.clone(),
            };
            let max_age = settings.max_connection_age;
            Pool::builder(Manager::from_connect(config, connect, manager_config)).post_recycle(
                Hook::sync_fn(move |_, metrics| {
                    if metrics.age() > max_age {
                        Err(HookError::message("retired: its login token has expired"))
                    } else {
                        Ok(())
                    }
                }),
            )
        }
    };
    builder = builder
        .max_size(settings.pool_max_size)
        .wait_timeout(Some(settings.pool_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .runtime(Runtime::Tokio1);
    let pool = builder
        .build()
        .map_err(|e| DbError::Other(format!("cannot build pool: {e}")))?;
    tracing::info!(max_size = settings.pool_max_size, "database pool ready");
    sweep(
        pool.clone(),
        settings.idempotency_sweep_interval,
        settings.background_pace,
    );
    Ok(pool)
}

/// Deletes expired idempotency records, stream tickets and watches, and
/// the messages of deleted sessions that no fork shares, every
/// `interval`, for as long as the pool is open. A background sweep rather
/// than work on each request: it costs requests nothing (deleting a
/// session of any size is one small statement), and runs even when writes
/// stop. (While no instance runs, nothing is swept: nothing can read those
/// rows then either.) The transcripts' sweep, which after a purge has
/// millions of rows to delete, takes a connection per statement and rests
/// between them (`pace`, BACKGROUND_BUSY_PERCENT).
fn sweep(pool: Pool, interval: std::time::Duration, pace: Pace) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let client = match pool.get().await {
                Ok(client) => client,
                Err(deadpool_postgres::PoolError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "sweep: no connection");
                    continue;
                }
            };
            match super::idempotency::sweep(&client).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "expired idempotency records deleted"),
                Err(e) => tracing::warn!(error = %e, "idempotency sweep failed"),
            }
            if let Err(e) = super::events::sweep(&client).await {
                tracing::warn!(error = %e, "sweep of stream tickets and watches failed");
            }
            drop(client);
            match sweep_transcripts(&pool, pace).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "rows of deleted transcripts deleted"),
                Err(e) => tracing::warn!(error = %e, "transcript sweep failed"),
            }
        }
    });
}

/// Sweeps deleted transcripts (`messages::sweep_step`) until the queue is
/// empty, at `pace`; returns how many rows.
async fn sweep_transcripts(pool: &Pool, pace: Pace) -> Result<u64, DbError> {
    let mut deleted = 0;
    loop {
        let client = pool.get().await.map_err(DbError::from)?;
        let started = std::time::Instant::now();
        let step = super::messages::sweep_step(&client).await?;
        drop(client);
        deleted += step.deleted;
        if !step.queued {
            return Ok(deleted);
        }
        pace.rest(started.elapsed()).await;
    }
}

/// Opens `count` more connections in the background, so that a burst after
/// the first request finds them ready (see `DATABASE_POOL_MIN_SIZE`).
fn warm_up(pool: Pool, count: usize) {
    if count == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut held = Vec::with_capacity(count);
        for _ in 0..count {
            match pool.get().await {
                Ok(client) => held.push(client),
                Err(e) => {
                    tracing::warn!(error = %e, "pool warm-up stopped");
                    break;
                }
            }
        }
    });
}
