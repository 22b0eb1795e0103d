//! Running the gateway: start-up for each mode, serving, and graceful shutdown.
//!
//! Shutdown order: SIGTERM or Ctrl-C cancels the token; `/readyz` turns 503 and the
//! listener stops accepting; in-flight requests and streams get the grace period to
//! finish; the usage sink is flushed; telemetry is flushed last (by the caller).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::collections::BTreeMap;

use crate::app::{Accounts, AppState, Settings};
use crate::auth::Auth;
use crate::auth::jwt::JwtVerifier;
use crate::cli::{
    FederationArgs, IdentityArgs, QuotaArgs, ServeArgs, ServerArgs, StandaloneArgs, TinyModelArgs,
};
use crate::config::{GatewayConfig, load_models};
use crate::coop::{Coop, CoopHandle, CoopOptions};
use crate::engine::EmbeddedOptions;
use crate::engine::ModelRegistry;
use crate::follow::Models;
use crate::governance::Governance;
use crate::governance::closer::Closer;
use crate::governance::db::DbStore;
use crate::governance::store::GovernanceStore;
use crate::metering::{DbUsageSink, SinkOptions};
use crate::quota::ledger::Ledger;
use crate::quota::{CoopAdmission, QuotaOptions};
use crate::router::{router, with_layers};
use crate::tiny_model::{self, TinyModelOptions};

pub(crate) fn embedded_options(args: &ServerArgs) -> EmbeddedOptions {
    EmbeddedOptions {
        force_cpu: args.force_cpu || !cfg!(feature = "cuda"),
        max_num_seqs: args.max_seqs,
    }
}

fn settings(args: &ServerArgs) -> Settings {
    Settings {
        body_limit: args.body_limit_bytes,
        keep_alive: Duration::from_secs(args.keep_alive_seconds),
        session_ttl: Duration::from_secs(args.web_session_seconds),
        usage_flush: Duration::from_secs(args.usage_flush_seconds),
        waiting_room: Duration::from_secs(args.waiting_room_seconds),
    }
}

/// `serve --config`.
pub async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = GatewayConfig::read(&args.config)?;
    let models = load_models(&config.models, &embedded_options(&args.server)).await?;
    let mut state = AppState::new(models);
    state.settings = settings(&args.server);
    serve_until_signal(state, &args.server).await
}

/// `standalone`.
pub async fn run_standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let tiny = if args.tiny_model {
        Some(crate::standalone::TinyModels::ensure(&args.data_dir)?)
    } else {
        None
    };
    let manifests = synco_crds::manifests::load_dir(&args.manifests)
        .map_err(|e| anyhow::anyhow!("cannot read manifests from {}: {e}", args.manifests.display()))?;
    let url = crate::db::url(&args.data_dir, args.database_url.as_deref())?;
    let db = crate::db::connect(&url).await?;
    let store = DbStore::new(db.clone());
    store
        .found(&manifests, jiff::Timestamp::now().as_second())
        .await?;
    store.refresh_allocations().await?;
    let objects = store.objects().await?;
    let options = CoopOptions {
        budget_overrides: budget_overrides(&args.quota.token_budget)?,
    };
    let (coop_tx, coop) = CoopHandle::channel(Coop::from_objects(&objects, &options)?);
    let mut models = Models::new(
        embedded_options(&args.server),
        crate::standalone::config_for(&args.manifests, tiny.as_ref()),
    );
    models.update(&objects.models).await;
    anyhow::ensure!(
        !models.registry.is_empty(),
        "no servable InferenceModel in the co-op (founded from {})",
        args.manifests.display()
    );
    let registry = models.registry.clone();
    let clock = crate::governance::system_clock();
    let governance = Arc::new(Governance::new(
        Arc::new(store.clone()),
        db.clone(),
        clock.clone(),
    ));
    let stop = CancellationToken::new();
    let closer = tokio::spawn(Closer::new(store.clone(), clock).run(POLL, stop.clone()));
    let books = tokio::spawn(crate::books::keep(
        db.clone(),
        Arc::new(store.clone()),
        BOOKS_EVERY,
        stop.clone(),
    ));
    let follower = tokio::spawn(crate::follow::follow_database(
        store,
        options,
        coop_tx,
        models,
        POLL,
        stop.clone(),
    ));
    let result = serve_coop(
        registry,
        coop,
        db,
        Some(governance),
        CoopArgs {
            identity: &args.identity,
            quota: &args.quota,
            federation: &args.federation,
            server: &args.server,
            demand: None,
        },
    )
    .await;
    stop.cancel();
    let _ = tokio::join!(closer, follower, books);
    result
}

