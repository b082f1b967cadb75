//! Passwordless PostgreSQL (Azure Database for PostgreSQL with Entra ID):
//! each new connection logs in with an access token of the service's
//! identity as its password. Tokens are cached and fetched again a while
//! before they expire; pooled connections are retired before their token's
//! lifetime is over (`DATABASE_CONNECTION_MAX_AGE_SECONDS`, default 45
//! minutes, while Entra tokens live 60 to 90).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::time::OffsetDateTime;
use deadpool_postgres::Connect;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::DbError;

/// The resource Azure Database for PostgreSQL accepts tokens for.
pub const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
/// A token is replaced when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// After a failed fetch, callers use the current token (while it is valid)
/// or get the failure, for this long, instead of each trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct EntraPassword {
    credential: Arc<dyn TokenCredential>,
    current: RwLock<Option<(SecretString, OffsetDateTime)>>,
    /// The last failed fetch, until one succeeds.
    failed: RwLock<Option<(String, std::time::Instant)>>,
    fetching: tokio::sync::Mutex<()>,
}

impl EntraPassword {
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        Self {
            credential,
            current: RwLock::new(None),
            failed: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the current token lives longer than `margin`.
    fn lives_beyond(&self, margin: Duration) -> bool {
        let margin = azure_core::time::Duration::try_from(margin).expect("a short duration");
        self.current
            .read()
            .expect("token lock")
            .as_ref()
            .is_some_and(|(_, expires)| *expires - margin > OffsetDateTime::now_utc())
    }

    /// Makes sure a token with some life left is cached (before a pool
    /// checkout that may have to open a connection). One fetch at a time;
    /// when it fails, a token that has not yet expired is used on
    /// (stale-while-error), and callers within [`RETRY_AFTER`] share the
    /// failure rather than queue behind another attempt.
    pub async fn ensure_fresh(&self) -> Result<(), DbError> {
        if self.lives_beyond(REFRESH_MARGIN) {
            return Ok(());
        }
        let asked = std::time::Instant::now();
        let _one_fetch = self.fetching.lock().await;
        if self.lives_beyond(REFRESH_MARGIN) {
            return Ok(());
        }
        let failed = self.failed.read().expect("token lock").clone();
        let error = match failed {
            Some((error, at)) if at >= asked || at.elapsed() < RETRY_AFTER => error,
            _ => match self.credential.get_token(&[SCOPE], None).await {
                Ok(token) => {
                    tracing::info!(expires_on = %token.expires_on, "fetched an Entra ID token for PostgreSQL");
                    *self.current.write().expect("token lock") =
                        Some((SecretString::from(token.token.secret()), token.expires_on));
                    *self.failed.write().expect("token lock") = None;
                    return Ok(());
                }
                Err(e) => {
                    let error = format!("no Entra ID token for PostgreSQL: {e}");
                    *self.failed.write().expect("token lock") =
                        Some((error.clone(), std::time::Instant::now()));
                    error
                }
            },
        };
        // Still valid for a while: connections can log in with it.
        if self.lives_beyond(Duration::from_secs(30)) {
            tracing::warn!(%error, "using the current Entra ID token until it expires");
            return Ok(());
        }
        Err(DbError::Unavailable(error))
    }

    /// Forgets the token, e.g. after PostgreSQL rejected it.
    pub fn invalidate(&self) {
        *self.current.write().expect("token lock") = None;
    }

    pub fn password(&self) -> Option<SecretString> {
        self.current
            .read()
            .expect("token lock")
            .as_ref()
            .map(|(token, _)| token.clone())
    }
}

/// Opens connections with the current token as the password.
pub struct EntraConnect<T> {
    pub tls: T,
    pub password: Arc<EntraPassword>,
}

type Connected = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>;

impl<T> Connect for EntraConnect<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Connected> + Send + '_>> {
        let mut config = pg_config.clone();
        if let Some(token) = self.password.password() {
            config.password(token.expose_secret());
        }
        let tls = self.tls.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "database connection ended with an error");
                }
            });
            Ok((client, task))
        })
    }
}
