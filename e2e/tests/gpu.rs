//! Scheduling on the simulated GPU nodes: a GPU request lands on a GPU node
//! with free GPUs and runs; one that no node has enough free GPUs for stays
//! Pending; pods without the GPU toleration stay off GPU nodes.
//!
//! Only one test in this binary asks for GPUs, so tests running in parallel
//! do not take each other's.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use synco_e2e::{GPU_PRESENT_LABEL, GPU_PRODUCT_LABEL, GPU_RESOURCE, cluster, wait_until, with_temp_ns};

fn deployment(
    name: &str,
    replicas: u32,
    gpus: u32,
    node_selector: &BTreeMap<String, String>,
) -> anyhow::Result<Deployment> {
    let mut pod_spec = json!({
        "nodeSelector": node_selector,
        "containers": [{
            "name": "engine",
            // Never pulled: kwok only pretends to run containers.
            "image": "registry.invalid/synco/engine:e2e",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        }],
    });
    if gpus > 0 {
        pod_spec["tolerations"] =
            json!([{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]);
        pod_spec["containers"][0]["resources"]["limits"] = json!({ GPU_RESOURCE: gpus.to_string() });
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }))?)
}

async fn pods_of(client: &Client, ns: &str, app: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items)
}

fn running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.clone().unwrap_or_default();
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn unschedulable_message(pod: &Pod) -> Option<String> {
    pod.status
        .clone()
        .unwrap_or_default()
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.unwrap_or_default())
}

async fn wait_running(client: &Client, ns: &str, app: &str, replicas: usize) -> anyhow::Result<Vec<Pod>> {
    wait_until(
        &format!("{replicas} pod(s) of {app} Running and Ready"),
        Duration::from_secs(60),
        || async move {
            let pods = pods_of(client, ns, app).await?;
            Ok(pods.len() == replicas && pods.iter().all(running_and_ready))
        },
    )
    .await?;
    pods_of(client, ns, app).await
}

#[tokio::test]
async fn gpu_requests_run_on_free_gpus_and_the_rest_stay_pending() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    // The biggest GPU node, so that the request that cannot fit afterwards is
    // one its capacity would hold but its free GPUs do not.
    let big = cluster
        .gpu_nodes()
        .max_by_key(|n| n.gpus)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no GPU node"))?;
    let product = big.gpu_product.clone().unwrap_or_default();
    let most_elsewhere = cluster
        .gpu_nodes()
        .filter(|n| n.name != big.name)
        .map(|n| n.gpus)
        .max()
        .unwrap_or(0);
    assert!(
        big.gpus > most_elsewhere + 1,
        "the node layout no longer allows this test: {:?}",
        cluster.info().nodes
    );

    with_temp_ns(&admin.clone(), "gpu", |ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
        let on_big = BTreeMap::from([(GPU_PRODUCT_LABEL.to_owned(), product.clone())]);

        // One GPU: scheduled onto the GPU node, reported Running and Ready.
        deployments
            .create(&PostParams::default(), &deployment("one-gpu", 1, 1, &on_big)?)
            .await?;
        let pods = wait_running(&admin, &ns, "one-gpu", 1).await?;
        let node_name = pods[0]
            .spec
            .clone()
            .unwrap_or_default()
            .node_name
            .unwrap_or_default();
        assert_eq!(node_name, big.name);
        let node = Api::<Node>::all(admin.clone()).get(&node_name).await?;
        assert_eq!(
            node.labels().get(GPU_PRESENT_LABEL).map(String::as_str),
            Some("true")
        );

        // All the GPUs the node has: more than remain free on it (one is
        // taken), more than any other node has at all. It must stay Pending.
        deployments
            .create(
                &PostParams::default(),
                &deployment("all-gpus", 1, big.gpus, &BTreeMap::new())?,
            )
            .await?;
        let (client, namespace) = (&admin, ns.as_str());
        wait_until(
            "all-gpus to be found unschedulable",
            Duration::from_secs(30),
            || async move {
                let pods = pods_of(client, namespace, "all-gpus").await?;
                Ok(pods.len() == 1 && unschedulable_message(&pods[0]).is_some())
            },
        )
        .await?;
        let pending = pods_of(&admin, &ns, "all-gpus").await?;
        let message = unschedulable_message(&pending[0]).unwrap_or_default();
        assert!(
            message.contains(&format!("Insufficient {GPU_RESOURCE}")),
            "{message}"
        );
        // And it stays so.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let pending = pods_of(&admin, &ns, "all-gpus").await?;
        let status = pending[0].status.clone().unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(pending[0].spec.clone().unwrap_or_default().node_name, None);

        // The first one still runs.
        assert!(
            pods_of(&admin, &ns, "one-gpu")
                .await?
                .iter()
                .all(running_and_ready)
        );
        Ok::<_, anyhow::Error>(())
    })
    .await
}

#[tokio::test]
async fn pods_without_the_gpu_toleration_stay_off_gpu_nodes() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let gpu_nodes: Vec<String> = cluster.gpu_nodes().map(|n| n.name.clone()).collect();
    with_temp_ns(&admin.clone(), "cpu", |ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
        deployments
            .create(
                &PostParams::default(),
                &deployment("web", 6, 0, &BTreeMap::new())?,
            )
            .await?;
        let pods = wait_running(&admin, &ns, "web", 6).await?;
        for pod in &pods {
            let node = pod.spec.clone().unwrap_or_default().node_name.unwrap_or_default();
            assert!(
                !gpu_nodes.contains(&node),
                "{} landed on GPU node {node}",
                pod.name_any()
            );
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
}
