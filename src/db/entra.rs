//! Passwordless PostgreSQL (Azure Database for PostgreSQL with Entra ID):
//! each new connection logs in with an access token of the service's
//! identity as its password. Tokens are cached and fetched again a while
//! before they expire; pooled connections are retired before their token's
//! lifetime is over (`DATABASE_CONNECTION_MAX_AGE_SECONDS`, default 45
//! minutes, while Entra tokens live 60 to 90).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use deadpool_postgres::Connect;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::DbError;
use crate::entra_token::{EntraToken, Resource};

/// The resource Azure Database for PostgreSQL accepts tokens for.
pub const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
const POSTGRES: Resource = Resource {
    scope: SCOPE,
    name: "Entra ID token for PostgreSQL",
    traced: true,
};

/// The Entra ID token new connections log in with (see `entra_token`).
pub struct EntraPassword(EntraToken);

impl EntraPassword {
    pub fn new(credential: Arc<dyn TokenCredential>, timeout: Duration) -> Self {
        Self(EntraToken::new(POSTGRES, credential, timeout))
    }

    /// Makes sure a usable token is cached (before a pool checkout that may
    /// have to open a connection).
    pub async fn ensure_fresh(&self) -> Result<(), DbError> {
        self.0.get().await.map(drop).map_err(DbError::Unavailable)
    }

    /// Forgets the token, e.g. after PostgreSQL rejected it.
    pub fn invalidate(&self) {
        self.0.invalidate();
    }

    pub fn password(&self) -> Option<SecretString> {
        self.0.peek()
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
