//! The lifecycle's steps, each with figures worked out by hand.

use std::collections::BTreeMap;

use super::*;
use crate::voting::{Counts, Outcome};
use crate::{Delegation, Share, Weighting};

const NOW: i64 = 1_000_000;
const HOUR: i64 = 3600;

fn members() -> Vec<Voter> {
    vec![
        Voter::new("ana", "workers"),
        Voter::new("ben", "workers"),
        Voter::new("cleo", "users"),
        Voter::new("dan", "users"),
        Voter::new("eve", "users").suspended(),
    ]
}

fn bylaws(method: Method) -> KindRules {
    KindRules {
        rules: VotingRules::new(method).with_quorum(Share::percent(50)),
        period_seconds: HOUR,
    }
}

fn yes_no(kind: Kind) -> ProposalShape {
    ProposalShape {
        kind,
        options: vec![],
        has_effect: kind != Kind::FreeText,
        split_percent: None,
        base_floor_percent: 0,
    }
}

fn options(kind: Kind, names: &[&str], effects: bool) -> ProposalShape {
    ProposalShape {
        kind,
        options: names
            .iter()
            .map(|n| OptionShape {
                name: (*n).to_owned(),
                has_effect: effects,
                has_floor: false,
            })
            .collect(),
        has_effect: false,
        split_percent: None,
        base_floor_percent: 0,
    }
}

#[test]
fn opening_takes_the_bylaws_rules_window_and_electorate() {
    let opened = open(
        &yes_no(Kind::Allocation),
        "ben",
        &members(),
        &bylaws(Method::Majority),
        NOW,
        7,
    )
    .unwrap();
    assert_eq!(opened.window(), VotingWindow::new(NOW, NOW + HOUR));
    assert_eq!(opened.rules.tie_break, TieBreak::Seeded { seed: 7 });
    assert_eq!(opened.rules.quorum, Share::percent(50));
    let ids: Vec<&str> = opened.electorate.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["ana", "ben", "cleo", "dan", "eve"]);
}

#[test]
fn only_members_in_good_standing_propose() {
    let b = bylaws(Method::Majority);
    let shape = yes_no(Kind::Allocation);
    assert_eq!(
        open(&shape, "acme", &members(), &b, NOW, 1),
        Err(OpenError::NotAMember("acme".into()))
    );
    assert_eq!(
        open(&shape, "eve", &members(), &b, NOW, 1),
        Err(OpenError::NotEligible("eve".into()))
    );
}

#[test]
fn a_proposal_must_fit_its_method() {
    let m = members();
    let yes_no_rules = bylaws(Method::Majority);
    let mut s = yes_no(Kind::Allocation);
    s.has_effect = false;
    assert!(matches!(
        open(&s, "ana", &m, &yes_no_rules, NOW, 1),
        Err(OpenError::NeedsEffect { .. })
    ));
    assert!(matches!(
        open(
            &options(Kind::Allocation, &["a", "b"], true),
            "ana",
            &m,
            &yes_no_rules,
            NOW,
            1
        ),
        Err(OpenError::OptionsNotUsed { .. })
    ));
    let approval = bylaws(Method::Approval);
    assert!(matches!(
        open(
            &options(Kind::ModelAdoption, &["a"], true),
            "ana",
            &m,
            &approval,
            NOW,
            1
        ),
        Err(OpenError::NeedsOptions { .. })
    ));
    let mut with_effect = options(Kind::ModelAdoption, &["a", "b"], true);
    with_effect.has_effect = true;
    assert!(matches!(
        open(&with_effect, "ana", &m, &approval, NOW, 1),
        Err(OpenError::EffectOnOptionMethod { .. })
    ));
    assert!(matches!(
        open(
            &options(Kind::ModelAdoption, &["a", "a"], true),
            "ana",
            &m,
            &approval,
            NOW,
            1
        ),
        Err(OpenError::DuplicateOption(_))
    ));
    let dot = bylaws(Method::Dot {
        points_per_member: 10,
    });
    assert_eq!(
        open(&options(Kind::Bylaw, &["a", "b"], false), "ana", &m, &dot, NOW, 1),
        Err(OpenError::DotOnKind(Kind::Bylaw))
    );
    let mut split = options(Kind::Allocation, &["a", "b"], false);
    assert_eq!(open(&split, "ana", &m, &dot, NOW, 1), Err(OpenError::NeedsSplit));
    split.split_percent = Some(60);
    assert_eq!(
        open(&split, "ana", &m, &dot, NOW, 1),
        Err(OpenError::NeedsFloor("a".into()))
    );
    for o in &mut split.options {
        o.has_floor = true;
    }
    split.base_floor_percent = 50;
    assert_eq!(
        open(&split, "ana", &m, &dot, NOW, 1),
        Err(OpenError::SplitOverWhole { base: 50, split: 60 })
    );
    split.base_floor_percent = 40;
    assert!(open(&split, "ana", &m, &dot, NOW, 1).is_ok());
    let mut long = yes_no(Kind::FreeText);
    long.split_percent = Some(10);
    assert!(matches!(
        open(&long, "ana", &m, &yes_no_rules, NOW, 1),
        Err(OpenError::SplitNotUsed { .. })
    ));
}

