//! Storage: the lazily built connection pool, migrations, and every SQL
//! statement the service runs (one module per table group).

pub mod applications;
pub mod configs;
pub mod entra;
pub mod idempotency;
pub mod migrate;
pub mod participants;
pub mod sessions;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use entra::{EntraConnect, EntraPassword};
use postgres_native_tls::MakeTlsConnector;
use secrecy::ExposeSecret;
use std::sync::Arc;

use tokio::sync::RwLock;
use tokio_postgres::error::SqlState;

use crate::secrets::{Secrets, SecretsError};
use crate::settings::DatabaseSettings;

/// Raised by the `ensure_session_keeps_an_owner` trigger.
const LAST_OWNER_SQLSTATE: &str = "AM001";

/// Why a storage call failed, in the terms the HTTP layer needs.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server cannot be reached or refused us for now; worth a retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint rejected the write (its name is kept for mapping).
    #[error("unique constraint {0} violated")]
    UniqueViolation(String),
    /// PostgreSQL refused a value the client sent (SQLSTATE class 22, e.g.
    /// a NUL character inside JSON).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// The server refused our password (SQLSTATE 28P01): perhaps rotated.
    #[error("password rejected: {0}")]
    PasswordRejected(String),
    /// The secrets (Key Vault) could not be resolved.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The schema is missing, or the service's role may not use it (not
    /// migrated, or privileges never granted): a deployment fault.
    #[error("the database schema is not usable: {0}")]
    SchemaUnusable(String),
    /// The write would leave a session without an owner (migration V7).
    #[error("a session must keep at least one owner")]
    LastOwner,
    #[error("database error: {0}")]
    Other(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        let Some(db) = err.as_db_error() else {
            // No server error: the socket failed or closed under us.
            return Self::Unavailable(err.to_string());
        };
        // tokio-postgres' own Display says only "db error"; keep the server's words.
        let message = format!("{} ({})", db.message(), db.code().code());
        let code = db.code();
        if code.code() == LAST_OWNER_SQLSTATE {
            return Self::LastOwner;
        }
        if *code == SqlState::INVALID_PASSWORD {
            return Self::PasswordRejected(message);
        }
        if *code == SqlState::UNIQUE_VIOLATION {
            return Self::UniqueViolation(db.constraint().unwrap_or_default().to_owned());
        }
        if [
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::UNDEFINED_TABLE,
            SqlState::UNDEFINED_COLUMN,
            SqlState::UNDEFINED_FUNCTION,
        ]
        .contains(code)
        {
            return Self::SchemaUnusable(message);
        }
        let class = &code.code()[..2];
        if class == "22" {
            return Self::InvalidValue(db.message().to_owned());
        }
        // Class 08 (connection exception), 28 (rejected credentials), and
        // shutdown or overload: the service cannot use its database right now.
        if class == "08"
            || class == "28"
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code)
        {
            return Self::Unavailable(message);
        }
        Self::Other(message)
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

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
    /// The pool and the secrets generation it was built from.
    pool: RwLock<Option<(Pool, u64)>>,
}

impl Database {
    pub fn new(
        settings: DatabaseSettings,
        secrets: Arc<Secrets>,
        entra: Option<Arc<EntraPassword>>,
    ) -> Self {
        Self {
            settings,
            secrets,
            entra,
            pool: RwLock::new(None),
        }
    }

    /// Whether a rejected password can be cured by fetching it again.
    fn can_rotate(&self) -> bool {
        self.entra.is_some() || self.secrets.from_key_vault()
    }

    /// A pooled connection, waiting at most the pool timeout in total
    /// (building the pool included) so callers never hang.
    pub async fn client(&self) -> Result<Object, DbError> {
        let timeout = self.settings.pool_timeout;
        tokio::time::timeout(timeout, self.client_with_rotation())
            .await
            .map_err(|_| DbError::Unavailable(format!("no connection within {timeout:?}")))?
    }

