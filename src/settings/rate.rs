//! Rate limits: how many requests a caller may make per minute.

use std::time::Duration;

use super::{Environment, SettingsError, Vars};

/// Requests per minute; `None` is unlimited (a setting of 0).
pub type PerMinute = Option<u32>;

#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// `RATE_LIMIT_REQUESTS_PER_MINUTE` (the plan's name): one user's
    /// requests through one application.
    pub user_requests: PerMinute,
    /// `RATE_LIMIT_WRITES_PER_MINUTE`: the part of those that write
    /// (POST, PATCH, DELETE).
    pub user_writes: PerMinute,
    /// `RATE_LIMIT_APP_REQUESTS_PER_MINUTE`: all requests of one
    /// application, whoever they are for.
    pub app_requests: PerMinute,
    /// `RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE`: refused credentials (401s)
    /// from one source address, on one instance.
    pub unauthenticated: PerMinute,
    /// `RATE_LIMIT_SYNC_MS`: how often an instance adds its counts to the
    /// database and reads the other instances' (see `limits::rate`).
    pub sync_interval: Duration,
}

pub(super) fn from_vars(
    vars: &Vars<'_>,
    environment: Environment,
) -> Result<RateLimits, SettingsError> {
    // The plan's environment files allow 1000 in development ("very
    // relaxed"). Deployed, the Python design's 60 would refuse a chat
    // client that appends and lists a few times a second: 600 (10 a
    // second), a fifth of them writes.
    let (user_default, writes_default) = match environment {
        Environment::Development | Environment::Test => (1000, 1000),
        Environment::Staging | Environment::Production => (600, 120),
    };
    let per_minute = |name: &'static str, default: u32| -> Result<PerMinute, SettingsError> {
        Ok(Some(vars.parse_or::<u32>(name, default)?).filter(|&n| n > 0))
    };
    let sync_ms: u64 = vars.parse_or("RATE_LIMIT_SYNC_MS", 1000)?;
    if !(10..=10_000).contains(&sync_ms) {
        return Err(SettingsError::new(
            "RATE_LIMIT_SYNC_MS",
            "must be between 10 and 10000",
        ));
    }
    Ok(RateLimits {
        user_requests: per_minute("RATE_LIMIT_REQUESTS_PER_MINUTE", user_default)?,
        user_writes: per_minute("RATE_LIMIT_WRITES_PER_MINUTE", writes_default)?,
        app_requests: per_minute("RATE_LIMIT_APP_REQUESTS_PER_MINUTE", user_default * 100)?,
        unauthenticated: per_minute("RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE", 60)?,
        sync_interval: Duration::from_millis(sync_ms),
    })
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;
    use crate::settings::tests::{production, vars};

    #[test]
    fn deployed_defaults_are_tighter_and_zero_is_unlimited() {
        let local = Settings::from_vars(&vars(&[])).unwrap().rate_limits;
        assert_eq!(local.user_requests, Some(1000));
        let deployed = Settings::from_vars(&production(&[("RATE_LIMIT_WRITES_PER_MINUTE", "0")]))
            .unwrap()
            .rate_limits;
        assert_eq!(deployed.user_requests, Some(600));
        assert_eq!(deployed.user_writes, None);
        assert_eq!(deployed.app_requests, Some(60_000));
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("RATE_LIMIT_SYNC_MS", "5"),
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "-1"),
        ] {
            let err = Settings::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name);
        }
    }
}
