//! Traces and metrics (`telemetry`): whether spans are made, where they
//! and metrics are sent, and how many. The OpenTelemetry names (`OTEL_*`)
//! are the standard ones, so a collector's documentation applies as it is.

use std::time::Duration;

use secrecy::SecretString;

use super::{Environment, SettingsError, Vars};

/// The sampling ratio of staging and production: the plan's 10%.
const DEPLOYED_SAMPLING_RATIO: f64 = 0.1;

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// Whether requests get spans (and their log lines trace ids).
    /// `TELEMETRY_ENABLED`; unset, on when an OTLP endpoint is set.
    pub enabled: bool,
    /// Where spans go as OTLP/HTTP protobuf: the traces URL itself
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// plus `/v1/traces`, as the OTLP specification says).
    pub otlp_traces_endpoint: Option<String>,
    /// Where metrics go as OTLP/HTTP protobuf: the metrics URL itself
    /// (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// plus `/v1/metrics`).
    pub otlp_metrics_endpoint: Option<String>,
    /// `OTEL_METRIC_EXPORT_INTERVAL`: how often metrics are collected and
    /// exported (the specification's default, a minute).
    pub metric_export_interval: Duration,
    /// `APPLICATIONINSIGHTS_CONNECTION_STRING` (alias
    /// `TELEMETRY_APP_INSIGHTS_CONNECTION_STRING`). It holds the
    /// instrumentation key: a secret, never logged.
    pub app_insights_connection_string: Option<SecretString>,
    /// `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`
    /// (`Authorization=AAD;ClientId=<id>`, what the Bicep sets for the
    /// Functions host): Application Insights gets Entra ID tokens even when
    /// the service's credential is not a managed identity.
    pub app_insights_aad: bool,
    /// Its `ClientId`: the user-assigned identity, when `AZURE_CLIENT_ID`
    /// does not name one.
    pub app_insights_client_id: Option<String>,
    /// The fraction of traces started here that are kept (a caller's
    /// sampled flag decides for the traces it continues).
    pub sampling_ratio: f64,
    /// The `deployment.environment.name` resource attribute.
    pub environment: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`: longest one export may take.
    pub export_timeout: Duration,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export; beyond it new
    /// spans are dropped (and counted), never waited for.
    pub max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`: how often the queue is exported.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per export request.
    pub max_export_batch_size: usize,
}

