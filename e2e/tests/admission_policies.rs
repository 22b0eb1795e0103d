//! The admission policies of policies/admission, installed by the chart into
//! the real control plane, each tried by a user it must stop and one it must
//! let through. Members act with the harness's own tokens (alice, bob, carol,
//! user names equal to their keys, group synco:members); the operator and the
//! gateway act as the chart's ServiceAccounts with real TokenRequest tokens,
//! so with exactly the RBAC the chart grants them.
//!
//! Each test installs its own release (CRDs applied beforehand, so
//! crds.enabled=false) whose policies apply only in the test's namespace.

#[path = "chart_support.rs"]
mod support;

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow, bail, ensure};
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{
    chart_gateway_client, chart_operator_client, install_chart, release_name, scoped_admission_values,
    uninstall_chart,
};
use synco_e2e::{Cluster, api_error, apply_crds, apply_yaml, cluster, wait_until, with_temp_ns};

fn synco(plural: &str) -> ApiResource {
    ApiResource {
        group: "synco.coop".into(),
        version: "v1alpha1".into(),
        api_version: "synco.coop/v1alpha1".into(),
        kind: String::new(),
        plural: plural.into(),
    }
}

fn api(client: &Client, ns: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &synco(plural))
}

/// Members may create and (as far as RBAC goes) change votes, read members
/// and write allocation status: what they are stopped from doing is then the
/// policies' doing, not RBAC's.
const MEMBER_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: e2e-members}
rules:
  - apiGroups: [synco.coop]
    resources: [votes, members, allocations, proposals, delegations]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [synco.coop]
    resources: [allocations/status, votes/status]
    verbs: [get, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: e2e-members}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: e2e-members}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "synco:members"}
"#;

/// Two members: the bakery (identity alice) and the school (identity bob).
/// carol has the members' RBAC but is no Member.
const MEMBERS: &str = r#"
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {name: bakery-coop}
spec: {displayName: Bakery, class: community, identity: alice, organisation: WorkerCoop}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {name: riverside-school}
spec: {displayName: School, class: community, identity: bob, organisation: School}
"#;

fn vote(member: &str, position: &str) -> DynamicObject {
    vote_on("budget", member, position)
}

fn vote_on(proposal: &str, member: &str, position: &str) -> DynamicObject {
    let mut obj = DynamicObject::new(&format!("{proposal}-{member}"), &synco("votes")).data(json!({
        "spec": {"proposal": proposal, "member": member, "position": position}
    }));
    obj.types = Some(kube::api::TypeMeta {
        api_version: "synco.coop/v1alpha1".into(),
        kind: "Vote".into(),
    });
    obj
}

/// Installs a release whose policies police `ns` only, runs `test`, and
/// uninstalls the release whatever happened.
async fn with_policies<F, Fut>(cluster: &'static Cluster, admin: &Client, ns: &str, test: F) -> Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    apply_crds(admin).await?;
    let release = release_name("adm");
    let values = format!("crds:\n  enabled: false\n{}", scoped_admission_values(&[ns]));
    install_chart(cluster, &release, ns, &values, &[])?;
    apply_yaml(admin, Some(ns), MEMBER_RBAC).await?;
    let outcome = test(release.clone()).await;
    let removed = uninstall_chart(cluster, &release, ns);
    outcome?;
    removed.map(|_| ())
}

/// Retries `attempt` until the API server refuses it with a message
/// containing `expected` (policies and their params reach the admission
/// plugin through informers, so a fresh policy may take a moment). Anything
/// the attempt created meanwhile is removed by `undo`.
async fn expect_refused<A, AF, U, UF>(what: &str, expected: &str, attempt: A, undo: U) -> Result<()>
where
    A: Fn() -> AF,
    AF: Future<Output = Result<()>>,
    U: Fn() -> UF,
    UF: Future<Output = ()>,
{
    let last = RefCell::new(String::from("(never tried)"));
    let result = wait_until(what, Duration::from_secs(30), || {
        let (attempt, undo, last) = (&attempt, &undo, &last);
        async move {
            match attempt().await {
                Ok(()) => {
                    undo().await;
                    *last.borrow_mut() = "admitted".into();
                    Ok(false)
                }
                Err(e) => {
                    let (code, message) = api_error(&e).unwrap_or_default();
                    let refused = message.contains(expected) && (code == 403 || code == 422);
                    *last.borrow_mut() = format!("{code}: {message}");
                    Ok(refused)
                }
            }
        }
    })
    .await;
    result.map_err(|e| anyhow!("{e:#}; last answer: {}", last.borrow()))
}

