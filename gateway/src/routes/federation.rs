//! The federation endpoints, on by a federation key (`--federation-key`):
//!
//! - `GET /federation/jwks.json`: this co-op's public key, for peers that name a
//!   `jwksUrl` (public);
//! - with a peer's token (see [`crate::federation::keys`]):
//!   - `GET /federation/catalogue`: the models lent to the asking peer that are served
//!     here, with the room for it on each;
//!   - `POST /federation/v1/chat/completions` and `/federation/v1/completions`: the
//!     OpenAI handlers, the peer as the caller (its tier, within the share lent);
//!   - `GET /federation/settlement?month=YYYY-MM`: this co-op's ledger with the asking
//!     peer, to reconcile with its own;
//! - with the admin token: `GET /admin/v1/federation/peers` (what is known of each peer)
//!   and `GET /admin/v1/federation/settlement/{peer}?month=YYYY-MM`.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use crate::admission::Caller;
use crate::app::AppState;
use crate::error::ApiError;
use crate::federation::settlement::{self, Settlement};
use crate::federation::{Catalogue, CatalogueModel, Federation, PeerView};
use crate::openai::{ChatCompletionRequest, CompletionRequest};
use crate::routes::openai;

/// The federation routes for `state` (none without a federation key).
pub fn routes(state: &AppState) -> Router<AppState> {
    let Some(federation) = state.federation.clone() else {
        return Router::new();
    };
    let peers = Router::new()
        .route("/federation/catalogue", get(catalogue))
        .route("/federation/settlement", get(peer_settlement))
        .route(
            "/federation/v1/chat/completions",
            post(openai::complete::<ChatCompletionRequest>),
        )
        .route(
            "/federation/v1/completions",
            post(openai::complete::<CompletionRequest>),
        )
        .route_layer(middleware::from_fn_with_state(federation, require_peer));
    Router::new()
        .route("/federation/jwks.json", get(jwks))
        .route("/admin/v1/federation/peers", get(peers_view))
        .route("/admin/v1/federation/settlement/{peer}", get(admin_settlement))
        .merge(peers)
}

/// Puts the peer co-op whose token the request carries in its extensions.
async fn require_peer(
    State(federation): State<std::sync::Arc<Federation>>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(ToOwned::to_owned);
    let Some(token) = token else {
        return ApiError::Unauthenticated(
            "Federation calls carry a peer token as a bearer token.".to_owned(),
        )
        .into_response();
    };
    match federation.authenticate(&token).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

fn federation(state: &AppState) -> Result<&std::sync::Arc<Federation>, ApiError> {
    state
        .federation
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("federation (this gateway has no federation key)".to_owned()))
}

/// `GET /federation/jwks.json`
async fn jwks(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(federation(&state)?.jwks()))
}

/// `GET /federation/catalogue`
async fn catalogue(State(state): State<AppState>, Extension(peer): Extension<Caller>) -> Json<Catalogue> {
    let coop = state
        .accounts
        .as_ref()
        .map(|a| a.coop.current())
        .unwrap_or_default();
    let models = coop
        .peers
        .get(&peer.id)
        .map(|p| {
            p.lend
                .iter()
                .filter(|m| state.models.get(m).is_ok())
                .map(|m| CatalogueModel {
                    id: m.clone(),
                    room: state.admission.room_for_peer(m, &peer).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    Json(Catalogue {
        coop: coop.name.clone(),
        models,
    })
}

#[derive(Debug, serde::Deserialize)]
struct MonthQuery {
    month: Option<String>,
}

async fn ledger_with(state: &AppState, peer: &str, month: Option<String>) -> Result<Settlement, ApiError> {
    let accounts = state
        .accounts
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("federation (this gateway serves no co-op)".to_owned()))?;
    let coop = accounts.coop.current();
    let terms = coop
        .peers
        .get(peer)
        .ok_or_else(|| ApiError::NotFound(format!("no peer co-op named {peer}")))?;
    let month = month.unwrap_or_else(|| crate::quota::month_of(jiff::Timestamp::now()));
    let currency = terms
        .terms
        .price
        .as_ref()
        .map(|p| p.currency.clone())
        .unwrap_or_default();
    settlement::settlement(&accounts.db, &coop.name, peer, &month, &currency)
        .await
        .map_err(|e| ApiError::invalid_param("month", e.to_string()))
}

/// `GET /federation/settlement?month=YYYY-MM`: the ledger with the asking peer.
async fn peer_settlement(
    State(state): State<AppState>,
    Extension(peer): Extension<Caller>,
    Query(query): Query<MonthQuery>,
) -> Result<Json<Settlement>, ApiError> {
    Ok(Json(ledger_with(&state, &peer.id, query.month).await?))
}

/// `GET /admin/v1/federation/settlement/{peer}?month=YYYY-MM`
async fn admin_settlement(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(peer): Path<String>,
    Query(query): Query<MonthQuery>,
) -> Result<Json<Settlement>, ApiError> {
    crate::routes::admin::admin(&state, &headers)?;
    Ok(Json(ledger_with(&state, &peer, query.month).await?))
}

/// `GET /admin/v1/federation/peers`
async fn peers_view(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<PeerView>>, ApiError> {
    crate::routes::admin::admin(&state, &headers)?;
    Ok(Json(federation(&state)?.view()))
}
