//! Traces and metrics to Application Insights:
//! `opentelemetry-application-insights` turns the spans into envelopes
//! (server spans: `RequestData` named "GET /api/sessions/{session_id}"
//! with the status as result code; client spans: `RemoteDependencyData` of
//! type `postgresql` for the statements) and the metrics into `MetricData`,
//! and sends them as gzip JSON, retrying what the ingestion
//! endpoint says may be retried (and failed connections) with backoff for
//! up to 35 s; each attempt is bounded by `OTEL_EXPORTER_OTLP_TIMEOUT`.
//! Meanwhile its batch processor's queue fills and further spans are
//! dropped and counted: requests never wait. It sends through
//! [`IngestionClient`], which adds the Entra ID token when the service
//! authenticates with one.
//!
//! The connection string is parsed here, not by the crate: its parser
//! refuses an `Authorization` other than `ikey` and a trailing `;`, and
//! its errors would be the only clue. Ours name what is wrong and never
//! repeat the string.

use std::sync::Arc;

use opentelemetry_application_insights::Exporter;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use tokio::runtime::Handle;

use crate::entra_token::{EntraToken, Resource};
use crate::settings::{AzureSettings, CredentialKind, Settings};

/// The scope of Azure Monitor ingestion tokens (the double slash is
/// Azure's: the resource is `https://monitor.azure.com/`), which the
/// Monitoring Metrics Publisher role is checked against.
pub const SCOPE: &str = "https://monitor.azure.com//.default";
/// Where envelopes go when the connection string names no endpoint (the
/// global one, as in Azure's SDKs).
const DEFAULT_INGESTION: &str = "https://dc.services.visualstudio.com";
/// The exporter's tokens: no span for their fetches, as the exporter's
/// own work never becomes telemetry.
const MONITOR: Resource = Resource {
    scope: SCOPE,
    name: "Entra ID token for Application Insights",
    traced: false,
};

/// Why traces and metrics do not go to Application Insights. The messages
/// name the part of the connection string that is wrong, never its content.
#[derive(Debug, thiserror::Error)]
pub enum AppInsightsError {
    #[error("the connection string has a part that is not Key=Value")]
    Format,
    #[error("the connection string has no InstrumentationKey")]
    NoInstrumentationKey,
    #[error("the connection string's Authorization is neither ikey nor AAD")]
    Authorization,
    #[error("the connection string's ingestion endpoint is not an https:// URL")]
    Endpoint,
    #[error("no Azure credential for Entra ID tokens")]
    Credential(#[source] crate::secrets::SecretsError),
    #[error("cannot build the exporter's HTTP client")]
    Client(#[source] reqwest::Error),
}

/// What the service reads from a connection string.
struct ConnectionString {
    instrumentation_key: String,
    /// Scheme and authority (and a path prefix, if any), without a `/`
    /// at the end.
    ingestion: String,
    /// `Authorization=AAD`.
    aad: bool,
}

impl ConnectionString {
    /// `Key=Value` parts separated by `;`, keys case-insensitive, unknown
    /// keys ignored, the ingestion endpoint from `IngestionEndpoint`, else
    /// `EndpointSuffix` (and `Location`), else the global one: as Azure's
    /// SDKs read it.
    fn parse(text: &str) -> Result<Self, AppInsightsError> {
        let mut instrumentation_key = None;
        let mut ingestion = None;
        let mut suffix = None;
        let mut location = None;
        let mut aad = false;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or(AppInsightsError::Format)?;
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "instrumentationkey" => instrumentation_key = Some(value.to_owned()),
                "ingestionendpoint" => ingestion = Some(value.to_owned()),
                "endpointsuffix" => suffix = Some(value.to_owned()),
                "location" => location = Some(value.to_owned()),
                "authorization" if value.eq_ignore_ascii_case("ikey") => aad = false,
                "authorization" if value.eq_ignore_ascii_case("aad") => aad = true,
                "authorization" => return Err(AppInsightsError::Authorization),
                _ => {}
            }
        }
        let instrumentation_key = instrumentation_key
            .filter(|k| !k.is_empty())
            .ok_or(AppInsightsError::NoInstrumentationKey)?;
        let ingestion = match (ingestion, suffix) {
            (Some(endpoint), _) => endpoint,
            (None, Some(suffix)) => match location {
                Some(location) => format!("https://{location}.dc.{suffix}"),
                None => format!("https://dc.{suffix}"),
            },
            (None, None) => DEFAULT_INGESTION.to_owned(),
        };
        // Tokens never travel in clear text; the crate would turn
        // http:// into https:// anyway.
        let ingestion = ingestion.trim_end_matches('/').to_owned();
        if !ingestion.starts_with("https://")
            || ingestion.parse::<axum::http::Uri>().is_err()
            || ingestion.len() == "https://".len()
        {
            return Err(AppInsightsError::Endpoint);
        }
        Ok(Self {
            instrumentation_key,
            ingestion,
            aad,
        })
    }
}

