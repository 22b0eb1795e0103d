//! The InferenceModel and ComputePool controllers on simulated GPU nodes: a mistralrs
//! model gets a Deployment and a Service and becomes Ready; removing a GPU node lowers
//! the pool's capacity, the model's, and the quotas of the Allocation in force.
//!
//! The test brings its own two one-GPU kwok nodes, labelled and tainted for its
//! namespace only, so it takes no GPUs from other tests.

mod operator_support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::Client;
use kube::api::{Api, DeleteParams};
use operator_support::*;
use serde_json::json;
use synco_crds::{ComputePool, InferenceModel, ModelPhase};
use synco_e2e::{apply_yaml, cluster, wait_until, with_temp_ns};

const POOL_LABEL: &str = "synco.coop/e2e-pool";

async fn gpu_node(admin: &Client, name: &str, ns: &str, contributed_by: Option<&str>) -> anyhow::Result<()> {
    let mut labels = json!({POOL_LABEL: ns});
    if let Some(member) = contributed_by {
        labels[synco_crds::CONTRIBUTED_BY_LABEL] = json!(member);
    }
    let capacity = json!({"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "1"});
    synco_e2e::kwok_node(admin, name, labels, (POOL_LABEL, ns), capacity, None).await
}

#[tokio::test]
async fn a_mistralrs_model_is_deployed_and_follows_its_pool() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    install_crds(admin).await?;
    with_temp_ns(admin, "op-models", |ns| async move {
        let (n0, n1) = (format!("{ns}-gpu-0"), format!("{ns}-gpu-1"));
        // A member contributed the first node: its label names the member.
        gpu_node(admin, &n0, &ns, Some("ana")).await?;
        gpu_node(admin, &n1, &ns, None).await?;
        let result = async {
            let client = operator_client(cluster, admin, &ns).await?;
            coop(admin, &ns).await?;
            apply_yaml(
                admin,
                Some(&ns),
                &format!(
                    r#"
apiVersion: synco.coop/v1alpha1
kind: ComputePool
metadata: {{name: gpus}}
spec:
  nodeSelector: {{"{POOL_LABEL}": "{ns}"}}
  tolerations: [{{key: "{POOL_LABEL}", operator: Exists, effect: NoSchedule}}]
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: coop-large}}
spec:
  source: {{hub: mistralai/Mistral-7B-Instruct-v0.3}}
  engine: {{kind: Mistralrs}}
  pool: gpus
  replicas: 2
  gpusPerReplica: 1
  tokensPerSecondPerReplica: 500
"#
                ),
            )
            .await?;
            let op = start(client, &ns, "op-a", false);
            let models: Api<InferenceModel> = Api::namespaced(admin.clone(), &ns);
            let pools: Api<ComputePool> = Api::namespaced(admin.clone(), &ns);
            wait_until(
                "coop-large Ready with 2 replicas",
                Duration::from_secs(60),
                || async {
                    let m = models.get("coop-large").await?;
                    Ok(m.status.is_some_and(|s| {
                        s.phase == ModelPhase::Ready
                            && s.ready_replicas == 2
                            && s.capacity_tokens_per_second == 1000
                    }))
                },
            )
            .await?;
            let m = models.get("coop-large").await?.status.unwrap();
            assert_eq!(
                m.endpoint.as_deref(),
                Some(format!("http://coop-large-engine.{ns}.svc:8080/v1").as_str())
            );

            let deployment = Api::<Deployment>::namespaced(admin.clone(), &ns)
                .get("coop-large-engine")
                .await?;
            let owner = &deployment.metadata.owner_references.clone().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str()),
                ("InferenceModel", "coop-large")
            );
            let pod = deployment.spec.unwrap().template.spec.unwrap();
            assert_eq!(pod.node_selector.unwrap().get(POOL_LABEL), Some(&ns));
            let c = &pod.containers[0];
            assert_eq!(c.image.as_deref(), Some("registry.invalid/synco/mistralrs:e2e"));
            assert_eq!(
                c.resources.clone().unwrap().limits.unwrap()["nvidia.com/gpu"].0,
                "1"
            );
            assert!(
                c.args
                    .clone()
                    .unwrap()
                    .contains(&"mistralai/Mistral-7B-Instruct-v0.3".to_owned())
            );
            let service = Api::<Service>::namespaced(admin.clone(), &ns)
                .get("coop-large-engine")
                .await?;
            assert_eq!(service.metadata.owner_references.unwrap()[0].name, "coop-large");

            let pool = pools.get("gpus").await?.status.unwrap();
            assert_eq!(
                (pool.total_gpus, pool.ready_nodes, pool.allocated_gpus),
                (2, 2, 2)
            );
            let contributed: Vec<_> = pool
                .nodes
                .iter()
                .map(|n| (n.name.as_str(), n.contributed_by.as_deref()))
                .collect();
            assert_eq!(contributed, [(n0.as_str(), Some("ana")), (n1.as_str(), None)]);
            // External 1000 + mistralrs 1000.
            wait_until("quotas on 2000 tokens/s", Duration::from_secs(30), || async {
                let all = allocations(admin, &ns).await?;
                Ok(all[0]
                    .status
                    .as_ref()
                    .is_some_and(|s| s.capacity_tokens_per_second == 2000))
            })
            .await?;

            Api::<Node>::all(admin.clone())
                .delete(&n1, &DeleteParams::default())
                .await?;
            wait_until(
                "the pool to shrink to one GPU",
                Duration::from_secs(30),
                || async {
                    Ok(pools
                        .get("gpus")
                        .await?
                        .status
                        .is_some_and(|s| s.total_gpus == 1 && s.ready_nodes == 1))
                },
            )
            .await?;
            wait_until(
                "quotas recomputed on 1500 tokens/s",
                Duration::from_secs(30),
                || async {
                    let all = allocations(admin, &ns).await?;
                    Ok(all[0]
                        .status
                        .as_ref()
                        .is_some_and(|s| s.capacity_tokens_per_second == 1500))
                },
            )
            .await?;
            let all = allocations(admin, &ns).await?;
            let expected = expected_quotas(admin, &ns, &all[0]).await?;
            assert_eq!(all[0].status.as_ref().unwrap().quotas, expected.quotas);
            op.shutdown().await?;
            anyhow::Ok(())
        }
        .await;
        let nodes: Api<Node> = Api::all(admin.clone());
        for n in [&n0, &n1] {
            let _ = nodes.delete(n, &DeleteParams::default()).await;
        }
        drop_rbac(admin, &ns).await;
        result
    })
    .await
}
