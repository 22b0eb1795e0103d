//! Shared by the operator's e2e tests: the operator's RBAC (the same table as
//! `operator/README.md`), a running operator in-process as its ServiceAccount, and a
//! small co-op to work on.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use synco_crds::{Allocation, AllocationPhase, Proposal, ProposalKind, ProposalPhase, Vote};
use synco_e2e::{Cluster, apply_yaml, wait_until};
use synco_operator::{LeaseSettings, Operator, RunOptions, Settings, Stats, SystemClock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Applies the generated CRDs and waits until they are served.
pub async fn install_crds(admin: &Client) -> Result<()> {
    synco_e2e::apply_crds(admin).await.map(|_| ())
}

/// The operator's ServiceAccount in each test namespace.
pub const OPERATOR_SA: &str = "synco-operator";

/// The operator's rules: the chart's one source (`charts/synco/files/rbac/operator-rules.yaml`),
/// as the ClusterRole's `rules:` block.
pub fn operator_rules() -> Result<String> {
    let path = synco_e2e::workspace_root().join("charts/synco/files/rbac/operator-rules.yaml");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The ClusterRole the operator needs: exactly the chart's rules ([`operator_rules`]).
pub fn operator_rbac(ns: &str) -> Result<String> {
    Ok(format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: synco-operator-{ns}}}
rules:
{rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: synco-operator-{ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: synco-operator-{ns}}}
subjects:
- {{kind: ServiceAccount, name: {OPERATOR_SA}, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: synco-operator-leader, namespace: {ns}}}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [synco-operator]
  verbs: [get, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: synco-operator-leader, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: synco-operator-leader}}
subjects:
- {{kind: ServiceAccount, name: {OPERATOR_SA}, namespace: {ns}}}
"#,
        rules = operator_rules()?
    ))
}

/// Grants the operator's RBAC in `ns` and returns a client acting as its ServiceAccount.
pub async fn operator_client(cluster: &Cluster, admin: &Client, ns: &str) -> Result<Client> {
    apply_yaml(admin, Some(ns), &operator_rbac(ns)?).await?;
    cluster.service_account(ns, OPERATOR_SA).await
}

/// Removes the cluster-scoped RBAC objects of `ns`.
pub async fn drop_rbac(admin: &Client, ns: &str) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let name = format!("synco-operator-{ns}");
    let _ = Api::<ClusterRoleBinding>::all(admin.clone())
        .delete(&name, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(admin.clone())
        .delete(&name, &DeleteParams::default())
        .await;
}

/// A running operator replica.
pub struct Running {
    pub stop: CancellationToken,
    pub task: JoinHandle<std::result::Result<(), synco_operator::RunError>>,
    pub stats: Arc<Stats>,
}

impl Running {
    /// Stops it gracefully and waits until it has.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("operator did not stop")??
            .context("operator failed")?;
        Ok(())
    }
}

/// Lease settings for tests: short, so that take-overs are quick.
pub fn test_lease(ns: &str, identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: ns.to_owned(),
        name: "synco-operator".to_owned(),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(4),
        renew_every: Duration::from_millis(1000),
        retry_every: Duration::from_millis(300),
    }
}

/// Starts an operator replica watching `ns`, with leader election when `lease`.
pub fn start(client: Client, ns: &str, instance: &str, lease: bool) -> Running {
    let settings = Settings {
        namespace: Some(ns.to_owned()),
        mistralrs_image: "registry.invalid/synco/mistralrs:e2e".to_owned(),
        ..Settings::default()
    };
    let options = RunOptions {
        lease: lease.then(|| test_lease(ns, instance)),
        metrics_addr: None,
        metrics_reuse_port: false,
    };
    let operator = Operator::new(client, Arc::new(SystemClock), settings, options, instance);
    let stats = operator.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(operator.run(stop.clone()));
    Running { stop, task, stats }
}

/// The five members of the test co-op (alice..erin), all in class `community` except
/// erin, in `business`.
pub const MEMBERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// A co-op with five members, a customer, an external model of 1000 tokens/s and the
/// founding Allocation `shares-v1`.
pub async fn coop(admin: &Client, ns: &str) -> Result<()> {
    let mut yaml = String::from(
        r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {name: riverside}
spec:
  displayName: Riverside Community Compute
  votingDefaults:
    - {kind: Allocation, method: Majority, quorumPercent: 50}
    - {kind: MemberAdmission, method: Consent}
  memberClasses:
    - {name: community, tier: 0}
    - {name: business, tier: 1}
  surplus:
    maxSharePercent: 30
    currency: EUR
    priceFloor: {inputPerMillion: 20, outputPerMillion: 60}
    # The CRD's rate-card rule reads rateCard without has(), so it must be present.
    rateCard: [{model: peer-chat, inputPerMillion: 25, outputPerMillion: 80}]
---
apiVersion: synco.coop/v1alpha1
kind: Customer
metadata: {name: city-translation}
spec: {displayName: City Translation, identity: city-translation, billing: Invoiced}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {name: peer-chat}
spec:
  engine: {kind: External, url: "https://compute.hillside.example/v1"}
  tokensPerSecondPerReplica: 1000
  access: {customers: true}
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {name: shares-v1}
spec:
  version: 1
  floors:
    - {memberClass: community, sharePercent: 60}
    - {memberClass: business, sharePercent: 10}
"#,
    );
    for m in MEMBERS {
        let class = if m == "erin" { "business" } else { "community" };
        yaml.push_str(&format!(
            "---\napiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {{name: {m}}}\nspec: {{displayName: {m}, class: {class}, identity: {m}}}\n"
        ));
    }
    apply_yaml(admin, Some(ns), &yaml).await?;
    Ok(())
}

