//! Cluster mode: the co-op's resources come from the Kubernetes API server.
//!
//! The gateway serves one co-op namespace. It watches the Cooperative, Members,
//! Customers, ComputePools, InferenceModels and Allocations there (list, then watch,
//! through kube-runtime reflectors) and, whenever one changes, rebuilds the co-op
//! (callers, access, the limits the Allocation in force publishes, prices) and the table
//! of served models. Requests in flight keep what they started with. Governance goes
//! through the API server ([`crate::governance::kube`]); the operator closes proposals.
//!
//! Engines: `External` models are proxied to `spec.engine.url`; `Mistralrs` models to
//! the endpoint the operator publishes in `status.endpoint` (not served until it
//! does); `Embedded` models are loaded into this process once and kept while their
//! configuration is unchanged. Metering and budgets live in `--database-url`
//! (Postgres when there is more than one replica).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use synco_crds::demand::Demands;
use synco_crds::{EngineKind, InferenceModel};
use tokio::sync::Notify;

use crate::cli::ClusterArgs;
use crate::config::{EngineConfig, ModelConfig};
use crate::coop::{CoopHandle, CoopOptions};
use crate::engine::ModelRegistry;
use crate::follow::{Models, build_coop};
use crate::governance::Governance;
use crate::governance::kube::{KubeStore, Watched};
use crate::quota::CoopAdmission;

/// Starts a reflector for `K` in `namespace`; `changed`, if given, is notified on every
/// event.
fn watch<K>(client: &Client, namespace: &str, changed: Option<&Arc<Notify>>) -> Store<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let (reader, writer) = reflector::store();
    let changed = changed.cloned();
    let kind = K::kind(&()).into_owned();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(%kind, error = %e, "watch failed; retrying");
            }
            if let Some(changed) = &changed {
                changed.notify_one();
            }
        }
    });
    reader
}

/// Follows the co-op's resources in `namespace`: every change of the co-op's objects
/// notifies `changed` (Proposals are read on demand and do not).
pub fn start_watches(client: &Client, namespace: &str, changed: &Arc<Notify>) -> Watched {
    Watched {
        coops: watch(client, namespace, Some(changed)),
        members: watch(client, namespace, Some(changed)),
        customers: watch(client, namespace, Some(changed)),
        pools: watch(client, namespace, Some(changed)),
        models: watch(client, namespace, Some(changed)),
        allocations: watch(client, namespace, Some(changed)),
        proposals: watch(client, namespace, None),
    }
}

pub async fn ready(w: &Watched) -> anyhow::Result<()> {
    w.coops.wait_until_ready().await?;
    w.members.wait_until_ready().await?;
    w.customers.wait_until_ready().await?;
    w.pools.wait_until_ready().await?;
    w.models.wait_until_ready().await?;
    w.allocations.wait_until_ready().await?;
    w.proposals.wait_until_ready().await?;
    Ok(())
}

/// The name a mistral.rs server answers to for the one model it serves.
pub const MISTRALRS_DEFAULT_MODEL: &str = "default";

/// How an InferenceModel is served from a cluster, or `None` while it cannot be.
pub fn model_config(model: &InferenceModel) -> Option<ModelConfig> {
    let resource = model.metadata.name.clone()?;
    let name = model.spec.served_name.clone().unwrap_or_else(|| resource.clone());
    let owned_by = model
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "synco".to_owned());
    let external =
        |url: String, replicas: Vec<String>, upstream_model: Option<String>| EngineConfig::External {
            url,
            upstream_model,
            api_key_env: None,
            timeout_seconds: 300,
            retries: 2,
            replicas,
            routing: crate::config::routing_of(&model.spec.engine),
        };
    let engine = match model.spec.engine.kind {
        EngineKind::External => external(
            model.spec.engine.url.clone()?,
            model.spec.engine.replicas.clone(),
            None,
        ),
        // The operator's Deployment: served once it publishes a ready replica, at each
        // replica's own endpoint where it lists them (so that prompts are routed by
        // prefix across them), else at its Service's. The mistral.rs server knows its one
        // model by the path it loaded it from, and as "default".
        EngineKind::Mistralrs => {
            let status = model.status.as_ref()?;
            let default = Some(MISTRALRS_DEFAULT_MODEL.to_owned());
            match status.endpoints.split_first() {
                Some((first, rest)) => external(first.clone(), rest.to_vec(), default),
                None => external(status.endpoint.clone()?, Vec::new(), default),
            }
        }
        EngineKind::Embedded => {
            let source = model.spec.source.as_ref()?;
            match (&source.path, &source.hub) {
                (Some(path), _) => EngineConfig::Embedded {
                    path: Some(path.into()),
                    hub: None,
                    embeddings: !model.spec.capabilities.chat,
                },
                (None, Some(hub)) => EngineConfig::Embedded {
                    path: None,
                    hub: Some(hub.clone()),
                    embeddings: !model.spec.capabilities.chat,
                },
                (None, None) => return None,
            }
        }
    };
    Some(ModelConfig {
        name,
        owned_by,
        engine,
    })
}

