//! Where the database is, how the service logs in, and how the pool behaves.

use std::time::Duration;

use super::{Environment, SettingsError, Vars};
use crate::limits::pace::Pace;

const DEFAULT_DATABASE_URL: &str =
    "postgresql+asyncpg://amplifier_dev:dev_password@localhost:5432/amplifier_dev";

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
pub struct DatabaseSettings {
    /// Parsed `DATABASE_URL`; the password inside is never logged
    /// (`tokio_postgres::Config`'s `Debug` redacts it). `None` only when a
    /// Key Vault is configured to provide it.
    pub config: Option<tokio_postgres::Config>,
    pub pool_max_size: usize,
    /// Connections the pool holds once the first request got its own: the
    /// others are opened in the background right after, so a burst does not
    /// pay for connecting and the first request does not compete with them.
    /// deadpool keeps no minimum afterwards: idle connections stay open
    /// until they fail a health check.
    pub pool_min_size: usize,
    /// How long a request waits for a connection (including building the
    /// pool) before it gets a 503.
    pub pool_timeout: Duration,
    /// Connections one application may hold at once on this instance
    /// (`DATABASE_POOL_APP_SHARE` of the pool, at least 1), so that one
    /// application's burst leaves the rest of the pool to the others.
    pub pool_app_connections: usize,
    /// Requests of one application that may wait for its share when it is
    /// held; more are refused at once (429). Waiters hold no connection, so
    /// they cost other applications nothing; the default (ten per
    /// connection of the share) lets a burst of fast requests queue for a
    /// few milliseconds rather than come back after `Retry-After`.
    pub pool_app_max_waiting: usize,
    /// How long a request may keep its connection busy; then its running
    /// statement is cancelled and the answer is 503 (`db::pooled`).
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
    pub migrate_on_start: bool,
    pub auth: DatabaseAuth,
    /// With Entra login, connections older than this are retired: they
    /// logged in with a token that has expired by then.
    pub max_connection_age: Duration,
    /// How often expired idempotency records are deleted (while the pool
    /// exists, i.e. after the first request).
    pub idempotency_sweep_interval: Duration,
    /// `BACKGROUND_BUSY_PERCENT`: the share of the time the background
    /// work (the purge, the sweep of deleted transcripts) may keep a
    /// connection busy; it rests after each statement to hold to it.
    pub background_pace: Pace,
}

pub(super) fn from_vars(
    vars: &Vars<'_>,
    environment: Environment,
    key_vault: bool,
) -> Result<DatabaseSettings, SettingsError> {
    let url = match vars.get("DATABASE_URL") {
        Some(url) => Some(url),
        None if key_vault => None,
        None if environment.is_deployed() => {
            return Err(SettingsError::new("DATABASE_URL", "must be set"));
        }
        None => Some(DEFAULT_DATABASE_URL),
    };
    let pool_max_size = vars.parse_or("DATABASE_POOL_MAX_SIZE", 10)?;
    let pool_app_connections = app_connections(vars, pool_max_size)?;
    let database = DatabaseSettings {
        config: url.map(parse_database_url).transpose()?,
        pool_max_size,
        pool_app_connections,
        pool_app_max_waiting: vars
            .parse_or("DATABASE_POOL_APP_MAX_WAITING", 10 * pool_app_connections)?,
        pool_min_size: vars.parse_or("DATABASE_POOL_MIN_SIZE", 1)?,
        pool_timeout: Duration::from_millis(vars.parse_or("DATABASE_POOL_TIMEOUT_MS", 5000)?),
        statement_timeout: Duration::from_millis(
            vars.parse_or("DATABASE_STATEMENT_TIMEOUT_MS", 5000)?,
        ),
        connect_timeout: Duration::from_millis(vars.parse_or("DATABASE_CONNECT_TIMEOUT_MS", 5000)?),
        migrate_on_start: vars.parse_or("MIGRATE_ON_START", true)?,
        max_connection_age: Duration::from_secs(
            vars.parse_or("DATABASE_CONNECTION_MAX_AGE_SECONDS", 45 * 60)?,
        ),
        idempotency_sweep_interval: Duration::from_secs(
            vars.parse_or("IDEMPOTENCY_SWEEP_SECONDS", 600)?,
        ),
        background_pace: {
            let percent = vars.parse_or("BACKGROUND_BUSY_PERCENT", 50u8)?;
            if !(1..=100).contains(&percent) {
                return Err(SettingsError::new(
                    "BACKGROUND_BUSY_PERCENT",
                    "must be between 1 and 100",
                ));
            }
            Pace::new(percent)
        },
        auth: match vars.get("DATABASE_AUTH").unwrap_or("password") {
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
    Ok(database)
}

/// `DATABASE_POOL_APP_SHARE` (a fraction of the pool, default one half)
/// in connections: rounded down, but at least one.
fn app_connections(vars: &Vars<'_>, pool_max_size: usize) -> Result<usize, SettingsError> {
    let share: f64 = vars.parse_or("DATABASE_POOL_APP_SHARE", 0.5)?;
    if !(share > 0.0 && share <= 1.0) {
        return Err(SettingsError::new(
            "DATABASE_POOL_APP_SHARE",
            "must be a fraction of the pool above 0 and at most 1",
        ));
    }
    Ok(((share * pool_max_size as f64) as usize).max(1))
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn settings(pairs: &[(&str, &str)]) -> Result<DatabaseSettings, SettingsError> {
        let vars = crate::settings::tests::vars(pairs);
        from_vars(&Vars(&vars), Environment::Development, false)
    }

    #[test]
    fn background_work_is_busy_half_the_time_unless_set() {
        assert_eq!(settings(&[]).unwrap().background_pace.percent(), 50);
        let s = settings(&[("BACKGROUND_BUSY_PERCENT", "100")]).unwrap();
        assert_eq!(s.background_pace.percent(), 100);
        for bad in ["0", "101", "-5", "half"] {
            let err = settings(&[("BACKGROUND_BUSY_PERCENT", bad)]).unwrap_err();
            assert_eq!(err.name, "BACKGROUND_BUSY_PERCENT", "{bad}");
        }
    }

    #[test]
    fn an_application_gets_a_share_of_the_pool() {
        let s = settings(&[]).unwrap();
        assert_eq!((s.pool_app_connections, s.pool_app_max_waiting), (5, 50));
        let s = settings(&[
            ("DATABASE_POOL_MAX_SIZE", "3"),
            ("DATABASE_POOL_APP_SHARE", "0.25"),
            ("DATABASE_POOL_APP_MAX_WAITING", "0"),
        ])
        .unwrap();
        assert_eq!((s.pool_app_connections, s.pool_app_max_waiting), (1, 0));
        let s = settings(&[("DATABASE_POOL_APP_SHARE", "1")]).unwrap();
        assert_eq!(s.pool_app_connections, 10);
        for (name, value) in [
            ("DATABASE_POOL_APP_SHARE", "0"),
            ("DATABASE_POOL_APP_SHARE", "1.5"),
            ("DATABASE_POOL_APP_SHARE", "NaN"),
            ("DATABASE_POOL_APP_SHARE", "half"),
            ("DATABASE_POOL_APP_MAX_WAITING", "-1"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{value}");
        }
    }

    #[test]
    fn percent_encoded_entra_user_names_are_decoded() {
        let c = parse_database_url("postgresql://alice%40contoso.com@h:5432/d").unwrap();
        assert_eq!(c.get_user(), Some("alice@contoso.com"));
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
}
