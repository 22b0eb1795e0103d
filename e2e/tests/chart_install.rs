//! The chart in the real control plane: `helm install` creates every object
//! (the Deployments get pods, run by kwok), `helm upgrade` changes them, and
//! `helm uninstall` removes them but keeps the CRDs and the co-op's resources.

#[path = "chart_support.rs"]
mod support;

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt as _};
use serde_json::Value;
use support::{
    fullname, id, install_chart, manifests_without_namespace, release_manifest, release_name, run_ok,
    scoped_admission_values, uninstall_chart,
};
use synco_e2e::{apply_yaml, cluster, crd_dir, examples_dir, wait_until, with_temp_ns, yaml_files};

/// The object `obj` (from a manifest) as the API server has it, or None.
async fn get_live(client: &Client, namespace: &str, obj: &Value) -> Result<Option<DynamicObject>> {
    let api_version = obj["apiVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("no apiVersion: {obj}"))?;
    let kind = obj["kind"].as_str().ok_or_else(|| anyhow!("no kind: {obj}"))?;
    let name = obj["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("no name: {obj}"))?;
    let gvk = GroupVersionKind::try_from(&kube::api::TypeMeta {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    let (resource, caps) = discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or(namespace);
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    Ok(api.get_opt(name).await?)
}

/// Waits until a Deployment has `replicas` ready pods (kwok reports them Ready).
async fn wait_ready(client: &Client, namespace: &str, name: &str, replicas: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    wait_until(
        &format!("deployment {name} to have {replicas} ready pods"),
        Duration::from_secs(90),
        || {
            let api = api.clone();
            async move {
                let d = api.get(name).await?;
                let status = d.status.unwrap_or_default();
                Ok(d.spec.and_then(|s| s.replicas) == Some(replicas)
                    && status.ready_replicas == Some(replicas)
                    && status.updated_replicas == Some(replicas))
            }
        },
    )
    .await
}

#[tokio::test]
async fn install_upgrade_and_uninstall_keep_the_crds_and_the_coop() -> Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "chart-install", |ns| async move {
        let inner = admin.clone();
        with_temp_ns(&inner, "chart-coop", |coop| async move {
            let release = release_name("install");
            let full = fullname(&release);
            let values = scoped_admission_values(&[&ns, &coop]);
            let installed = install_chart(cluster, &release, &ns, &values, &[]);
            let outcome = async {
                let notes = installed?;
                ensure!(
                    notes.contains("Create your cooperative"),
                    "NOTES.txt not shown:\n{notes}"
                );

                // Every object in the release exists.
                let manifest = release_manifest(cluster, &release, &ns)?;
                ensure!(
                    manifest.len() >= 20,
                    "only {} objects in the release",
                    manifest.len()
                );
                for obj in &manifest {
                    ensure!(
                        get_live(&admin, &ns, obj).await?.is_some(),
                        "{} was not created",
                        id(obj)
                    );
                }
                let crds = yaml_files(&crd_dir())?.len();
                ensure!(
                    manifest
                        .iter()
                        .filter(|o| o["kind"] == "CustomResourceDefinition")
                        .count()
                        == crds
                );

                // The Deployments get their pods, running as the chart's accounts.
                wait_ready(&admin, &ns, &format!("{full}-operator"), 2).await?;
                wait_ready(&admin, &ns, &format!("{full}-gateway"), 2).await?;
                let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
                let accounts: Vec<String> = pods
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .filter_map(|p| p.spec.as_ref().and_then(|s| s.service_account_name.clone()))
                    .collect();
                ensure!(
                    accounts
                        .iter()
                        .filter(|a| **a == format!("{full}-operator"))
                        .count()
                        == 2,
                    "{accounts:?}"
                );
                ensure!(
                    accounts
                        .iter()
                        .filter(|a| **a == format!("{full}-gateway"))
                        .count()
                        == 2,
                    "{accounts:?}"
                );

                // The example co-op, with the admission policies in force.
                // (Retried: the vote policy sees Members through an informer,
                // and refuses votes in a namespace where it has seen none.)
                let coop_yaml = manifests_without_namespace(&examples_dir())?;
                wait_until("the example co-op to apply", Duration::from_secs(30), || {
                    let (admin, coop, coop_yaml) = (admin.clone(), coop.clone(), coop_yaml.clone());
                    async move { apply_yaml(&admin, Some(&coop), &coop_yaml).await.map(|_| true) }
                })
                .await
                .context("applying the example co-op")?;

                // Upgrade: a value changes the objects, the release gets revision 2.
                let mut upgrade = cluster.helm();
                upgrade
                    .args(["upgrade", &release])
                    .arg(support::chart_dir())
                    .args([
                        "--namespace",
                        &ns,
                        "--reuse-values",
                        "--set",
                        "gateway.replicas=3",
                    ]);
                run_ok(upgrade)?;
                wait_ready(&admin, &ns, &format!("{full}-gateway"), 3).await?;
                let mut status = cluster.helm();
                status.args(["status", &release, "--namespace", &ns, "-o", "json"]);
                let status: Value = serde_json::from_str(&run_ok(status)?)?;
                ensure!(status["version"] == 2, "revision {}", status["version"]);

                // Uninstall: the release's objects go, the CRDs and the co-op stay.
                uninstall_chart(cluster, &release, &ns)?;
                for obj in &manifest {
                    let live = get_live(&admin, &ns, obj).await?;
                    if obj["kind"] == "CustomResourceDefinition" {
                        ensure!(live.is_some(), "{} was deleted on uninstall", id(obj));
                    } else {
                        // Objects with foreground finalizers may linger a moment.
                        let gone =
                            live.is_none() || live.is_some_and(|l| l.metadata.deletion_timestamp.is_some());
                        ensure!(gone, "{} survived the uninstall", id(obj));
                    }
                }
                let crd_api: Api<CustomResourceDefinition> = Api::all(admin.clone());
                for crd in crd_api.list(&ListParams::default()).await?.items {
                    if crd.spec.group == "synco.coop" {
                        ensure!(
                            crd.metadata.deletion_timestamp.is_none(),
                            "{} is being deleted",
                            crd.name_any()
                        );
                    }
                }
                for (plural, count) in [
                    ("members", 5),
                    ("delegations", 1),
                    ("proposals", 1),
                    ("allocations", 1),
                ] {
                    let resource = kube::api::ApiResource {
                        group: "synco.coop".into(),
                        version: "v1alpha1".into(),
                        api_version: "synco.coop/v1alpha1".into(),
                        kind: String::new(),
                        plural: plural.into(),
                    };
                    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &coop, &resource);
                    let n = api.list(&ListParams::default()).await?.items.len();
                    ensure!(n == count, "{n} {plural} left after uninstall, expected {count}");
                }
                Ok(())
            }
            .await;
            if outcome.is_err() {
                // Leave no cluster-wide objects behind for other tests.
                let _ = uninstall_chart(cluster, &release, &ns);
            }
            outcome
        })
        .await
    })
    .await
}
