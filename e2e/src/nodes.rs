//! Simulated nodes a test brings for itself: kwok runs them, and their taint keeps
//! every pod but the test's own off them.

use anyhow::Result;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// A kwok node `name` with `labels`, tainted `key=value:NoSchedule`, with `capacity`
/// (also allocatable) and, if given, `address` as its InternalIP (which pods on its
/// host network get as theirs).
pub async fn kwok_node(
    admin: &Client,
    name: &str,
    mut labels: Value,
    (key, value): (&str, &str),
    capacity: Value,
    address: Option<&str>,
) -> Result<()> {
    labels["kubernetes.io/hostname"] = json!(name);
    labels["type"] = json!("kwok");
    let mut status = json!({"capacity": capacity, "allocatable": capacity});
    if let Some(ip) = address {
        status["addresses"] = json!([{"type": "InternalIP", "address": ip}]);
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": labels,
        },
        "spec": {"taints": [{"key": key, "value": value, "effect": "NoSchedule"}]},
        "status": status,
    }))?;
    let nodes: Api<Node> = Api::all(admin.clone());
    nodes.create(&PostParams::default(), &node).await?;
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    Ok(())
}
