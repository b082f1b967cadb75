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
use postgres_native_tls::MakeTlsConnector;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;

use super::DbError;

/// The resource Azure Database for PostgreSQL accepts tokens for.
pub const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
/// A token is replaced when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

pub struct EntraPassword {
    credential: Arc<dyn TokenCredential>,
    current: RwLock<Option<(SecretString, OffsetDateTime)>>,
    fetching: tokio::sync::Mutex<()>,
}

impl EntraPassword {
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        Self {
            credential,
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn usable(&self) -> bool {
        let margin = azure_core::time::Duration::try_from(REFRESH_MARGIN).expect("five minutes");
        self.current
            .read()
            .expect("token lock")
            .as_ref()
            .is_some_and(|(_, expires)| *expires - margin > OffsetDateTime::now_utc())
    }

    /// Makes sure a token with some life left is cached (before a pool
    /// checkout that may have to open a connection).
    pub async fn ensure_fresh(&self) -> Result<(), DbError> {
        if self.usable() {
            return Ok(());
        }
        let _one_fetch = self.fetching.lock().await;
        if self.usable() {
            return Ok(());
        }
        let token = self
            .credential
            .get_token(&[SCOPE], None)
            .await
            .map_err(|e| DbError::Unavailable(format!("no Entra ID token for PostgreSQL: {e}")))?;
        tracing::info!(expires_on = %token.expires_on, "fetched an Entra ID token for PostgreSQL");
        *self.current.write().expect("token lock") =
            Some((SecretString::from(token.token.secret()), token.expires_on));
        Ok(())
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
pub struct EntraConnect {
    pub tls: MakeTlsConnector,
    pub password: Arc<EntraPassword>,
}

type Connected = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>;

impl Connect for EntraConnect {
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
