//! Keeping the gateway in step with the co-op's objects as they change: the served
//! models follow the InferenceModels, and the co-op (callers, access, limits) follows
//! everything. Cluster mode is told by its reflectors; standalone mode watches the
//! database's version counter, which a passed proposal (or another replica) bumps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use synco_crds::InferenceModel;
use tokio_util::sync::CancellationToken;

use crate::config::{ModelConfig, load_engine};
use crate::coop::{Coop, CoopObjects, CoopOptions};
use crate::engine::EmbeddedOptions;
use crate::engine::{ModelRegistry, ServedModel};
use crate::governance::db::DbStore;
use crate::governance::store::GovernanceStore;

/// How an InferenceModel is served here, or `None` while it cannot be.
pub type ConfigFor = Arc<dyn Fn(&InferenceModel) -> Option<ModelConfig> + Send + Sync>;

/// The served models, kept in step with the InferenceModels. A model whose configuration
/// did not change keeps its engine (an in-process model is not loaded twice).
pub struct Models {
    pub registry: ModelRegistry,
    loaded: HashMap<String, (ModelConfig, ServedModel)>,
    embedded: EmbeddedOptions,
    config_for: ConfigFor,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Models {
    pub fn new(embedded: EmbeddedOptions, config_for: ConfigFor) -> Self {
        Self {
            registry: ModelRegistry::default(),
            loaded: HashMap::new(),
            embedded,
            config_for,
        }
    }

    /// Serves exactly the servable ones of `models` from now on.
    pub async fn update<'a>(&mut self, models: impl IntoIterator<Item = &'a InferenceModel>) {
        let mut next = BTreeMap::new();
        let mut kept = HashMap::new();
        for model in models {
            let Some(config) = (self.config_for)(model) else {
                tracing::debug!(model = ?model.metadata.name, "not servable here (yet)");
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

/// The co-op from `objects`, or an empty one (nobody admitted) while they are not valid.
pub fn build_coop(objects: &CoopObjects, options: &CoopOptions) -> Coop {
    match Coop::from_objects(objects, options) {
        Ok(coop) => coop,
        Err(e) => {
            tracing::warn!(error = %e, "no usable co-op yet");
            Coop::default()
        }
    }
}

/// Standalone mode: reloads the co-op and the models whenever the database's version
/// changes, until `stop`.
pub async fn follow_database(
    store: DbStore,
    options: CoopOptions,
    coop: tokio::sync::watch::Sender<Arc<Coop>>,
    mut models: Models,
    poll: Duration,
    stop: CancellationToken,
) {
    let mut seen = store.version().await.unwrap_or(0);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
        }
        let version = match store.version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the co-op's version");
                continue;
            }
        };
        if version == seen {
            continue;
        }
        match store.objects().await {
            Ok(objects) => {
                let _ = coop.send(Arc::new(build_coop(&objects, &options)));
                models.update(&objects.models).await;
                seen = version;
                tracing::info!(version, "the co-op changed; limits and models reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "cannot reload the co-op"),
        }
    }
}
