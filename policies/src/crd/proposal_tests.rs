use super::*;
use crate::tally;
use synco_crds::{Manifest, ProposalKind, VoteSpec};

fn at(s: &str) -> Time {
    Time(s.parse().unwrap())
}

struct Riverside {
    coop: Cooperative,
    members: Vec<Member>,
    proposal: Proposal,
}

fn riverside() -> Riverside {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples");
    let (mut coop, mut members, mut proposal) = (None, vec![], None);
    for m in synco_crds::manifests::load_dir(&dir).unwrap() {
        match m {
            Manifest::Cooperative(c) => coop = Some(*c),
            Manifest::Member(mut m) => {
                m.metadata.creation_timestamp = Some(at("2026-01-01T00:00:00Z"));
                members.push(*m);
            }
            Manifest::Proposal(p) => proposal = Some(*p),
            _ => {}
        }
    }
    Riverside {
        coop: coop.unwrap(),
        members,
        proposal: proposal.unwrap(),
    }
}

fn vote(proposal: &str, member: &str, cast: &str, f: impl FnOnce(&mut VoteSpec)) -> Vote {
    let mut spec = VoteSpec {
        proposal: proposal.to_owned(),
        member: member.to_owned(),
        position: None,
        approvals: None,
        scores: None,
        ranking: None,
        points: None,
        comment: None,
    };
    f(&mut spec);
    let mut v = Vote::new(&format!("{proposal}-{member}"), spec);
    v.metadata.creation_timestamp = Some(at(cast));
    v
}

fn position(proposal: &str, member: &str, cast: &str, p: Position) -> Vote {
    vote(proposal, member, cast, |s| s.position = Some(p))
}

const DURING: &str = "2026-11-02T10:00:00Z";
const AFTER: &str = "2026-12-08T09:00:00Z";

#[test]
fn riverside_allocation_passes_with_delegation() {
    let r = riverside();
    let votes = vec![
        position("school-floor", "bakery-coop", DURING, Position::Yes),
        position("school-floor", "riverside-school", DURING, Position::Yes),
        position("school-floor", "hardware-store", DURING, Position::Abstain),
        // Another proposal's vote is not looked at.
        position("other", "okafor-household", DURING, Position::No),
    ];
    let prepared = prepare(&r.coop, &r.members, &r.proposal, &votes);
    assert!(prepared.ignored.is_empty(), "{:?}", prepared.ignored);
    assert_eq!(prepared.input.electorate.len(), 5);
    assert_eq!(prepared.input.ballots.len(), 3);
    assert_eq!(
        prepared.input.delegations,
        vec![Delegation::new("repair-cafe", "bakery-coop")]
    );
    let result = tally(&prepared.input, &prepared.rules).unwrap();
    let status = proposal_outcome(&result, &prepared, at(AFTER));
    assert_eq!(status.phase, ProposalPhase::Passed);
    let t = status.tally.unwrap();
    // bakery carries repair-cafe's vote.
    assert_eq!(t.yes.as_deref(), Some("3"));
    assert_eq!(t.no.as_deref(), Some("0"));
    assert_eq!(t.abstain.as_deref(), Some("1"));
    assert_eq!(status.eligible_weight.as_deref(), Some("5"));
    assert_eq!(status.cast_weight.as_deref(), Some("4"));
    assert_eq!(status.delegated_weight.as_deref(), Some("1"));
    assert_eq!(status.turnout_percent.as_deref(), Some("80"));
    assert_eq!(status.counted_votes, Some(3));
    assert!(status.rule.unwrap().contains("quorum 50%"));
    assert_eq!(status.decided_at, Some(at(AFTER)));
}

#[test]
fn late_unknown_and_suspended_votes_are_ignored_and_explained() {
    let mut r = riverside();
    r.members
        .iter_mut()
        .find(|m| m.metadata.name.as_deref() == Some("okafor-household"))
        .unwrap()
        .spec
        .standing = synco_crds::resources::member::Standing::Suspended;
    let votes = vec![
        position("school-floor", "bakery-coop", DURING, Position::Yes),
        position("school-floor", "riverside-school", AFTER, Position::No),
        position("school-floor", "stranger", DURING, Position::No),
        position("school-floor", "okafor-household", DURING, Position::No),
        vote("school-floor", "hardware-store", DURING, |s| {
            s.approvals = Some(vec!["a".to_owned()]);
        }),
    ];
    let prepared = prepare(&r.coop, &r.members, &r.proposal, &votes);
    let reasons: Vec<(&str, &str)> = prepared
        .ignored
        .iter()
        .map(|i| (i.member.as_str(), i.reason.split(':').next().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("hardware-store", reason::INVALID_BALLOT),
            ("okafor-household", reason::NOT_ELIGIBLE),
            ("riverside-school", reason::OUTSIDE_WINDOW),
            ("stranger", reason::UNKNOWN_MEMBER),
        ]
    );
    assert!(prepared.ignored[2].reason.contains("after it closed"));
    let result = tally(&prepared.input, &prepared.rules).unwrap();
    let status = proposal_outcome(&result, &prepared, at(AFTER));
    // bakery + repair-cafe of four eligible: 50%, quorum met.
    assert_eq!(status.phase, ProposalPhase::Passed);
    assert_eq!(status.eligible_weight.as_deref(), Some("4"));
    assert_eq!(status.turnout_percent.as_deref(), Some("50"));
    assert_eq!(status.ignored_votes.len(), 4);
}

