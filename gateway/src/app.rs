//! The application's shared state. The routes are in [`crate::router`].

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, AdmitAll};
use crate::engine::ModelRegistry;
use crate::usage::{LogSink, UsageSink};

/// Tunables of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted request body.
    pub body_limit: usize,
    /// Interval of SSE keep-alive comments.
    pub keep_alive: Duration,
    /// How long a member stays signed in on the web pages.
    pub session_ttl: Duration,
    /// How long shutdown waits for the usage buffer to be written before it gives up
    /// (and says how many records it could not write).
    pub usage_flush: Duration,
    /// How long a request for a model of the co-op that has no replica ready (scaling
    /// up from zero) waits for one before a 503 with `Retry-After`.
    pub waiting_room: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            body_limit: crate::error::DEFAULT_BODY_LIMIT,
            keep_alive: Duration::from_secs(15),
            session_ttl: Duration::from_secs(8 * 3600),
            usage_flush: Duration::from_secs(30),
            waiting_room: Duration::from_secs(60),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub models: Arc<ModelRegistry>,
    /// Quota and priority admission; admits everything by default.
    pub admission: Arc<dyn Admission>,
    /// Where per-request usage goes (metering).
    pub usage: Arc<dyn UsageSink>,
    pub settings: Settings,
    /// Cancelled when the gateway starts draining.
    pub shutdown: CancellationToken,
    pub metrics: Option<PrometheusHandle>,
    /// The co-op and its database, where identity and quotas are on.
    pub accounts: Option<Accounts>,
    /// The members' governance (both modes, whenever the gateway serves a co-op).
    pub governance: Option<Arc<crate::governance::Governance>>,
    /// Peer co-ops, when the gateway has a federation key.
    pub federation: Option<Arc<crate::federation::Federation>>,
}

/// What `/v1/usage` and authentication read.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub coop: crate::coop::CoopHandle,
    pub db: sea_orm::DatabaseConnection,
    pub auth: Arc<crate::auth::Auth>,
    /// The SHA-256 of the admin API's bearer token; the admin API is off without it.
    pub admin_token_sha256: Option<[u8; 32]>,
}

impl AppState {
    pub fn new(models: ModelRegistry) -> Self {
        Self {
            models: Arc::new(models),
            admission: Arc::new(AdmitAll),
            usage: Arc::new(LogSink),
            settings: Settings::default(),
            shutdown: CancellationToken::new(),
            metrics: None,
            accounts: None,
            governance: None,
            federation: None,
        }
    }
}