#[test]
fn ballots_are_accepted_only_in_the_window_from_the_electorate_once() {
    let opened = open(
        &yes_no(Kind::Allocation),
        "ana",
        &members(),
        &bylaws(Method::Majority),
        NOW,
        1,
    )
    .unwrap();
    let yes = BallotForm::position(Position::Yes);
    let ok = |m: &str, at: i64, voted: bool| accept_ballot(&opened, &[], m, &yes, voted, at);
    assert_eq!(ok("ana", NOW, false), Ok(()));
    assert_eq!(
        ok("ana", NOW - 1, false),
        Err(Refusal::NotOpenYet { opens_at: NOW })
    );
    assert_eq!(
        ok("ana", NOW + HOUR, false),
        Err(Refusal::Closed {
            closes_at: NOW + HOUR
        })
    );
    assert_eq!(
        Refusal::Closed {
            closes_at: 1_796_126_934
        }
        .to_string(),
        "voting closed at 2026-12-01T12:08:54Z",
        "a moment members can read"
    );
    assert_eq!(ok("zed", NOW, false), Err(Refusal::NotInElectorate("zed".into())));
    assert_eq!(ok("eve", NOW, false), Err(Refusal::NotEligible("eve".into())));
    assert_eq!(ok("ana", NOW, true), Err(Refusal::AlreadyVoted("ana".into())));
    let block = BallotForm::position(Position::Block);
    assert!(matches!(
        accept_ballot(&opened, &[], "ben", &block, false, NOW),
        Err(Refusal::InvalidBallot(_))
    ));
    let two = BallotForm {
        position: Some(Position::Yes),
        approvals: Some(vec![]),
        ..BallotForm::default()
    };
    assert!(matches!(
        accept_ballot(&opened, &[], "ben", &two, false, NOW),
        Err(Refusal::InvalidBallot(_))
    ));
}

#[test]
fn withdrawing_is_for_the_proposer_before_any_ballot() {
    assert_eq!(withdraw("ana", "ana", true, 0), Ok(()));
    assert_eq!(
        withdraw("ana", "ben", true, 0),
        Err(WithdrawRefusal::NotProposer {
            proposer: "ana".into()
        })
    );
    assert_eq!(
        withdraw("ana", "ana", true, 1),
        Err(WithdrawRefusal::HasBallots(1))
    );
    assert_eq!(withdraw("ana", "ana", false, 0), Err(WithdrawRefusal::NotOpen));
}

fn cast(member: &str, at: i64, ballot: BallotForm) -> CastBallot {
    CastBallot {
        member: member.to_owned(),
        cast_at: at,
        ballot,
    }
}

fn record(method: Method, opts: &[&str], ballots: Vec<CastBallot>) -> Record {
    let mut rules = VotingRules::new(method).with_quorum(Share::percent(50));
    rules.window = Some(VotingWindow::new(NOW, NOW + HOUR));
    rules.tie_break = TieBreak::Seeded { seed: 42 };
    Record {
        proposal: "p".into(),
        kind: Kind::Allocation,
        options: opts.iter().map(|o| (*o).to_owned()).collect(),
        split_percent: None,
        rules,
        electorate: members(),
        suspended_at_close: vec![],
        delegations: vec![],
        ballots,
    }
}

