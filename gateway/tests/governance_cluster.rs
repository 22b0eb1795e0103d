//! The governance scenario (`common/scenario.rs`) against the real control plane: the
//! chart installed (its RBAC and admission policies in force), the operator running
//! in-process as the chart's operator ServiceAccount (it opens, closes and applies), and
//! the gateway binary in cluster mode as the chart's gateway ServiceAccount (it acts for
//! the members it authenticates). eve is suspended by editing her Member.
//!
//! Beyond the scenario, the refusals the API server itself makes for every client: a
//! proposal's spec edited, a Vote deleted (by the cluster admin too), a member casting a
//! Vote or opening a Proposal in someone else's name with kubectl.

#![expect(clippy::expect_used, reason = "tests")]

#[path = "../../e2e/tests/chart_support.rs"]
mod chart_support;
mod common;

use std::time::Duration;

use async_trait::async_trait;
use chart_support::{
    chart_operator_client, gateway_service_account, install_chart, release_name, scoped_admission_values,
};
use common::Gateway;
use common::coop::{self as c};
use common::scenario::{self, Env};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use synco_crds::{Proposal, Vote};
use synco_e2e::{apply_yaml, cluster, with_temp_ns};

struct InCluster {
    gateway: Gateway,
    admin: kube::Client,
    ns: String,
    /// The gateway's database.
    db: String,
}

#[async_trait]
impl Env for InCluster {
    fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }
    fn token(&self, who: &str) -> String {
        c::token(c::SECRET, &c::claims(who))
    }
    async fn suspend(&self, member: &str) {
        common::kube::suspend(&self.admin, &self.ns, member).await;
    }
    fn log(&self) -> String {
        self.gateway.log()
    }
}