/// How often the books look for passed refunds and sample the contributed nodes (a
/// sample bucket is five minutes, so a minute misses none).
pub const BOOKS_EVERY: Duration = Duration::from_secs(60);

/// How often standalone mode looks for changes made by other processes sharing its
/// database (the admin CLI, other replicas).
const POLL: Duration = Duration::from_millis(500);

/// The settings [`serve_coop`] takes from the command line.
#[derive(Debug, Clone)]
pub struct CoopArgs<'a> {
    pub identity: &'a IdentityArgs,
    pub quota: &'a QuotaArgs,
    pub federation: &'a FederationArgs,
    pub server: &'a ServerArgs,
    /// Where to publish the models' demand for the operator (cluster mode).
    pub demand: Option<crate::cluster::DemandLease>,
}

/// Serves the co-op's API (both modes): identity, quotas, priority and metering in
/// `db`, around the models in `models`. Returns when the server has drained.
pub async fn serve_coop(
    models: ModelRegistry,
    coop: CoopHandle,
    db: sea_orm::DatabaseConnection,
    governance: Option<Arc<crate::governance::Governance>>,
    args: CoopArgs<'_>,
) -> anyhow::Result<()> {
    let CoopArgs {
        identity,
        quota,
        federation,
        server,
        demand,
    } = args;
    let jwt = jwt_verifier(identity).await?;
    let mut state = AppState::new(models);
    state.settings = settings(server);
    state.governance = governance;
    let stop_exchange = CancellationToken::new();
    let mut exchange = None;
    if let Some(path) = &federation.federation_key {
        let key = crate::federation::keys::SigningKey::read(path)?;
        // Replicas share a Postgres database: they share the token ids seen there too.
        let shared = (db.get_database_backend() == sea_orm::DbBackend::Postgres).then(|| db.clone());
        let federation = crate::federation::Federation::with_shared_replays(
            coop.clone(),
            key,
            crate::federation::FederationOptions {
                exchange_every: Duration::from_millis(federation.federation_exchange_ms.max(1)),
                overflow_after: Duration::from_millis(federation.federation_overflow_after_ms),
                ..crate::federation::FederationOptions::default()
            },
            shared,
        )?;
        tracing::info!(coop = %federation.name(), peers = coop.current().peers.len(), "federation on");
        exchange = Some(tokio::spawn(federation.clone().run(stop_exchange.clone())));
        state.federation = Some(federation);
    }
    let sink = DbUsageSink::start(
        db.clone(),
        SinkOptions {
            capacity: quota.usage_buffer.max(1),
            ..SinkOptions::default()
        },
    );
    state.usage = Arc::new(sink);
    let ledger = Ledger::new(
        db.clone(),
        quota.budget_slice,
        Duration::from_secs(quota.budget_wait_seconds),
    );
    let admission = Arc::new(CoopAdmission::new(
        coop.clone(),
        ledger.clone(),
        QuotaOptions {
            engine_slots: quota.engine_slots,
            customer_wait: Duration::from_secs(quota.customer_wait_seconds),
            default_max_tokens: quota.default_max_tokens,
            ..QuotaOptions::default()
        },
    ));
    state.admission = admission.clone();
    let publisher = demand.map(|lease| {
        tokio::spawn(crate::cluster::publish_demand(
            lease,
            admission,
            state.models.as_ref().clone(),
            stop_exchange.clone(),
        ))
    });
    state.accounts = Some(Accounts {
        admin_token_sha256: identity
            .admin_token_sha256
            .as_deref()
            .map(crate::routes::admin::parse_sha256)
            .transpose()?,
        coop: coop.clone(),
        db: db.clone(),
        auth: Arc::new(Auth::new(
            coop,
            db,
            jwt,
            Duration::from_secs(identity.key_cache_seconds),
        )),
    });
    let result = serve_until_signal(state, server).await;
    stop_exchange.cancel();
    if let Some(exchange) = exchange {
        let _ = exchange.await;
    }
    if let Some(publisher) = publisher {
        let _ = publisher.await;
    }
    ledger.release_all().await;
    result
}

