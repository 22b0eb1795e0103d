//! Federation: co-ops lend each other capacity, on the terms their bylaws set.
//!
//! - **Who is a peer** is in the bylaws (`Cooperative.spec.peers`, changed by a Bylaw
//!   proposal): its URL, its public key (or JWKS URL), the models borrowed from it and
//!   lent to it, the largest share lent, the tier its requests get here, and the terms.
//! - **Tokens** ([`keys`]): every call between gateways carries a fresh EdDSA token
//!   signed with the caller co-op's key, for the callee only, used once.
//! - **Catalogue exchange**: every `exchange_every`, the gateway asks each peer which
//!   of the models it may borrow the peer serves, and the room the peer has for it now
//!   (free slots within the share lent); the round trip is the peer's latency.
//! - **Overflow**: a member's request goes to a peer when the model is not served here,
//!   or when the local engine has had no slot for it within `overflow_after`. Peers
//!   with room come first, then the fastest. A peer that fails (cannot be reached,
//!   breaks a stream) is skipped until the next exchange that reaches it. A stream that
//!   has started is never moved: a break ends it with an error event.
//! - **Residency**: a caller that is local only (its class or itself) is never sent
//!   out; customers are not either (they buy this co-op's surplus).
//! - **Metering** on both sides: each side records the request with the peer's name and
//!   its cost under the bylaws' price ([`settlement`]); the request id travels with it.
//! - **Provenance**: every answer names where it ran (`x-synco-coop`, `x-synco-model`,
//!   `x-synco-engine`); a forwarded answer keeps the peer's.

pub mod keys;
pub mod settlement;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use tokio_util::sync::CancellationToken;

use crate::admission::{Caller, CallerKind};
use crate::coop::{CoopHandle, Price};
use crate::engine::external::{ExternalEngine, ExternalOptions};
use crate::error::ApiError;
use keys::{Replays, SigningKey, TokenError};

/// The response headers that say where an answer was produced.
pub const COOP_HEADER: &str = "x-synco-coop";
pub const MODEL_HEADER: &str = "x-synco-model";
pub const ENGINE_HEADER: &str = "x-synco-engine";

/// Tunables of federation.
#[derive(Debug, Clone)]
pub struct FederationOptions {
    /// How often catalogues are exchanged (and failed peers tried again).
    pub exchange_every: Duration,
    /// How long a member's request waits for a local slot before it goes to a peer.
    pub overflow_after: Duration,
    /// The longest a forwarded answer (or a silence within a stream) may take.
    pub request_timeout: Duration,
}

impl Default for FederationOptions {
    fn default() -> Self {
        Self {
            exchange_every: Duration::from_secs(5),
            overflow_after: Duration::from_secs(2),
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// A peer's catalogue, as its gateway publishes it to one peer.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Catalogue {
    /// The publishing co-op.
    pub coop: String,
    pub models: Vec<CatalogueModel>,
}

/// A model a peer serves and lends.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CatalogueModel {
    pub id: String,
    /// Requests the peer would start now for the asker (free slots within its share).
    pub room: u32,
}

/// What this gateway knows of one peer.
#[derive(Debug, Default)]
struct PeerState {
    url: String,
    engine: Option<Arc<ExternalEngine>>,
    /// Models offered, with their room, from the last exchange.
    models: HashMap<String, u32>,
    /// The last exchange's round trip.
    rtt: Option<Duration>,
    /// Skipped until the next exchange that reaches it.
    down: bool,
    last_error: Option<String>,
}

/// A peer a request may go to.
#[derive(Debug, Clone)]
pub struct Route {
    pub peer: String,
    pub engine: Arc<ExternalEngine>,
    /// The bylaws' price for borrowing from this peer (zero under reciprocity).
    pub price: Price,
}

/// One peer as `/federation/peers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerView {
    pub name: String,
    pub url: String,
    pub up: bool,
    pub rtt_ms: Option<f64>,
    pub models: HashMap<String, u32>,
    pub last_error: Option<String>,
}

