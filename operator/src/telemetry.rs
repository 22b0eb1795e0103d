//! Logs and traces: `tracing` to stderr (text or JSON, filtered by `RUST_LOG`), and
//! OpenTelemetry traces over OTLP/HTTP when an endpoint is configured.
//! [`Telemetry::shutdown`] flushes the exporter; call it last.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Handles to flush on shutdown.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber. Call once, at start-up.
    ///
    /// # Errors
    ///
    /// When the OTLP exporter cannot be built or a subscriber is already installed.
    pub fn init(otlp_endpoint: Option<&str>, json_logs: bool) -> anyhow::Result<Telemetry> {
        let filter = || {
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,kube_runtime=warn,kube_client=warn"))
        };
        let fmt = if json_logs {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .boxed()
        };
        let mut tracer_provider = None;
        let otel = match otlp_endpoint {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                    .build()?;
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("synco-operator").build())
                    .build();
                let tracer = provider.tracer("synco-operator");
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
        Ok(Telemetry { tracer_provider })
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
