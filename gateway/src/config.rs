//! What the gateway serves: the models and their engines.
//!
//! In `serve` mode this comes from a YAML file; in standalone mode it is derived from
//! the co-op's InferenceModel manifests. Unknown keys are errors, so a typo is caught
//! at start-up rather than silently ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::external::{ExternalEngine, ExternalOptions};
use crate::engine::{EmbeddedOptions, ModelSource};
use crate::engine::{Engine, ModelRegistry};

/// The `serve --config` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Models to serve, by the name callers use.
    pub models: Vec<ModelConfig>,
}

/// One served model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelConfig {
    /// The `model` callers send.
    pub name: String,
    /// Shown as `owned_by` in `/v1/models`.
    #[serde(default = "default_owner")]
    pub owned_by: String,
    pub engine: EngineConfig,
}

fn default_owner() -> String {
    "synco".to_owned()
}

/// Which engine serves a model, and how to reach or load it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum EngineConfig {
    /// mistral.rs in this process. Exactly one of `path` and `hub`.
    Embedded {
        #[serde(default)]
        path: Option<PathBuf>,
        #[serde(default)]
        hub: Option<String>,
        /// An embedding model (sentence-transformers layout), serving `/v1/embeddings`.
        #[serde(default)]
        embeddings: bool,
    },
    /// An OpenAI-compatible upstream.
    External {
        /// Base URL including `/v1`.
        url: String,
        /// The upstream's name for the model, when it differs.
        #[serde(default)]
        upstream_model: Option<String>,
        /// Environment variable holding the upstream's API key.
        #[serde(default)]
        api_key_env: Option<String>,
        #[serde(default = "default_timeout")]
        timeout_seconds: u64,
        #[serde(default = "default_retries")]
        retries: u32,
        /// Further base URLs serving the same model (its replicas).
        #[serde(default)]
        replicas: Vec<String>,
        /// How requests are spread over `url` and the replicas.
        #[serde(default)]
        routing: crate::engine::replicas::Routing,
    },
}

fn default_timeout() -> u64 {
    300
}

fn default_retries() -> u32 {
    2
}

impl GatewayConfig {
    /// Reads and checks the config file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let config: Self = serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config {} is invalid: {e}", path.display()))?;
        Ok(config)
    }
}

/// Loads every engine. A model that cannot be loaded stops the start-up with a
/// message naming it: serving without it would answer its callers with 404s.
pub async fn load_models(
    models: &[ModelConfig],
    embedded: &EmbeddedOptions,
) -> anyhow::Result<ModelRegistry> {
    let mut registry = ModelRegistry::default();
    for model in models {
        let engine = load_engine(model, embedded).await?;
        registry.insert(model.name.clone(), &model.owned_by, engine);
    }
    Ok(registry)
}

/// mistral.rs in this process: a text model, or an embedding model.
#[cfg(feature = "embedded")]
async fn embedded_engine(
    name: &str,
    source: ModelSource,
    embeddings: bool,
    options: &EmbeddedOptions,
) -> anyhow::Result<Arc<dyn Engine>> {
    let failed = |e: crate::engine::embedded::LoadError| anyhow::anyhow!("model {name}: {e}");
    Ok(if embeddings {
        Arc::new(
            crate::engine::embedder::EmbeddingEngine::load(source, options)
                .await
                .map_err(failed)?,
        )
    } else {
        Arc::new(
            crate::engine::embedded::EmbeddedEngine::load(source, options)
                .await
                .map_err(failed)?,
        )
    })
}

/// A build without the in-process engine (the fuzz targets' and a gateway that only
/// fronts external engines) refuses an embedded model with the reason.
#[cfg(not(feature = "embedded"))]
async fn embedded_engine(
    name: &str,
    source: ModelSource,
    _embeddings: bool,
    _options: &EmbeddedOptions,
) -> anyhow::Result<Arc<dyn Engine>> {
    anyhow::bail!(
        "model {name} ({source}) runs in process, but this gateway was built without the `embedded` feature (mistral.rs): serve it from an external engine or build with the default features"
    )
}

/// The routing of an InferenceModel's replicas.
pub fn routing_of(
    engine: &synco_crds::resources::inference_model::ModelEngine,
) -> crate::engine::replicas::Routing {
    match engine.routing {
        Some(synco_crds::EngineRouting::LeastLoad) => crate::engine::replicas::Routing::LeastLoad,
        Some(synco_crds::EngineRouting::PrefixHash) | None => crate::engine::replicas::Routing::Prefix,
    }
}

/// Loads one model's engine.
pub async fn load_engine(model: &ModelConfig, embedded: &EmbeddedOptions) -> anyhow::Result<Arc<dyn Engine>> {
    Ok(match &model.engine {
        EngineConfig::Embedded {
            path,
            hub,
            embeddings,
        } => {
            let source = match (path, hub) {
                (Some(path), None) => ModelSource::Local(path.clone()),
                (None, Some(hub)) => ModelSource::Hub(hub.clone()),
                _ => anyhow::bail!(
                    "model {}: an embedded engine needs exactly one of path and hub",
                    model.name
                ),
            };
            embedded_engine(&model.name, source, *embeddings, embedded).await?
        }
        EngineConfig::External {
            url,
            upstream_model,
            api_key_env,
            timeout_seconds,
            retries,
            replicas,
            routing,
        } => {
            let mut options = ExternalOptions::new(url.clone());
            options.upstream_model.clone_from(upstream_model);
            options.api_key = match api_key_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("model {}: environment variable {var} is not set", model.name)
                })?),
                None => None,
            };
            options.request_timeout = Duration::from_secs(*timeout_seconds);
            options.retries = *retries;
            if !replicas.is_empty() {
                let mut engines = Vec::new();
                for base in std::iter::once(url).chain(replicas) {
                    let mut replica = options.clone();
                    replica.base_url.clone_from(base);
                    let engine = ExternalEngine::new(replica).map_err(|e| anyhow::anyhow!("{e}"))?;
                    engines.push((base.clone(), Arc::new(engine)));
                }
                tracing::info!(model = %model.name, replicas = engines.len(), ?routing, "external engine replicas");
                let replicas = crate::engine::replicas::Replicas::new(&model.name, engines, *routing);
                return Ok(Arc::new(crate::engine::replicas::ReplicatedEngine(replicas)));
            }
            tracing::info!(model = %model.name, %url, "external engine");
            Arc::new(ExternalEngine::new(options).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_engines() {
        let config: GatewayConfig = serde_yaml_ng::from_str(
            "models:\n\
             - name: tiny\n  engine: {kind: embedded, path: ./tiny}\n\
             - name: peer\n  engine: {kind: external, url: 'http://127.0.0.1:9/v1', upstreamModel: m}\n",
        )
        .unwrap();
        assert_eq!(config.models.len(), 2);
        assert!(matches!(
            &config.models[1].engine,
            EngineConfig::External { upstream_model: Some(m), timeout_seconds: 300, .. } if m == "m"
        ));
    }

    #[test]
    fn typos_are_errors() {
        let err = serde_yaml_ng::from_str::<GatewayConfig>(
            "models:\n- name: tiny\n  engine: {kind: embedded, pth: ./tiny}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("pth"), "{err}");
    }
}