#[test]
fn members_who_joined_after_the_close_are_not_in_the_electorate() {
    let mut r = riverside();
    r.members[0].metadata.creation_timestamp = Some(at("2026-12-09T00:00:00Z"));
    let prepared = prepare(&r.coop, &r.members, &r.proposal, &[]);
    assert_eq!(prepared.input.electorate.len(), 4);
    let result = tally(&prepared.input, &prepared.rules).unwrap();
    assert_eq!(result.outcome, Outcome::NoQuorum);
}

#[test]
fn consent_with_one_block_is_rejected() {
    let mut r = riverside();
    r.proposal.spec.kind = ProposalKind::MemberAdmission;
    r.proposal.spec.voting = None;
    // The co-op's default for admissions is consent.
    assert_eq!(rules_for(&r.coop, &r.proposal).method, VotingMethod::Consent);
    let votes = vec![
        position("school-floor", "bakery-coop", DURING, Position::Yes),
        position("school-floor", "riverside-school", DURING, Position::Yes),
        position("school-floor", "repair-cafe", DURING, Position::StandAside),
        position("school-floor", "hardware-store", DURING, Position::Block),
    ];
    let prepared = prepare(&r.coop, &r.members, &r.proposal, &votes);
    let result = tally(&prepared.input, &prepared.rules).unwrap();
    let status = proposal_outcome(&result, &prepared, at(AFTER));
    assert_eq!(status.phase, ProposalPhase::Rejected);
    let t = status.tally.unwrap();
    assert_eq!(t.block.as_deref(), Some("1"));
    assert_eq!(t.stand_aside.as_deref(), Some("1"));
    assert_eq!(t.yes.as_deref(), Some("2"));
}

#[test]
fn rules_fall_back_to_majority_and_class_shares_weigh() {
    let mut r = riverside();
    r.proposal.spec.kind = ProposalKind::FreeText;
    r.proposal.spec.voting = None;
    let rules = rules_for(&r.coop, &r.proposal);
    assert_eq!(rules.method, VotingMethod::Majority);
    assert_eq!(rules.quorum_percent, None);

    // community 50% (4 members), business 50% (1 member).
    for c in &mut r.coop.spec.member_classes {
        c.voting_power_percent = Some(50);
    }
    let votes = vec![
        position("school-floor", "hardware-store", DURING, Position::Yes),
        position("school-floor", "bakery-coop", DURING, Position::No),
    ];
    let prepared = prepare(&r.coop, &r.members, &r.proposal, &votes);
    assert!(matches!(prepared.rules.weighting, Weighting::ClassShares(_)));
    let result = tally(&prepared.input, &prepared.rules).unwrap();
    let status = proposal_outcome(&result, &prepared, at(AFTER));
    let t = status.tally.unwrap();
    // hardware-store holds half the power; bakery an eighth plus repair-cafe's eighth.
    assert_eq!(t.yes.as_deref(), Some("50%"));
    assert_eq!(t.no.as_deref(), Some("25%"));
    assert_eq!(status.phase, ProposalPhase::Passed);
}

#[test]
fn option_methods_fill_options_and_rounds() {
    let mut r = riverside();
    r.proposal.spec.options = vec!["a".into(), "b".into(), "c".into()];
    r.proposal.spec.voting = Some(synco_crds::VotingRules {
        method: VotingMethod::RankedChoice,
        quorum_percent: None,
        threshold: None,
        voting_period_hours: None,
        max_score: None,
        points_per_member: None,
    });
    let rank = |m: &str, r: &[&str]| {
        vote("school-floor", m, DURING, |s| {
            s.ranking = Some(r.iter().map(|x| (*x).to_owned()).collect());
        })
    };
    let votes = vec![
        rank("bakery-coop", &["a", "b"]),
        rank("riverside-school", &["b", "a"]),
        rank("okafor-household", &["c", "b"]),
        rank("hardware-store", &["b"]),
        rank("repair-cafe", &["a", "a"]),
    ];
    let prepared = prepare(&r.coop, &r.members, &r.proposal, &votes);
    assert_eq!(
        prepared.ignored.len(),
        1,
        "a ranking naming an option twice is refused"
    );
    let result = tally(&prepared.input, &prepared.rules).unwrap();
    let status = proposal_outcome(&result, &prepared, at(AFTER));
    assert_eq!(status.winner.as_deref(), Some("b"));
    let t = status.tally.unwrap();
    assert!(!t.rounds.is_empty());
    assert_eq!(t.rounds[0].eliminated.as_deref(), Some("c"));
}
