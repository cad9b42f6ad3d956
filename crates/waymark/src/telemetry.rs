//! Logs and traces of `waymark serve` and `waymark worker`.
//!
//! Logs are one line per event on stdout (JSON or pretty), filtered by
//! `RUST_LOG` (default `info,sqlx=warn`). When `otlp_endpoint` is set, an
//! OpenTelemetry layer sits next to the log layer and exports spans (`request`,
//! `task` and what runs inside them, at `info` and above) over OTLP/HTTP in
//! protobuf to `<otlp_endpoint>/v1/traces`, batched, as service `waymark`. The
//! spans carry Waymark's trace ids (`waymark_server::observe::set_remote_parent`).
//! `RUST_LOG` does not filter what is exported: quieter logs keep the traces.
//!
//! The usual `OTEL_*` variables of the SDK still apply: `OTEL_BSP_*` tune the
//! batches, `OTEL_EXPORTER_OTLP_HEADERS` / `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
//! add headers (a collector's API key), `OTEL_RESOURCE_ATTRIBUTES` adds resource
//! attributes.

use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The installed logging and, when configured, the span export; call
/// [`Telemetry::shutdown`] on the way out so the last spans are sent.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: the log layer, and the OpenTelemetry
    /// layer when `traces_url` (`<otlp_endpoint>/v1/traces`) is given. Must run
    /// inside the tokio runtime (exports are sent from it).
    pub fn init(format: LogFormat, traces_url: Option<&str>) -> Result<Telemetry> {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
        let Some(url) = traces_url else {
            // As before spans were exported: one filter for everything.
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(log_layer(format))
                .try_init();
            return Ok(Telemetry { provider: None });
        };
        let provider = tracer_provider(url)?;
        // What is exported does not depend on RUST_LOG (operators quieten
        // logs without losing traces); the database driver's own spans stay out.
        let exported = Targets::new()
            .with_default(Level::INFO)
            .with_target("sqlx", Level::WARN);
        let traces = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("waymark"))
            .with_filter(exported);
        let _ = tracing_subscriber::registry()
            .with(log_layer(format).with_filter(filter))
            .with(traces)
            .try_init();
        Ok(Telemetry {
            provider: Some(provider),
        })
    }

    /// Sends the spans still batched and stops the exporter (at most a few
    /// seconds when the collector does not answer). Nothing to do without one.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // Shutting down blocks until the batch thread's last export is done,
        // and that export runs on this runtime: wait on a blocking thread.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "span export did not shut down cleanly"),
            Err(e) => tracing::warn!(error = %e, "span export shutdown failed"),
        }
    }
}

/// The log layer: JSON objects (flattened events, no span fields) or pretty
/// lines, on stdout.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .log_internal_errors(true);
    match format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => layer.boxed(),
    }
}

/// A tracer provider exporting to `traces_url` in batches, as service `waymark`.
fn tracer_provider(traces_url: &str) -> Result<SdkTracerProvider> {
    let client = ExportClient {
        http: reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .context("building the HTTP client for span export")?,
        runtime: tokio::runtime::Handle::current(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("otlp_endpoint (WAYMARK_OTLP_ENDPOINT)")?;
    let resource = Resource::builder()
        .with_service_name("waymark")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Sends the exporter's requests with the workspace's `reqwest` (its TLS
/// settings included) on the tokio runtime. The SDK's batch processor exports
/// from a thread of its own, outside the runtime, so each request is spawned
/// onto the runtime and awaited from that thread.
#[derive(Debug)]
struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let answer = http.execute(request).await?;
            let mut response = Response::builder().status(answer.status());
            if let Some(headers) = response.headers_mut() {
                *headers = answer.headers().clone();
            }
            let body = answer.bytes().await?;
            Ok::<_, HttpError>(response.body(body)?)
        });
        sent.await?
    }
}
