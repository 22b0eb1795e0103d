//! Server-side apply of YAML manifests, and of Synco's generated CRDs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt as _};
use serde::Deserialize as _;

use crate::wait::wait_until;

/// The field manager of everything the e2e helpers apply.
pub const FIELD_MANAGER: &str = "synco-e2e";

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The generated CRD YAML: `crds/yaml/*.yaml`.
pub fn crd_dir() -> PathBuf {
    workspace_root().join("crds").join("yaml")
}

/// The example manifests: `crds/examples/*.yaml`.
pub fn examples_dir() -> PathBuf {
    workspace_root().join("crds").join("examples")
}

/// The `*.yaml` and `*.yml` files of a folder, sorted; none if it is absent.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The documents of a multi-document YAML text, as objects (empty documents
/// skipped).
pub fn parse_yaml_documents(text: &str) -> Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc).context("parsing YAML")?;
        if value.is_null() {
            continue;
        }
        objects.push(serde_json::from_value(value).context("not a Kubernetes object")?);
    }
    Ok(objects)
}

/// Server-side applies every document of `text` as `client`, in order.
/// Namespaced objects without a namespace go to `namespace` (required then).
/// Returns the objects as the API server stored them. The first refusal
/// stops and is returned; its message is the API server's (a CEL rule's
/// message, for instance) and can be inspected with [`api_error`].
pub async fn apply_yaml(client: &Client, namespace: Option<&str>, text: &str) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for obj in parse_yaml_documents(text)? {
        // An admission policy whose params (Members) come through an informer can refuse
        // for a moment after the CRDs changed hands (another release took them over):
        // that refusal, and only it, is retried for up to 10 s.
        let mut tries = 0;
        let stored = loop {
            match apply_object(client, namespace, obj.clone()).await {
                Err(e) if tries < 50 && param_informer_lag(&e) => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                other => break other?,
            }
        };
        applied.push(stored);
    }
    Ok(applied)
}

/// Whether `e` is an admission policy not yet seeing its params' kind or objects.
fn param_informer_lag(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("no params found") || text.contains("failed to find resource referenced by paramKind")
}

/// Server-side applies one object (see [`apply_yaml`]).
pub async fn apply_object(
    client: &Client,
    namespace: Option<&str>,
    obj: DynamicObject,
) -> Result<DynamicObject> {
    let types = obj
        .types
        .clone()
        .ok_or_else(|| anyhow!("object {} has no apiVersion/kind", obj.name_any()))?;
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| anyhow!("bad apiVersion/kind: {e}"))?;
    let name = obj
        .metadata
        .name
        .clone()
        .ok_or_else(|| anyhow!("a {} without metadata.name", gvk.kind))?;
    let (resource, caps) = discovery::pinned_kind(client, &gvk).await.with_context(|| {
        format!(
            "the API server does not serve {}/{}",
            types.api_version, types.kind
        )
    })?;
    let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
        let ns = obj
            .metadata
            .namespace
            .as_deref()
            .or(namespace)
            .ok_or_else(|| anyhow!("{} {name} is namespaced but no namespace was given", gvk.kind))?;
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&obj))
        .await
        .map_err(anyhow::Error::from)
        .with_context(|| format!("applying {} {name}", gvk.kind))
}

/// Server-side applies a YAML file (see [`apply_yaml`]).
pub async fn apply_file(client: &Client, namespace: Option<&str>, path: &Path) -> Result<Vec<DynamicObject>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    apply_yaml(client, namespace, &text)
        .await
        .with_context(|| format!("applying {}", path.display()))
}

/// Server-side applies every example manifest (`crds/examples/*.yaml`, in
/// file order) as `client`. Objects that name a namespace are moved to
/// `namespace`, so that tests can each use a namespace of their own.
pub async fn apply_examples(client: &Client, namespace: &str) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for file in yaml_files(&examples_dir())? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for mut obj in parse_yaml_documents(&text).with_context(|| format!("parsing {}", file.display()))? {
            if obj.metadata.namespace.is_some() {
                obj.metadata.namespace = Some(namespace.to_owned());
            }
            applied.push(
                apply_object(client, Some(namespace), obj)
                    .await
                    .with_context(|| format!("applying {}", file.display()))?,
            );
        }
    }
    Ok(applied)
}

/// Whether the generated CRD YAML exists yet.
pub fn crds_available() -> bool {
    yaml_files(&crd_dir()).is_ok_and(|f| !f.is_empty())
}

/// Server-side applies every CRD in `crds/yaml/*.yaml` and waits until the
/// API server serves each (condition `Established`). Returns their names;
/// empty when there is no generated YAML yet. Safe to call from several tests
/// at once: applying the same CRD again changes nothing.
pub async fn apply_crds(client: &Client) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for file in yaml_files(&crd_dir())? {
        for obj in apply_file(client, None, &file).await? {
            if obj
                .types
                .as_ref()
                .is_some_and(|t| t.kind == "CustomResourceDefinition")
            {
                names.push(obj.name_any());
            }
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in &names {
        wait_until(
            &format!("CRD {name} to be established"),
            Duration::from_secs(30),
            || {
                let crds = crds.clone();
                async move {
                    let crd = crds.get(name).await?;
                    Ok(crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True"))
                }
            },
        )
        .await?;
    }
    Ok(names)
}

/// The API server's refusal inside an error from these helpers, if that is
/// what it is: its status code and message.
pub fn api_error(err: &anyhow::Error) -> Option<(u16, String)> {
    err.chain()
        .find_map(|cause| match cause.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) => Some((status.code, status.message.clone())),
            _ => None,
        })
}