/// The close, worked by hand. Electorate: ana, ben, cleo, dan (active), eve (suspended
/// when voting opened); one vote each. Quorum 50% of the eligible 4 votes.
///
/// * ana votes Yes; ben delegates to ana and does not vote: ana's ballot carries 2.
/// * cleo votes No, then votes again (Yes): the second is set aside as a duplicate.
/// * dan votes Yes and is suspended at the close: set aside.
/// * eve (suspended at the opening) votes No: set aside.
/// * zed (not a member at the opening) votes No: set aside.
/// * fay votes late.
///
/// Counted: ana Yes (2 with ben), cleo No (1). Turnout 3 of 4 (75%), yes 2 > no 1: passed,
/// and the proposal's own effect applies.
#[test]
fn close_counts_delegations_and_sets_aside_what_cannot_count() {
    let yes = || BallotForm::position(Position::Yes);
    let no = || BallotForm::position(Position::No);
    let mut r = record(
        Method::Majority,
        &[],
        vec![
            cast("ana", NOW + 10, yes()),
            cast("cleo", NOW + 20, no()),
            cast("cleo", NOW + 30, yes()),
            cast("dan", NOW + 40, yes()),
            cast("eve", NOW + 50, no()),
            cast("zed", NOW + 60, no()),
        ],
    );
    r.electorate.push(Voter::new("fay", "users"));
    r.ballots.push(cast("fay", NOW + HOUR, no()));
    r.delegations.push(Delegation::new("ben", "ana"));
    r.suspended_at_close.push("dan".into());
    let closed = close(&r).unwrap();
    assert_eq!(closed.result.outcome, Outcome::Passed);
    assert_eq!(
        closed.result.counts,
        Counts::YesNo {
            yes: 2000,
            no: 1000,
            abstain: 0
        }
    );
    // Eligible: ana, ben, cleo, fay (dan suspended at the close, eve at the opening).
    assert_eq!(closed.result.audit.eligible_weight, 4000);
    assert_eq!(closed.result.audit.turnout.total_weight, 3000);
    assert_eq!(closed.result.audit.delegation.used.len(), 1);
    assert_eq!(closed.result.audit.delegation.used[0].from, "ben");
    assert_eq!(closed.result.audit.delegation.used[0].to, "ana");
    let why: Vec<(&str, SetAsideWhy)> = closed
        .set_aside
        .iter()
        .map(|s| (s.member.as_str(), s.why))
        .collect();
    assert_eq!(
        why,
        [
            ("cleo", SetAsideWhy::Duplicate),
            ("dan", SetAsideWhy::Suspended),
            ("eve", SetAsideWhy::Suspended),
            ("fay", SetAsideWhy::Late),
            ("zed", SetAsideWhy::NotInElectorate),
        ]
    );
    assert!(closed.set_aside[1].detail.contains("at the close"));
    assert!(closed.set_aside[2].detail.contains("when voting opened"));
    assert_eq!(closed.effect, DecidedEffect::Proposal);
}

#[test]
fn the_fingerprint_is_the_records_and_any_changed_ballot_changes_it() {
    let r = record(
        Method::Majority,
        &[],
        vec![
            cast("ana", NOW + 1, BallotForm::position(Position::Yes)),
            cast("ben", NOW + 2, BallotForm::position(Position::No)),
        ],
    );
    let closed = close(&r).unwrap();
    assert_eq!(closed.fingerprint.len(), 64);
    // The order ballots are listed in does not matter.
    let mut shuffled = r.clone();
    shuffled.ballots.reverse();
    shuffled.electorate.reverse();
    assert_eq!(recount(&shuffled).unwrap(), closed);
    let mut changed = r.clone();
    changed.ballots[1].ballot = BallotForm::position(Position::Abstain);
    assert_ne!(recount(&changed).unwrap().fingerprint, closed.fingerprint);
    let mut later = r.clone();
    later.ballots[0].cast_at += 1;
    assert_ne!(fingerprint(&later), closed.fingerprint);
    // A late ballot never counts and does not change the fingerprint.
    let mut late = r.clone();
    late.ballots
        .push(cast("cleo", NOW + HOUR, BallotForm::position(Position::Yes)));
    let recounted = recount(&late).unwrap();
    assert_eq!(recounted.fingerprint, closed.fingerprint);
    assert_eq!(recounted.set_aside[0].why, SetAsideWhy::Late);
    // A tie: yes 1, no 1 keeps the status quo.
    assert_eq!(closed.result.outcome, Outcome::Rejected);
    assert_eq!(closed.effect, DecidedEffect::Nothing);
}

