//! Typed settings, read once at start-up from the environment.
//!
//! Sources, first wins: the real environment, then `.env.$ENVIRONMENT`, then
//! `.env`. Everything is validated here so that a misconfigured instance
//! refuses to start with a message naming the setting (never its value).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Values that ship in `.env.development` / `.env.test` or as defaults. They
/// are public, so staging and production refuse them.
const DEVELOPMENT_SECRET_KEY: &str = "development-secret-key-not-secure";
const DEVELOPMENT_ADMIN_API_KEY: &str = "dev-admin-key";
const KNOWN_DEVELOPMENT_SECRETS: &[&str] = &[
    DEVELOPMENT_SECRET_KEY,
    DEVELOPMENT_ADMIN_API_KEY,
    "test-secret-key-not-secure-but-32-bytes-long",
    "test-admin-key-not-secure-but-32-bytes-long",
];
const DEFAULT_DATABASE_URL: &str =
    "postgresql+asyncpg://amplifier_dev:dev_password@localhost:5432/amplifier_dev";
const MIN_SECRET_BYTES: usize = 32;

/// The application that unauthenticated calls act as when `AUTH_REQUIRED=false`.
pub const DEV_APP_ID: &str = "dev-app";
/// The user that unauthenticated calls act as when `AUTH_REQUIRED=false`.
pub const DEV_USER_ID: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000001);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