pub(crate) fn budget_overrides(entries: &[String]) -> anyhow::Result<BTreeMap<String, u64>> {
    entries
        .iter()
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, tokens) = e
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--token-budget wants name=tokens, not {e}"))?;
            Ok((name.to_owned(), tokens.parse()?))
        })
        .collect()
}

async fn jwt_verifier(args: &IdentityArgs) -> anyhow::Result<Option<JwtVerifier>> {
    let (iss, aud) = (args.jwt_issuer.clone(), args.jwt_audience.clone());
    Ok(if let Some(secret) = &args.jwt_hs256_secret {
        anyhow::ensure!(secret.len() >= 32, "the HS256 secret must be at least 32 bytes");
        Some(JwtVerifier::hs256(secret.as_bytes(), iss, aud))
    } else if let Some(path) = &args.jwks_file {
        Some(JwtVerifier::jwks_file(path, iss, aud)?)
    } else if let Some(url) = &args.jwks_url {
        Some(JwtVerifier::jwks_url(url.clone(), iss, aud).await?)
    } else {
        None
    })
}

/// `tiny-model`.
pub fn run_tiny_model(args: &TinyModelArgs) -> anyhow::Result<()> {
    let options = TinyModelOptions {
        seed: args.seed,
        ..TinyModelOptions::default()
    };
    if args.embedding {
        tiny_model::write_embedding(&args.out, &options)?;
    } else {
        tiny_model::write(&args.out, &options)?;
    }
    tracing::info!(path = %args.out.display(), embedding = args.embedding, "tiny model written");
    Ok(())
}

async fn serve_until_signal(mut state: AppState, args: &ServerArgs) -> anyhow::Result<()> {
    state.metrics = crate::telemetry::prometheus();
    let listener = bind(args.listen, args.reuse_port)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    if let Some(path) = &args.port_file {
        write_port_file(path, &addr.to_string())?;
    }
    tracing::info!(%addr, models = state.models.len(), "gateway listening");
    cancel_on_signal(state.shutdown.clone());
    serve(listener, state, Duration::from_secs(args.grace_period_seconds)).await
}

/// Binds `addr` for listening; with `reuse_port`, other sockets of the same user may bind
/// it too (`SO_REUSEPORT`) and the kernel spreads new connections over them.
pub fn bind(addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(reuse_port)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Writes atomically, so a reader never sees a half-written address.
fn write_port_file(path: &Path, addr: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, addr)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Serves until `state.shutdown` is cancelled, then drains for at most `grace`.
pub async fn serve(listener: TcpListener, state: AppState, grace: Duration) -> anyhow::Result<()> {
    let token = state.shutdown.clone();
    let usage = state.usage.clone();
    let flush_limit = state.settings.usage_flush;
    let app = with_layers(router(state));
    // Streams are many small writes: without TCP_NODELAY, Nagle's algorithm holds each
    // SSE chunk until the client's delayed ACK (~40 ms) under load.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(token.clone().cancelled_owned());
    let mut running = tokio::spawn(async move { server.await });
    tokio::select! {
        result = &mut running => result??,
        () = token.cancelled() => {
            tracing::info!(grace_seconds = grace.as_secs(), "draining in-flight requests");
            match tokio::time::timeout(grace, &mut running).await {
                Ok(result) => result??,
                Err(_) => {
                    tracing::warn!("grace period over; closing the remaining connections");
                    running.abort();
                }
            }
        }
    }
    if tokio::time::timeout(flush_limit, usage.flush()).await.is_err() {
        let lost = usage.pending();
        tracing::error!(
            records = lost,
            seconds = flush_limit.as_secs(),
            "the usage buffer could not be written in time; giving up"
        );
        anyhow::bail!(
            "{lost} usage records could not be written to the database within {} s of shutdown",
            flush_limit.as_secs()
        );
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => tracing::info!("Ctrl-C received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
}

/// An app state over `models` with default settings, for tests and benches.
pub fn state_for(models: ModelRegistry) -> AppState {
    AppState::new(models)
}
