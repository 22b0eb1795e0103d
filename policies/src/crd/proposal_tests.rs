//! The CRD side of the lifecycle, on the example co-op (`crds/examples`): opening under
//! the bylaws, reading Votes and Delegations into a record, writing the close into the
//! status, recounting from the status, and what each decided effect changes.

use synco_crds::{Delegation as DelegationCrd, DelegationSpec, Manifest, Position, Vote, VoteSpec};

use super::*;
use crate::lifecycle::{close, recount};

const T0: i64 = 1_800_000_000;

struct Riverside {
    coop: Cooperative,
    members: Vec<Member>,
    delegations: Vec<DelegationCrd>,
    proposal: Proposal,
}

fn riverside() -> Riverside {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples");
    let (mut coop, mut members, mut delegations, mut proposal) = (None, vec![], vec![], None);
    for m in synco_crds::manifests::load_dir(&dir).unwrap() {
        match m {
            Manifest::Cooperative(c) => coop = Some(*c),
            Manifest::Member(m) => members.push(*m),
            Manifest::Delegation(d) => delegations.push(*d),
            Manifest::Proposal(p) => proposal = Some(*p),
            _ => {}
        }
    }
    Riverside {
        coop: coop.unwrap(),
        members,
        delegations,
        proposal: proposal.unwrap(),
    }
}

fn ballot(member: &str, at: i64, p: Position) -> CastBallot {
    let spec = VoteSpec {
        proposal: "school-floor".into(),
        member: member.into(),
        position: Some(p),
        approvals: None,
        scores: None,
        ranking: None,
        points: None,
        comment: None,
    };
    let vote = Vote::new(&format!("school-floor-{member}"), spec);
    CastBallot {
        member: member.into(),
        cast_at: at,
        ballot: form(&vote.spec),
    }
}

#[test]
fn opening_takes_the_rules_window_and_electorate_from_the_bylaws() {
    let r = riverside();
    let status = open(&r.coop, &r.members, &r.proposal.spec, T0, 99).unwrap();
    assert_eq!(status.phase, ProposalPhase::Open);
    // The example bylaws: allocations by majority, quorum 50%, 90 seconds.
    let rules = status.rules.clone().unwrap();
    assert_eq!(rules.method, VotingMethod::Majority);
    assert_eq!(rules.quorum_percent, Some(50));
    assert_eq!(status.opens_at.as_ref().unwrap().0.as_second(), T0);
    assert_eq!(status.closes_at.as_ref().unwrap().0.as_second(), T0 + 90);
    assert_eq!(status.tie_break_seed.as_deref(), Some("99"));
    let names: Vec<&str> = status.electorate.iter().map(|e| e.member.as_str()).collect();
    assert_eq!(
        names,
        [
            "bakery-coop",
            "hardware-store",
            "okafor-household",
            "repair-cafe",
            "riverside-school"
        ]
    );
    // What the status records reads back as the same rules.
    let opened = opened(&status).unwrap();
    assert_eq!(opened.window(), VotingWindow::new(T0, T0 + 90));
    assert_eq!(opened.rules.tie_break, TieBreak::Seeded { seed: 99 });
}

#[test]
fn a_proposal_that_does_not_fit_the_bylaws_or_a_non_member_cannot_open() {
    let mut r = riverside();
    r.proposal.spec.proposer = "city-translation".into();
    assert!(matches!(
        open(&r.coop, &r.members, &r.proposal.spec, T0, 1),
        Err(OpenFailure::Open(OpenError::NotAMember(_)))
    ));
    let mut r = riverside();
    r.proposal.spec.effect = None;
    assert!(matches!(
        open(&r.coop, &r.members, &r.proposal.spec, T0, 1),
        Err(OpenFailure::Open(OpenError::NeedsEffect { .. }))
    ));
    let mut r = riverside();
    r.coop.spec.voting_defaults[0].rules.voting_period = Some("soon".into());
    assert!(matches!(
        open(&r.coop, &r.members, &r.proposal.spec, T0, 1),
        Err(OpenFailure::Period(_))
    ));
}

/// bakery Yes (carrying repair-cafe, who delegates to it), school Yes, hardware-store
/// No, okafor-household suspended before the close after voting No: yes 3, no 1 of 4
/// eligible. The status keeps the delegations and standing of the close, so a recount
/// from the status alone gives the same outcome and fingerprint even after the member is
/// reinstated and the delegation revoked.
#[test]
fn the_close_is_recorded_and_recounts_from_the_status() {
    let r = riverside();
    let mut proposal = r.proposal.clone();
    proposal.status = Some(open(&r.coop, &r.members, &proposal.spec, T0, 7).unwrap());
    let ballots = vec![
        ballot("bakery-coop", T0 + 5, Position::Yes),
        ballot("riverside-school", T0 + 6, Position::Yes),
        ballot("hardware-store", T0 + 7, Position::No),
        ballot("okafor-household", T0 + 8, Position::No),
    ];
    let mut members = r.members.clone();
    for m in &mut members {
        if m.metadata.name.as_deref() == Some("okafor-household") {
            m.spec.standing = synco_crds::Standing::Suspended;
        }
    }
    let rec = record(&proposal, ballots.clone(), &r.delegations, &members).unwrap();
    let closed = close(&rec).unwrap();
    let status = closed_status(
        proposal.status.clone().unwrap(),
        &rec,
        &proposal.spec,
        &closed,
        time(T0 + 92),
    );
    assert_eq!(status.phase, ProposalPhase::Passed);
    let tally = status.tally.clone().unwrap();
    assert_eq!(
        (tally.yes.as_deref(), tally.no.as_deref()),
        (Some("3"), Some("1"))
    );
    assert_eq!(status.eligible_weight.as_deref(), Some("4"));
    assert_eq!(status.turnout_percent.as_deref(), Some("100"));
    assert_eq!(
        status.delegations_used,
        [DelegationUsed {
            from: "repair-cafe".into(),
            to: "bakery-coop".into()
        }]
    );
    assert_eq!(status.suspended_at_close, ["okafor-household"]);
    assert_eq!(status.ignored_votes.len(), 1);
    assert_eq!(status.ignored_votes[0].vote, "school-floor-okafor-household");
    assert!(status.ignored_votes[0].reason.starts_with("Suspended:"));
    assert_eq!(status.decided_effect, proposal.spec.effect);
    proposal.status = Some(status.clone());
    let again = recorded(&proposal, ballots).unwrap();
    let recounted = recount(&again).unwrap();
    assert_eq!(Some(recounted.fingerprint), status.fingerprint);
    assert_eq!(recounted.result, closed.result);
}

#[test]
fn decided_effects_become_changes_of_the_proposals_kind() {
    let r = riverside();
    let spec = &r.proposal.spec;
    assert_eq!(materialize(spec, &DecidedEffect::Nothing), None);
    assert_eq!(materialize(spec, &DecidedEffect::Proposal), spec.effect);
    // A winning option without an effect changes nothing.
    let mut with_options = spec.clone();
    with_options.effect = None;
    with_options.options = vec![synco_crds::ProposalOption {
        name: "keep".into(),
        effect: None,
        floor: None,
    }];
    assert_eq!(
        materialize(
            &with_options,
            &DecidedEffect::Option {
                option: "keep".into()
            }
        ),
        None
    );
    let d = DelegationCrd::new(
        "x",
        DelegationSpec {
            member: "x".into(),
            delegate: "y".into(),
        },
    );
    assert_eq!(d.spec.delegate, "y");
}
