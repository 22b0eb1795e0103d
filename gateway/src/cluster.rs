//! Cluster mode: the co-op's resources come from the Kubernetes API server.
//!
//! The gateway serves one co-op namespace. It watches the Cooperative, Members,
//! Customers, InferenceModels and Allocations there (list, then watch, through
//! kube-runtime reflectors) and, whenever one changes, rebuilds the co-op (callers,
//! access, quotas from the allocation in force, prices) and the table of served
//! models. Requests in flight keep what they started with.
//!
//! Engines: `External` models are proxied to `spec.engine.url`; `Mistralrs` models to
//! the endpoint the operator publishes in `status.endpoint` (not served until it
//! does); `Embedded` models are loaded into this process once and kept while their
//! configuration is unchanged. Metering and budgets live in `--database-url`
//! (Postgres when there is more than one replica).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use synco_crds::{Allocation, Cooperative, Customer, EngineKind, InferenceModel, Manifest, Member, Proposal};
use tokio::sync::Notify;

use crate::cli::ClusterArgs;
use crate::config::{EngineConfig, ModelConfig, load_engine};
use crate::coop::{Coop, CoopHandle, CoopOptions};
use crate::engine::embedded::EmbeddedOptions;
use crate::engine::{ModelRegistry, ServedModel};

/// The watched resources of one namespace.
struct Watched {
    coops: Store<Cooperative>,
    members: Store<Member>,
    customers: Store<Customer>,
    models: Store<InferenceModel>,
    allocations: Store<Allocation>,
    proposals: Store<Proposal>,
}

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

impl Watched {
    fn start(client: &Client, namespace: &str, changed: &Arc<Notify>) -> Self {
        Self {
            coops: watch(client, namespace, Some(changed)),
            members: watch(client, namespace, Some(changed)),
            customers: watch(client, namespace, Some(changed)),
            models: watch(client, namespace, Some(changed)),
            allocations: watch(client, namespace, Some(changed)),
            // Read by the governance routes on demand; the co-op does not depend on them.
            proposals: watch(client, namespace, None),
        }
    }

    async fn ready(&self) -> anyhow::Result<()> {
        self.coops.wait_until_ready().await?;
        self.members.wait_until_ready().await?;
        self.customers.wait_until_ready().await?;
        self.models.wait_until_ready().await?;
        self.allocations.wait_until_ready().await?;
        self.proposals.wait_until_ready().await?;
        Ok(())
    }

    /// Everything now, as manifests (the form standalone mode reads from files).
    fn manifests(&self) -> Vec<Manifest> {
        let mut out = Vec::new();
        out.extend(
            self.coops
                .state()
                .iter()
                .map(|o| Manifest::Cooperative(Box::new((**o).clone()))),
        );
        out.extend(
            self.members
                .state()
                .iter()
                .map(|o| Manifest::Member(Box::new((**o).clone()))),
        );
        out.extend(
            self.customers
                .state()
                .iter()
                .map(|o| Manifest::Customer(Box::new((**o).clone()))),
        );
        out.extend(
            self.models
                .state()
                .iter()
                .map(|o| Manifest::InferenceModel(Box::new((**o).clone()))),
        );
        out.extend(
            self.allocations
                .state()
                .iter()
                .map(|o| Manifest::Allocation(Box::new((**o).clone()))),
        );
        out
    }
}

