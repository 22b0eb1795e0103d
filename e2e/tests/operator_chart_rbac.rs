//! The operator, run as the chart's ServiceAccount (a real token from the
//! TokenRequest API, so it has exactly the RBAC the chart grants and nothing
//! more), reconciles the example co-op: quotas in the Allocation in force,
//! members and the pool checked, the mistralrs model deployed, and no
//! reconcile failing for want of a permission.

#[path = "chart_support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use support::{fullname, install_chart, manifests_without_namespace, release_name, scoped_admission_values};
use synco_crds::{Allocation, AllocationPhase, ComputePool, Member, conditions};
use synco_e2e::{apply_yaml, cluster, examples_dir, wait_until, with_temp_ns};
use synco_operator::{LeaseSettings, Operator, RunOptions, Settings, SystemClock};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_operator_reconciles_the_example_coop_with_exactly_the_charts_rbac() -> Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "chart-rbac", |ns| async move {
        let inner = admin.clone();
        with_temp_ns(&inner, "chart-rbac-coop", |coop| async move {
            let release = release_name("oprbac");
            install_chart(
                cluster,
                &release,
                &ns,
                &scoped_admission_values(&[&ns, &coop]),
                &[],
            )?;
            apply_yaml(
                &admin,
                Some(&coop),
                &manifests_without_namespace(&examples_dir())?,
            )
            .await?;

            let client = support::chart_operator_client(cluster, &ns, &release).await?;
            let settings = Settings {
                namespace: Some(coop.clone()),
                mistralrs_image: "registry.invalid/synco/mistralrs:e2e".to_owned(),
                ..Settings::default()
            };
            // The Lease the chart's Role is pinned to.
            let lease = LeaseSettings {
                namespace: ns.clone(),
                name: format!("{}-operator", fullname(&release)),
                identity: "chart-rbac-test".to_owned(),
                lease_duration: Duration::from_secs(4),
                renew_every: Duration::from_secs(1),
                retry_every: Duration::from_millis(300),
            };
            let options = RunOptions {
                lease: Some(lease),
                metrics_addr: None,
                metrics_reuse_port: false,
            };
            let operator = Operator::new(
                client,
                Arc::new(SystemClock),
                settings,
                options,
                "chart-rbac-test",
            );
            let stats = operator.stats();
            let stop = CancellationToken::new();
            let task = tokio::spawn(operator.run(stop.clone()));

            let allocations: Api<Allocation> = Api::namespaced(admin.clone(), &coop);
            let outcome = async {
                wait_until(
                    "allocation-v1 in force with quotas",
                    Duration::from_secs(90),
                    || {
                        let allocations = allocations.clone();
                        async move {
                            let a = allocations.get("allocation-v1").await?;
                            let status = a.status.unwrap_or_default();
                            // Five members and one customer.
                            Ok(status.phase == AllocationPhase::InForce && status.quotas.len() == 6)
                        }
                    },
                )
                .await?;
                let members: Api<Member> = Api::namespaced(admin.clone(), &coop);
                wait_until("every member checked", Duration::from_secs(60), || {
                    let members = members.clone();
                    async move {
                        let list = members.list(&Default::default()).await?;
                        Ok(list.items.len() == 5
                            && list.items.iter().all(|m| {
                                m.status
                                    .as_ref()
                                    .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
                            }))
                    }
                })
                .await?;
                let pools: Api<ComputePool> = Api::namespaced(admin.clone(), &coop);
                wait_until("pool observed", Duration::from_secs(60), || {
                    let pools = pools.clone();
                    async move {
                        Ok(pools
                            .get("gpus")
                            .await?
                            .status
                            .is_some_and(|s| s.observed_generation.is_some()))
                    }
                })
                .await?;
                let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &coop);
                let services: Api<Service> = Api::namespaced(admin.clone(), &coop);
                wait_until("coop-large deployed", Duration::from_secs(60), || {
                    let (deployments, services) = (deployments.clone(), services.clone());
                    async move {
                        Ok(deployments.get_opt("coop-large-engine").await?.is_some()
                            && services.get_opt("coop-large-engine").await?.is_some())
                    }
                })
                .await?;
                ensure!(stats.reconciles() > 0, "the operator never reconciled");
                ensure!(
                    stats.errors() == 0,
                    "{} reconciles failed as the chart's ServiceAccount",
                    stats.errors()
                );
                Ok::<_, anyhow::Error>(())
            }
            .await;
            stop.cancel();
            let stopped = tokio::time::timeout(Duration::from_secs(30), task).await;
            outcome?;
            ensure!(
                matches!(stopped, Ok(Ok(Ok(())))),
                "operator did not stop cleanly: {stopped:?}"
            );
            Ok::<_, anyhow::Error>(())
        })
        .await
    })
    .await
}
