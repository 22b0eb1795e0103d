//! Standalone mode: the gateway alone, with no cluster.
//!
//! The co-op's manifests (the same YAML as the custom resources) are read from a
//! folder and stored in SQLite under the data directory; the InferenceModels decide
//! what is served. Models whose engine is `Mistralrs` (pods, in a cluster) or
//! `Embedded` run in this process; `External` ones are proxied.
//!
//! With `--tiny-model`, every in-process model is replaced by a tiny random-weight
//! model generated into the data directory, so the whole path works offline.

use std::path::{Path, PathBuf};

use synco_crds::{EngineKind, InferenceModel, Manifest};

use crate::config::{EngineConfig, ModelConfig};

/// What was read from the manifests folder.
#[derive(Debug, Default)]
pub struct Loaded {
    pub models: Vec<ModelConfig>,
    /// `(kind, name, object)` of every manifest, for the database.
    pub objects: Vec<(String, String, serde_json::Value)>,
    /// The resources themselves, for identity, access and quotas.
    pub manifests: Vec<Manifest>,
}

/// Reads the folder and derives the models to serve.
pub fn load(manifests: &Path, tiny_model: Option<&Path>) -> anyhow::Result<Loaded> {
    let all = synco_crds::manifests::load_dir(manifests)
        .map_err(|e| anyhow::anyhow!("cannot read manifests from {}: {e}", manifests.display()))?;
    let mut loaded = Loaded::default();
    for manifest in &all {
        let value = manifest.to_value()?;
        let name = value
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        loaded.objects.push((manifest.kind().to_owned(), name, value));
        if let Manifest::InferenceModel(model) = manifest
            && let Some(config) = model_config(model, manifests, tiny_model)?
        {
            loaded.models.push(config);
        }
    }
    let count = |kind: &str| loaded.objects.iter().filter(|(k, _, _)| k == kind).count();
    tracing::info!(
        folder = %manifests.display(),
        cooperatives = count("Cooperative"),
        members = count("Member"),
        customers = count("Customer"),
        models = count("InferenceModel"),
        allocations = count("Allocation"),
        "manifests loaded"
    );
    loaded.manifests = all;
    anyhow::ensure!(
        !loaded.models.is_empty(),
        "no servable InferenceModel in {}",
        manifests.display()
    );
    Ok(loaded)
}

fn model_config(
    model: &InferenceModel,
    manifests: &Path,
    tiny_model: Option<&Path>,
) -> anyhow::Result<Option<ModelConfig>> {
    let resource = model.metadata.name.clone().unwrap_or_default();
    let name = model.spec.served_name.clone().unwrap_or_else(|| resource.clone());
    if !model.spec.capabilities.chat {
        tracing::warn!(model = %name, "skipped: only chat models are served in-process so far");
        return Ok(None);
    }
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
            }
        }
        EngineKind::Embedded | EngineKind::Mistralrs => {
            if let Some(tiny) = tiny_model {
                tracing::warn!(
                    model = %name,
                    configured = ?model.spec.source,
                    tiny = %tiny.display(),
                    "serving the tiny random-weight model in place of the configured source (--tiny-model)"
                );
                EngineConfig::Embedded {
                    path: Some(tiny.to_owned()),
                    hub: None,
                }
            } else {
                let source = model.spec.source.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("InferenceModel {resource}: an in-process model needs a source")
                })?;
                match (&source.path, &source.hub) {
                    (Some(path), _) => EngineConfig::Embedded {
                        path: Some(resolve(manifests, path)),
                        hub: None,
                    },
                    (None, Some(hub)) => EngineConfig::Embedded {
                        path: None,
                        hub: Some(hub.clone()),
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
