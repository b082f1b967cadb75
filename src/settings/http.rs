//! What the HTTP layer needs: where to listen, how large a body may be, and
//! which browser origins may call the API.

use std::net::IpAddr;
use std::time::Duration;

use super::{Environment, SettingsError, Vars};

/// The web front ends of the plan's development setup (React, Vite, others).
const DEVELOPMENT_ORIGINS: &str =
    "http://localhost:3000,http://localhost:5173,http://localhost:8080";

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: IpAddr,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`, set by the Functions host.
    pub port: u16,
    pub max_body_bytes: usize,
    /// Browser origins allowed to call the API (CORS), exactly as a browser
    /// sends them in `Origin`. Empty: no CORS headers at all, which is right
    /// in Azure, where the platform answers CORS itself.
    pub allowed_origins: Vec<String>,
    /// How long a client may take to send a request's head
    /// (`HTTP_HEADER_TIMEOUT_MS`); then the connection is closed. hyper
    /// runs this clock on an idle kept-alive connection too, so it is also
    /// how long one may stay idle.
    pub header_timeout: Duration,
    /// How long a request body may stall between two reads
    /// (`HTTP_BODY_TIMEOUT_MS`); then the request is a 408.
    pub body_timeout: Duration,
    /// How long a response may wait for the client to take more bytes
    /// (`HTTP_WRITE_TIMEOUT_MS`); then the connection is closed, so a
    /// stalled reader holds at most the socket's buffers.
    pub write_timeout: Duration,
}

pub(super) fn from_vars(
    vars: &Vars<'_>,
    environment: Environment,
) -> Result<HttpSettings, SettingsError> {
    let origins = match vars.get("ALLOWED_ORIGINS") {
        Some(list) => list,
        None if environment == Environment::Development => DEVELOPMENT_ORIGINS,
        None => "",
    };
    Ok(HttpSettings {
        host: vars.parse_or("HOST", IpAddr::from([127, 0, 0, 1]))?,
        port: vars.parse_or("FUNCTIONS_CUSTOMHANDLER_PORT", 7071)?,
        max_body_bytes: vars.parse_or("MAX_BODY_BYTES", 1024 * 1024)?,
        allowed_origins: parse_origins(origins)?,
        header_timeout: millis(vars, "HTTP_HEADER_TIMEOUT_MS", 30_000)?,
        body_timeout: millis(vars, "HTTP_BODY_TIMEOUT_MS", 10_000)?,
        write_timeout: millis(vars, "HTTP_WRITE_TIMEOUT_MS", 30_000)?,
    })
}

/// A positive number of milliseconds.
fn millis(vars: &Vars<'_>, name: &'static str, default: u64) -> Result<Duration, SettingsError> {
    match vars.parse_or(name, default)? {
        0 => Err(SettingsError::new(name, "must be more than 0")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

/// A comma-separated list of `scheme://host[:port]`; a browser's `Origin`
/// never has a path or a trailing slash, so neither may these.
fn parse_origins(list: &str) -> Result<Vec<String>, SettingsError> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            match rest {
                Some(host)
                    if !host.is_empty()
                        && !host.contains('/')
                        && origin.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    Ok(origin.to_owned())
                }
                _ => Err(SettingsError::new(
                    "ALLOWED_ORIGINS",
                    format!("{origin:?} is not an origin like https://app.example.com or http://localhost:3000"),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;
    use crate::settings::tests::vars;

    #[test]
    fn custom_handler_port_is_honoured() {
        let s = Settings::from_vars(&vars(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "41234")])).unwrap();
        assert_eq!(s.http.port, 41234);
    }

    #[test]
    fn allowed_origins_default_to_the_development_front_ends_only_in_development() {
        let s = Settings::from_vars(&vars(&[])).unwrap();
        assert_eq!(s.http.allowed_origins.len(), 3);
        assert!(
            s.http
                .allowed_origins
                .contains(&"http://localhost:5173".to_owned())
        );
        let s = Settings::from_vars(&vars(&[("ENVIRONMENT", "test")])).unwrap();
        assert!(s.http.allowed_origins.is_empty());
        let s = Settings::from_vars(&vars(&[(
            "ALLOWED_ORIGINS",
            " https://app.example.com , http://127.0.0.1:9000",
        )]))
        .unwrap();
        assert_eq!(
            s.http.allowed_origins,
            ["https://app.example.com", "http://127.0.0.1:9000"]
        );
        for bad in ["app.example.com", "https://app.example.com/", "*"] {
            let err = Settings::from_vars(&vars(&[("ALLOWED_ORIGINS", bad)])).unwrap_err();
            assert_eq!(err.name, "ALLOWED_ORIGINS");
        }
    }
}