/// `cluster`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    // kube, reqwest and sqlx between them enable both of rustls's providers.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await?;
    let db = crate::db::connect(&args.database_url).await?;
    let options = CoopOptions {
        budget_overrides: crate::server::budget_overrides(&args.quota.token_budget)?,
    };
    let changed = Arc::new(Notify::new());
    let watched = Arc::new(start_watches(&client, &args.namespace, &changed));
    tokio::time::timeout(Duration::from_secs(60), ready(&watched))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the co-op's resources in {} could not be listed in 60 s",
                args.namespace
            )
        })??;
    tracing::info!(namespace = %args.namespace, pod = ?args.pod_name, "resources listed");

    let (coop_tx, coop) = CoopHandle::channel(build_coop(&watched.objects(), &options));
    let mut models = Models::new(
        crate::server::embedded_options(&args.server),
        Arc::new(model_config),
    );
    models.update(&watched.objects().models).await;
    let registry = models.registry.clone();
    let store = KubeStore {
        namespace: args.namespace.clone(),
        client: client.clone(),
        watched: watched.clone(),
    };
    let store: Arc<dyn crate::governance::GovernanceStore> = Arc::new(store);
    let governance = Arc::new(Governance::new(
        store.clone(),
        db.clone(),
        crate::governance::system_clock(),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let books = tokio::spawn(crate::books::keep(db.clone(), store, books_every(), stop.clone()));
    let follow = tokio::spawn(async move {
        loop {
            changed.notified().await;
            // Let a burst of events (a kubectl apply of many objects) settle first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let objects = watched.objects();
            let _ = coop_tx.send(Arc::new(build_coop(&objects, &options)));
            models.update(&objects.models).await;
        }
    });
    let result = crate::server::serve_coop(
        registry,
        coop,
        db,
        Some(governance),
        crate::server::CoopArgs {
            identity: &args.identity,
            quota: &args.quota,
            federation: &args.federation,
            server: &args.server,
            demand: Some(DemandLease {
                client: client.clone(),
                namespace: args.namespace.clone(),
                replica: replica_name(args.pod_name.as_deref()),
            }),
        },
    )
    .await;
    follow.abort();
    stop.cancel();
    let _ = books.await;
    result
}

/// Where a gateway replica publishes its models' demand: its Lease in the co-op's
/// namespace ([`synco_crds::demand`]).
#[derive(Clone)]
pub struct DemandLease {
    pub client: Client,
    pub namespace: String,
    /// This replica's name (its pod's).
    pub replica: String,
}

impl Debug for DemandLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemandLease")
            .field("namespace", &self.namespace)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// This replica's name: its pod's, else the host's.
fn replica_name(pod: Option<&str>) -> String {
    pod.map(str::to_owned)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map_or_else(|| "gateway".to_owned(), |h| h.trim().to_owned())
}

/// How often the demand is looked at.
const DEMAND_TICK: Duration = Duration::from_millis(250);
/// A changed demand is written at most this often (unless a model newly has some: a
/// model at zero should start at once).
const DEMAND_WRITE_EVERY: Duration = Duration::from_secs(1);
/// The Lease is renewed at least this often.
const DEMAND_RENEW_EVERY: Duration = Duration::from_secs(5);

/// The demand this replica has: requests in the waiting room, queued and running,
/// per model (idle models left out).
fn demand_now(admission: &CoopAdmission, models: &ModelRegistry) -> Demands {
    let mut out = Demands::new();
    for (model, d) in admission.demand() {
        let entry = out.entry(model).or_default();
        entry.queued_requests = d.queued_requests;
        entry.queued_tokens = d.queued_tokens;
        entry.running_requests = d.running_requests;
        entry.running_tokens = d.running_tokens;
    }
    // A request in the waiting room was admitted first: it holds its engine slot
    // (counted as running) while it waits. Counted once, as waiting.
    for (model, n) in models.waiting() {
        let entry = out.entry(model).or_default();
        entry.waiting_requests = n;
        entry.running_requests = entry.running_requests.saturating_sub(n);
    }
    out.retain(|_, d| !d.is_idle());
    out
}

/// Publishes this replica's demand in its Lease until `stop`: when it changes (at most
/// every [`DEMAND_WRITE_EVERY`], at once when a model newly has some) and at least
/// every [`DEMAND_RENEW_EVERY`]; at `stop`, none.
pub async fn publish_demand(
    lease: DemandLease,
    admission: Arc<CoopAdmission>,
    models: ModelRegistry,
    stop: tokio_util::sync::CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(lease.client.clone(), &lease.namespace);
    let name = synco_crds::demand::lease_name(&lease.replica);
    let mut written: Option<(Demands, tokio::time::Instant)> = None;
    // After a failed write, the next try waits until then.
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(DEMAND_TICK) => false,
            () = stop.cancelled() => true,
        };
        let now = if stopping {
            Demands::new()
        } else {
            demand_now(&admission, &models)
        };
        let due = match &written {
            _ if retry_at.is_some_and(|at| !stopping && tokio::time::Instant::now() < at) => false,
            None => true,
            Some((last, at)) => {
                stopping
                    || at.elapsed() >= DEMAND_RENEW_EVERY
                    || (*last != now && at.elapsed() >= DEMAND_WRITE_EVERY)
                    || now.keys().any(|m| !last.contains_key(m))
            }
        };
        if due {
            match write_demand(&api, &name, &lease.replica, &now).await {
                Ok(()) => {
                    if failing {
                        tracing::info!(lease = %name, "demand published again");
                    }
                    failing = false;
                    retry_at = None;
                    written = Some((now, tokio::time::Instant::now()));
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(lease = %name, error = %e, "cannot publish the demand; retrying");
                    }
                    failing = true;
                    // Retry after the write interval rather than on every tick.
                    retry_at = Some(tokio::time::Instant::now() + DEMAND_WRITE_EVERY);
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// Applies the demand Lease.
async fn write_demand(api: &Api<Lease>, name: &str, replica: &str, demand: &Demands) -> anyhow::Result<()> {
    use synco_crds::demand::{DEMAND_ANNOTATION, DEMAND_LABEL, DEMAND_LEASE_SECONDS};
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now());
    let body = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "labels": { DEMAND_LABEL: "gateway" },
            "annotations": { DEMAND_ANNOTATION: serde_json::to_string(demand)? },
        },
        "spec": {
            "holderIdentity": replica,
            "leaseDurationSeconds": DEMAND_LEASE_SECONDS,
            "renewTime": now,
        },
    });
    api.patch(
        name,
        &kube::api::PatchParams::apply("synco-gateway").force(),
        &kube::api::Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// How often the books follow the operator: [`crate::server::BOOKS_EVERY`], or
/// `SYNCO_BOOKS_EVERY_MS` (the tests wait less).
fn books_every() -> Duration {
    std::env::var("SYNCO_BOOKS_EVERY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(crate::server::BOOKS_EVERY, Duration::from_millis)
}

/// Follows the co-op's resources in `namespace` once listed (the admin commands in
/// cluster mode).
///
/// # Errors
///
/// No client can be made, or the objects cannot be listed in 30 s.
pub async fn listed(namespace: &str) -> anyhow::Result<(Client, Arc<Watched>)> {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await?;
    let watched = Arc::new(start_watches(&client, namespace, &Arc::new(Notify::new())));
    tokio::time::timeout(Duration::from_secs(30), ready(&watched))
        .await
        .map_err(|_| anyhow::anyhow!("the co-op's resources in {namespace} could not be listed in 30 s"))??;
    Ok((client, watched))
}

/// The co-op's objects in `namespace`, as [`listed`] finds them.
///
/// # Errors
///
/// As [`listed`].
pub async fn list_objects(namespace: &str) -> anyhow::Result<crate::coop::CoopObjects> {
    Ok(listed(namespace).await?.1.objects())
}
