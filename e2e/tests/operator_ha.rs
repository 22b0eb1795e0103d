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

/// A ServiceAccount with the operator's rules but for creating Allocations: as the
/// leader it closes a proposal and then fails to apply it, which freezes a leader in
/// the middle of a close.
async fn stuck_client(
    cluster: &synco_e2e::Cluster,
    admin: &kube::Client,
    ns: &str,
) -> anyhow::Result<kube::Client> {
    let full = operator_rbac(ns)?;
    let rules = full
        .split("rules:\n")
        .nth(1)
        .and_then(|r| r.split("---").next())
        .ok_or_else(|| anyhow::anyhow!("the operator's rules"))?
        .replace(
            "- apiGroups: [synco.coop]\n  resources: [allocations]\n  verbs: [create]\n",
            "",
        );
    anyhow::ensure!(
        !rules.contains("resources: [allocations]\n  verbs: [create]"),
        "the rule that lets the operator create Allocations was not found to take out"
    );
    let sa = "synco-operator-stuck";
    apply_yaml(
        admin,
        Some(ns),
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {sa}-{ns}}}\nrules:\n{rules}---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {sa}-{ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {sa}-{ns}}}\n\
             subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {sa}-leader, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: synco-operator-leader}}\n\
             subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n"
        ),
    )
    .await?;
    cluster.service_account(ns, sa).await
}

/// Kills the leader between the close and the effect: it has tallied and recorded the
/// proposal as Passed, and dies (its task aborted: no clean stop, the lease left to
/// expire) before it could create the new Allocation. The other replica takes over and
/// applies the effect exactly once: one new Allocation, and one event of each kind.
#[tokio::test]
async fn a_leader_killed_mid_close_is_replaced_and_the_effect_happens_once() -> anyhow::Result<()> {
    use k8s_openapi::api::events::v1::Event;
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    install_crds(admin).await?;
    with_temp_ns(admin, "op-kill", |ns| async move {
        let client = operator_client(cluster, admin, &ns).await?;
        let stuck = stuck_client(cluster, admin, &ns).await?;
        coop(admin, &ns).await?;
        let a = start(stuck, &ns, "replica-a", true);
        wait_until("replica-a to lead", Duration::from_secs(20), || async {
            Ok(holder(admin, &ns).await?.as_deref() == Some("replica-a"))
        })
        .await?;
        let b = start(client, &ns, "replica-b", true);
        propose(admin, &ns, "kill", 4, "    kind: Allocation\n    effect:\n      allocation:\n        floors: [{memberClass: community, sharePercent: 50}]\n").await?;
        for m in MEMBERS {
            vote(admin, &ns, "kill", m, "Yes").await?;
        }
        wait_phase(admin, &ns, "kill", &[ProposalPhase::Passed], Duration::from_secs(30)).await?;
        // The leader tries to apply and is refused a few times.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(allocations(admin, &ns).await?.len(), 1, "the stuck leader created nothing");
        assert_eq!(b.stats.reconciles(), 0, "the standby has not acted");
        // No clean stop: the task is dropped where it stands and its lease left to expire.
        a.task.abort();
        wait_phase(admin, &ns, "kill", &[ProposalPhase::Applied], Duration::from_secs(30)).await?;
        assert_eq!(holder(admin, &ns).await?.as_deref(), Some("replica-b"));
        // Let B settle, then count.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let all = allocations(admin, &ns).await?;
        let names: Vec<_> = all.iter().map(|a| a.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["shares-v1", "shares-v2"]);
        assert_eq!(all[1].spec.proposal.as_deref(), Some("kill"));
        let events = Api::<Event>::namespaced(admin.clone(), &ns).list(&ListParams::default()).await?;
        for reason in ["VotingClosed", "AllocationCreated", "EffectApplied"] {
            let of: Vec<&Event> = events
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some(reason) && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("kill"))
                .collect();
            assert_eq!(of.len(), 1, "{reason}: {of:?}");
            assert!(of[0].series.as_ref().is_none_or(|s| s.count <= 1), "{reason} repeated: {:?}", of[0].series);
        }
        b.shutdown().await?;
        drop_rbac(admin, &ns).await;
        for name in ["synco-operator-stuck"] {
            use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
            let n = format!("{name}-{ns}");
            let _ = Api::<ClusterRoleBinding>::all(admin.clone()).delete(&n, &Default::default()).await;
            let _ = Api::<ClusterRole>::all(admin.clone()).delete(&n, &Default::default()).await;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
}