#[test]
fn receipts_name_one_ballot() {
    let a = cast("ana", NOW + 1, BallotForm::position(Position::Yes));
    let r1 = receipt("p", &a);
    assert_eq!(r1.len(), 64);
    assert_eq!(r1, receipt("p", &a.clone()));
    assert_ne!(r1, receipt("q", &a));
    let mut b = a.clone();
    b.ballot = BallotForm::position(Position::No);
    assert_ne!(r1, receipt("p", &b));
}

/// Approval between three models: ana {x, y}, ben {y}, cleo {z}, dan {y, z}. Totals
/// x 1, y 3, z 2: y wins and y's effect is the one to apply.
#[test]
fn the_winning_options_effect_is_decided() {
    let approve = |o: &[&str]| BallotForm {
        approvals: Some(o.iter().map(|s| (*s).to_owned()).collect()),
        ..BallotForm::default()
    };
    let r = record(
        Method::Approval,
        &["x", "y", "z"],
        vec![
            cast("ana", NOW, approve(&["x", "y"])),
            cast("ben", NOW, approve(&["y"])),
            cast("cleo", NOW, approve(&["z"])),
            cast("dan", NOW, approve(&["y", "z"])),
        ],
    );
    let closed = close(&r).unwrap();
    assert_eq!(closed.effect, DecidedEffect::Option { option: "y".into() });
    // ben approving nothing instead: x 1, y 2, z 2, a tie for the most keeps the
    // status quo.
    let mut tied = r.clone();
    tied.ballots[1].ballot = approve(&[]);
    let closed = close(&tied).unwrap();
    assert_eq!(closed.result.outcome, Outcome::Rejected);
    assert_eq!(closed.effect, DecidedEffect::Nothing);
    assert_eq!(closed.result.ties[0].tied, ["y", "z"]);
}

