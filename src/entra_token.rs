//! Access tokens of the service's Entra ID identity, one resource each:
//! PostgreSQL's password (`db::entra`) and Application Insights' bearer
//! token (`telemetry::app_insights`). A token is fetched on first use
//! (that caller waits, bounded by `timeout`); from then on it is refreshed
//! in the background before it expires, so nobody waits for Entra ID while
//! the current token is usable (see `refresh`).

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::time::OffsetDateTime;
use secrecy::SecretString;
use tracing::Instrument;

use crate::refresh::{Lifetime, Refreshing};

/// A token is replaced (in the background) when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// While fetching a new one fails, a token is used until it has this left.
const MIN_LEFT: Duration = Duration::from_secs(30);

/// What the tokens are for.
#[derive(Debug, Clone, Copy)]
pub struct Resource {
    /// The scope they are asked for.
    pub scope: &'static str,
    /// What they are called in log lines and errors.
    pub name: &'static str,
    /// Whether a fetch gets a span: not for the telemetry exporter, whose
    /// own work never becomes telemetry.
    pub traced: bool,
}

struct Token {
    secret: SecretString,
    expires_on: OffsetDateTime,
}

/// The current token for one resource.
pub struct EntraToken {
    resource: Resource,
    credential: Arc<dyn TokenCredential>,
    timeout: Duration,
    current: Arc<Refreshing<Token, String>>,
}

impl EntraToken {
    pub fn new(
        resource: Resource,
        credential: Arc<dyn TokenCredential>,
        timeout: Duration,
    ) -> Self {
        Self {
            resource,
            credential,
            timeout,
            current: Arc::new(Refreshing::new(
                resource.name,
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

    /// The current token, fetched first when none is usable.
    pub async fn get(&self) -> Result<SecretString, String> {
        let (resource, credential, timeout) =
            (self.resource, self.credential.clone(), self.timeout);
        let token = self
            .current
            .get(move || fetch(resource, credential, timeout))
            .await?;
        Ok(token.secret.clone())
    }

    /// The cached token, if there is one (without fetching).
    pub fn peek(&self) -> Option<SecretString> {
        self.current.peek().map(|token| token.secret.clone())
    }

    /// Forgets the token, e.g. after the resource rejected it.
    pub fn invalidate(&self) {
        self.current.invalidate();
    }
}

async fn fetch(
    resource: Resource,
    credential: Arc<dyn TokenCredential>,
    timeout: Duration,
) -> Result<Token, String> {
    let span = if resource.traced {
        tracing::info_span!("entra.get_token", otel.kind = "client")
    } else {
        tracing::Span::none()
    };
    async move {
        let failed = |e: String| format!("no {}: {e}", resource.name);
        let token = tokio::time::timeout(timeout, credential.get_token(&[resource.scope], None))
            .await
            .map_err(|_| failed(format!("no answer within {timeout:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        tracing::info!(expires_on = %token.expires_on, "fetched an {}", resource.name);
        Ok(Token {
            secret: SecretString::from(token.token.secret()),
            expires_on: token.expires_on,
        })
    }
    .instrument(span)
    .await
}