/// Now, to the second (Kubernetes times have no fractions).
pub fn now_s() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Sets the bylaws' voting period for proposals of `kind` to `seconds` (the method and
/// quorum stay as they are; majority when the kind has no default yet).
pub async fn set_voting_period(admin: &Client, ns: &str, kind: ProposalKind, seconds: i64) -> Result<()> {
    let api: Api<synco_crds::Cooperative> = Api::namespaced(admin.clone(), ns);
    let mut coop = api.get("riverside").await?;
    let period = format!("{seconds}s");
    match coop.spec.voting_defaults.iter_mut().find(|d| d.kind == kind) {
        Some(d) => d.rules.voting_period = Some(period),
        None => coop.spec.voting_defaults.push(synco_crds::VotingDefault {
            kind,
            rules: synco_crds::VotingRules {
                method: synco_crds::VotingMethod::Majority,
                quorum_percent: None,
                threshold: None,
                voting_period: Some(period),
                max_score: None,
                points_per_member: None,
            },
        }),
    }
    // A merge patch of the list, without a resourceVersion: the operator writing the
    // status meanwhile is no conflict.
    let patch = serde_json::json!({"spec": {"votingDefaults": coop.spec.voting_defaults}});
    api.patch(
        "riverside",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Creates a Proposal by alice with `spec` (a YAML mapping of the rest of the spec,
/// indented by four spaces, with its `kind`), decided under bylaws that give it `seconds`
/// to vote, and waits until the operator has opened it.
pub async fn propose(admin: &Client, ns: &str, name: &str, seconds: i64, spec: &str) -> Result<Proposal> {
    let kind = spec
        .lines()
        .find_map(|l| l.trim().strip_prefix("kind:"))
        .map(str::trim)
        .ok_or_else(|| anyhow::anyhow!("the spec names no kind"))?;
    let kind: ProposalKind = serde_json::from_value(serde_json::Value::String(kind.to_owned()))?;
    set_voting_period(admin, ns, kind, seconds).await?;
    let yaml = format!(
        "apiVersion: synco.coop/v1alpha1\nkind: Proposal\nmetadata: {{name: {name}}}\nspec:\n    title: {name}\n    proposer: alice\n{spec}"
    );
    apply_yaml(admin, Some(ns), &yaml).await?;
    wait_phase(
        admin,
        ns,
        name,
        &[ProposalPhase::Open, ProposalPhase::Invalid],
        Duration::from_secs(20),
    )
    .await
}

/// Casts `member`'s vote with a position.
pub async fn vote(admin: &Client, ns: &str, proposal: &str, member: &str, position: &str) -> Result<Vote> {
    let v: Vote = serde_json::from_value(serde_json::json!({
        "apiVersion": "synco.coop/v1alpha1",
        "kind": "Vote",
        "metadata": { "name": format!("{proposal}-{member}") },
        "spec": { "proposal": proposal, "member": member, "position": position },
    }))?;
    Ok(Api::<Vote>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &v)
        .await?)
}

/// Waits until the proposal reaches one of `phases`, and returns it.
pub async fn wait_phase(
    admin: &Client,
    ns: &str,
    name: &str,
    phases: &[ProposalPhase],
    within: Duration,
) -> Result<Proposal> {
    let api: Api<Proposal> = Api::namespaced(admin.clone(), ns);
    wait_until(&format!("proposal {name} to reach {phases:?}"), within, || {
        let api = api.clone();
        async move {
            let p = api.get(name).await?;
            Ok(p.status.as_ref().is_some_and(|s| phases.contains(&s.phase)))
        }
    })
    .await?;
    Ok(api.get(name).await?)
}

/// Every Allocation in `ns`, by version.
pub async fn allocations(admin: &Client, ns: &str) -> Result<Vec<Allocation>> {
    let mut all = Api::<Allocation>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    all.sort_by_key(|a| a.spec.version);
    Ok(all)
}

/// The phase of an Allocation's status.
pub fn phase(a: &Allocation) -> AllocationPhase {
    a.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// Recomputes the quotas of `allocation` from what the API server holds, with the same
/// `synco-policies` functions the operator uses.
pub async fn expected_quotas(
    admin: &Client,
    ns: &str,
    allocation: &Allocation,
) -> Result<synco_policies::crd::AllocationFigures> {
    let coop = Api::<synco_crds::Cooperative>::namespaced(admin.clone(), ns)
        .get("riverside")
        .await?;
    let lp = ListParams::default();
    let members = Api::<synco_crds::Member>::namespaced(admin.clone(), ns)
        .list(&lp)
        .await?
        .items;
    let customers = Api::<synco_crds::Customer>::namespaced(admin.clone(), ns)
        .list(&lp)
        .await?
        .items;
    let models = Api::<synco_crds::InferenceModel>::namespaced(admin.clone(), ns)
        .list(&lp)
        .await?
        .items;
    let pools = Api::<synco_crds::ComputePool>::namespaced(admin.clone(), ns)
        .list(&lp)
        .await?
        .items;
    Ok(synco_policies::crd::figures_for(
        &coop, allocation, &members, &customers, &models, &pools,
    )?)
}

/// A Kubernetes time `seconds` from now.
pub fn in_seconds(seconds: i64) -> Time {
    Time(Timestamp::from_second(now_s().as_second() + seconds).unwrap_or(Timestamp::UNIX_EPOCH))
}
