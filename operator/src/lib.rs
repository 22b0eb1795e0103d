//! The Synco operator: kube-rs controllers that run a cooperative on Kubernetes.
//!
//! | controller | watches | writes |
//! |---|---|---|
//! | [`controllers::proposal`] | Proposals, Votes | Proposal status; the effect (Allocation, Cooperative, InferenceModel, Member) |
//! | [`controllers::allocation`] | Allocations, Members, Customers, InferenceModels, Cooperatives | Allocation status (quotas), Cooperative status |
//! | [`controllers::pool`] | ComputePools, Nodes, InferenceModels | ComputePool status |
//! | [`controllers::model`] | InferenceModels, ComputePools, Deployments | Deployment, Service, InferenceModel status |
//! | [`controllers::member`] | Members, Customers, Cooperatives | Member and Customer status |
//!
//! [`Operator::run`] elects a leader on a Lease ([`leader`]), runs every controller
//! while it leads, serves `/metrics`, and on shutdown lets in-flight reconciles finish
//! and releases the Lease.

pub mod apply;
pub mod cli;
pub mod clock;
pub mod context;
pub mod controllers;
pub mod error;
pub mod leader;
pub mod metrics;
mod runtime;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{Context, Settings};
pub use error::Error;
pub use leader::{Elector, LeaseSettings};
pub use metrics::Stats;

/// How the operator runs, besides the controllers' settings.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Leader election; without it this replica reconciles at once (one replica only).
    pub lease: Option<LeaseSettings>,
    /// Where to serve `/metrics` and `/healthz`; nowhere when `None`.
    pub metrics_addr: Option<SocketAddr>,
    /// Bind the metrics address with `SO_REUSEPORT` (host-network replicas on one node).
    pub metrics_reuse_port: bool,
}

/// Why [`Operator::run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Another replica took the Lease: this one must stop (and be restarted).
    #[error("lost the leader Lease")]
    LostLease,
    /// The metrics server could not start.
    #[error("metrics server: {0}")]
    Metrics(#[from] std::io::Error),
}

/// One operator replica.
#[derive(Debug, Clone)]
pub struct Operator {
    ctx: Context,
    options: RunOptions,
}

impl Operator {
    /// An operator acting with `client`'s identity, reporting Events as `instance`.
    pub fn new(
        client: Client,
        clock: Arc<dyn Clock>,
        settings: Settings,
        options: RunOptions,
        instance: &str,
    ) -> Self {
        Operator {
            ctx: Context::new(client, clock, settings, instance),
            options,
        }
    }

    /// This replica's counts (reconciles and errors).
    #[must_use]
    pub fn stats(&self) -> Arc<Stats> {
        self.ctx.stats.clone()
    }

    /// Runs until `shutdown` is cancelled (then returns `Ok`) or the Lease is lost.
    ///
    /// # Errors
    ///
    /// [`RunError::LostLease`] when another replica took over, and
    /// [`RunError::Metrics`] when the metrics address cannot be bound.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        if let Some(addr) = self.options.metrics_addr {
            runtime::serve_metrics(addr, self.options.metrics_reuse_port, shutdown.clone()).await?;
        }
        let elector = self
            .options
            .lease
            .clone()
            .map(|l| Elector::new(self.ctx.client.clone(), l));
        if let Some(elector) = &elector {
            tracing::info!(identity = elector.identity(), "waiting for the leader Lease");
            if !elector.acquire(&shutdown).await {
                return Ok(());
            }
            tracing::info!(identity = elector.identity(), "leading");
        }
        ::metrics::gauge!(metrics::LEADER).set(1.0);
        let leading = shutdown.child_token();
        let controllers = tokio::spawn(runtime::run_controllers(self.ctx.clone(), leading.clone()));
        // If this future is dropped (its task aborted), the controllers stop with it: a
        // replica that no longer runs its lease must not go on reconciling.
        let _stop_with_me = AbortOnDrop(controllers.abort_handle());
        let ended = match &elector {
            Some(elector) => elector.hold(&leading).await,
            None => {
                leading.cancelled().await;
                leader::Ended::Cancelled
            }
        };
        // Stop taking new work and let in-flight reconciles finish before anyone else
        // may lead.
        leading.cancel();
        if let Err(e) = controllers.await {
            tracing::error!(error = %e, "controllers stopped abnormally");
        }
        ::metrics::gauge!(metrics::LEADER).set(0.0);
        match ended {
            leader::Ended::Cancelled => {
                if let Some(elector) = &elector
                    && let Err(e) = elector.release().await
                {
                    tracing::warn!(error = %e, "could not release the leader Lease");
                }
                Ok(())
            }
            leader::Ended::Lost => Err(RunError::LostLease),
        }
    }
}

/// Aborts a spawned task when dropped (a finished task is left as it is).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