async fn create(client: &Client, ns: &str, obj: &DynamicObject) -> Result<()> {
    api(client, ns, "votes")
        .create(&PostParams::default(), obj)
        .await?;
    Ok(())
}

/// A proposal name not used before in this process: a Vote admitted while a policy
/// was still loading cannot be deleted (synco-records-kept), so each try casts on a
/// proposal of its own.
fn fresh(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test]
async fn a_member_votes_only_as_itself_and_the_gateway_for_anyone() -> Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "adm-vote-author", |ns| async move {
        let (inner, ns_) = (admin.clone(), ns.clone());
        with_policies(cluster, &inner, &ns_, |release| async move {
            apply_yaml(&admin, Some(&ns), MEMBERS).await?;
            let alice = cluster.member("alice").await?;
            let carol = cluster.member("carol").await?;

            // Stopped: alice casting the school's ballot.
            let school_vote = vote("riverside-school", "No");
            expect_refused(
                "alice's vote for the school to be refused",
                "may be cast only by its identity bob",
                || {
                    let v = vote_on(&fresh("try"), "riverside-school", "No");
                    let (alice, ns) = (alice.clone(), ns.clone());
                    async move { create(&alice, &ns, &v).await }
                },
                || async {},
            )
            .await?;
            // Stopped: carol, no member, casting the bakery's ballot.
            let bakery_vote = vote("bakery-coop", "Yes");
            expect_refused(
                "carol's vote for the bakery to be refused",
                "may be cast only by its identity alice",
                || {
                    let v = vote_on(&fresh("try"), "bakery-coop", "Yes");
                    let (carol, ns) = (carol.clone(), ns.clone());
                    async move { create(&carol, &ns, &v).await }
                },
                || async {},
            )
            .await?;
            // Stopped: alice casting a ballot for a member she is not, named
            // as though it were hers.
            let err = create(&alice, &ns, &vote("nobody-here", "Yes")).await.err();
            let (code, message) = err.as_ref().and_then(api_error).unwrap_or_default();
            ensure!(
                code == 403 && message.contains("alice is member bakery-coop"),
                "{code}: {message}"
            );

            // Let through: alice casting her own ballot.
            create(&alice, &ns, &bakery_vote).await?;
            // Let through: the gateway, on the school's behalf.
            let gateway = chart_gateway_client(cluster, &ns, &release).await?;
            create(&gateway, &ns, &school_vote).await?;
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn a_cast_vote_is_never_updated() -> Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "adm-vote-immutable", |ns| async move {
        let (inner, ns_) = (admin.clone(), ns.clone());
        with_policies(cluster, &inner, &ns_, |release| async move {
            apply_yaml(&admin, Some(&ns), MEMBERS).await?;
            let alice = cluster.member("alice").await?;
            wait_until("alice to cast her vote", Duration::from_secs(30), || {
                let (alice, ns) = (alice.clone(), ns.clone());
                async move {
                    create(&alice, &ns, &vote("bakery-coop", "Yes"))
                        .await
                        .map(|()| true)
                }
            })
            .await?;
            let votes = api(&alice, &ns, "votes");
            let merge = |body: serde_json::Value| Patch::Merge(body);

            // Stopped: alice changing her ballot (the CRD's rule and the policy agree).
            let err = votes
                .patch(
                    "budget-bakery-coop",
                    &PatchParams::default(),
                    &merge(json!({"spec": {"position": "No"}})),
                )
                .await
                .err()
                .ok_or_else(|| anyhow!("alice changed her ballot"))?;
            let (code, message) = api_error(&anyhow::Error::from(err)).unwrap_or_default();
            ensure!(
                message.contains("a vote cannot be changed once cast"),
                "{code}: {message}"
            );
            // Stopped: alice touching it at all.
            let label = json!({"metadata": {"labels": {"mood": "regret"}}});
            expect_refused(
                "alice's label on her cast vote to be refused",
                "votes are never updated once cast",
                || async {
                    votes
                        .patch(
                            "budget-bakery-coop",
                            &PatchParams::default(),
                            &merge(label.clone()),
                        )
                        .await?;
                    Ok(())
                },
                || async {
                    let _ = api(&admin, &ns, "votes")
                        .patch(
                            "budget-bakery-coop",
                            &PatchParams::default(),
                            &merge(json!({"metadata": {"labels": {"mood": null}}})),
                        )
                        .await;
                },
            )
            .await?;

            // The operator never writes a Vote, and the chart grants it no right to: RBAC
            // refuses it before the policy is asked.
            let operator = chart_operator_client(cluster, &ns, &release).await?;
            let as_operator = api(&operator, &ns, "votes");
            match as_operator
                .patch(
                    "budget-bakery-coop",
                    &PatchParams::default(),
                    &merge(json!({"metadata": {"labels": {"synco.coop/tallied": "true"}}})),
                )
                .await
            {
                Err(kube::Error::Api(e)) if e.code == 403 => {}
                other => anyhow::bail!("the operator labelled a cast vote: {other:?}"),
            }
            // The status subresource is not the policy's: whoever RBAC lets write it may.
            api(&admin, &ns, "votes")
                .patch_status(
                    "budget-bakery-coop",
                    &PatchParams::default(),
                    &merge(json!({"status": {"observedGeneration": 1}})),
                )
                .await?;
            let stored = api(&admin, &ns, "votes").get("budget-bakery-coop").await?;
            ensure!(
                stored.data["status"]["observedGeneration"] == 1 && stored.data["spec"]["position"] == "Yes"
            );
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn only_the_operator_writes_allocation_status() -> Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "adm-alloc-status", |ns| async move {
        let (inner, ns_) = (admin.clone(), ns.clone());
        with_policies(cluster, &inner, &ns_, |release| async move {
            apply_yaml(
                &admin,
                Some(&ns),
                "apiVersion: synco.coop/v1alpha1\nkind: Allocation\nmetadata: {name: allocation-v1}\n\
                 spec: {version: 1, floors: [{memberClass: community, sharePercent: 60}], surplusCapPercent: 30}\n",
            )
            .await?;
            let status = json!({"status": {"observedGeneration": 1}});

            // Stopped: alice, whom RBAC lets patch allocations/status.
            let alice = cluster.member("alice").await?;
            let as_alice = api(&alice, &ns, "allocations");
            expect_refused(
                "alice's status patch to be refused",
                "only the Synco operator writes the status of allocation allocation-v1",
                || async {
                    as_alice.patch_status("allocation-v1", &PatchParams::default(), &Patch::Merge(&status)).await?;
                    Ok(())
                },
                || async {},
            )
            .await?;

            // Let through: the operator's ServiceAccount.
            let operator = chart_operator_client(cluster, &ns, &release).await?;
            api(&operator, &ns, "allocations")
                .patch_status("allocation-v1", &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            let stored = api(&admin, &ns, "allocations").get("allocation-v1").await?;
            ensure!(stored.data["status"]["observedGeneration"] == 1, "{:?}", stored.data);
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn a_member_identity_is_unique() -> Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "adm-identity", |ns| async move {
        let (inner, ns_) = (admin.clone(), ns.clone());
        with_policies(cluster, &inner, &ns_, |_release| async move {
            apply_yaml(&admin, Some(&ns), MEMBERS).await?;
            let members = api(&admin, &ns, "members");
            let member = |name: &str, identity: &str| {
                let mut m = DynamicObject::new(name, &synco("members"))
                    .data(json!({"spec": {"displayName": name, "class": "community", "identity": identity}}));
                m.types = Some(kube::api::TypeMeta {
                    api_version: "synco.coop/v1alpha1".into(),
                    kind: "Member".into(),
                });
                m
            };

            // Stopped: even the admin, giving a second member alice's identity.
            let twin = member("bakery-twin", "alice");
            expect_refused(
                "a second member with identity alice to be refused",
                "identity alice already belongs to member bakery-coop",
                || async {
                    members.create(&PostParams::default(), &twin).await?;
                    Ok(())
                },
                || async {
                    let _ = members.delete("bakery-twin", &DeleteParams::default()).await;
                },
            )
            .await?;
            // Stopped: changing the school's identity to alice's.
            let err = members
                .patch(
                    "riverside-school",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"identity": "alice"}})),
                )
                .await
                .err()
                .ok_or_else(|| anyhow!("the school took alice's identity"))?;
            let (code, message) = api_error(&anyhow::Error::from(err)).unwrap_or_default();
            ensure!(
                code == 403 && message.contains("already belongs to member bakery-coop"),
                "{code}: {message}"
            );

            // Let through: a new identity, and an update of a member that keeps its own.
            members
                .create(&PostParams::default(), &member("repair-cafe", "carol"))
                .await?;
            members
                .patch(
                    "bakery-coop",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"displayName": "Riverside Bakery"}})),
                )
                .await?;
            match members.get("bakery-twin").await {
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Ok(_) => bail!("bakery-twin exists"),
                Err(e) => Err(e.into()),
            }
        })
        .await
    })
    .await
}

