//! The OpenTelemetry pipeline: spans made with `tracing` become
//! OpenTelemetry spans (tracing-opentelemetry), are sampled (parent-based,
//! a ratio for traces that start here) and leave through a batch span
//! processor to an OTLP/HTTP protobuf endpoint.
//!
//! Exporting never holds up a request: a finished span is offered to the
//! processor's bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`) with a `try_send`;
//! when the queue is full the span is dropped and counted, and the count
//! is logged at the first drop and at shutdown (`BatchSpanProcessor.
//! SpansDropped`). Exports run on the processor's own thread; their HTTP
//! requests run on the service's tokio runtime (the reqwest 0.13 client
//! it already has), bounded by `OTEL_EXPORTER_OTLP_TIMEOUT`.
//!
//! **Application Insights** (`APPLICATIONINSIGHTS_CONNECTION_STRING`):
//! the same spans also go to Application Insights (`app_insights`), with
//! `opentelemetry-application-insights` 0.46 and an HTTP client of ours on
//! the same runtime, from a batch processor of their own with the same
//! bounds (a stuck ingestion endpoint holds up neither requests nor the
//! OTLP export). Its crate has no Entra ID support, but takes any
//! `HttpClient`: ours adds `Authorization: Bearer` with an `azure_identity`
//! token for `https://monitor.azure.com//.default` (the scope Azure's own
//! exporters use, granted by Monitoring Metrics Publisher).
//!
//! Entra ID tokens are sent when the service's Azure credential is a
//! managed identity (in Azure: `IDENTITY_ENDPOINT` set, staging or
//! production, or `AZURE_CREDENTIAL=managed-identity`), or when
//! `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` (what the Bicep sets for the
//! Functions host) or the connection string says `Authorization=AAD`.
//! Otherwise the instrumentation key alone: a developer's resource with
//! local authentication enabled accepts it, and asking the developer's
//! own login for a token would fail for most. Always using tokens would
//! break that; never using them cannot work with the Bicep's resource
//! (`DisableLocalAuth`). A malformed connection string, or no credential,
//! turns Application Insights off with an error line that names what is
//! wrong, never the string; the service serves as usual.
//!
//! Why these crates: the code already makes its spans with `tracing`, so
//! `tracing-opentelemetry` carries them into the `opentelemetry` SDK
//! rather than a second instrumentation API in every module.
//! `opentelemetry-otlp` speaks to any collector; with `http-proto` over the
//! reqwest client the service has, it needs no gRPC stack (tonic).
//! For Application Insights, `opentelemetry-application-insights` is the
//! maintained Rust exporter of its ingestion API: Microsoft has none for
//! Rust (Learn, "OpenTelemetry in Azure SDK for Rust crates";
//! `azure_monitor_opentelemetry_exporter` 0.0.1 is a placeholder), and
//! OTLP straight into Azure Monitor goes through
//! the OpenTelemetry Collector or the Azure Monitor Agent, neither of which
//! runs beside a Flex Consumption app.

use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HeaderExtractor, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tokio::runtime::Handle;

use super::app_insights::IngestionClient;
use crate::settings::TelemetrySettings;

/// The name spans are made under (the instrumentation scope).
const SCOPE: &str = env!("CARGO_PKG_NAME");

/// Why the pipeline could not be built (the service then runs without
/// traces: telemetry never keeps it from serving).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot build the exporter's HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// The tracer provider; `shutdown` exports what is queued (at most a few
/// seconds) and logs how many spans were dropped.
pub struct Pipeline {
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Builds the provider and, when an OTLP endpoint or an Application
    /// Insights connection string is set, their exporters. Without either,
    /// spans are still made and sampled (so log lines carry the trace ids
    /// of the callers' traces) but go nowhere.
    pub fn new(
        settings: &TelemetrySettings,
        app_insights: Option<opentelemetry_application_insights::Exporter<IngestionClient>>,
        runtime: Handle,
    ) -> Result<Self, PipelineError> {
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sampling_ratio,
            ))))
            .with_resource(resource(settings));
        if let Some(endpoint) = &settings.otlp_traces_endpoint {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_timeout(settings.export_timeout)
                .with_http_client(OnRuntime::new(settings.export_timeout, runtime.clone())?)
                .build()
                .map_err(PipelineError::Exporter)?;
            let exporter = super::metrics::CountFailures(exporter);
            builder = builder.with_span_processor(batch(exporter, settings));
        }
        if let Some(exporter) = app_insights {
            builder = builder
                .with_span_processor(batch(super::metrics::CountFailures(exporter), settings));
        }
        Ok(Self {
            provider: builder.build(),
        })
    }

    pub fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer(SCOPE)
    }

    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "telemetry: not every span was exported at shutdown");
        }
    }
}

/// What every span and metric is of: the service and its environment.
pub fn resource(settings: &TelemetrySettings) -> Resource {
    Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("deployment.environment.name", settings.environment.clone()),
            // The name before semantic conventions 1.27, which
            // Application Insights and older backends still read.
            KeyValue::new("deployment.environment", settings.environment.clone()),
        ])
        .build()
}

/// A bounded batch processor for `exporter`: the same queue, schedule and
/// batch size (and drop counting) for every destination.
fn batch<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    settings: &TelemetrySettings,
) -> BatchSpanProcessor {
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(settings.max_queue_size)
        .with_scheduled_delay(settings.schedule_delay)
        .with_max_export_batch_size(settings.max_export_batch_size)
        .build();
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build()
}

/// The W3C trace context (`traceparent`, `tracestate`) a request carries;
/// an empty context when it has none (or a malformed one).
pub fn parent(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The exporters' HTTP client: the batch processor and the metrics'
/// periodic reader export from threads of their own, outside any tokio
/// runtime, and reqwest needs one; so each request runs as a task on the
/// service's runtime.
#[derive(Debug)]
pub struct OnRuntime {
    client: reqwest::Client,
    runtime: Handle,
}

impl OnRuntime {
    /// A client whose requests take at most `timeout`.
    pub fn new(timeout: std::time::Duration, runtime: Handle) -> Result<Self, PipelineError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(PipelineError::Client)?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        // A task cancelled by the runtime's shutdown is an export error.
        sent.await?
    }
}
