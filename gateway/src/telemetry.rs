//! Logs, traces and metrics.
//!
//! - Logs: `tracing` with an `EnvFilter` (`RUST_LOG`), as text or JSON. Each HTTP
//!   request has a span carrying its `request_id`, so every log line inside it does too.
//! - Traces: exported over OTLP/HTTP when an endpoint is configured.
//! - Metrics: a Prometheus recorder rendered at `/metrics`.
//!
//! [`Telemetry::shutdown`] flushes the trace exporter; it is called last on shutdown.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What to set up.
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    /// OTLP/HTTP endpoint such as `http://collector:4318`; no trace export when `None`.
    pub otlp_endpoint: Option<String>,
    /// JSON log lines instead of text.
    pub json_logs: bool,
}

/// Handles to flush on shutdown.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber. Call once, at start-up.
    pub fn init(options: &TelemetryOptions) -> anyhow::Result<Self> {
        let filter = || {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                EnvFilter::new("info,mistralrs_core=warn,mistralrs=warn,candle=warn,hf_hub=warn")
            })
        };
        let fmt = if options.json_logs {
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(std::io::stderr)
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .boxed()
        };
        let mut tracer_provider = None;
        let otel = match &options.otlp_endpoint {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                    .build()?;
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("synco-gateway").build())
                    .build();
                let tracer = provider.tracer("synco-gateway");
                tracer_provider = Some(provider);
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(filter()),
                )
            }
            None => None,
        };
        tracing_subscriber::registry()
            .with(fmt.with_filter(filter()))
            .with(otel)
            .try_init()?;
        Ok(Self { tracer_provider })
    }

    /// Flushes and stops the trace exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                keep_up(handle.clone());
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}

/// How often the recorder's histograms are drained.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Drains the histograms' samples into their buckets every few seconds. The recorder
/// keeps every sample until then, and a scrape is not guaranteed: with nobody reading
/// `/metrics`, the samples of every request piled up (about a megabyte a minute at
/// 1,000 req/s in `gateway/bench/soak.sh`).
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "metrics upkeep not started: histograms grow until scraped");
    }
}
