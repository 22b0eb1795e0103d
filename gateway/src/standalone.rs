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
//! replaced by a tiny random-weight model generated into the data directory, so the
//! whole path works offline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use synco_crds::{EngineKind, InferenceModel};

use crate::config::{EngineConfig, ModelConfig};
use crate::follow::ConfigFor;

/// How standalone mode serves InferenceModels: in process (or the tiny model in their
/// place), or proxied to an external URL. Relative paths are relative to `manifests`.
pub fn config_for(manifests: &Path, tiny_model: Option<&Path>) -> ConfigFor {
    let manifests = manifests.to_owned();
    let tiny = tiny_model.map(Path::to_owned);
    Arc::new(
        move |model| match model_config(model, &manifests, tiny.as_deref()) {
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
                replicas: model.spec.engine.replicas.clone(),
                routing: crate::config::routing_of(&model.spec.engine),
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