/// The co-op's side of the federation.
#[derive(Debug)]
pub struct Federation {
    coop: CoopHandle,
    key: SigningKey,
    options: FederationOptions,
    client: reqwest::Client,
    peers: Mutex<HashMap<String, PeerState>>,
    replays: Replays,
    /// Where the replicas share the token ids they have seen (Postgres, when several
    /// replicas may take a peer's calls); `None`: this process's memory only.
    shared_replays: Option<sea_orm::DatabaseConnection>,
    /// JWKS documents fetched, by URL, with when.
    jwks: Mutex<HashMap<String, (Instant, JwkSet)>>,
}

/// How long a fetched JWKS is used before it is fetched again.
const JWKS_FRESH_FOR: Duration = Duration::from_secs(300);

/// The bylaws' price for a peer (zero under reciprocity).
pub fn price_of(peer: &synco_crds::Peer) -> Price {
    peer.terms.price.as_ref().map_or_else(Price::default, |p| Price {
        input_per_million: u64::try_from(p.price.input_per_million).unwrap_or(0),
        output_per_million: u64::try_from(p.price.output_per_million).unwrap_or(0),
    })
}

impl Federation {
    pub fn new(coop: CoopHandle, key: SigningKey, options: FederationOptions) -> anyhow::Result<Arc<Self>> {
        Self::with_shared_replays(coop, key, options, None)
    }