/// How an InferenceModel is served from a cluster, or `None` while it cannot be.
pub fn model_config(model: &InferenceModel) -> Option<ModelConfig> {
    let resource = model.metadata.name.clone()?;
    let name = model.spec.served_name.clone().unwrap_or_else(|| resource.clone());
    let owned_by = model
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "synco".to_owned());
    let external = |url: String| EngineConfig::External {
        url,
        upstream_model: None,
        api_key_env: None,
        timeout_seconds: 300,
        retries: 2,
    };
    let engine = match model.spec.engine.kind {
        EngineKind::External => external(model.spec.engine.url.clone()?),
        // The operator's Deployment and Service; served once it publishes the endpoint.
        EngineKind::Mistralrs => external(model.status.as_ref()?.endpoint.clone()?),
        EngineKind::Embedded => {
            let source = model.spec.source.as_ref()?;
            match (&source.path, &source.hub) {
                (Some(path), _) => EngineConfig::Embedded {
                    path: Some(path.into()),
                    hub: None,
                },
                (None, Some(hub)) => EngineConfig::Embedded {
                    path: None,
                    hub: Some(hub.clone()),
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

/// Keeps the served models in step with the InferenceModels.
struct Models {
    registry: ModelRegistry,
    loaded: HashMap<String, (ModelConfig, ServedModel)>,
    embedded: EmbeddedOptions,
}

impl Models {
    async fn update(&mut self, models: &[Arc<InferenceModel>]) {
        let mut next = BTreeMap::new();
        let mut kept = HashMap::new();
        for model in models {
            let Some(config) = model_config(model) else {
                tracing::debug!(model = ?model.metadata.name, "not servable yet");
                continue;
            };
            let served = match self.loaded.remove(&config.name) {
                Some((old, served)) if old == config => served,
                _ => match load_engine(&config, &self.embedded).await {
                    Ok(engine) => ServedModel {
                        card: ModelRegistry::card(&config.name, &config.owned_by),
                        engine,
                    },
                    Err(e) => {
                        tracing::error!(model = %config.name, error = %e, "cannot serve the model");
                        continue;
                    }
                },
            };
            next.insert(config.name.clone(), served.clone());
            kept.insert(config.name.clone(), (config, served));
        }
        tracing::info!(models = ?next.keys().collect::<Vec<_>>(), "serving");
        self.loaded = kept;
        self.registry.replace(next);
    }
}

fn build_coop(manifests: &[Manifest], options: &CoopOptions) -> Coop {
    match Coop::from_manifests(manifests, options) {
        Ok(coop) => coop,
        Err(e) => {
            // Nobody is admitted until the namespace holds a valid co-op.
            tracing::warn!(error = %e, "no usable co-op in the namespace yet");
            Coop::default()
        }
    }
}

/// `cluster`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    // kube, reqwest and sqlx between them enable both of rustls's providers.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await?;
    let db = crate::db::connect(&args.database_url).await?;
    let options = CoopOptions {
        caller_concurrency: args.quota.caller_concurrency,
        budget_overrides: crate::server::budget_overrides(&args.quota.token_budget)?,
    };
    let changed = Arc::new(Notify::new());
    let watched = Watched::start(&client, &args.namespace, &changed);
    tokio::time::timeout(Duration::from_secs(60), watched.ready())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the co-op's resources in {} could not be listed in 60 s",
                args.namespace
            )
        })??;
    tracing::info!(namespace = %args.namespace, pod = ?args.pod_name, "resources listed");

    let (coop_tx, coop) = CoopHandle::channel(build_coop(&watched.manifests(), &options));
    let mut models = Models {
        registry: ModelRegistry::default(),
        loaded: HashMap::new(),
        embedded: crate::server::embedded_options(&args.server),
    };
    models.update(&watched.models.state()).await;
    let registry = models.registry.clone();
    let governance = Arc::new(crate::governance::Governance {
        namespace: args.namespace.clone(),
        proposals: watched.proposals.clone(),
        votes: Api::namespaced(client.clone(), &args.namespace),
    });
    let follow = tokio::spawn(async move {
        loop {
            changed.notified().await;
            // Let a burst of events (a kubectl apply of many objects) settle first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = coop_tx.send(Arc::new(build_coop(&watched.manifests(), &options)));
            models.update(&watched.models.state()).await;
        }
    });
    let result = crate::server::serve_coop(
        registry,
        coop,
        db,
        Some(governance),
        &args.identity,
        &args.quota,
        &args.server,
    )
    .await;
    follow.abort();
    result
}