/// Whether traces and metrics go to Application Insights.
pub enum State {
    /// No connection string (or telemetry off).
    Off,
    /// On, with Entra ID tokens (`entra`) or the instrumentation key alone.
    On { entra: bool },
    /// Configured but unusable: off.
    Failed(AppInsightsError),
}

/// The exporters (one for spans, one for metrics: each pipeline owns
/// its own), and whether they send Entra ID tokens.
pub struct Built {
    pub traces: Exporter<IngestionClient>,
    pub metrics: Exporter<IngestionClient>,
    pub entra: bool,
}

/// The exporter for `connection_string`. Entra ID tokens are sent when
/// the service authenticates as a managed identity (in Azure) or when
/// `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` or the connection string
/// says `Authorization=AAD`; otherwise the instrumentation key alone
/// (what a resource with local authentication accepts: local runs).
pub fn exporter(
    settings: &Settings,
    connection_string: &SecretString,
    runtime: Handle,
) -> Result<Built, AppInsightsError> {
    let telemetry = &settings.telemetry;
    let parsed = ConnectionString::parse(connection_string.expose_secret())?;
    let entra = settings.azure.credential == CredentialKind::ManagedIdentity
        || telemetry.app_insights_aad
        || parsed.aad;
    let token = if entra {
        let azure = AzureSettings {
            client_id: settings
                .azure
                .client_id
                .clone()
                .or_else(|| telemetry.app_insights_client_id.clone()),
            ..settings.azure.clone()
        };
        let credential =
            crate::secrets::credential(&azure).map_err(AppInsightsError::Credential)?;
        Some(Arc::new(EntraToken::new(
            MONITOR,
            credential,
            settings.fetch_timeout,
        )))
    } else {
        None
    };
    let client = reqwest::Client::builder()
        .timeout(telemetry.export_timeout)
        .build()
        .map_err(AppInsightsError::Client)?;
    let client = IngestionClient {
        client,
        runtime,
        // The path Azure documents for ingestion with Entra ID tokens
        // (and that Azure Monitor's own exporters use); the crate's is the
        // older /v2/track.
        track: format!("{}/v2.1/track", parsed.ingestion)
            .parse()
            .map_err(|_| AppInsightsError::Endpoint)?,
        token,
    };
    // The crate is given the key alone: its parser knows no
    // `Authorization=AAD`, and the endpoint is the client's.
    let exporter = |client| {
        Exporter::new_from_connection_string(
            format!("InstrumentationKey={}", parsed.instrumentation_key),
            client,
        )
        // Its parser refuses a key holding `=`, which ours let through.
        .map_err(|_| AppInsightsError::Format)
    };
    Ok(Built {
        // Application Insights scales its counts by the sampling rate.
        traces: exporter(client.clone())?.with_sample_rate(telemetry.sampling_ratio),
        metrics: exporter(client)?,
        entra,
    })
}