    /// Like [`Federation::new`], with the token ids seen kept in `db` too, so that a
    /// token replayed to another replica of this gateway is refused as well.
    pub fn with_shared_replays(
        coop: CoopHandle,
        key: SigningKey,
        options: FederationOptions,
        shared_replays: Option<sea_orm::DatabaseConnection>,
    ) -> anyhow::Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()?;
        Ok(Arc::new(Self {
            coop,
            key,
            options,
            client,
            peers: Mutex::default(),
            replays: Replays::default(),
            shared_replays,
            jwks: Mutex::default(),
        }))
    }

    /// This co-op's name, as peers know it.
    pub fn name(&self) -> String {
        self.coop.current().name.clone()
    }

    pub fn overflow_after(&self) -> Duration {
        self.options.overflow_after
    }

    /// The public JWKS of this co-op's key.
    pub fn jwks(&self) -> serde_json::Value {
        self.key.jwks(&self.name())
    }

    /// A fresh token for a call to `peer`.
    pub fn token_for(&self, peer: &str) -> Result<String, ApiError> {
        self.key
            .token(&self.name(), peer)
            .map_err(|e| ApiError::Engine(format!("cannot sign a peer token: {e}")))
    }

    /// The peer co-op presenting `token`, as a caller: 403 if the bylaws name no such
    /// peer, 401 for a token that is forged, expired, for another co-op, or replayed.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let unauthenticated = |e: TokenError| ApiError::Unauthenticated(format!("Peer token refused: {e}."));
        let issuer = keys::claimed_issuer(token).map_err(unauthenticated)?;
        let coop = self.coop.current();
        let Some(peer) = coop.peers.get(&issuer) else {
            return Err(ApiError::PermissionDenied(format!(
                "{issuer} is not a trusted peer of {}: its bylaws name no such peer co-op.",
                coop.name
            )));
        };
        let key = self.key_of(peer).await?;
        let claims =
            keys::verify(token, &issuer, &coop.name, &key, &self.replays).map_err(unauthenticated)?;
        self.first_use_everywhere(&claims).await.map_err(|e| match e {
            Some(e) => unauthenticated(e),
            None => ApiError::Unavailable("The token store cannot be reached; try again shortly.".to_owned()),
        })?;
        Ok(Caller {
            id: issuer,
            kind: CallerKind::Peer,
            class: None,
            tier: peer.tier,
            weight: 1,
            local_only: true,
        })
    }

    /// Records the token's id where every replica sees it; a second use (here or at
    /// another replica) is a replay. `Err(None)`: the store cannot be reached (refused:
    /// a replay cannot be ruled out).
    async fn first_use_everywhere(&self, claims: &keys::PeerClaims) -> Result<(), Option<TokenError>> {
        use sea_orm::ActiveModelTrait as _;
        use sea_orm::ActiveValue::Set;
        let Some(db) = &self.shared_replays else {
            return Ok(());
        };
        let row = crate::db::peer_token::ActiveModel {
            issuer: Set(claims.iss.clone()),
            jti: Set(claims.jti.clone()),
            expires_at: Set(claims.exp),
        };
        match row.insert(db).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                Err(Some(TokenError::Replayed))
            }
            Err(e) => {
                tracing::warn!(error = %e, "peer token store unavailable");
                Err(None)
            }
        }
    }

    /// Forgets shared token ids whose tokens have expired.
    async fn sweep_shared_replays(&self) {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        let Some(db) = &self.shared_replays else {
            return;
        };
        let stale = jiff::Timestamp::now().as_second() - 10;
        if let Err(e) = crate::db::peer_token::Entity::delete_many()
            .filter(crate::db::peer_token::Column::ExpiresAt.lt(stale))
            .exec(db)
            .await
        {
            tracing::warn!(error = %e, "cannot sweep expired peer tokens");
        }
    }

    /// The key a peer's tokens are checked with: its public key in the bylaws, or its
    /// JWKS (fetched, and fetched again after [`JWKS_FRESH_FOR`]).
    async fn key_of(&self, peer: &synco_crds::Peer) -> Result<DecodingKey, ApiError> {
        if let Some(x) = &peer.public_key {
            return keys::public_key(x)
                .map_err(|e| ApiError::Unauthenticated(format!("Peer token refused: {e}.")));
        }
        let Some(url) = &peer.jwks_url else {
            return Err(ApiError::PermissionDenied(format!(
                "The bylaws give no key for {}.",
                peer.name
            )));
        };
        let cached = self.jwks.lock().ok().and_then(|j| j.get(url).cloned());
        let set = match cached {
            Some((at, set)) if at.elapsed() < JWKS_FRESH_FOR => set,
            _ => {
                let fetched = async {
                    self.client
                        .get(url)
                        .send()
                        .await?
                        .error_for_status()?
                        .json::<JwkSet>()
                        .await
                };
                match fetched.await {
                    Ok(set) => {
                        if let Ok(mut j) = self.jwks.lock() {
                            j.insert(url.clone(), (Instant::now(), set.clone()));
                        }
                        set
                    }
                    Err(e) => match cached {
                        Some((_, set)) => {
                            tracing::warn!(%url, error = %e, "peer JWKS refresh failed; keeping the old keys");
                            set
                        }
                        None => {
                            return Err(ApiError::Unavailable(format!(
                                "The keys of {} cannot be fetched from {url}: {e}",
                                peer.name
                            )));
                        }
                    },
                }
            }
        };
        let jwk = set
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(peer.name.as_str()))
            .or(set.keys.first())
            .ok_or_else(|| ApiError::Unauthenticated(format!("The JWKS of {} has no key.", peer.name)))?;
        DecodingKey::from_jwk(jwk)
            .map_err(|e| ApiError::Unauthenticated(format!("The JWKS of {} is unusable: {e}", peer.name)))
    }

    /// The peers a request for `model` may go to, best first: those that offered it at
    /// the last exchange and are up, with room before without, then the fastest.
    pub fn routes(&self, model: &str) -> Vec<Route> {
        let coop = self.coop.current();
        let Ok(peers) = self.peers.lock() else {
            return Vec::new();
        };
        let mut routes: Vec<(bool, Duration, Route)> = coop
            .peers
            .values()
            .filter(|p| p.borrow.iter().any(|m| m == model))
            .filter_map(|p| {
                let state = peers.get(&p.name)?;
                let room = *state.models.get(model)?;
                if state.down {
                    return None;
                }
                Some((
                    room == 0,
                    state.rtt.unwrap_or(Duration::MAX),
                    Route {
                        peer: p.name.clone(),
                        engine: state.engine.clone()?,
                        price: price_of(p),
                    },
                ))
            })
            .collect();
        routes.sort_by_key(|(full, rtt, _)| (*full, *rtt));
        routes.into_iter().map(|(_, _, r)| r).collect()
    }

    /// Whether the bylaws let this co-op borrow `model` from some peer (up or not).
    pub fn borrows(&self, model: &str) -> bool {
        self.coop
            .current()
            .peers
            .values()
            .any(|p| p.borrow.iter().any(|m| m == model))
    }

    /// Whether some peer may serve `model` now (asked of every request while federation
    /// is on, so it looks without building the routes).
    pub fn can_serve(&self, model: &str) -> bool {
        let coop = self.coop.current();
        let Ok(peers) = self.peers.lock() else {
            return false;
        };
        coop.peers
            .values()
            .filter(|p| p.borrow.iter().any(|m| m == model))
            .any(|p| {
                peers
                    .get(&p.name)
                    .is_some_and(|s| !s.down && s.engine.is_some() && s.models.contains_key(model))
            })
    }

    /// Models peers offer now that this gateway may borrow, each with the peer a
    /// request for it would go to first.
    pub fn borrowable(&self) -> Vec<(String, String)> {
        let mut models: Vec<String> = self
            .coop
            .current()
            .peers
            .values()
            .flat_map(|p| p.borrow.iter().cloned())
            .collect();
        models.sort();
        models.dedup();
        models
            .into_iter()
            .filter_map(|m| {
                let best = self.routes(&m).into_iter().next()?;
                Some((m, best.peer))
            })
            .collect()
    }

    /// `peer` failed (`why`): skipped until an exchange reaches it again.
    pub fn failed(&self, peer: &str, why: &str) {
        if let Ok(mut peers) = self.peers.lock()
            && let Some(state) = peers.get_mut(peer)
        {
            if !state.down {
                tracing::warn!(peer, why, "peer co-op failed; skipped until it answers again");
            }
            state.down = true;
            state.last_error = Some(why.to_owned());
        }
        metrics::counter!("synco_gateway_peer_failures_total", "peer" => peer.to_owned()).increment(1);
    }

    /// What is known of each peer now.
    pub fn view(&self) -> Vec<PeerView> {
        let Ok(peers) = self.peers.lock() else {
            return Vec::new();
        };
        let mut out: Vec<PeerView> = peers
            .iter()
            .map(|(name, s)| PeerView {
                name: name.clone(),
                url: s.url.clone(),
                up: !s.down && s.rtt.is_some(),
                rtt_ms: s.rtt.map(|d| d.as_secs_f64() * 1000.0),
                models: s.models.clone(),
                last_error: s.last_error.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn engine_for(&self, url: &str) -> Result<Arc<ExternalEngine>, ApiError> {
        let mut options = ExternalOptions::new(format!("{}/federation/v1", url.trim_end_matches('/')));
        options.connect_timeout = Duration::from_secs(1);
        options.request_timeout = self.options.request_timeout;
        // A peer that cannot be reached is skipped for the next one, not retried.
        options.retries = 0;
        Ok(Arc::new(ExternalEngine::new(options)?))
    }

    /// Asks one peer for its catalogue.
    async fn fetch(&self, peer: &synco_crds::Peer) -> Result<(Catalogue, Duration), String> {
        let token = self.token_for(&peer.name).map_err(|e| e.to_string())?;
        let url = format!("{}/federation/catalogue", peer.url.trim_end_matches('/'));
        let started = Instant::now();
        let response = self
            .client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!(
                "{url} answered {status}: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        let catalogue: Catalogue = response.json().await.map_err(|e| format!("{url}: {e}"))?;
        Ok((catalogue, started.elapsed()))
    }

    /// One exchange with every peer in the bylaws (peers no longer there are forgotten).
    pub async fn exchange(&self) {
        let coop = self.coop.current();
        let fetched = futures::future::join_all(
            coop.peers
                .values()
                .map(|p| async move { (p.name.clone(), p.url.clone(), self.fetch(p).await) }),
        )
        .await;
        let Ok(mut peers) = self.peers.lock() else {
            return;
        };
        peers.retain(|name, _| coop.peers.contains_key(name));
        for (name, url, result) in fetched {
            let state = peers.entry(name.clone()).or_default();
            if state.url != url || state.engine.is_none() {
                state.engine = self.engine_for(&url).ok();
                state.url = url;
            }
            match result {
                Ok((catalogue, rtt)) => {
                    if state.down {
                        tracing::info!(peer = %name, "peer co-op answers again");
                    }
                    state.down = false;
                    state.last_error = None;
                    state.rtt = Some(rtt);
                    state.models = catalogue.models.into_iter().map(|m| (m.id, m.room)).collect();
                    metrics::gauge!("synco_gateway_peer_rtt_seconds", "peer" => name.clone())
                        .set(rtt.as_secs_f64());
                }
                Err(why) => {
                    if !state.down {
                        tracing::warn!(peer = %name, %why, "peer catalogue exchange failed");
                    }
                    state.down = true;
                    state.last_error = Some(why);
                }
            }
            metrics::gauge!("synco_gateway_peer_up", "peer" => name.clone()).set(if state.down {
                0.0
            } else {
                1.0
            });
        }
    }

    /// Exchanges catalogues every `exchange_every` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            self.exchange().await;
            self.sweep_shared_replays().await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.options.exchange_every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, borrow: &[&str]) -> synco_crds::Peer {
        serde_json::from_value(serde_json::json!({
            "name": name, "url": format!("http://{name}.example"), "publicKey": "k",
            "borrow": borrow, "tier": 5, "terms": {"reciprocal": {"allowanceTokens": 0}}
        }))
        .unwrap()
    }

    /// Peers with room come first, then the fastest; down peers, peers that did not
    /// offer the model, and peers the bylaws do not borrow it from are left out.
    #[tokio::test]
    async fn routes_prefer_room_then_latency() {
        let mut coop = crate::coop::Coop::default();
        coop.name = "riverside".to_owned();
        coop.peers = [
            peer("near-full", &["m"]),
            peer("far", &["m"]),
            peer("near", &["m"]),
            peer("down", &["m"]),
            peer("silent", &["m"]),
            peer("not-borrowed", &[]),
        ]
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
        let (pem, _) = keys::generate().unwrap();
        let federation = Federation::new(
            CoopHandle::fixed(coop),
            SigningKey::from_pem(pem.as_bytes()).unwrap(),
            FederationOptions::default(),
        )
        .unwrap();
        {
            let mut peers = federation.peers.lock().unwrap();
            for (name, room, rtt_ms, down, offers) in [
                ("near-full", 0, 1, false, true),
                ("far", 3, 40, false, true),
                ("near", 1, 2, false, true),
                ("down", 9, 1, true, true),
                ("silent", 9, 1, false, false),
                ("not-borrowed", 9, 1, false, true),
            ] {
                peers.insert(
                    name.to_owned(),
                    PeerState {
                        url: format!("http://{name}.example"),
                        engine: Some(federation.engine_for(&format!("http://{name}.example")).unwrap()),
                        models: if offers {
                            [("m".to_owned(), room)].into()
                        } else {
                            HashMap::new()
                        },
                        rtt: Some(Duration::from_millis(rtt_ms)),
                        down,
                        last_error: None,
                    },
                );
            }
        }
        let order: Vec<String> = federation.routes("m").into_iter().map(|r| r.peer).collect();
        assert_eq!(order, ["near", "far", "near-full"]);
        assert!(federation.routes("other").is_empty());
        assert!(federation.borrows("m") && !federation.borrows("other"));
        federation.failed("near", "it broke a stream");
        let order: Vec<String> = federation.routes("m").into_iter().map(|r| r.peer).collect();
        assert_eq!(order, ["far", "near-full"]);
        assert_eq!(federation.borrowable(), [("m".to_owned(), "far".to_owned())]);
    }
}