/// Installs the chart, applies the co-op `yaml(namespace, model source)` makes in a
/// fresh namespace, starts the operator and the gateway as the chart's ServiceAccounts,
/// and runs `body` against them.
async fn in_cluster<Y, B, F>(prefix: &str, yaml: Y, body: B) -> anyhow::Result<()>
where
    Y: Fn(&str, &str) -> String + Send + 'static,
    B: FnOnce(&'static synco_e2e::Cluster, InCluster) -> F + Send + 'static,
    F: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let outer = admin.clone();
    let prefix = prefix.to_owned();
    with_temp_ns(&outer, &format!("{prefix}-release"), |release_ns| async move {
        let inner = admin.clone();
        with_temp_ns(&inner, &format!("{prefix}-coop"), |ns| async move {
            let release = release_name(&prefix);
            let values = format!(
                "{}gateway:\n  namespace: {ns}\n",
                scoped_admission_values(&[&release_ns, &ns])
            );
            install_chart(cluster, &release, &release_ns, &values, &[])?;
            let model = common::tiny_model().display().to_string();
            apply_yaml(&admin, Some(&ns), &yaml(&ns, &format!("{{path: '{model}'}}"))).await?;

            // The operator, as the chart's ServiceAccount.
            let client = chart_operator_client(cluster, &release_ns, &release).await?;
            let operator = common::operator::start(client, &ns);

            // The gateway, as the chart's gateway ServiceAccount.
            chart_support::chart_gateway_client(cluster, &release_ns, &release).await?;
            let sa = gateway_service_account(&release);
            let token = cluster
                .run_dir()
                .join("serviceaccounts")
                .join(format!("{release_ns}.{sa}.token"));
            let config = common::kube::service_account_kubeconfig(cluster, &format!("{ns}-gateway"), &token);
            let data = tempfile::tempdir()?;
            let db = format!("sqlite://{}?mode=rwc", data.path().join("synco.db").display());
            let args = common::kube::cluster_args(&ns, &db);
            let gateway = Gateway::start_with_env(
                tempfile::tempdir()?,
                &args,
                &[
                    ("KUBECONFIG", config.display().to_string().as_str()),
                    // The books follow the operator's Applied proposals every half second.
                    ("SYNCO_BOOKS_EVERY_MS", "500"),
                ],
            );
            let env = InCluster {
                gateway,
                admin: admin.clone(),
                ns: ns.clone(),
                db,
            };
            let done = body(cluster, env).await;
            drop(operator);
            // The release's admission policies are cluster-wide objects.
            chart_support::uninstall_chart(cluster, &release, &release_ns)?;
            done
        })
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scenario_runs_the_same_against_the_api_server_and_the_operator() -> anyhow::Result<()> {
    in_cluster(
        "gov",
        |ns, source| scenario::manifests(ns, "25s", source),
        |cluster, env| async move {
            scenario::run(&env, 25).await;
            refusals_by_the_api_server(cluster, &env.admin, &env.ns).await
        },
    )
    .await
}

/// The members' flow through the pages in Chromium (`common/browser.rs`), with the
/// operator opening, closing and applying: the same flow as in standalone mode.
#[tokio::test(flavor = "multi_thread")]
async fn members_propose_comment_and_vote_through_the_pages_against_the_control_plane() -> anyhow::Result<()>
{
    let period = 120;
    in_cluster(
        "web",
        move |ns, source| common::browser::coop_yaml(ns, &format!("{period}s"), source, "RankedChoice"),
        move |_, env| async move {
            common::browser::propose_comment_and_vote(&env.gateway, period, "cluster").await;
            Ok(())
        },
    )
    .await
}

/// The patronage scenario (`common/patronage.rs`) against the control plane: the month
/// closed with the co-op's rate card and bylaws read from the API server, the operator
/// closing and applying the PatronageDistribution, and the gateway recording its refunds
/// in its database once it sees it Applied.
#[tokio::test(flavor = "multi_thread")]
async fn members_vote_a_months_refunds_and_the_gateway_records_them_against_the_control_plane()
-> anyhow::Result<()> {
    let period = 20;
    in_cluster(
        "pat",
        move |ns, source| common::patronage::manifests(ns, &format!("{period}s"), source),
        move |cluster, env| async move {
            let db = synco_gateway::db::connect(&env.db).await?;
            common::patronage::seed(&db).await;
            let kubeconfig = cluster.kubeconfig().to_owned();
            let (url, ns) = (env.db.clone(), env.ns.clone());
            let books = move |args: &[&str]| -> (bool, String) {
                let out = std::process::Command::new(common::binary())
                    .arg("books")
                    .args(args)
                    .args(["--database-url", &url, "--namespace", &ns])
                    .env("KUBECONFIG", &kubeconfig)
                    .output()
                    .unwrap();
                (
                    out.status.success(),
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                )
            };
            common::patronage::run(&env, &books, period).await;
            // The operator said where the refunds went.
            let proposals: Api<Proposal> = Api::namespaced(env.admin.clone(), &env.ns);
            let applied = proposals.get("refunds").await?;
            assert_eq!(
                applied.status.and_then(|s| s.applied_to),
                Some(format!("Ledger/{}", common::patronage::last_month()))
            );
            Ok(())
        },
    )
    .await
}

/// What the API server refuses whoever asks.
async fn refusals_by_the_api_server(
    cluster: &synco_e2e::Cluster,
    admin: &kube::Client,
    ns: &str,
) -> anyhow::Result<()> {
    let proposals: Api<Proposal> = Api::namespaced(admin.clone(), ns);
    // The spec never changes, not even for the cluster admin.
    let edit = proposals
        .patch(
            "ana-floor",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"title": "changed"}})),
        )
        .await;
    let err = edit.expect_err("an edited proposal");
    assert!(err.to_string().contains("cannot change once created"), "{err}");
    // A Vote is never deleted, not even by the cluster admin.
    let votes: Api<Vote> = Api::namespaced(admin.clone(), ns);
    let err = votes
        .delete("ana-floor-ben", &DeleteParams::default())
        .await
        .expect_err("a deleted vote");
    assert!(err.to_string().contains("never deleted"), "{err}");
    assert!(votes.get_opt("ana-floor-ben").await?.is_some());
    // Members acting with kubectl (their Kubernetes user name is their identity), with
    // the rights to create proposals and votes: only in their own name.
    apply_yaml(
        admin,
        Some(ns),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: voters}\nrules:\n\
         - {apiGroups: [synco.coop], resources: [proposals, votes], verbs: [create, get, list]}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: voters}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: voters}\n\
         subjects: [{kind: User, name: cleo, apiGroup: rbac.authorization.k8s.io}]\n",
    )
    .await?;
    let cleo = cluster.impersonate("cleo", &["synco:members"]).await?;
    let vote: Vote = serde_json::from_value(json!({
        "apiVersion": "synco.coop/v1alpha1", "kind": "Vote",
        "metadata": {"name": "assembly-day-dan"},
        "spec": {"proposal": "assembly-day", "member": "dan", "approvals": ["mon"]},
    }))?;
    let err = Api::<Vote>::namespaced(cleo.clone(), ns)
        .create(&PostParams::default(), &vote)
        .await
        .expect_err("a vote for someone else");
    assert!(err.to_string().contains("only"), "{err}");
    let proposal: Proposal = serde_json::from_value(json!({
        "apiVersion": "synco.coop/v1alpha1", "kind": "Proposal",
        "metadata": {"name": "in-anas-name"},
        "spec": {"kind": "FreeText", "title": "x", "proposer": "ana",
            "options": [{"name": "yes-please"}, {"name": "no-thanks"}]},
    }))?;
    let err = Api::<Proposal>::namespaced(cleo.clone(), ns)
        .create(&PostParams::default(), &proposal)
        .await
        .expect_err("a proposal in someone else's name");
    assert!(
        err.to_string().contains("may create or withdraw it") || err.to_string().contains("own name only"),
        "{err}"
    );
    // In her own name, cleo may propose with kubectl; the operator opens it under the
    // bylaws (free text by approval).
    let mut own = proposal.clone();
    own.metadata.name = Some("cleos-question".into());
    own.spec.proposer = "cleo".into();
    Api::<Proposal>::namespaced(cleo, ns)
        .create(&PostParams::default(), &own)
        .await?;
    synco_e2e::wait_until("cleo's proposal to open", Duration::from_secs(20), || async {
        Ok(proposals
            .get("cleos-question")
            .await?
            .status
            .is_some_and(|s| s.phase == synco_crds::ProposalPhase::Open))
    })
    .await?;
    Ok(())
}
