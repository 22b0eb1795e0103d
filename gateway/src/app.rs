//! The application: shared state and the router with its layers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::admission::{Admission, AdmitAll};
use crate::engine::ModelRegistry;
use crate::error::{BodyLimit, fallback};
use crate::routes;
use crate::usage::{LogSink, UsageSink};

/// Tunables of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted request body.
    pub body_limit: usize,
    /// Interval of SSE keep-alive comments.
    pub keep_alive: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            body_limit: crate::error::DEFAULT_BODY_LIMIT,
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub models: Arc<ModelRegistry>,
    /// Quota and priority admission (issue 6); admits everything by default.
    pub admission: Arc<dyn Admission>,
    /// Where per-request usage goes (metering).
    pub usage: Arc<dyn UsageSink>,
    pub settings: Settings,
    /// Cancelled when the gateway starts draining.
    pub shutdown: CancellationToken,
    pub metrics: Option<PrometheusHandle>,
    /// The co-op and its database, where identity and quotas are on (standalone mode).
    pub accounts: Option<Accounts>,
    /// Proposals and ballots (cluster mode).
    pub governance: Option<Arc<crate::governance::Governance>>,
}

/// What `/v1/usage` and authentication read.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub coop: crate::coop::CoopHandle,
    pub db: sea_orm::DatabaseConnection,
    pub auth: Arc<crate::auth::Auth>,
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
        }
    }
}

/// The OpenAI-compatible API, health and metrics routes, with request ids, tracing,
/// metrics and the body limit applied.
///
/// The `/v1` routes are a separate router so an authentication layer can wrap them
/// alone (see [`v1_routes`]).
pub fn router(state: AppState) -> Router {
    let page = state
        .governance
        .is_some()
        .then(|| Router::new().route("/governance", get(crate::governance::page)));
    let v1 = v1_routes(state.clone());
    let router = ops_routes(state).merge(v1);
    match page {
        Some(page) => router.merge(page),
        None => router,
    }
}

/// `/v1/*` only, with body limit and metrics, behind the auth middleware when the
/// state has [`Accounts`].
pub fn v1_routes(state: AppState) -> Router {
    let limit = state.settings.body_limit;
    let auth = state.accounts.as_ref().map(|a| a.auth.clone());
    let governance = state.governance.clone();
    let mut router = Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/v1/models", get(routes::list_models))
        .route("/v1/models/{id}", get(routes::get_model))
        .route("/v1/usage", get(crate::usage_api::usage))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
        .with_state(state);
    if let Some(governance) = governance {
        router = router.merge(crate::governance::routes(governance));
    }
    match auth {
        Some(auth) => router.layer(middleware::from_fn_with_state(auth, crate::auth::require_caller)),
        None => router,
    }
}

fn ops_routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(fallback)
        .with_state(state)
}

/// Adds the cross-cutting layers: request ids (set when missing, echoed back),
/// a tracing span per request that carries the id, and HTTP metrics.
pub fn with_layers(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %id,
                )
            }))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(middleware::from_fn(track_http)),
    )
}

async fn track_http(req: Request, next: Next) -> Response {
    let path = path_label(req.uri().path()).to_owned();
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("path", path), ("method", method), ("status", status)];
    metrics::counter!("synco_gateway_http_requests_total", &labels).increment(1);
    metrics::histogram!("synco_gateway_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A bounded set of path labels, so that random URLs cannot blow up metric cardinality.
fn path_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/embeddings" => "/v1/embeddings",
        "/v1/models" => "/v1/models",
        "/v1/usage" => "/v1/usage",
        "/v1/governance/proposals" => "/v1/governance/proposals",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/governance" => "/governance",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        p if p.starts_with("/v1/governance/proposals/") => "/v1/governance/proposals/{name}/votes",
        _ => "other",
    }
}
