//! The service's secrets: the database connection, the HS256 token key and
//! the admin key. From the environment, or, when a Key Vault is configured,
//! from Key Vault through the official Azure SDK, resolved lazily (never at
//! start-up), cached, and re-resolved when the database rejects the password.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::StatusCode;
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::refresh::Refreshing;
use crate::settings::{
    AuthSettings, AzureSettings, CredentialKind, KeyVaultSettings, Settings, check_deployed_secret,
    parse_database_url,
};

/// How long secrets read from Key Vault stay in use while the vault cannot
/// be reached.
const MAX_STALENESS: Duration = Duration::from_secs(24 * 3600);

/// The secrets in use, after resolution.
pub struct Resolved {
    pub database: tokio_postgres::Config,
    /// The HS256 key of user tokens.
    pub secret_key: SecretString,
    pub admin_api_key: Option<SecretString>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretsError {
    /// The vault could not be reached or refused us; never papered over
    /// with environment or development values.
    #[error("Key Vault: {0}")]
    Vault(String),
    /// A resolved value is unusable (the message names the setting, never
    /// the value).
    #[error("{0}")]
    Invalid(String),
}

/// The secrets: from the environment, or from Key Vault on first use and
/// again every `KEYVAULT_REFRESH_SECONDS` (rotations take effect without a
/// restart); while the vault is down the last good ones are kept (see
/// `refresh`).
pub struct Secrets {
    settings: Arc<Settings>,
    vault: Option<Arc<Vault>>,
    current: Arc<Refreshing<Resolved, SecretsError>>,
}

struct Vault {
    settings: KeyVaultSettings,
    client: SecretClient,
}

impl Secrets {
    /// Builds the clients; contacts nothing.
    pub fn new(settings: Arc<Settings>) -> Result<Self, SecretsError> {
        let vault = match &settings.key_vault {
            None => None,
            Some(kv) => {
                let credential = credential(&settings.azure)?;
                let options = SecretClientOptions {
                    verify_challenge_resource: Some(kv.verify_challenge_resource),
                    ..Default::default()
                };
                let client = SecretClient::new(&kv.url, credential, Some(options))
                    .map_err(|e| SecretsError::Vault(e.to_string()))?;
                Some(Arc::new(Vault {
                    settings: kv.clone(),
                    client,
                }))
            }
        };
        // Environment values never change while the process runs.
        let ttl = vault
            .as_ref()
            .map_or(Duration::MAX, |v| v.settings.refresh_interval);
        Ok(Self {
            settings,
            vault,
            current: Arc::new(Refreshing::fixed("Key Vault secrets", ttl, MAX_STALENESS)),
        })
    }

    pub fn from_key_vault(&self) -> bool {
        self.vault.is_some()
    }

    /// The secrets in use, resolving them on first call.
    pub async fn get(&self) -> Result<Arc<Resolved>, SecretsError> {
        let (settings, vault) = (self.settings.clone(), self.vault.clone());
        self.current.get(|| resolve_in_time(settings, vault)).await
    }

    /// Resolves again because `seen` was found stale (a rotated password),
    /// unless someone already did.
    pub async fn refresh(&self, seen: &Arc<Resolved>) -> Result<Arc<Resolved>, SecretsError> {
        let (settings, vault) = (self.settings.clone(), self.vault.clone());
        let resolved = self
            .current
            .fetch(
                |current| Arc::ptr_eq(current, seen),
                || resolve_in_time(settings, vault),
            )
            .await?;
        tracing::info!("secrets re-resolved");
        Ok(resolved)
    }
}

/// One attempt at most `FETCH_TIMEOUT_MS` (the SDK's own retries
/// would otherwise take a minute).
async fn resolve_in_time(
    settings: Arc<Settings>,
    vault: Option<Arc<Vault>>,
) -> Result<Resolved, SecretsError> {
    let limit = settings.fetch_timeout;
    tokio::time::timeout(limit, resolve(&settings, vault.as_deref()))
        .await
        .map_err(|_| SecretsError::Vault(format!("no answer within {limit:?}")))
        .and_then(|r| r)
}

async fn resolve(settings: &Settings, vault: Option<&Vault>) -> Result<Resolved, SecretsError> {
    let env_db = settings.database.config.clone();
    let env_auth = settings.auth.clone();
    let Some(vault) = vault else {
        return Ok(Resolved {
            database: env_db
                .ok_or_else(|| SecretsError::Invalid("DATABASE_URL is not set".into()))?,
            secret_key: env_auth.secret_key,
            admin_api_key: env_auth.admin_api_key,
        });
    };
    let names = &vault.settings.names;
    let (database_url, secret_key, admin_key) = tokio::try_join!(
        vault.get(&names.database_url),
        vault.get(&names.secret_key),
        vault.get(&names.admin_api_key),
    )?;
    let database = match database_url {
        Some(url) => parse_database_url(url.expose_secret())
            .map_err(|e| SecretsError::Invalid(format!("{}: {}", names.database_url, e.problem)))?,
        None => env_db.ok_or_else(|| {
            SecretsError::Invalid(format!(
                "the database URL is neither in Key Vault ({}) nor in DATABASE_URL",
                names.database_url
            ))
        })?,
    };
    let auth = AuthSettings {
        secret_key: secret_key.unwrap_or(env_auth.secret_key.clone()),
        admin_api_key: admin_key.or(env_auth.admin_api_key.clone()),
        ..env_auth
    };
    if settings.environment.is_deployed() {
        check_deployed_secret(&auth).map_err(|e| SecretsError::Invalid(e.to_string()))?;
    }
    Ok(Resolved {
        database,
        secret_key: auth.secret_key,
        admin_api_key: auth.admin_api_key,
    })
}

impl Vault {
    /// A secret's value; `None` when the vault has no such secret (the
    /// setting then falls back to its environment variable).
    #[tracing::instrument(name = "keyvault.get_secret", skip_all, fields(otel.kind = "client"))]
    async fn get(&self, name: &str) -> Result<Option<SecretString>, SecretsError> {
        match self.client.get_secret(name, None).await {
            Ok(response) => {
                let secret = response
                    .into_model()
                    .map_err(|e| SecretsError::Vault(format!("secret {name}: {e}")))?;
                Ok(secret.value.map(SecretString::from))
            }
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                tracing::info!(secret = name, "not in Key Vault; using the environment");
                Ok(None)
            }
            Err(e) => Err(SecretsError::Vault(format!("secret {name}: {e}"))),
        }
    }
}

/// The Azure credential: the app's managed identity in Azure (a
/// user-assigned one when `AZURE_CLIENT_ID` is set), the developer's own
/// login (Azure CLI / azd) elsewhere.
pub fn credential(azure: &AzureSettings) -> Result<Arc<dyn TokenCredential>, SecretsError> {
    let failed = |e: azure_core::Error| SecretsError::Vault(format!("credential: {e}"));
    Ok(match azure.credential {
        CredentialKind::ManagedIdentity => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: azure.client_id.clone().map(UserAssignedId::ClientId),
                ..Default::default()
            };
            ManagedIdentityCredential::new(Some(options)).map_err(failed)?
        }
        CredentialKind::DeveloperTools => DeveloperToolsCredential::new(None).map_err(failed)?,
    })
}
