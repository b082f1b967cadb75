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
use azure_core::time::OffsetDateTime;
use deadpool_postgres::Connect;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::DbError;
use crate::refresh::{Lifetime, Refreshing};

/// The resource Azure Database for PostgreSQL accepts tokens for.
pub const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
/// A token is replaced (in the background) when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// While fetching a new one fails, a token is used until it has this left.
const MIN_LEFT: Duration = Duration::from_secs(30);

struct Token {
    secret: SecretString,
    expires_on: OffsetDateTime,
}

/// The Entra ID token new connections log in with. Fetched on first use
/// (that caller waits, bounded by `timeout`); from then on refreshed in the
/// background before it expires, so no request waits for Entra ID while
/// the current token is usable (see `refresh`).
pub struct EntraPassword {
    credential: Arc<dyn TokenCredential>,
    timeout: Duration,
    current: Arc<Refreshing<Token, String>>,
}

impl EntraPassword {
    pub fn new(credential: Arc<dyn TokenCredential>, timeout: Duration) -> Self {
        Self {
            credential,
            timeout,
            current: Arc::new(Refreshing::new(
                "Entra ID token for PostgreSQL",
                Lifetime::Expiring {
                    expires_in: |token| {
                        (token.expires_on - OffsetDateTime::now_utc())
                            .try_into()
                            .unwrap_or(Duration::ZERO)
                    },
                    margin: REFRESH_MARGIN,
                    min_left: MIN_LEFT,
                },
            )),
        }
    }

    /// Makes sure a usable token is cached (before a pool checkout that may
    /// have to open a connection).
    pub async fn ensure_fresh(&self) -> Result<(), DbError> {
        let (credential, timeout) = (self.credential.clone(), self.timeout);
        self.current
            .get(move || fetch(credential, timeout))
            .await
            .map(drop)
            .map_err(DbError::Unavailable)
    }

    /// Forgets the token, e.g. after PostgreSQL rejected it.
    pub fn invalidate(&self) {
        self.current.invalidate();
    }

    pub fn password(&self) -> Option<SecretString> {
        self.current.peek().map(|token| token.secret.clone())
    }
}

#[tracing::instrument(name = "entra.get_token", skip_all, fields(otel.kind = "client"))]
async fn fetch(credential: Arc<dyn TokenCredential>, timeout: Duration) -> Result<Token, String> {
    let failed = |e: String| format!("no Entra ID token for PostgreSQL: {e}");
    let token = tokio::time::timeout(timeout, credential.get_token(&[SCOPE], None))
        .await
        .map_err(|_| failed(format!("no answer within {timeout:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    tracing::info!(expires_on = %token.expires_on, "fetched an Entra ID token for PostgreSQL");
    Ok(Token {
        secret: SecretString::from(token.token.secret()),
        expires_on: token.expires_on,
    })
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
