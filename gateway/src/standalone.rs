//! Standalone mode: the gateway alone, with no cluster.
//!
//! The co-op's manifests (the same YAML as the custom resources) found the co-op in the
//! database on the first start; after that the database (SQLite under the data directory
//! by default) is the truth, and passed proposals change it without a restart. The
//! gateway keeps governance there too: members propose and vote through the API, and a
//! task closes each proposal at its deadline (`crate::governance::closer`).
//!
//! Models whose engine is `Mistralrs` (pods, in a cluster) or `Embedded` run in this
//! process; `External` ones are proxied. With `--tiny-model`, every in-process model is
//! replaced by a tiny random-weight model generated into the data directory (a chat
//! model, or an embedding model for those whose capabilities are embeddings only), so
//! the whole path works offline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use synco_crds::{EngineKind, InferenceModel};

use crate::config::{EngineConfig, ModelConfig};
use crate::follow::ConfigFor;

/// The tiny random-weight models served in place of in-process ones (`--tiny-model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TinyModels {
    /// A chat model (Llama architecture).
    pub chat: PathBuf,
    /// An embedding model (Qwen3-Embedding architecture).
    pub embedding: PathBuf,
}

impl TinyModels {
    /// Writes both under `dir` when missing: `tiny-model` and `tiny-embedding-model`.
    pub fn ensure(dir: &Path) -> anyhow::Result<Self> {
        let options = crate::tiny_model::TinyModelOptions::default();
        let tiny = Self {
            chat: dir.join("tiny-model"),
            embedding: dir.join("tiny-embedding-model"),
        };
        if !crate::tiny_model::exists(&tiny.chat) {
            crate::tiny_model::write(&tiny.chat, &options)?;
            tracing::info!(path = %tiny.chat.display(), "tiny model written");
        }
        if !crate::tiny_model::embedding_exists(&tiny.embedding) {
            crate::tiny_model::write_embedding(&tiny.embedding, &options)?;
            tracing::info!(path = %tiny.embedding.display(), "tiny embedding model written");
        }
        Ok(tiny)
    }
}

/// How standalone mode serves InferenceModels: in process (or the tiny model in their
/// place), or proxied to an external URL. Relative paths are relative to `manifests`.
pub fn config_for(manifests: &Path, tiny_models: Option<&TinyModels>) -> ConfigFor {
    let manifests = manifests.to_owned();
    let tiny = tiny_models.cloned();
    Arc::new(
        move |model| match model_config(model, &manifests, tiny.as_ref()) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the model");
                None
            }
        },
    )
}

fn model_config(
    model: &InferenceModel,
    manifests: &Path,
    tiny_models: Option<&TinyModels>,
) -> anyhow::Result<Option<ModelConfig>> {
    let resource = model.metadata.name.clone().unwrap_or_default();
    let name = model.spec.served_name.clone().unwrap_or_else(|| resource.clone());
    let capabilities = &model.spec.capabilities;
    if !capabilities.chat && !capabilities.embeddings {
        tracing::warn!(model = %name, "skipped: the model serves neither chat nor embeddings");
        return Ok(None);
    }
    // In process, a model is one or the other: a chat model, or (chat off) an
    // embedding model.
    let embeddings = !capabilities.chat;
    let engine = match model.spec.engine.kind {
        EngineKind::External => {
            let url = model.spec.engine.url.clone().ok_or_else(|| {
                anyhow::anyhow!("InferenceModel {resource}: an external engine needs a url")
            })?;
            EngineConfig::External {
                url,
                upstream_model: None,
                api_key_env: None,
                timeout_seconds: 300,
                retries: 2,
                replicas: model.spec.engine.replicas.clone(),
                routing: crate::config::routing_of(&model.spec.engine),
            }
        }
        EngineKind::Embedded | EngineKind::Mistralrs => {
            if let Some(tiny) = tiny_models {
                let tiny = if embeddings { &tiny.embedding } else { &tiny.chat };
                tracing::warn!(
                    model = %name,
                    configured = ?model.spec.source,
                    tiny = %tiny.display(),
                    "serving the tiny random-weight model in place of the configured source (--tiny-model)"
                );
                EngineConfig::Embedded {
                    path: Some(tiny.clone()),
                    hub: None,
                    embeddings,
                }
            } else {
                let source = model.spec.source.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("InferenceModel {resource}: an in-process model needs a source")
                })?;
                match (&source.path, &source.hub) {
                    (Some(path), _) => EngineConfig::Embedded {
                        path: Some(resolve(manifests, path)),
                        hub: None,
                        embeddings,
                    },
                    (None, Some(hub)) => EngineConfig::Embedded {
                        path: None,
                        hub: Some(hub.clone()),
                        embeddings,
                    },
                    (None, None) => anyhow::bail!(
                        "InferenceModel {resource}: standalone mode serves a hub id or a local path, \
                         not a volume"
                    ),
                }
            }
        }
    };
    Ok(Some(ModelConfig {
        name,
        owned_by: model
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "synco".to_owned()),
        engine,
    }))
}

/// A relative model path is relative to the manifests folder.
fn resolve(manifests: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        manifests.join(path)
    }
}
