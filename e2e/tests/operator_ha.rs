//! Restarts and replicas: restarting the operator in the middle of a decision creates
//! nothing twice, and of two replicas exactly one reconciles until it stops, when the
//! other takes over.

mod operator_support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use operator_support::*;
use synco_crds::{AllocationPhase, Member, ProposalPhase};
use synco_e2e::{apply_yaml, cluster, wait_until, with_temp_ns};

#[tokio::test]
async fn restarting_mid_flow_creates_no_duplicates() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    install_crds(admin).await?;
    with_temp_ns(admin, "op-restart", |ns| async move {
        let client = operator_client(cluster, admin, &ns).await?;
        coop(admin, &ns).await?;
        apply_yaml(
            admin,
            Some(&ns),
            r#"
apiVersion: synco.coop/v1alpha1
kind: ComputePool
metadata: {name: gpus}
spec: {nodeSelector: {"synco.coop/no-such-node": "x"}}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {name: coop-large}
spec:
  source: {hub: mistralai/Mistral-7B-Instruct-v0.3}
  engine: {kind: Mistralrs}
  pool: gpus
  gpusPerReplica: 1
  tokensPerSecondPerReplica: 500
"#,
        )
        .await?;
        let first = start(client.clone(), &ns, "op-a", true);
        propose(admin, &ns, "restart", 5, "    kind: Allocation\n    effect:\n      allocation:\n        floors: [{memberClass: community, sharePercent: 50}]\n").await?;
        wait_phase(admin, &ns, "restart", &[ProposalPhase::Open], Duration::from_secs(20)).await?;
        for m in MEMBERS {
            vote(admin, &ns, "restart", m, "Yes").await?;
        }
        // Stop while the proposal is open; the next replica closes it.
        first.shutdown().await?;
        let second = start(client.clone(), &ns, "op-b", true);
        wait_phase(admin, &ns, "restart", &[ProposalPhase::Applied], Duration::from_secs(30)).await?;
        wait_until("shares-v2 in force", Duration::from_secs(30), || async {
            let all = allocations(admin, &ns).await?;
            Ok(all.len() == 2 && phase(&all[1]) == AllocationPhase::InForce && phase(&all[0]) == AllocationPhase::Superseded)
        })
        .await?;
        second.shutdown().await?;

        // A third start after everything is done changes nothing.
        let third = start(client, &ns, "op-c", true);
        wait_until("the third replica to reconcile", Duration::from_secs(30), || async { Ok(third.stats.reconciles() >= 8) }).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let all = allocations(admin, &ns).await?;
        assert_eq!(all.iter().map(|a| a.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["shares-v1", "shares-v2"]);
        assert_eq!(all.iter().filter(|a| phase(a) == AllocationPhase::InForce).count(), 1);
        let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns).list(&ListParams::default()).await?;
        assert_eq!(deployments.items.len(), 1);
        third.shutdown().await?;
        drop_rbac(admin, &ns).await;
        Ok::<_, anyhow::Error>(())
    })
    .await
}

async fn member_ready(admin: &kube::Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let yaml = format!(
        "apiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {{name: {name}}}\nspec: {{displayName: {name}, class: community, identity: {name}}}\n"
    );
    apply_yaml(admin, Some(ns), &yaml).await?;
    let api: Api<Member> = Api::namespaced(admin.clone(), ns);
    wait_until(
        &format!("member {name} Ready"),
        Duration::from_secs(30),
        || async {
            let m = api.get(name).await?;
            Ok(m.status
                .is_some_and(|s| synco_crds::conditions::is_true(&s.conditions, "Ready")))
        },
    )
    .await
}

async fn holder(admin: &kube::Client, ns: &str) -> anyhow::Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(admin.clone(), ns)
        .get_opt("synco-operator")
        .await?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

#[tokio::test]
async fn of_two_replicas_one_reconciles_and_the_other_takes_over() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    install_crds(admin).await?;
    with_temp_ns(admin, "op-leader", |ns| async move {
        let client = operator_client(cluster, admin, &ns).await?;
        coop(admin, &ns).await?;
        let a = start(client.clone(), &ns, "replica-a", true);
        wait_until("replica-a to lead", Duration::from_secs(20), || async {
            Ok(holder(admin, &ns).await?.as_deref() == Some("replica-a"))
        })
        .await?;
        let b = start(client, &ns, "replica-b", true);
        member_ready(admin, &ns, "frank").await?;
        // Several renewals go by; b never gets to reconcile.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(a.stats.reconciles() > 0);
        assert_eq!(b.stats.reconciles(), 0, "the standby replica must not reconcile");
        assert_eq!(holder(admin, &ns).await?.as_deref(), Some("replica-a"));

        let before = a.stats.reconciles();
        a.shutdown().await?;
        wait_until("replica-b to take over", Duration::from_secs(20), || async {
            Ok(holder(admin, &ns).await?.as_deref() == Some("replica-b"))
        })
        .await?;
        member_ready(admin, &ns, "grace").await?;
        assert!(b.stats.reconciles() > 0);
        let _ = before;
        b.shutdown().await?;
        drop_rbac(admin, &ns).await;
        Ok::<_, anyhow::Error>(())
    })
    .await
}
