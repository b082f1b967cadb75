//! Live sessions (`events`): how many streams an instance holds, how long
//! one lasts, and where the listening connection goes.

use std::time::Duration;

use super::{SettingsError, Vars};

/// Azure's front end ends an HTTP request after 230 s: a stream must end
/// well before, by itself, so that clients resume rather than fail.
const MAX_STREAM_SECONDS: u64 = 220;

#[derive(Debug, Clone)]
pub struct EventSettings {
    /// `EVENTS_MAX_STREAMS`: open streams (and waiting long-polls) on one
    /// instance; more are a 503 with `Retry-After`.
    pub max_streams: usize,
    /// `EVENTS_MAX_STREAMS_PER_USER`: open streams of one user on one
    /// instance; more are a 429 with `Retry-After`.
    pub max_streams_per_user: usize,
    /// Open streams of one application (one key) on one instance:
    /// `EVENTS_APP_SHARE` of `EVENTS_MAX_STREAMS` (default one half, at
    /// least 1), as `DATABASE_POOL_APP_SHARE` shares the pool; more are a
    /// 429 with `Retry-After`.
    pub max_streams_per_app: usize,
    /// `EVENTS_WATCH_SECONDS`: how long a session stays registered as
    /// followed by an instance (its writes notify) unless the instance
    /// renews it, which it does every fifth of this while it has streams of
    /// the session. Bounds the notifications a crashed instance leaves.
    pub watch: Duration,
    /// `EVENTS_MAX_STREAM_SECONDS`: a stream ends by itself after this
    /// (with an `end` event and a `retry:` hint) and the client resumes.
    pub max_stream: Duration,
    /// `EVENTS_HEARTBEAT_SECONDS`: a comment line at least this often, so
    /// proxies see a live response and a vanished client is noticed.
    pub heartbeat: Duration,
    /// `DATABASE_LISTEN_HOST` and `DATABASE_LISTEN_PORT`: where the
    /// listening connection goes when the pool goes through PgBouncer in
    /// transaction mode, where LISTEN does not work (in Azure: the same
    /// server, port 5432 instead of PgBouncer's 6432). Default: as the pool.
    pub listen_host: Option<String>,
    pub listen_port: Option<u16>,
}

pub(super) fn from_vars(vars: &Vars<'_>) -> Result<EventSettings, SettingsError> {
    let max_stream: u64 = vars.parse_or("EVENTS_MAX_STREAM_SECONDS", 120)?;
    if !(1..=MAX_STREAM_SECONDS).contains(&max_stream) {
        return Err(SettingsError::new(
            "EVENTS_MAX_STREAM_SECONDS",
            format!(
                "must be between 1 and {MAX_STREAM_SECONDS} (Azure's front end ends requests after 230 s)"
            ),
        ));
    }
    let heartbeat: u64 = vars.parse_or("EVENTS_HEARTBEAT_SECONDS", 15)?;
    if !(1..=15).contains(&heartbeat) {
        return Err(SettingsError::new(
            "EVENTS_HEARTBEAT_SECONDS",
            "must be between 1 and 15",
        ));
    }
    let watch: u64 = vars.parse_or("EVENTS_WATCH_SECONDS", 300)?;
    if !(5..=3600).contains(&watch) {
        return Err(SettingsError::new(
            "EVENTS_WATCH_SECONDS",
            "must be between 5 and 3600",
        ));
    }
    let max_streams: usize = vars.parse_or("EVENTS_MAX_STREAMS", 2000)?;
    let app_share: f64 = vars.parse_or("EVENTS_APP_SHARE", 0.5)?;
    if !(app_share > 0.0 && app_share <= 1.0) {
        return Err(SettingsError::new(
            "EVENTS_APP_SHARE",
            "must be a fraction of EVENTS_MAX_STREAMS above 0, at most 1",
        ));
    }
    let settings = EventSettings {
        max_streams,
        max_streams_per_app: ((app_share * max_streams as f64) as usize).max(1),
        watch: Duration::from_secs(watch),
        max_streams_per_user: vars.parse_or("EVENTS_MAX_STREAMS_PER_USER", 20)?,
        max_stream: Duration::from_secs(max_stream),
        heartbeat: Duration::from_secs(heartbeat),
        listen_host: vars.get("DATABASE_LISTEN_HOST").map(str::to_owned),
        listen_port: vars
            .get("DATABASE_LISTEN_PORT")
            .map(|_| vars.parse_or("DATABASE_LISTEN_PORT", 0))
            .transpose()?,
    };
    for (name, value) in [
        ("EVENTS_MAX_STREAMS", settings.max_streams),
        ("EVENTS_MAX_STREAMS_PER_USER", settings.max_streams_per_user),
    ] {
        if value == 0 {
            return Err(SettingsError::new(name, "must be at least 1"));
        }
    }
    if settings.listen_port == Some(0) {
        return Err(SettingsError::new(
            "DATABASE_LISTEN_PORT",
            "must be a port number",
        ));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;
    use crate::settings::tests::vars;

    #[test]
    fn defaults_stay_under_azure_limits_and_bad_values_name_the_setting() {
        let s = Settings::from_vars(&vars(&[])).unwrap().events;
        assert_eq!(s.max_stream.as_secs(), 120);
        assert_eq!(s.heartbeat.as_secs(), 15);
        assert_eq!(s.watch.as_secs(), 300);
        assert_eq!((s.max_streams, s.max_streams_per_app), (2000, 1000));
        assert_eq!((s.listen_host, s.listen_port), (None, None));
        let s = Settings::from_vars(&vars(&[
            ("DATABASE_LISTEN_PORT", "5432"),
            ("DATABASE_LISTEN_HOST", "db.internal"),
        ]))
        .unwrap()
        .events;
        assert_eq!(s.listen_port, Some(5432));
        assert_eq!(s.listen_host.as_deref(), Some("db.internal"));
        let s = Settings::from_vars(&vars(&[
            ("EVENTS_MAX_STREAMS", "3"),
            ("EVENTS_APP_SHARE", "0.1"),
        ]))
        .unwrap()
        .events;
        assert_eq!(s.max_streams_per_app, 1, "at least one");
        for (name, value) in [
            ("EVENTS_MAX_STREAM_SECONDS", "230"),
            ("EVENTS_MAX_STREAM_SECONDS", "0"),
            ("EVENTS_HEARTBEAT_SECONDS", "30"),
            ("EVENTS_MAX_STREAMS", "0"),
            ("EVENTS_MAX_STREAMS_PER_USER", "x"),
            ("DATABASE_LISTEN_PORT", "0"),
            ("DATABASE_LISTEN_PORT", "70000"),
            ("EVENTS_APP_SHARE", "0"),
            ("EVENTS_APP_SHARE", "1.5"),
            ("EVENTS_APP_SHARE", "NaN"),
            ("EVENTS_WATCH_SECONDS", "1"),
        ] {
            let err = Settings::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{value}");
        }
    }
}
