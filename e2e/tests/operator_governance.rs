//! The Proposal and Allocation controllers against the real API server, with the
//! operator running in-process as its ServiceAccount, under exactly the RBAC listed in
//! `operator/README.md`.

mod operator_support;

use std::time::Duration;

use kube::api::Api;
use operator_support::*;
use synco_crds::{AllocationPhase, Member, ProposalPhase};
use synco_e2e::{cluster, wait_until, with_temp_ns};

const ALLOCATION_EFFECT: &str = r#"    kind: Allocation
    effect:
      allocation:
        floors:
          - {memberClass: community, sharePercent: 45}
          - {member: bob, sharePercent: 15}
          - {memberClass: business, sharePercent: 10}
        surplusCapPercent: 25
"#;

#[tokio::test]
async fn five_members_pass_an_allocation_and_quotas_match_the_policies() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    install_crds(admin).await?;
    with_temp_ns(admin, "op-allocation", |ns| async move {
        let client = operator_client(cluster, admin, &ns).await?;
        coop(admin, &ns).await?;
        let op = start(client, &ns, "op-a", false);
        // The founding allocation comes into force with quotas.
        wait_until("shares-v1 in force", Duration::from_secs(30), || async {
            let all = allocations(admin, &ns).await?;
            Ok(all.len() == 1
                && phase(&all[0]) == AllocationPhase::InForce
                && all[0]
                    .status
                    .as_ref()
                    .is_some_and(|s| s.capacity_tokens_per_second == 1000))
        })
        .await?;

        propose(admin, &ns, "bob-floor", 5, ALLOCATION_EFFECT).await?;
        for (m, p) in [
            ("alice", "Yes"),
            ("bob", "Yes"),
            ("carol", "Yes"),
            ("dave", "No"),
            ("erin", "Abstain"),
        ] {
            vote(admin, &ns, "bob-floor", m, p).await?;
        }
        let p = wait_phase(
            admin,
            &ns,
            "bob-floor",
            &[ProposalPhase::Applied],
            Duration::from_secs(30),
        )
        .await?;
        let s = p.status.unwrap();
        let tally = s.tally.unwrap();
        assert_eq!(
            (
                tally.yes.as_deref(),
                tally.no.as_deref(),
                tally.abstain.as_deref()
            ),
            (Some("3"), Some("1"), Some("1"))
        );
        assert_eq!(s.turnout_percent.as_deref(), Some("100"));
        assert_eq!(s.counted_votes, Some(5));
        assert!(s.rule.unwrap().contains("quorum 50%"));
        assert_eq!(s.applied_to.as_deref(), Some("Allocation/shares-v2"));

        wait_until(
            "shares-v2 in force and shares-v1 superseded",
            Duration::from_secs(30),
            || async {
                let all = allocations(admin, &ns).await?;
                Ok(all.len() == 2
                    && phase(&all[0]) == AllocationPhase::Superseded
                    && phase(&all[1]) == AllocationPhase::InForce)
            },
        )
        .await?;
        let all = allocations(admin, &ns).await?;
        let (old, new) = (&all[0], &all[1]);
        assert_eq!(
            old.status.as_ref().unwrap().superseded_by.as_deref(),
            Some("shares-v2")
        );
        assert!(
            !old.status.as_ref().unwrap().quotas.is_empty(),
            "the superseded allocation keeps its quotas"
        );
        assert_eq!(new.spec.proposal.as_deref(), Some("bob-floor"));
        let expected = expected_quotas(admin, &ns, new).await?;
        let status = new.status.clone().unwrap();
        assert_eq!(status.quotas, expected.quotas);
        assert_eq!(
            status.capacity_tokens_per_second,
            expected.capacity_tokens_per_second
        );
        assert_eq!(status.surplus_tokens_per_second, 250);
        let bob = status.quotas.iter().find(|q| q.name == "bob").unwrap();
        // 15% of 1000 of its own, plus a quarter of the community's 45% (450 / 4, the
        // remainder going to the first members by name).
        assert!((262..=263).contains(&bob.guaranteed_tokens_per_second), "{bob:?}");
        op.shutdown().await?;
        drop_rbac(admin, &ns).await;
        Ok::<_, anyhow::Error>(())
    })
    .await
}

