//! Throwaway namespaces: one per test, dumped when the test fails, deleted
//! afterwards.

use std::fmt::Write as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::FutureExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Client, ResourceExt as _};

use crate::wait::wait_until;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Label put on every namespace [`with_temp_ns`] creates.
pub const TEMP_NS_LABEL: &str = "synco.coop/e2e-temp";

/// Runs `test` with the name of a fresh namespace, then deletes the namespace
/// and waits until it is gone (so that its pods give their GPUs back before
/// the next test).
///
/// If `test` returns an error or panics, everything in the namespace (every
/// listable namespaced resource, CRDs' included, and its Events) is printed
/// to stderr and written to `RUN_DIR/dumps/NAMESPACE.yaml` first. A panic is
/// then resumed, so assertions inside `test` fail the test as usual.
pub async fn with_temp_ns<T, E, F, Fut>(client: &Client, prefix: &str, test: F) -> Result<T, E>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display + From<anyhow::Error>,
{
    let name = temp_ns_name(prefix);
    create_namespace(client, &name).await.map_err(E::from)?;

    let outcome = AssertUnwindSafe(test(name.clone())).catch_unwind().await;
    let failed = match &outcome {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("returned an error: {e}")),
        Err(_) => Some("panicked".to_owned()),
    };
    if let Some(why) = failed {
        eprintln!("--- test in namespace {name} {why}; its contents follow");
        match dump_namespace(client, &name).await {
            Ok(dump) => {
                eprintln!("{dump}");
                if let Ok(cluster) = crate::cluster() {
                    let dir = cluster.run_dir().join("dumps");
                    if std::fs::create_dir_all(&dir).is_ok() {
                        let _ = std::fs::write(dir.join(format!("{name}.yaml")), &dump);
                    }
                }
            }
            Err(e) => eprintln!("(could not dump namespace {name}: {e:#})"),
        }
    }
    let deleted = delete_namespace(client, &name, Duration::from_secs(90)).await;
    match outcome {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(result) => {
            let value = result?;
            deleted.map_err(E::from)?;
            Ok(value)
        }
    }
}

/// A namespace name unique in this cluster: the prefix, this process's id
/// and a counter.
pub fn temp_ns_name(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut name: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let _ = write!(name, "-{}-{n}", std::process::id());
    name.trim_start_matches('-').to_owned()
}

pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(TEMP_NS_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Deletes a namespace and waits up to `timeout` until it is gone.
pub async fn delete_namespace(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting namespace {name}")),
    }
    wait_until(&format!("namespace {name} to be deleted"), timeout, || {
        let api = api.clone();
        async move { Ok(api.get_opt(name).await?.is_none()) }
    })
    .await
}

/// Everything listable in a namespace, as YAML documents, Events last.
pub async fn dump_namespace(client: &Client, namespace: &str) -> Result<String> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .context("API discovery")?;
    let mut out = String::new();
    let mut events = String::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            // events.k8s.io repeats core Events.
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || resource.group == "events.k8s.io"
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
            let Ok(list) = api.list(&ListParams::default()).await else {
                continue;
            };
            for mut obj in list.items {
                obj.metadata.managed_fields = None;
                if obj.types.is_none() {
                    obj.types = Some(kube::api::TypeMeta {
                        api_version: resource.api_version.clone(),
                        kind: resource.kind.clone(),
                    });
                }
                let yaml = serde_yaml_ng::to_string(&obj)
                    .with_context(|| format!("serialising {} {}", resource.kind, obj.name_any()))?;
                let target = if resource.kind == "Event" {
                    &mut events
                } else {
                    &mut out
                };
                let _ = writeln!(target, "---\n{yaml}");
            }
        }
    }
    out.push_str(&events);
    Ok(out)
}
