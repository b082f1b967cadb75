//! Typed settings, read once at start-up from the environment.
//!
//! Sources, first wins: the real environment, then `.env.$ENVIRONMENT`, then
//! `.env`. Everything is validated here so that a misconfigured instance
//! refuses to start with a message naming the setting (never its value).
//! One module per concern: `database`, `auth` (user tokens and keys),
//! `azure` (Key Vault and the Azure credential), `http` (what the HTTP
//! layer needs), `limits` (what one session may hold), `rate` (requests per minute),
//! `events` (live sessions), `lifecycle` (retention and the purge),
//! `telemetry` (traces).

mod auth;
mod azure;
mod database;
mod events;
mod http;
mod lifecycle;
mod limits;
mod rate;
mod telemetry;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub(crate) use auth::dev_app_id;
pub use auth::{
    AuthSettings, DEV_APP_ID, DEV_USER_ID, KeySource, TokenAlgorithm, TokenSettings,
    check_deployed_secret,
};
pub use azure::{AzureSettings, CredentialKind, KeyVaultSettings, SecretNames};
pub use database::{DatabaseAuth, DatabaseSettings, parse_database_url};
pub use events::EventSettings;
pub use http::HttpSettings;
pub use lifecycle::{LifecycleSettings, MAX_RETENTION_DAYS, PurgeSchedule};
pub use limits::SessionLimits;
pub use rate::{PerMinute, RateLimits};
pub use telemetry::TelemetrySettings;

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
    pub(crate) fn new(name: &'static str, problem: impl Into<String>) -> Self {
        Self {
            name,
            problem: problem.into(),
        }
    }
}

/// How log lines are written to stdout (which the Functions host forwards
/// to Application Insights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, fields at the top level: queryable.
    Json,
    /// For people reading a terminal.
    Text,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub http: HttpSettings,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Traces: on or off, where they go, how many are kept.
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    pub limits: SessionLimits,
    pub rate_limits: RateLimits,
    /// Live sessions: streams and the listening connection.
    pub events: EventSettings,
    /// Retention and the purge (`lifecycle`).
    pub lifecycle: LifecycleSettings,
    pub auth: AuthSettings,
    /// Secrets come from this Key Vault when set (see `secrets`).
    pub key_vault: Option<KeyVaultSettings>,
    /// How the service authenticates to Azure (Key Vault, Entra ID database login).
    pub azure: AzureSettings,
    /// How long one fetch of a value from another service (Key Vault
    /// secrets, an Entra ID token, the identity provider's signing keys)
    /// may take. Only a request with no usable value yet waits for one;
    /// refreshes of a value in hand run in the background.
    pub fetch_timeout: Duration,
}

/// The raw settings: trimmed values, an empty value counts as unset.
struct Vars<'a>(&'a HashMap<String, String>);

impl<'a> Vars<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn is_set(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn parse_or<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, SettingsError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| SettingsError::new(name, format!("cannot parse {raw:?}"))),
        }
    }
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
            let unreadable = |e: dotenvy::Error| {
                SettingsError::new(
                    "ENVIRONMENT",
                    format!("cannot read {}: {e}", path.display()),
                )
            };
            for entry in dotenvy::from_path_iter(&path).map_err(unreadable)? {
                let (key, value) = entry.map_err(unreadable)?;
                vars.entry(key).or_insert(value);
            }
        }
        Self::from_vars(&vars)
    }

    /// Builds settings from a plain map; no files, no process environment.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let vars = Vars(vars);
        // App Service resolves `@Microsoft.KeyVault(...)` references before the
        // process starts; one that arrives verbatim means the identity or the
        // reference is wrong, and using it as a value would only fail later.
        for name in ["DATABASE_URL", "SECRET_KEY", "ADMIN_API_KEY"] {
            if vars
                .get(name)
                .is_some_and(|v| v.starts_with("@Microsoft.KeyVault("))
            {
                return Err(SettingsError::new(
                    name,
                    "is a Key Vault reference that did not resolve; check the app's identity and the reference",
                ));
            }
        }
        let environment: Environment = vars.get("ENVIRONMENT").unwrap_or("development").parse()?;
        let key_vault = azure::key_vault_settings(&vars, environment)?;
        Ok(Self {
            environment,
            http: http::from_vars(&vars, environment)?,
            log_level: vars.get("LOG_LEVEL").unwrap_or("info").to_owned(),
            log_format: match vars.get("LOG_FORMAT") {
                Some("json") => LogFormat::Json,
                Some("text") => LogFormat::Text,
                None if environment.is_deployed() => LogFormat::Json,
                None => LogFormat::Text,
                Some(_) => return Err(SettingsError::new("LOG_FORMAT", "must be json or text")),
            },
            telemetry: telemetry::from_vars(&vars, environment)?,
            database: database::from_vars(&vars, environment, key_vault.is_some())?,
            limits: limits::from_vars(&vars)?,
            rate_limits: rate::from_vars(&vars, environment)?,
            events: events::from_vars(&vars)?,
            lifecycle: lifecycle::from_vars(&vars)?,
            auth: auth::from_vars(&vars, environment, key_vault.is_some())?,
            azure: azure::azure_settings(&vars, environment)?,
            fetch_timeout: Duration::from_millis(vars.parse_or("FETCH_TIMEOUT_MS", 5000)?),
            key_vault,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const STRONG_A: &str = "0123456789abcdef0123456789abcdef-a";
    const STRONG_B: &str = "0123456789abcdef0123456789abcdef-b";

    pub fn production(extra: &[(&str, &str)]) -> HashMap<String, String> {
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
        assert_eq!(s.http.port, 7071);
        assert_eq!(s.http.host, std::net::IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.http.max_body_bytes, 1024 * 1024);
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
        assert_eq!(s.http.max_body_bytes, 2048, ".env.$ENVIRONMENT beats .env");
        assert_eq!(s.log_level, "debug", "real environment beats files");
        assert_eq!(s.auth.user_claim, "oid", ".env fills what is left");
    }
}
