//! The ComputePool controller: a pool's capacity is the allocatable GPUs of the ready
//! nodes its selector picks. Nodes are watched, so capacity follows nodes joining,
//! leaving, or going unready; models on the pool are watched for the GPUs they claim.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use synco_crds::conditions::{self, READY, reason};
use synco_crds::{ComputePool, ComputePoolStatus, EngineKind, InferenceModel, PoolNode};

use super::list;
use crate::apply;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Measure;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "computepool";

/// Reconciles one ComputePool.
pub async fn reconcile(pool: Arc<ComputePool>, ctx: Arc<Context>) -> Result<Action> {
    let measure = Measure::start(CONTROLLER, &ctx.stats);
    let result = reconcile_pool(&pool, &ctx).await;
    measure.done(&result);
    result
}

/// Retries after a delay that depends on the error.
pub fn error_policy(_: Arc<ComputePool>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "pool reconcile failed");
    Action::requeue(error.requeue_after())
}

/// A label selector string (`a=b,c=d`) for a node selector map.
#[must_use]
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A node's allocatable count of `resource` (whole units; anything else counts as none).
#[must_use]
pub fn allocatable(node: &Node, resource: &str) -> u32 {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(resource))
        .and_then(|q| q.0.parse::<u32>().ok())
        .unwrap_or(0)
}

/// Whether a node's Ready condition is True.
#[must_use]
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pool's nodes and capacity.
#[must_use]
pub fn capacity(pool: &ComputePool, nodes: &[Node], models: &[InferenceModel]) -> ComputePoolStatus {
    let mut pool_nodes: Vec<PoolNode> = nodes
        .iter()
        .map(|n| PoolNode {
            name: n.name_any(),
            gpus: allocatable(n, &pool.spec.gpu_resource),
            ready: node_ready(n),
            contributed_by: n.labels().get(synco_crds::CONTRIBUTED_BY_LABEL).cloned(),
        })
        .collect();
    pool_nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let total: u32 = pool_nodes.iter().filter(|n| n.ready).map(|n| n.gpus).sum();
    let ready = u32::try_from(pool_nodes.iter().filter(|n| n.ready).count()).unwrap_or(u32::MAX);
    let name = pool.name_any();
    let allocated: u32 = models
        .iter()
        .filter(|m| {
            m.spec.engine.kind == EngineKind::Mistralrs && m.spec.pool.as_deref() == Some(name.as_str())
        })
        .map(|m| m.spec.planned_replicas().saturating_mul(m.spec.gpus_per_replica))
        .sum();
    ComputePoolStatus {
        observed_generation: pool.metadata.generation,
        conditions: Vec::new(),
        total_gpus: total,
        allocated_gpus: allocated,
        surplus_gpus: total.saturating_sub(allocated),
        ready_nodes: ready,
        nodes: pool_nodes,
    }
}

async fn reconcile_pool(pool: &ComputePool, ctx: &Context) -> Result<Action> {
    let ns = pool.namespace().ok_or(Error::Unnamed("ComputePool"))?;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let found = nodes
        .list(&ListParams::default().labels(&selector(&pool.spec.node_selector)))
        .await?
        .items;
    let models: Vec<InferenceModel> = list(ctx, &ns).await?;
    let mut status = capacity(pool, &found, &models);
    let current = pool.status.clone().unwrap_or_default();
    status.conditions = current.conditions.clone();
    let message = format!(
        "{} GPUs on {} ready nodes; {} claimed by models",
        status.total_gpus, status.ready_nodes, status.allocated_gpus
    );
    conditions::set_condition(
        &mut status.conditions,
        conditions::condition(
            READY,
            true,
            reason::RECONCILED,
            message,
            pool.metadata.generation,
            ctx.now_time(),
        ),
    );
    let api: Api<ComputePool> = Api::namespaced(ctx.client.clone(), &ns);
    if apply::status(&api, pool, pool.status.as_ref(), &status).await?
        && current.total_gpus != status.total_gpus
    {
        let note = format!(
            "capacity changed from {} to {} GPUs",
            current.total_gpus, status.total_gpus
        );
        ctx.event(pool, false, "CapacityChanged", "Observe", note).await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, gpus: &str, ready: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {
                "allocatable": {"nvidia.com/gpu": gpus, "cpu": "16"},
                "conditions": [{"type": "Ready", "status": ready}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn capacity_counts_gpus_of_ready_nodes_and_claims_of_models() {
        let pool: ComputePool = serde_json::from_value(json!({
            "apiVersion": "synco.coop/v1alpha1", "kind": "ComputePool",
            "metadata": {"name": "gpus", "namespace": "ns"},
            "spec": {"nodeSelector": {"a": "b", "c": "d"}},
        }))
        .unwrap();
        let model: InferenceModel = serde_json::from_value(json!({
            "apiVersion": "synco.coop/v1alpha1", "kind": "InferenceModel",
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {"engine": {"kind": "Mistralrs"}, "source": {"hub": "x"}, "pool": "gpus", "replicas": 3, "gpusPerReplica": 2},
        }))
        .unwrap();
        let status = capacity(
            &pool,
            &[
                node("b", "4", "True"),
                node("a", "2", "False"),
                node("c", "x", "True"),
            ],
            &[model],
        );
        assert_eq!(
            (
                status.total_gpus,
                status.ready_nodes,
                status.allocated_gpus,
                status.surplus_gpus
            ),
            (4, 2, 6, 0)
        );
        assert_eq!(status.nodes[0].name, "a");
        assert_eq!(selector(&pool.spec.node_selector), "a=b,c=d");
    }
}