impl Environment {
    /// Staging and production hold real data: no development shortcuts there.
    pub fn is_deployed(self) -> bool {
        matches!(self, Self::Staging | Self::Production)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = SettingsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "staging" => Ok(Self::Staging),
            "production" => Ok(Self::Production),
            _ => Err(SettingsError::new(
                "ENVIRONMENT",
                "must be one of development, test, staging, production",
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {problem}")]
pub struct SettingsError {
    pub name: &'static str,
    pub problem: String,
}

impl SettingsError {
    fn new(name: &'static str, problem: impl Into<String>) -> Self {
        Self {
            name,
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub host: IpAddr,
    pub port: u16,
    pub max_body_bytes: usize,
    pub log_level: String,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    /// Secrets come from this Key Vault when set (see `secrets`).
    pub key_vault: Option<KeyVaultSettings>,
    /// How the service authenticates to Azure (Key Vault, Entra ID database login).
    pub azure: AzureSettings,
}

#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub credential: CredentialKind,
    /// A user-assigned managed identity (`AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
}

/// How the service logs in to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseAuth {
    /// The password in the connection string.
    Password,
    /// Passwordless: an Entra ID access token of the service's identity,
    /// fetched per new connection (Azure Database for PostgreSQL).
    Entra,
}

#[derive(Debug, Clone)]
pub struct KeyVaultSettings {
    pub url: String,
    pub names: SecretNames,
    /// Key Vault's check that an authentication challenge names the vault's
    /// own domain. Only local stand-ins may turn it off.
    pub verify_challenge_resource: bool,
}

/// Names of the secrets in Key Vault.
#[derive(Debug, Clone)]
pub struct SecretNames {
    pub database_url: String,
    pub secret_key: String,
    pub admin_api_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The app's managed identity (in Azure).
    ManagedIdentity,
    /// The developer's Azure CLI / azd login (local runs).
    DeveloperTools,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Parsed `DATABASE_URL`; the password inside is never logged
    /// (`tokio_postgres::Config`'s `Debug` redacts it). `None` only when a
    /// Key Vault is configured to provide it.
    pub config: Option<tokio_postgres::Config>,
    pub pool_max_size: usize,
    /// Connections opened in the background right after the pool is first
    /// built, so the first burst of requests does not pay for connecting.
    /// deadpool keeps no minimum afterwards: idle connections stay open
    /// until they fail a health check.
    pub pool_min_size: usize,
    /// How long a request waits for a connection (including building the
    /// pool) before it gets a 503.
    pub pool_timeout: Duration,
    pub connect_timeout: Duration,
    pub migrate_on_start: bool,
    pub auth: DatabaseAuth,
    /// With Entra login, connections older than this are retired: they
    /// logged in with a token that has expired by then.
    pub max_connection_age: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub required: bool,
    pub secret_key: SecretString,
    pub admin_api_key: Option<SecretString>,
    pub user_claim: String,
    pub tokens: TokenSettings,
}

/// How user tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// Signed with `SECRET_KEY` (development, or a trusted issuer sharing it).
    Hs256,
    /// Signed by an identity provider (Entra ID) whose public keys are
    /// published as a JWKS.
    Rs256 { keys: KeySource },
}

/// Where RS256 public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Jwks(String),
    /// `{issuer}/.well-known/openid-configuration` names the JWKS.
    Discovery(String),
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub algorithm: TokenAlgorithm,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// How long fetched signing keys are trusted before they are fetched again.
    pub jwks_ttl: Duration,
}

impl Settings {
    /// Reads the process environment plus the `.env` files in the working directory.
    pub fn from_env() -> Result<Self, SettingsError> {
        let real: HashMap<String, String> = std::env::vars().collect();
        Self::from_sources(real, Path::new("."))
    }

    /// Merges `real` (wins) over `.env.$ENVIRONMENT` and `.env` found in `dir`.
    pub fn from_sources(
        mut vars: HashMap<String, String>,
        dir: &Path,
    ) -> Result<Self, SettingsError> {
        let environment = vars
            .get("ENVIRONMENT")
            .map(String::as_str)
            .unwrap_or("development")
            .to_owned();
        for file in [format!(".env.{environment}"), ".env".to_owned()] {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            let entries = dotenvy::from_path_iter(&path).map_err(|e| {
                SettingsError::new(
                    "ENVIRONMENT",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            for entry in entries {
                let (key, value) = entry.map_err(|e| {
                    SettingsError::new(
                        "ENVIRONMENT",
                        format!("cannot parse {}: {e}", path.display()),
                    )
                })?;
                vars.entry(key).or_insert(value);
            }
        }
        Self::from_vars(&vars)
    }

    /// Builds settings from a plain map; no files, no process environment.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        // App Service resolves `@Microsoft.KeyVault(...)` references before the
        // process starts; one that arrives verbatim means the identity or the
        // reference is wrong, and using it as a value would only fail later.
        for name in ["DATABASE_URL", "SECRET_KEY", "ADMIN_API_KEY"] {
            if get(name).is_some_and(|v| v.starts_with("@Microsoft.KeyVault(")) {
                return Err(SettingsError::new(
                    name,
                    "is a Key Vault reference that did not resolve; check the app's identity and the reference",
                ));
            }
        }
        let environment: Environment = get("ENVIRONMENT").unwrap_or("development").parse()?;
        let deployed = environment.is_deployed();

        let key_vault = key_vault_settings(&get, environment)?;
        let azure = azure_settings(&get, environment, vars)?;
        let database_url = match get("DATABASE_URL") {
            Some(url) => Some(url),
            None if key_vault.is_some() => None,
            None if deployed => {
                return Err(SettingsError::new("DATABASE_URL", "must be set"));
            }
            None => Some(DEFAULT_DATABASE_URL),
        };

        let database = DatabaseSettings {
            config: database_url.map(parse_database_url).transpose()?,
            pool_max_size: parse_or(get, "DATABASE_POOL_MAX_SIZE", 10)?,
            pool_min_size: parse_or(get, "DATABASE_POOL_MIN_SIZE", 1)?,
            pool_timeout: Duration::from_millis(parse_or(get, "DATABASE_POOL_TIMEOUT_MS", 5000)?),
            connect_timeout: Duration::from_millis(parse_or(
                get,
                "DATABASE_CONNECT_TIMEOUT_MS",
                5000,
            )?),
            migrate_on_start: parse_or(get, "MIGRATE_ON_START", true)?,
            max_connection_age: Duration::from_secs(parse_or(
                get,
                "DATABASE_CONNECTION_MAX_AGE_SECONDS",
                45 * 60,
            )?),
            auth: match get("DATABASE_AUTH").unwrap_or("password") {
                "password" => DatabaseAuth::Password,
                "entra" => DatabaseAuth::Entra,
                _ => {
                    return Err(SettingsError::new(
                        "DATABASE_AUTH",
                        "must be password or entra",
                    ));
                }
            },
        };
        if database.pool_max_size == 0 {
            return Err(SettingsError::new(
                "DATABASE_POOL_MAX_SIZE",
                "must be at least 1",
            ));
        }
        if database.pool_min_size > database.pool_max_size {
            return Err(SettingsError::new(
                "DATABASE_POOL_MIN_SIZE",
                "must not exceed DATABASE_POOL_MAX_SIZE",
            ));
        }

        let issuer = get("JWT_ISSUER").map(str::to_owned);
        let algorithm = match get("JWT_ALGORITHM").unwrap_or("HS256") {
            "HS256" => TokenAlgorithm::Hs256,
            "RS256" => {
                let keys = match (get("JWT_JWKS_URL"), &issuer) {
                    (Some(url), _) => KeySource::Jwks(url.to_owned()),
                    (None, Some(issuer)) => KeySource::Discovery(issuer.clone()),
                    (None, None) => {
                        return Err(SettingsError::new(
                            "JWT_JWKS_URL",
                            "RS256 needs JWT_JWKS_URL or JWT_ISSUER (for OpenID discovery)",
                        ));
                    }
                };
                TokenAlgorithm::Rs256 { keys }
            }
            _ => {
                return Err(SettingsError::new(
                    "JWT_ALGORITHM",
                    "must be HS256 or RS256",
                ));
            }
        };
        let tokens = TokenSettings {
            issuer,
            audience: get("JWT_AUDIENCE").map(str::to_owned),
            jwks_ttl: Duration::from_secs(parse_or(get, "JWT_JWKS_TTL_SECONDS", 3600)?),
            algorithm,
        };
        if matches!(tokens.algorithm, TokenAlgorithm::Rs256 { .. }) {
            // An identity provider signs tokens for many applications: only
            // its issuer and our audience make a token ours.
            for (name, value) in [
                ("JWT_ISSUER", &tokens.issuer),
                ("JWT_AUDIENCE", &tokens.audience),
            ] {
                if value.is_none() {
                    return Err(SettingsError::new(
                        name,
                        "must be set with JWT_ALGORITHM=RS256",
                    ));
                }
            }
        }

        let auth = AuthSettings {
            tokens,
            required: parse_or(get, "AUTH_REQUIRED", true)?,
            secret_key: SecretString::from(get("SECRET_KEY").unwrap_or(if deployed {
                ""
            } else {
                DEVELOPMENT_SECRET_KEY
            })),
            admin_api_key: get("ADMIN_API_KEY").map(SecretString::from),
            user_claim: get("JWT_USER_CLAIM").unwrap_or("sub").to_owned(),
        };
        if deployed {
            if !auth.required {
                return Err(SettingsError::new(
                    "AUTH_REQUIRED",
                    "must be true in staging and production",
                ));
            }
            // With a Key Vault they are checked once resolved (`secrets`).
            if key_vault.is_none() {
                check_deployed_secret(&auth)?;
            }
        }

        Ok(Self {
            environment,
            host: parse_or(get, "HOST", IpAddr::from([127, 0, 0, 1]))?,
            port: parse_or(get, "FUNCTIONS_CUSTOMHANDLER_PORT", 7071)?,
            max_body_bytes: parse_or(get, "MAX_BODY_BYTES", 1024 * 1024)?,
            log_level: get("LOG_LEVEL").unwrap_or("info").to_owned(),
            database,
            auth,
            key_vault,
            azure,
        })
    }
}

fn azure_settings<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    environment: Environment,
    vars: &HashMap<String, String>,
) -> Result<AzureSettings, SettingsError> {
    // In Azure the platform announces the managed identity endpoint.
    let in_azure = vars.contains_key("IDENTITY_ENDPOINT") || environment.is_deployed();
    let credential = match get("AZURE_CREDENTIAL") {
        Some("managed-identity") => CredentialKind::ManagedIdentity,
        Some("developer-tools") => CredentialKind::DeveloperTools,
        Some(_) => {
            return Err(SettingsError::new(
                "AZURE_CREDENTIAL",
                "must be managed-identity or developer-tools",
            ));
        }
        None if in_azure => CredentialKind::ManagedIdentity,
        None => CredentialKind::DeveloperTools,
    };
    Ok(AzureSettings {
        credential,
        client_id: get("AZURE_CLIENT_ID").map(str::to_owned),
    })
}

fn key_vault_settings<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    environment: Environment,
) -> Result<Option<KeyVaultSettings>, SettingsError> {
    let url = match (get("AZURE_KEYVAULT_URL"), get("AZURE_KEYVAULT_NAME")) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(name)) => format!("https://{name}.vault.azure.net"),
        (None, None) => return Ok(None),
    };
    let verify_challenge_resource =
        parse_or(get, "AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", true)?;
    if !verify_challenge_resource && environment.is_deployed() {
        return Err(SettingsError::new(
            "AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE",
            "may only be turned off outside staging and production",
        ));
    }
    let name = |setting: &str, default: &str| get(setting).unwrap_or(default).to_owned();
    Ok(Some(KeyVaultSettings {
        url,
        names: SecretNames {
            database_url: name(
                "KEYVAULT_SECRET_DATABASE_URL",
                "postgresql-connection-string",
            ),
            secret_key: name("KEYVAULT_SECRET_SECRET_KEY", "jwt-secret-key"),
            admin_api_key: name("KEYVAULT_SECRET_ADMIN_API_KEY", "admin-api-key"),
        },
        verify_challenge_resource,
    }))
}