#[tokio::test]
async fn no_quorum_changes_nothing_and_a_block_rejects_consent() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    install_crds(admin).await?;
    with_temp_ns(admin, "op-noquorum", |ns| async move {
        let client = operator_client(cluster, admin, &ns).await?;
        coop(admin, &ns).await?;
        let op = start(client, &ns, "op-a", false);
        propose(admin, &ns, "thin", 4, ALLOCATION_EFFECT).await?;
        vote(admin, &ns, "thin", "alice", "Yes").await?;
        propose(
            admin,
            &ns,
            "admit-frank",
            4,
            "    kind: MemberAdmission\n    effect:\n      memberAdmission:\n        name: frank\n        spec: {displayName: Frank, class: community, identity: frank}\n",
        )
        .await?;
        for (m, p) in [("alice", "Yes"), ("bob", "Yes"), ("carol", "StandAside"), ("dave", "Yes"), ("erin", "Block")] {
            vote(admin, &ns, "admit-frank", m, p).await?;
        }

        let thin = wait_phase(admin, &ns, "thin", &[ProposalPhase::NoQuorum, ProposalPhase::Passed, ProposalPhase::Rejected, ProposalPhase::Applied], Duration::from_secs(30)).await?;
        let s = thin.status.unwrap();
        assert_eq!(s.phase, ProposalPhase::NoQuorum);
        assert_eq!(s.turnout_percent.as_deref(), Some("20"));
        assert!(s.applied_to.is_none());

        let admit = wait_phase(admin, &ns, "admit-frank", &[ProposalPhase::Rejected, ProposalPhase::Passed, ProposalPhase::Applied], Duration::from_secs(30)).await?;
        let s = admit.status.unwrap();
        assert_eq!(s.phase, ProposalPhase::Rejected);
        assert_eq!(s.tally.unwrap().block.as_deref(), Some("1"));

        // Give the operator a moment to do anything it (wrongly) would.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let all = allocations(admin, &ns).await?;
        assert_eq!(all.len(), 1, "no new allocation without quorum");
        assert_eq!(phase(&all[0]), AllocationPhase::InForce);
        let members: Api<Member> = Api::namespaced(admin.clone(), &ns);
        assert!(members.get_opt("frank").await?.is_none(), "a blocked admission admits no one");
        op.shutdown().await?;
        drop_rbac(admin, &ns).await;
        Ok::<_, anyhow::Error>(())
    })
    .await
}

#[tokio::test]
async fn a_vote_after_the_close_is_ignored_and_reported() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    install_crds(admin).await?;
    with_temp_ns(admin, "op-late-vote", |ns| async move {
        let client = operator_client(cluster, admin, &ns).await?;
        coop(admin, &ns).await?;
        let op = start(client, &ns, "op-a", false);
        // Long enough for three Votes to be created on a loaded machine (CI runs this beside
        // the browser tests); a Vote in the closing second is late.
        propose(admin, &ns, "early", 8, "    kind: FreeText\n").await?;
        for m in ["alice", "bob", "carol"] {
            vote(admin, &ns, "early", m, "Yes").await?;
        }
        let decided = wait_phase(
            admin,
            &ns,
            "early",
            &[
                ProposalPhase::Applied,
                ProposalPhase::Rejected,
                ProposalPhase::NoQuorum,
            ],
            Duration::from_secs(30),
        )
        .await?;
        let before = decided.status.unwrap();
        assert_eq!(before.phase, ProposalPhase::Applied);
        assert_eq!(before.counted_votes, Some(3));

        vote(admin, &ns, "early", "dave", "No").await?;
        let api: Api<synco_crds::Proposal> = Api::namespaced(admin.clone(), &ns);
        wait_until(
            "the late vote to be reported",
            Duration::from_secs(30),
            || async {
                let p = api.get("early").await?;
                Ok(p.status
                    .is_some_and(|s| s.ignored_votes.iter().any(|v| v.member == "dave")))
            },
        )
        .await?;
        let after = api.get("early").await?.status.unwrap();
        let late = after.ignored_votes.iter().find(|v| v.member == "dave").unwrap();
        assert_eq!(late.vote, "early-dave");
        assert!(late.reason.starts_with("Late"), "{}", late.reason);
        // The outcome stands.
        assert_eq!(after.tally, before.tally);
        assert_eq!(after.counted_votes, Some(3));
        // And there is an Event for it.
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), &ns);
        wait_until("a BallotSetAside Event", Duration::from_secs(10), || async {
            let list = events.list(&Default::default()).await?;
            Ok(list.items.iter().any(|e| {
                e.reason.as_deref() == Some("BallotSetAside")
                    && e.note.as_deref().is_some_and(|n| n.contains("dave"))
            }))
        })
        .await?;
        op.shutdown().await?;
        drop_rbac(admin, &ns).await;
        Ok::<_, anyhow::Error>(())
    })
    .await
}