/// The exporter's HTTP client: each request runs as a task on the
/// service's runtime (the batch processor exports from a thread of its
/// own), to the ingestion endpoint, with `Authorization: Bearer` when
/// tokens are used. The token is cached and refreshed before it expires;
/// only the first export (or one after the identity endpoint failed) waits
/// for a fetch, bounded by `FETCH_TIMEOUT_MS`, on the exporter's thread,
/// never a request's.
#[derive(Clone)]
pub struct IngestionClient {
    client: reqwest::Client,
    runtime: Handle,
    track: axum::http::Uri,
    token: Option<Arc<EntraToken>>,
}

impl std::fmt::Debug for IngestionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestionClient")
            .field("track", &self.track)
            .field("entra", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

/// Why an export request was not sent.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// Says which token and why (`entra_token`).
    #[error("{0}")]
    Token(String),
    #[error("an Entra ID token that is not a valid header value")]
    Header(#[source] axum::http::header::InvalidHeaderValue),
}

#[async_trait::async_trait]
impl HttpClient for IngestionClient {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        *request.uri_mut() = self.track.clone();
        let (client, token) = (self.client.clone(), self.token.clone());
        let sent = self.runtime.spawn(async move {
            if let Some(token) = &token {
                let secret = token.get().await.map_err(SendError::Token)?;
                let mut value =
                    axum::http::HeaderValue::try_from(format!("Bearer {}", secret.expose_secret()))
                        .map_err(SendError::Header)?;
                value.set_sensitive(true);
                request
                    .headers_mut()
                    .insert(axum::http::header::AUTHORIZATION, value);
            }
            let response = client.send_bytes(request).await?;
            if response.status() == axum::http::StatusCode::UNAUTHORIZED
                && let Some(token) = &token
            {
                // Rejected (expired, revoked): the next export fetches anew.
                token.invalidate();
            }
            Ok(response)
        });
        // A task cancelled by the runtime's shutdown is an export error.
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00000000-0000-0000-0000-00000000abcd";

    fn parse(text: &str) -> Result<ConnectionString, AppInsightsError> {
        ConnectionString::parse(text)
    }

    #[test]
    fn the_endpoint_comes_from_the_string_as_azure_reads_it() {
        // As the portal gives it, with a trailing `;` added.
        let cs = parse(&format!(
            "InstrumentationKey={KEY};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;\
             LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/;ApplicationId=x;"
        ))
        .unwrap();
        assert_eq!(cs.instrumentation_key, KEY);
        assert_eq!(
            cs.ingestion,
            "https://westeurope-5.in.applicationinsights.azure.com"
        );
        assert!(!cs.aad);
        let cs = parse(&format!(
            "instrumentationkey={KEY};EndpointSuffix=ai.contoso.com;Location=westus2;Authorization=AAD"
        ))
        .unwrap();
        assert_eq!(cs.ingestion, "https://westus2.dc.ai.contoso.com");
        assert!(cs.aad);
        let cs = parse(&format!("InstrumentationKey={KEY}")).unwrap();
        assert_eq!(cs.ingestion, DEFAULT_INGESTION);
    }

    #[test]
    fn a_malformed_string_says_what_is_wrong_without_repeating_it() {
        for (text, expected) in [
            (format!("InstrumentationKey={KEY};NoValue"), "not Key=Value"),
            (
                "IngestionEndpoint=https://x.example".to_owned(),
                "no InstrumentationKey",
            ),
            (
                format!("InstrumentationKey={KEY};Authorization=Basic"),
                "Authorization",
            ),
            (
                format!("InstrumentationKey={KEY};IngestionEndpoint=http://x.example"),
                "https://",
            ),
            (
                format!("InstrumentationKey={KEY};IngestionEndpoint=https://"),
                "https://",
            ),
            (KEY.to_owned(), "not Key=Value"),
        ] {
            let message = parse(&text).err().unwrap().to_string();
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("abcd"), "{message}");
        }
    }
}