/// Staging and production never run with public or weak secrets.
pub fn check_deployed_secret(auth: &AuthSettings) -> Result<(), SettingsError> {
    if auth.tokens.algorithm == TokenAlgorithm::Hs256 {
        check_strong_secret("SECRET_KEY", Some(&auth.secret_key))?;
    }
    check_strong_secret("ADMIN_API_KEY", auth.admin_api_key.as_ref())
}

fn check_strong_secret(
    name: &'static str,
    value: Option<&SecretString>,
) -> Result<(), SettingsError> {
    let value = value.map(|v| v.expose_secret()).unwrap_or_default();
    if value.is_empty() {
        return Err(SettingsError::new(
            name,
            "must be set in staging and production",
        ));
    }
    if value.len() < MIN_SECRET_BYTES {
        return Err(SettingsError::new(
            name,
            format!("must be at least {MIN_SECRET_BYTES} bytes in staging and production"),
        ));
    }
    if KNOWN_DEVELOPMENT_SECRETS.contains(&value) {
        return Err(SettingsError::new(
            name,
            "is a published development value; generate a new one",
        ));
    }
    Ok(())
}

/// Accepts `postgres://`, `postgresql://` and the Python seed's
/// `postgresql+asyncpg://`. Errors never echo the URL: it holds a password.
pub fn parse_database_url(url: &str) -> Result<tokio_postgres::Config, SettingsError> {
    let rest = ["postgresql+asyncpg://", "postgresql://", "postgres://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| {
            SettingsError::new(
                "DATABASE_URL",
                "must start with postgres://, postgresql:// or postgresql+asyncpg://",
            )
        })?;
    format!("postgresql://{rest}")
        .parse()
        .map_err(|e: tokio_postgres::Error| {
            SettingsError::new(
                "DATABASE_URL",
                format!("is not a valid PostgreSQL URL ({e})"),
            )
        })
}