    async fn client_with_rotation(&self) -> Result<Object, DbError> {
        if let Some(entra) = &self.entra {
            entra.ensure_fresh().await?;
        }
        let (pool, generation) = match self.pool().await {
            Err(DbError::PasswordRejected(_)) if self.can_rotate() => {
                return self.rotate(0).await;
            }
            other => other?,
        };
        match pool.get().await.map_err(DbError::from) {
            Err(DbError::PasswordRejected(_)) if self.can_rotate() => self.rotate(generation).await,
            other => other,
        }
    }

    /// Fetches the password again after `generation` was rejected (a new
    /// Entra token, or the secrets from Key Vault, rebuilding the pool),
    /// and tries once more.
    async fn rotate(&self, generation: u64) -> Result<Object, DbError> {
        tracing::warn!("the database rejected the password; fetching it again");
        if let Some(entra) = &self.entra {
            entra.invalidate();
            entra.ensure_fresh().await?;
        }
        if self.secrets.from_key_vault() {
            self.secrets.refresh(generation).await?;
            *self.pool.write().await = None;
        }
        let (pool, _) = self.pool().await?;
        Ok(pool.get().await?)
    }

    async fn pool(&self) -> Result<(Pool, u64), DbError> {
        if let Some(pool) = self.pool.read().await.as_ref() {
            return Ok(pool.clone());
        }
        let mut slot = self.pool.write().await;
        if let Some(pool) = slot.as_ref() {
            return Ok(pool.clone());
        }
        let resolved = self.secrets.get().await?;
        let pool = build_pool(&self.settings, &resolved.database, self.entra.clone()).await?;
        *slot = Some((pool.clone(), resolved.generation));
        Ok((pool, resolved.generation))
    }

    /// Cheap proof the service can use its schema, not only connect: with
    /// `LIMIT 0` nothing is read, but every table must exist and be
    /// readable by the service's role.
    pub async fn check_schema(&self) -> Result<(), DbError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT NULL FROM applications, configs, sessions, session_participants,
                                  users, idempotency_keys
                 LIMIT 0",
            )
            .await?;
        client.query(&stmt, &[]).await?;
        Ok(())
    }
}

/// TLS for `sslmode=prefer|require`, verifying the server certificate and
/// host name against the system roots (or `SSL_CERT_FILE`, which OpenSSL
/// reads, for a private CA).
pub fn tls_connector() -> Result<MakeTlsConnector, DbError> {
    let connector = native_tls::TlsConnector::new()
        .map_err(|e| DbError::Other(format!("cannot initialise TLS: {e}")))?;
    Ok(MakeTlsConnector::new(connector))
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
) -> Result<Pool, DbError> {
    let tls = tls_connector()?;
    let config = connect_config(settings, database);
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
    warm_up(pool.clone(), settings.pool_min_size);
    Ok(pool)
}

/// Opens `count` connections in the background (see `DATABASE_POOL_MIN_SIZE`).
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

/// A statement guarded by the caller's role: `$1` is the session, `$2` the
/// caller, and the CTE `caller` holds the caller's role (no row when the
/// caller does not participate). `$rest` continues the WITH list or starts
/// the main statement.
macro_rules! with_caller {
    ($rest:literal) => {
        concat!(
            "WITH caller AS (
                 SELECT role FROM session_participants WHERE session_id = $1 AND user_id = $2
             )",
            $rest
        )
    };
}
pub(crate) use with_caller;

/// The outcome of an operation guarded by the caller's role in a session.
#[derive(Debug)]
pub enum Guarded<T> {
    /// The caller does not participate, or the session does not exist: the
    /// API reports both as "not found".
    NotVisible,
    /// The caller participates with `role`. `done` is `None` when the role
    /// is not permitted, or when the target of the operation is missing.
    Seen {
        role: crate::roles::Role,
        done: Option<T>,
    },
}

impl<T> Guarded<T> {
    /// Reads the `caller_role` column, then the result with `done`.
    fn from_row(
        row: Option<tokio_postgres::Row>,
        done: impl FnOnce(&tokio_postgres::Row) -> Result<Option<T>, DbError>,
    ) -> Result<Self, DbError> {
        let Some(row) = row else {
            return Ok(Self::NotVisible);
        };
        Ok(Self::Seen {
            role: crate::roles::Role::from_db(row.get("caller_role"))?,
            done: done(&row)?,
        })
    }
}