fn object(plural: &str, kind: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &synco(plural)).data(json!({ "spec": spec }));
    obj.types = Some(kube::api::TypeMeta {
        api_version: "synco.coop/v1alpha1".into(),
        kind: kind.into(),
    });
    obj
}

#[tokio::test]
async fn proposals_and_delegations_are_their_members_and_the_record_is_kept() -> Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "adm-authors", |ns| async move {
        let (inner, ns_) = (admin.clone(), ns.clone());
        with_policies(cluster, &inner, &ns_, |release| async move {
            apply_yaml(&admin, Some(&ns), MEMBERS).await?;
            let alice = cluster.member("alice").await?;
            let bob = cluster.member("bob").await?;
            let proposal = |name: &str, proposer: &str| {
                object(
                    "proposals",
                    "Proposal",
                    name,
                    json!({"kind": "FreeText", "title": name, "proposer": proposer}),
                )
            };
            // Stopped: alice proposing in the school's name.
            expect_refused(
                "alice's proposal in the school's name to be refused",
                "only its identity bob",
                || async {
                    api(&alice, &ns, "proposals")
                        .create(&PostParams::default(), &proposal(&fresh("p"), "riverside-school"))
                        .await?;
                    Ok(())
                },
                || async {},
            )
            .await?;
            // Let through: alice in her own name, and the gateway in the school's.
            api(&alice, &ns, "proposals")
                .create(&PostParams::default(), &proposal("alices", "bakery-coop"))
                .await?;
            let gateway = chart_gateway_client(cluster, &ns, &release).await?;
            api(&gateway, &ns, "proposals")
                .create(&PostParams::default(), &proposal("schools", "riverside-school"))
                .await?;
            // Stopped: bob withdrawing alice's proposal; let through: alice withdrawing it.
            let withdraw =
                |by: &str| Patch::Merge(json!({"metadata": {"annotations": {"synco.coop/withdraw": by}}}));
            let err = api(&bob, &ns, "proposals")
                .patch("alices", &PatchParams::default(), &withdraw("riverside-school"))
                .await
                .err()
                .ok_or_else(|| anyhow!("bob withdrew alice's proposal"))?;
            let (code, message) = api_error(&anyhow::Error::from(err)).unwrap_or_default();
            ensure!(code == 403, "{code}: {message}");
            api(&alice, &ns, "proposals")
                .patch("alices", &PatchParams::default(), &withdraw("bakery-coop"))
                .await?;

            // Delegations: alice sets her own; not the school's; bob cannot revoke hers.
            let delegation = |member: &str, to: &str| {
                object(
                    "delegations",
                    "Delegation",
                    member,
                    json!({"member": member, "delegate": to}),
                )
            };
            expect_refused(
                "alice setting the school's delegation to be refused",
                "only its identity bob",
                || async {
                    api(&alice, &ns, "delegations")
                        .create(
                            &PostParams::default(),
                            &delegation("riverside-school", "bakery-coop"),
                        )
                        .await?;
                    Ok(())
                },
                || async {
                    let _ = api(&admin, &ns, "delegations")
                        .delete("riverside-school", &DeleteParams::default())
                        .await;
                },
            )
            .await?;
            api(&alice, &ns, "delegations")
                .create(
                    &PostParams::default(),
                    &delegation("bakery-coop", "riverside-school"),
                )
                .await?;
            let err = api(&bob, &ns, "delegations")
                .delete("bakery-coop", &DeleteParams::default())
                .await
                .err()
                .ok_or_else(|| anyhow!("bob revoked alice's delegation"))?;
            let (code, _) = api_error(&anyhow::Error::from(err)).unwrap_or_default();
            ensure!(code == 403);
            api(&gateway, &ns, "delegations")
                .create(
                    &PostParams::default(),
                    &delegation("riverside-school", "bakery-coop"),
                )
                .await?;
            api(&alice, &ns, "delegations")
                .delete("bakery-coop", &DeleteParams::default())
                .await?;

            // The record is kept: not even the admin deletes a Vote or a Proposal.
            create(&alice, &ns, &vote_on("schools", "bakery-coop", "Yes")).await?;
            for (plural, name) in [("votes", "schools-bakery-coop"), ("proposals", "schools")] {
                let err = api(&admin, &ns, plural)
                    .delete(name, &DeleteParams::default())
                    .await
                    .err()
                    .ok_or_else(|| anyhow!("the admin deleted {plural}/{name}"))?;
                let (code, message) = api_error(&anyhow::Error::from(err)).unwrap_or_default();
                ensure!(
                    code == 403 && message.contains("never deleted"),
                    "{plural}: {code}: {message}"
                );
            }
            Ok(())
        })
        .await
    })
    .await
}