fn parse_or<'a, T: FromStr>(
    get: impl Fn(&str) -> Option<&'a str>,
    name: &'static str,
    default: T,
) -> Result<T, SettingsError> {
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|_| SettingsError::new(name, format!("cannot parse {raw:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const STRONG_A: &str = "0123456789abcdef0123456789abcdef-a";
    const STRONG_B: &str = "0123456789abcdef0123456789abcdef-b";

    fn production(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut v = vars(&[
            ("ENVIRONMENT", "production"),
            (
                "DATABASE_URL",
                "postgres://u:p@db.example/app?sslmode=require",
            ),
            ("SECRET_KEY", STRONG_A),
            ("ADMIN_API_KEY", STRONG_B),
        ]);
        v.extend(vars(extra));
        v
    }

    #[test]
    fn defaults_run_locally() {
        let s = Settings::from_vars(&HashMap::new()).unwrap();
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.port, 7071);
        assert_eq!(s.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.max_body_bytes, 1024 * 1024);
        assert_eq!(s.database.pool_max_size, 10);
        assert!(s.auth.required);
        assert_eq!(s.auth.user_claim, "sub");
        assert_eq!(
            s.database.config.as_ref().unwrap().get_dbname(),
            Some("amplifier_dev")
        );
        assert!(s.key_vault.is_none());
    }

    #[test]
    fn unknown_environment_is_refused() {
        let err = Settings::from_vars(&vars(&[("ENVIRONMENT", "prod")])).unwrap_err();
        assert_eq!(err.name, "ENVIRONMENT");
    }

    #[test]
    fn custom_handler_port_is_honoured() {
        let s = Settings::from_vars(&vars(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "41234")])).unwrap();
        assert_eq!(s.port, 41234);
    }

    #[test]
    fn database_url_schemes() {
        for url in [
            "postgres://u:p@h:5433/d",
            "postgresql://u:p@h:5433/d",
            "postgresql+asyncpg://u:p@h:5433/d",
        ] {
            let c = parse_database_url(url).unwrap();
            assert_eq!(c.get_user(), Some("u"));
            assert_eq!(c.get_ports(), &[5433]);
        }
        let err = parse_database_url("mysql://u:secretpw@h/d").unwrap_err();
        assert!(!err.to_string().contains("secretpw"));
    }

    #[test]
    fn sslmode_is_parsed_and_unknown_modes_refused() {
        use tokio_postgres::config::SslMode;
        let c = parse_database_url("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        let c = parse_database_url("postgres://u@h/d?sslmode=disable").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert!(parse_database_url("postgres://u:hunter2@h/d?sslmode=bogus").is_err());
    }

    #[test]
    fn production_accepts_strong_settings() {
        let s = Settings::from_vars(&production(&[])).unwrap();
        assert_eq!(s.environment, Environment::Production);
    }

    #[test]
    fn production_refuses_weak_or_missing_secrets_naming_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("AUTH_REQUIRED", "false")], "AUTH_REQUIRED"),
            (&[("SECRET_KEY", "")], "SECRET_KEY"),
            (&[("SECRET_KEY", "short")], "SECRET_KEY"),
            (
                &[("SECRET_KEY", "test-secret-key-not-secure-but-32-bytes-long")],
                "SECRET_KEY",
            ),
            (&[("ADMIN_API_KEY", "")], "ADMIN_API_KEY"),
            (&[("ADMIN_API_KEY", "tiny")], "ADMIN_API_KEY"),
            (&[("DATABASE_URL", "")], "DATABASE_URL"),
        ];
        for (extra, name) in cases {
            let err = Settings::from_vars(&production(extra)).unwrap_err();
            assert_eq!(err.name, *name, "{extra:?}");
            for (_, value) in extra.iter() {
                if !value.is_empty() && *value != "false" {
                    assert!(!err.to_string().contains(value), "value leaked: {err}");
                }
            }
        }
    }

    #[test]
    fn rs256_needs_keys_issuer_and_audience() {
        let rs = |extra: &[(&str, &str)]| {
            let mut v = vars(&[("JWT_ALGORITHM", "RS256")]);
            v.extend(vars(extra));
            Settings::from_vars(&v)
        };
        assert_eq!(rs(&[]).unwrap_err().name, "JWT_JWKS_URL");
        assert_eq!(
            rs(&[("JWT_ISSUER", "https://idp")]).unwrap_err().name,
            "JWT_AUDIENCE"
        );
        let s = rs(&[("JWT_ISSUER", "https://idp"), ("JWT_AUDIENCE", "api://x")]).unwrap();
        assert_eq!(
            s.auth.tokens.algorithm,
            TokenAlgorithm::Rs256 {
                keys: KeySource::Discovery("https://idp".into())
            }
        );
        let s = rs(&[
            ("JWT_ISSUER", "https://idp"),
            ("JWT_AUDIENCE", "api://x"),
            ("JWT_JWKS_URL", "https://idp/keys"),
        ])
        .unwrap();
        assert_eq!(
            s.auth.tokens.algorithm,
            TokenAlgorithm::Rs256 {
                keys: KeySource::Jwks("https://idp/keys".into())
            }
        );
        assert_eq!(
            Settings::from_vars(&vars(&[("JWT_ALGORITHM", "none")]))
                .unwrap_err()
                .name,
            "JWT_ALGORITHM"
        );
        // Production with RS256 needs no SECRET_KEY.
        let mut p = production(&[
            ("JWT_ALGORITHM", "RS256"),
            ("JWT_ISSUER", "https://idp"),
            ("JWT_AUDIENCE", "api://x"),
        ]);
        p.remove("SECRET_KEY");
        assert!(Settings::from_vars(&p).is_ok());
    }

    #[test]
    fn key_vault_settings() {
        let s = Settings::from_vars(&vars(&[("AZURE_KEYVAULT_NAME", "amp-kv")])).unwrap();
        let kv = s.key_vault.unwrap();
        assert_eq!(kv.url, "https://amp-kv.vault.azure.net");
        assert_eq!(kv.names.database_url, "postgresql-connection-string");
        assert_eq!(s.azure.credential, CredentialKind::DeveloperTools);
        assert!(kv.verify_challenge_resource);

        // Production with a vault: secrets may come from it, so they are not
        // required in the environment; managed identity is the credential.
        let mut p = production(&[
            ("AZURE_KEYVAULT_NAME", "amp-kv"),
            ("AZURE_CLIENT_ID", "cid"),
        ]);
        for k in ["DATABASE_URL", "SECRET_KEY", "ADMIN_API_KEY"] {
            p.remove(k);
        }
        let s = Settings::from_vars(&p).unwrap();
        assert!(s.key_vault.is_some());
        assert_eq!(s.azure.credential, CredentialKind::ManagedIdentity);
        assert_eq!(s.azure.client_id.as_deref(), Some("cid"));
        assert!(s.database.config.is_none());

        let err = Settings::from_vars(&production(&[
            ("AZURE_KEYVAULT_NAME", "amp-kv"),
            ("AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "false"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, "AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE");
    }

    #[test]
    fn unresolved_key_vault_reference_is_refused() {
        let v = vars(&[(
            "DATABASE_URL",
            "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x)",
        )]);
        let err = Settings::from_vars(&v).unwrap_err();
        assert_eq!(err.name, "DATABASE_URL");
    }

    #[test]
    fn env_files_fill_gaps_and_real_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env.test"),
            "MAX_BODY_BYTES=2048\nLOG_LEVEL=warn\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "MAX_BODY_BYTES=1\nJWT_USER_CLAIM=oid\n",
        )
        .unwrap();
        let real = vars(&[("ENVIRONMENT", "test"), ("LOG_LEVEL", "debug")]);
        let s = Settings::from_sources(real, dir.path()).unwrap();
        assert_eq!(s.max_body_bytes, 2048, ".env.$ENVIRONMENT beats .env");
        assert_eq!(s.log_level, "debug", "real environment beats files");
        assert_eq!(s.auth.user_claim, "oid", ".env fills what is left");
    }
}
