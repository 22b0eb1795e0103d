//! Command-line flags; every one can also be set from the environment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::context::Settings;
use crate::leader::LeaseSettings;
use crate::telemetry::Telemetry;
use crate::{Operator, RunOptions};

/// Runs the Synco operator.
#[derive(Debug, Clone, Parser)]
#[command(name = "synco-operator", version, about)]
pub struct Args {
    /// Watch only this namespace (every namespace when unset).
    #[arg(long, env = "SYNCO_NAMESPACE")]
    pub namespace: Option<String>,
    /// The mistral.rs server image for models that do not name one.
    #[arg(
        long,
        env = "SYNCO_MISTRALRS_IMAGE",
        default_value = "ghcr.io/synco-coop/synco-engine:0.8.1"
    )]
    pub mistralrs_image: String,
    /// The port the mistral.rs server listens on (and its Service's port).
    #[arg(long, env = "SYNCO_MISTRALRS_PORT", default_value_t = 8080)]
    pub mistralrs_port: u16,
    /// Run engine pods on their node's network (`hostNetwork`): for nodes without a pod
    /// network; each replica's endpoint is then its node's address.
    #[arg(long, env = "SYNCO_ENGINE_HOST_NETWORK")]
    pub engine_host_network: bool,
    /// Where to serve /metrics and /healthz.
    #[arg(long, env = "SYNCO_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Share the metrics port with other processes of the same user (`SO_REUSEPORT`):
    /// for replicas on one node's network, whose rolling update overlaps old and new.
    #[arg(long, env = "SYNCO_METRICS_REUSE_PORT")]
    pub metrics_reuse_port: bool,
    /// Turn leader election off (only ever run one replica then).
    #[arg(long, env = "SYNCO_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// The namespace of the leader-election Lease (usually the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "synco-system")]
    pub lease_namespace: String,
    /// The leader-election Lease's name.
    #[arg(long, env = "SYNCO_LEASE_NAME", default_value = "synco-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (usually the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "SYNCO_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds between renewals by the leader.
    #[arg(long, env = "SYNCO_LEASE_RENEW_SECONDS", default_value_t = 5)]
    pub lease_renew_seconds: u64,
    /// Seconds between attempts to take the Lease by the others.
    #[arg(long, env = "SYNCO_LEASE_RETRY_SECONDS", default_value_t = 2)]
    pub lease_retry_seconds: u64,
    /// OTLP/HTTP endpoint for traces, such as http://collector:4318.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "SYNCO_LOG_JSON")]
    pub log_json: bool,
}

impl Args {
    /// Parses the arguments and runs until SIGTERM or Ctrl-C.
    ///
    /// # Errors
    ///
    /// When telemetry, the Kubernetes client or the operator fails.
    pub async fn parse_and_run() -> anyhow::Result<()> {
        Args::parse().run().await
    }

    /// The identity used in the Lease and in Events.
    #[must_use]
    pub fn instance(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME").unwrap_or_else(|_| format!("synco-operator-{}", std::process::id()))
        })
    }

    /// Runs with these arguments.
    ///
    /// # Errors
    ///
    /// When telemetry, the Kubernetes client or the operator fails.
    pub async fn run(self) -> anyhow::Result<()> {
        let telemetry = Telemetry::init(self.otlp_endpoint.as_deref(), self.log_json)?;
        // kube and reqwest enable both of rustls's providers in a workspace build, and
        // then rustls does not pick one by itself.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let client = kube::Client::try_default().await?;
        let instance = self.instance();
        let settings = Settings {
            namespace: self.namespace.clone(),
            mistralrs_image: self.mistralrs_image.clone(),
            mistralrs_port: self.mistralrs_port,
            engine_host_network: self.engine_host_network,
            ..Settings::default()
        };
        let lease = (!self.no_leader_election).then(|| LeaseSettings {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity: instance.clone(),
            lease_duration: Duration::from_secs(self.lease_duration_seconds),
            renew_every: Duration::from_secs(self.lease_renew_seconds),
            retry_every: Duration::from_secs(self.lease_retry_seconds),
        });
        let options = RunOptions {
            lease,
            metrics_addr: Some(self.metrics_addr),
            metrics_reuse_port: self.metrics_reuse_port,
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        let operator = Operator::new(client, Arc::new(SystemClock), settings, options, &instance);
        let result = operator.run(shutdown).await;
        telemetry.shutdown();
        Ok(result?)
    }
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