pub(super) fn from_vars(
    vars: &Vars<'_>,
    environment: Environment,
) -> Result<TelemetrySettings, SettingsError> {
    let otlp_traces_endpoint = match (
        vars.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        vars.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(url), _) => Some(http_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)?.to_owned()),
        (None, Some(base)) => Some(format!(
            "{}/v1/traces",
            http_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)?.trim_end_matches('/')
        )),
        (None, None) => None,
    };
    let otlp_metrics_endpoint = match (
        vars.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        vars.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(url), _) => Some(http_url("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", url)?.to_owned()),
        (None, Some(base)) => Some(format!(
            "{}/v1/metrics",
            http_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)?.trim_end_matches('/')
        )),
        (None, None) => None,
    };
    let app_insights_connection_string = vars
        .get("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .or_else(|| vars.get("TELEMETRY_APP_INSIGHTS_CONNECTION_STRING"))
        .map(|s| SecretString::from(s.to_owned()));
    let (app_insights_aad, app_insights_client_id) =
        authentication_string(vars.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"));
    let enabled = vars.parse_or(
        "TELEMETRY_ENABLED",
        otlp_traces_endpoint.is_some()
            || otlp_metrics_endpoint.is_some()
            || app_insights_connection_string.is_some(),
    )?;
    let default_ratio = if environment.is_deployed() {
        DEPLOYED_SAMPLING_RATIO
    } else {
        1.0
    };
    let (ratio_name, ratio) = match vars.get("TELEMETRY_SAMPLING_RATIO") {
        Some(_) => (
            "TELEMETRY_SAMPLING_RATIO",
            vars.parse_or("TELEMETRY_SAMPLING_RATIO", 1.0)?,
        ),
        None => (
            "OTEL_TRACES_SAMPLER_ARG",
            vars.parse_or("OTEL_TRACES_SAMPLER_ARG", default_ratio)?,
        ),
    };
    if !(0.0..=1.0).contains(&ratio) {
        return Err(SettingsError::new(ratio_name, "must be from 0 to 1"));
    }
    let positive = |name: &'static str, default: u64| -> Result<u64, SettingsError> {
        match vars.parse_or(name, default)? {
            0 => Err(SettingsError::new(name, "must be more than 0")),
            n => Ok(n),
        }
    };
    Ok(TelemetrySettings {
        enabled,
        otlp_traces_endpoint,
        otlp_metrics_endpoint,
        metric_export_interval: Duration::from_millis(positive(
            "OTEL_METRIC_EXPORT_INTERVAL",
            60_000,
        )?),
        app_insights_connection_string,
        app_insights_aad,
        app_insights_client_id,
        sampling_ratio: ratio,
        environment: vars
            .get("TELEMETRY_ENVIRONMENT")
            .unwrap_or(environment.as_str())
            .to_owned(),
        service_name: vars
            .get("OTEL_SERVICE_NAME")
            .unwrap_or(env!("CARGO_PKG_NAME"))
            .to_owned(),
        export_timeout: Duration::from_millis(positive("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?),
        max_queue_size: positive("OTEL_BSP_MAX_QUEUE_SIZE", 2048)? as usize,
        schedule_delay: Duration::from_millis(positive("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
        max_export_batch_size: positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)? as usize,
    })
}

/// Whether `Authorization=AAD` is in Application Insights' authentication
/// string, and its `ClientId` (keys case-insensitive, as Azure's SDKs
/// read them; anything else in it is ignored).
fn authentication_string(value: Option<&str>) -> (bool, Option<String>) {
    let mut aad = false;
    let mut client_id = None;
    for (key, value) in value
        .unwrap_or_default()
        .split(';')
        .filter_map(|part| part.split_once('='))
    {
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("Authorization") {
            aad = value.eq_ignore_ascii_case("AAD");
        } else if key.eq_ignore_ascii_case("ClientId") && !value.is_empty() {
            client_id = Some(value.to_owned());
        }
    }
    (aad, client_id)
}

/// An `http://` or `https://` URL (the message never repeats it: an
/// endpoint may carry credentials in its query).
fn http_url<'a>(name: &'static str, url: &'a str) -> Result<&'a str, SettingsError> {
    if (url.starts_with("http://") || url.starts_with("https://"))
        && url.parse::<axum::http::Uri>().is_ok()
    {
        Ok(url)
    } else {
        Err(SettingsError::new(
            name,
            "must be an http:// or https:// URL",
        ))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::super::Settings;
    use super::super::tests::{production, vars};

    #[test]
    fn off_unless_an_endpoint_is_set_and_false_wins() {
        let off = Settings::from_vars(&vars(&[])).unwrap().telemetry;
        assert!(!off.enabled);
        assert_eq!(off.sampling_ratio, 1.0);
        let on = Settings::from_vars(&vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318/",
        )]))
        .unwrap()
        .telemetry;
        assert!(on.enabled);
        assert_eq!(
            on.otlp_traces_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            on.otlp_metrics_endpoint.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(on.metric_export_interval.as_millis(), 60_000);
        let disabled = Settings::from_vars(&vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("TELEMETRY_ENABLED", "false"),
        ]))
        .unwrap()
        .telemetry;
        assert!(!disabled.enabled);
        let signal = Settings::from_vars(&vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/in",
            ),
        ]))
        .unwrap()
        .telemetry;
        assert_eq!(
            signal.otlp_traces_endpoint.as_deref(),
            Some("https://traces.example/in")
        );
        assert_eq!(
            signal.otlp_metrics_endpoint.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        // Metrics alone turn telemetry on; traces then go nowhere.
        let metrics_only = Settings::from_vars(&vars(&[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m.example/in"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
        ]))
        .unwrap()
        .telemetry;
        assert!(metrics_only.enabled);
        assert_eq!(metrics_only.otlp_traces_endpoint, None);
        assert_eq!(metrics_only.metric_export_interval.as_millis(), 250);
    }

    #[test]
    fn production_samples_a_tenth_and_the_ratio_is_checked() {
        let s = Settings::from_vars(&production(&[])).unwrap().telemetry;
        assert_eq!(s.sampling_ratio, 0.1);
        assert_eq!(s.environment, "production");
        let s = Settings::from_vars(&production(&[("TELEMETRY_SAMPLING_RATIO", "0.5")]))
            .unwrap()
            .telemetry;
        assert_eq!(s.sampling_ratio, 0.5);
        let err = Settings::from_vars(&vars(&[("OTEL_TRACES_SAMPLER_ARG", "2")])).unwrap_err();
        assert_eq!(err.name, "OTEL_TRACES_SAMPLER_ARG");
        let err = Settings::from_vars(&vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]))
            .unwrap_err();
        assert_eq!(err.name, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn the_connection_string_is_read_under_both_names_and_never_shown() {
        let key = "InstrumentationKey=00000000-0000-0000-0000-00000000abcd";
        for name in [
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "TELEMETRY_APP_INSIGHTS_CONNECTION_STRING",
        ] {
            let s = Settings::from_vars(&vars(&[(name, key)])).unwrap();
            let cs = s.telemetry.app_insights_connection_string.as_ref().unwrap();
            assert_eq!(cs.expose_secret(), key);
            assert!(!format!("{s:?}").contains("abcd"), "{name} shown in Debug");
            // Set, it turns telemetry on (no OTLP endpoint needed).
            assert!(s.telemetry.enabled);
        }
    }

    #[test]
    fn the_authentication_string_asks_for_entra_id_tokens() {
        let s = Settings::from_vars(&vars(&[(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            "Authorization=AAD;ClientId=11111111-2222-3333-4444-555555555555",
        )]))
        .unwrap()
        .telemetry;
        assert!(s.app_insights_aad);
        assert_eq!(
            s.app_insights_client_id.as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        let s = Settings::from_vars(&vars(&[])).unwrap().telemetry;
        assert!(!s.app_insights_aad);
        assert_eq!(s.app_insights_client_id, None);
    }
}