/// Dot voting splits 70% between three options with 10 points each:
/// ana {a 6, b 4}, ben {a 2, b 2, c 6}, cleo {a 10}: points a 18, b 6, c 6 of 30.
/// Exact parts of 70: a 42, b 14, c 14 (no remainder).
/// With dan adding {b 1}: a 18, b 7, c 6 of 31 → 40.64, 15.80, 13.54: floors 40, 15, 13
/// (68), and the two leftover percent go to the largest remainders, a (.64) and b (.80):
/// a 41, b 16, c 13.
#[test]
fn dot_voting_splits_in_whole_percent_by_largest_remainder() {
    let dots = |p: &[(&str, u32)]| BallotForm {
        points: Some(
            p.iter()
                .map(|(o, n)| ((*o).to_owned(), *n))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..BallotForm::default()
    };
    let mut r = record(
        Method::Dot {
            points_per_member: 10,
        },
        &["a", "b", "c"],
        vec![
            cast("ana", NOW, dots(&[("a", 6), ("b", 4)])),
            cast("ben", NOW, dots(&[("a", 2), ("b", 2), ("c", 6)])),
            cast("cleo", NOW, dots(&[("a", 10)])),
        ],
    );
    r.split_percent = Some(70);
    let parts = |closed: &Closed| match &closed.effect {
        DecidedEffect::Split { parts } => parts.iter().map(|p| p.share_percent).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(parts(&close(&r).unwrap()), [42, 14, 14]);
    r.ballots.push(cast("dan", NOW, dots(&[("b", 1)])));
    assert_eq!(parts(&close(&r).unwrap()), [41, 16, 13]);
    // Too many points: set aside as invalid, not an error.
    r.ballots.push(cast("ben", NOW - 1, dots(&[("a", 11)])));
    let closed = close(&r).unwrap();
    assert_eq!(closed.set_aside[0].why, SetAsideWhy::Early);
}

fn ranking(o: &[&str]) -> BallotForm {
    BallotForm {
        ranking: Some(o.iter().map(|s| (*s).to_owned()).collect()),
        ..BallotForm::default()
    }
}

fn irv(groups: &[(usize, &[&str])], options: &[&str], seed: u64) -> crate::TallyResult {
    let mut voters = Vec::new();
    let mut ballots = Vec::new();
    for (n, r) in groups {
        for _ in 0..*n {
            let id = format!("m{:02}", voters.len());
            voters.push(Voter::new(id.clone(), "c"));
            ballots.push(cast(&id, NOW, ranking(r)));
        }
    }
    let mut rules = VotingRules::new(Method::InstantRunoff);
    rules.window = Some(VotingWindow::new(NOW, NOW + HOUR));
    rules.tie_break = TieBreak::Seeded { seed };
    rules.weighting = Weighting::PerMember;
    close(&Record {
        proposal: "p".into(),
        kind: Kind::FreeText,
        options: options.iter().map(|o| (*o).to_owned()).collect(),
        split_percent: None,
        rules,
        electorate: voters,
        suspended_at_close: vec![],
        delegations: vec![],
        ballots,
    })
    .unwrap()
    .result
}

/// Round 1: a 3, b 3, c 2, d 2 of 10. c and d tie for last with no earlier round: the
/// lot. Round 2 depends on who went out, so check the tie record instead. A tie for last
/// settled by an earlier round: round 1 a 4, b 3, c 2, d 1 (d out); d's ballot goes to c:
/// round 2 a 4, b 3, c 3: b and c tie for last; in round 1 b had 3 and c 2, so c goes out.
#[test]
fn instant_runoff_ties_for_last_look_back_then_draw_lots() {
    let r = irv(
        &[(4, &["a"]), (3, &["b"]), (2, &["c"]), (1, &["d", "c"])],
        &["a", "b", "c", "d"],
        9,
    );
    let Counts::Rounds { rounds, .. } = &r.counts else {
        panic!("rounds")
    };
    assert_eq!(rounds[0].eliminated.as_deref(), Some("d"));
    assert_eq!(rounds[1].eliminated.as_deref(), Some("c"));
    assert_eq!(r.ties.len(), 1);
    assert_eq!(r.ties[0].round, Some(2));
    assert!(r.ties[0].resolution.contains("least weight in round 1"), "{r:?}");

    // Level everywhere: the lot decides, the same way for the same seed, and the listed
    // order does not matter.
    let a = irv(&[(3, &["a"]), (2, &["c"]), (2, &["d"])], &["a", "c", "d"], 5);
    let b = irv(&[(3, &["a"]), (2, &["c"]), (2, &["d"])], &["d", "c", "a"], 5);
    assert!(a.ties[0].resolution.contains("lot"));
    let out = |r: &crate::TallyResult| match &r.counts {
        Counts::Rounds { rounds, .. } => rounds[0].eliminated.clone(),
        _ => None,
    };
    assert_eq!(out(&a), out(&b));
    let outs: std::collections::BTreeSet<_> = (0..16)
        .map(|seed| {
            out(&irv(
                &[(3, &["a"]), (2, &["c"]), (2, &["d"])],
                &["a", "c", "d"],
                seed,
            ))
        })
        .collect();
    assert_eq!(outs.len(), 2, "over 16 seeds, either c or d loses the lot");
}

#[test]
fn a_tie_of_the_last_two_keeps_the_status_quo() {
    let r = irv(&[(2, &["a"]), (2, &["b"])], &["a", "b"], 1);
    assert_eq!(r.outcome, Outcome::Rejected);
    assert_eq!(r.winner, None);
    assert!(r.ties[0].resolution.contains("status quo"));
}
