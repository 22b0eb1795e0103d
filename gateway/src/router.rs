//! The routes, as data: which path goes to which handler, and the few that need no key.
//!
//! Every route is authenticated unless it is listed in [`UNAUTHENTICATED`]: the auth
//! middleware is a route layer over everything else (when the gateway serves a co-op;
//! `serve --config` has no identities). Metrics are labelled with axum's
//! [`MatchedPath`], so the label set is the route table itself and random URLs cannot
//! grow it.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::{BodyLimit, fallback};
use crate::openai::{ChatCompletionRequest, CompletionRequest};
use crate::routes::{admin, governance, openai, ops, usage};

/// The routes anyone may call without a key: health, readiness and metrics, the
/// members' web pages under `/governance`, which authenticate by their own session
/// cookie instead (see [`crate::web`]), the admin API, which checks the admin token
/// (see [`admin`]), and the federation endpoints, which check peer co-ops' tokens (see
/// [`crate::routes::federation`]).
pub const UNAUTHENTICATED: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/governance/*",
    "/admin/*",
    "/federation/*",
];

fn public() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
}

fn api() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(openai::complete::<ChatCompletionRequest>),
        )
        .route("/v1/completions", post(openai::complete::<CompletionRequest>))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{id}", get(openai::get_model))
        .route("/v1/usage", get(usage::usage))
        .route(
            "/v1/governance/proposals",
            get(governance::proposals).post(governance::propose),
        )
        .route(
            "/v1/governance/proposals/{name}",
            get(governance::proposal).delete(governance::withdraw),
        )
        .route(
            "/v1/governance/proposals/{name}/comments",
            get(governance::comments).post(governance::comment),
        )
        .route("/v1/governance/proposals/{name}/votes", post(governance::vote))
        .route("/v1/governance/drafts", post(governance::draft))
        .route(
            "/v1/governance/proposals/{name}/summary",
            get(governance::summary).post(governance::summarise),
        )
        .route(
            "/v1/governance/proposals/{name}/common-ground",
            get(governance::common_ground).post(governance::start_common_ground),
        )
        .route(
            "/v1/governance/proposals/{name}/common-ground/rankings",
            post(governance::rank_common_ground),
        )
        .route(
            "/v1/governance/proposals/{name}/common-ground/choice",
            post(governance::choose_common_ground),
        )
        .route(
            "/v1/governance/proposals/{name}/common-ground/critiques",
            post(governance::critique_common_ground),
        )
        .route(
            "/v1/governance/proposals/{name}/common-ground/revision",
            post(governance::revise_common_ground),
        )
        .route("/v1/governance/proposals/{name}/record", get(governance::record))
        .route(
            "/v1/governance/delegation",
            get(governance::delegation)
                .put(governance::delegate)
                .delete(governance::revoke),
        )
        .route("/v1/governance/coop", get(governance::coop))
}

/// The whole router for `state`: the API behind authentication and the body limit, the
/// unauthenticated routes, and an OpenAI-shaped 404 for anything else.
pub fn router(state: AppState) -> Router {
    let limit = state.settings.body_limit;
    let mut api = api()
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)));
    if let Some(accounts) = &state.accounts {
        api = api.route_layer(middleware::from_fn_with_state(
            accounts.auth.clone(),
            crate::auth::require_caller,
        ));
    }
    let pages = crate::web::routes().layer(DefaultBodyLimit::max(limit));
    let admin = admin::routes()
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)));
    let federation = crate::routes::federation::routes(&state)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)));
    public()
        .merge(pages)
        .merge(admin)
        .merge(federation)
        .merge(api)
        .fallback(fallback)
        .with_state(state)
}

/// Adds the cross-cutting layers: request ids (set when missing, echoed back), a tracing
/// span per request that carries the id, and HTTP metrics.
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
    // The route's pattern, not the path: a bounded label set.
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
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
