//! ComputePool: GPU capacity found from the nodes a selector picks.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Conditions;

/// GPU capacity: the nodes it selects and their allocatable GPUs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "ComputePool",
    namespaced,
    derive = "PartialEq",
    status = "ComputePoolStatus",
    shortname = "pool",
    category = "synco",
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".status.totalGpus"),
    printcolumn(name = "Allocated", type_ = "integer", json_path = ".status.allocatedGpus"),
    printcolumn(name = "Surplus", type_ = "integer", json_path = ".status.surplusGpus"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.readyNodes")
)]
#[serde(rename_all = "camelCase")]
pub struct ComputePoolSpec {
    /// Labels a node must carry to belong to the pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations that model pods on this pool need (GPU nodes are usually tainted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The extended resource that counts GPUs.
    #[serde(default = "gpu_resource")]
    #[schemars(length(min = 1))]
    pub gpu_resource: String,
}

fn gpu_resource() -> String {
    "nvidia.com/gpu".to_owned()
}

/// One node of the pool as last seen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolNode {
    /// The node name.
    pub name: String,
    /// Allocatable GPUs on the node.
    pub gpus: u32,
    /// Whether the node is Ready.
    pub ready: bool,
    /// The Member that contributed the node (its `synco.coop/contributed-by` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributed_by: Option<String>,
}

/// The node label that names the Member who contributed a node.
pub const CONTRIBUTED_BY_LABEL: &str = "synco.coop/contributed-by";

/// Capacity as the operator last computed it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputePoolStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = super::conditions_merge())]
    pub conditions: Conditions,
    /// GPUs on ready nodes of the pool.
    #[serde(default)]
    pub total_gpus: u32,
    /// GPUs claimed by the co-op's models.
    #[serde(default)]
    pub allocated_gpus: u32,
    /// GPUs left over.
    #[serde(default)]
    pub surplus_gpus: u32,
    /// Ready nodes in the pool.
    #[serde(default)]
    pub ready_nodes: u32,
    /// The nodes of the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<PoolNode>,
}
