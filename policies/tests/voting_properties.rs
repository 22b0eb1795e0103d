//! Property tests of the tally's invariants.

use std::collections::BTreeMap;

use proptest::prelude::*;
use synco_policies::{
    Ballot, Choice, ConsentPosition, Counts, Delegation, Fraction, Method, Outcome, Share, TallyInput,
    TieBreak, Voter, VotingRules, Weighting, tally,
};

const OPTIONS: [&str; 4] = ["a", "b", "c", "d"];

fn methods() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Majority),
        (1u64..=3, 3u64..=4).prop_map(|(n, d)| Method::Supermajority {
            threshold: Fraction::new(n, d)
        }),
        (0u32..=1).prop_map(|b| Method::Consent { blocks_allowed: b }),
        Just(Method::Approval),
        Just(Method::Score { min: -1, max: 3 }),
        Just(Method::InstantRunoff),
        Just(Method::Schulze),
        Just(Method::Dot { points_per_member: 5 }),
    ]
}

/// A ballot content valid for `method`, built from random numbers.
fn choice_for(method: &Method, seed: &[u8]) -> Choice {
    let pick = |i: usize| seed.get(i).copied().unwrap_or(0);
    if pick(0) % 6 == 0 {
        return Choice::Abstain;
    }
    match method {
        Method::Majority | Method::Supermajority { .. } => {
            if pick(1) % 2 == 0 {
                Choice::Yes
            } else {
                Choice::No
            }
        }
        Method::Consent { .. } => Choice::Consent(match pick(1) % 8 {
            0 => ConsentPosition::Block,
            1 => ConsentPosition::StandAside,
            2 => ConsentPosition::Disagree,
            _ => ConsentPosition::Agree,
        }),
        Method::Approval => Choice::Approve(
            OPTIONS
                .iter()
                .enumerate()
                .filter(|(i, _)| pick(1) >> i & 1 == 1)
                .map(|(_, o)| (*o).into())
                .collect(),
        ),
        Method::Score { min, max } => Choice::Score(
            OPTIONS
                .iter()
                .enumerate()
                .filter(|(i, _)| pick(2 + i) % 5 != 0)
                .map(|(i, o)| ((*o).to_owned(), min + i64::from(pick(6 + i)) % (max - min + 1)))
                .collect(),
        ),
        Method::InstantRunoff | Method::Schulze => {
            // A permutation prefix of the options.
            let mut opts: Vec<&str> = OPTIONS.to_vec();
            for i in (1..opts.len()).rev() {
                opts.swap(i, usize::from(pick(2 + i)) % (i + 1));
            }
            Choice::Rank(
                opts.into_iter()
                    .take(usize::from(pick(1)) % 5)
                    .map(str::to_owned)
                    .collect(),
            )
        }
        Method::Dot { points_per_member } => {
            let mut left = *points_per_member;
            let mut dots = BTreeMap::new();
            for (i, o) in OPTIONS.iter().enumerate() {
                let p = u64::from(pick(2 + i)) % (left + 1);
                left -= p;
                if p > 0 {
                    dots.insert((*o).to_owned(), i64::try_from(p).unwrap_or(i64::MAX));
                }
            }
            Choice::Dots(dots)
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    input: TallyInput,
    rules: VotingRules,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        methods(),
        1usize..14,
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 10), 14),
        proptest::collection::vec((0usize..14, 0usize..14), 0..8),
        0u32..=100,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(method, n, seeds, delegations, quorum, class_shares, seeded, seed)| {
                let electorate: Vec<Voter> = (0..n)
                    .map(|i| {
                        let s = &seeds[i];
                        let v = Voter::new(format!("m{i}"), if i % 3 == 0 { "workers" } else { "users" })
                            .with_weight_milli(i64::from(s[8] % 4) * 500);
                        if s[9] % 7 == 0 { v.suspended() } else { v }
                    })
                    .collect();
                let ballots: Vec<Ballot> = (0..n)
                    .filter(|i| seeds[*i][7] % 4 != 0)
                    .map(|i| Ballot::new(format!("m{i}"), choice_for(&method, &seeds[i])))
                    .collect();
                let mut seen = std::collections::BTreeSet::new();
                let delegations = delegations
                    .into_iter()
                    .filter(|(f, t)| *f < n && *t < n && seen.insert(*f))
                    .map(|(f, t)| Delegation::new(format!("m{f}"), format!("m{t}")))
                    .collect();
                let mut rules = VotingRules::new(method.clone()).with_quorum(Share::percent(quorum));
                if class_shares {
                    rules.weighting = Weighting::ClassShares(BTreeMap::from([
                        ("workers".into(), Share::percent(50)),
                        ("users".into(), Share::percent(50)),
                    ]));
                }
                if seeded {
                    rules.tie_break = TieBreak::Seeded { seed };
                }
                let options = if method.needs_options() {
                    OPTIONS.iter().map(|o| (*o).to_owned()).collect()
                } else {
                    vec![]
                };
                Case {
                    input: TallyInput {
                        options,
                        electorate,
                        ballots,
                        delegations,
                    },
                    rules,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn reordering_ballots_never_changes_a_result(case in cases(), shuffle in any::<u64>()) {
        let expected = tally(&case.input, &case.rules).unwrap();
        let mut shuffled = case.input.clone();
        // A deterministic Fisher-Yates from the random seed.
        let mut s = shuffle | 1;
        let mut next = |bound: usize| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; usize::try_from(s % bound as u64).unwrap() };
        for i in (1..shuffled.ballots.len()).rev() { let j = next(i + 1); shuffled.ballots.swap(i, j); }
        for i in (1..shuffled.delegations.len()).rev() { let j = next(i + 1); shuffled.delegations.swap(i, j); }
        for i in (1..shuffled.electorate.len()).rev() { let j = next(i + 1); shuffled.electorate.swap(i, j); }
        prop_assert_eq!(tally(&shuffled, &case.rules).unwrap(), expected);
    }

    #[test]
    fn same_inputs_give_the_same_outputs(case in cases()) {
        let a = tally(&case.input, &case.rules).unwrap();
        let b = tally(&case.input.clone(), &case.rules.clone()).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn adding_an_abstention_never_changes_a_majority_outcome(case in cases(), super_ in any::<bool>()) {
        let mut case = case;
        case.input.options.clear();
        case.rules.method = if super_ { Method::Supermajority { threshold: Fraction::TWO_THIRDS } } else { Method::Majority };
        for b in &mut case.input.ballots {
            if !matches!(b.choice, Choice::Yes | Choice::No) { b.choice = Choice::Abstain; }
        }
        let before = tally(&case.input, &case.rules).unwrap();
        // Either a newcomer abstains (one member, one vote, so nobody else's weight moves),
        // or an existing member who neither voted nor takes part in a delegation does.
        let mut more = case.input.clone();
        if case.rules.weighting == Weighting::PerMember {
            more.electorate.push(Voter::new("newcomer", "users"));
            more.ballots.push(Ballot::new("newcomer", Choice::Abstain));
        } else {
            let quiet = more.electorate.iter().find(|v| {
                !more.ballots.iter().any(|b| b.member == v.id)
                    && !more.delegations.iter().any(|d| d.from == v.id || d.to == v.id)
            });
            let Some(quiet) = quiet else { return Ok(()) };
            more.ballots.push(Ballot::new(quiet.id.clone(), Choice::Abstain));
        }
        let after = tally(&more, &case.rules).unwrap();
        let (Counts::YesNo { yes: y0, no: n0, .. }, Counts::YesNo { yes: y1, no: n1, .. }) = (&before.counts, &after.counts)
        else { panic!("yes/no counts") };
        prop_assert_eq!((y0, n0), (y1, n1));
        if before.outcome != Outcome::NoQuorum {
            // More turnout cannot lose quorum, and the yes/no decision is unchanged.
            prop_assert_eq!(after.outcome, before.outcome);
        }
        if case.rules.quorum == Share::ZERO {
            prop_assert_eq!(after.outcome, before.outcome);
        }
    }

    #[test]
    fn weight_is_conserved(case in cases()) {
        let r = tally(&case.input, &case.rules).unwrap();
        let t = &r.audit.turnout;
        prop_assert!(t.total_weight <= r.audit.eligible_weight);
        prop_assert_eq!(t.total_weight, t.direct_weight + t.delegated_weight);
        match &r.counts {
            Counts::YesNo { yes, no, abstain } => prop_assert_eq!(yes + no + abstain, t.total_weight),
            Counts::Consent { agree, stand_aside, disagree, block, abstain, .. } => {
                prop_assert_eq!(agree + stand_aside + disagree + block + abstain, t.total_weight);
            }
            Counts::Rounds { rounds, abstain } => {
                for round in rounds {
                    let counted: u128 = round.counts.iter().map(|c| c.weight).sum();
                    prop_assert_eq!(counted + round.exhausted + abstain, t.total_weight);
                }
            }
            Counts::Split { per_option, .. } => {
                let total: u32 = per_option.iter().map(|s| s.share.ppm()).sum();
                prop_assert!(total == 0 || total == 1_000_000, "shares sum to {}", total);
            }
            Counts::Totals { .. } => {}
        }
        if r.outcome == Outcome::NoQuorum { prop_assert!(!r.audit.quorum_met && r.winner.is_none()); }
    }

    #[test]
    fn a_first_round_majority_wins_instant_runoff(case in cases()) {
        let mut case = case;
        case.rules.method = Method::InstantRunoff;
        case.input.options = OPTIONS.iter().map(|o| (*o).to_owned()).collect();
        for b in &mut case.input.ballots {
            if !matches!(b.choice, Choice::Rank(_) | Choice::Abstain) { b.choice = Choice::Rank(vec!["b".into()]); }
        }
        let r = tally(&case.input, &case.rules).unwrap();
        let Counts::Rounds { rounds, .. } = &r.counts else { panic!("rounds") };
        let first = &rounds[0];
        let total: u128 = first.counts.iter().map(|c| c.weight).sum();
        if let Some(leader) = first.counts.iter().find(|c| c.weight * 2 > total)
            && r.audit.quorum_met
        {
            prop_assert_eq!(r.winner.as_deref(), Some(leader.option.as_str()));
        }
    }

    #[test]
    fn a_condorcet_winner_wins_schulze(rankings in proptest::collection::vec(proptest::collection::vec(0usize..4, 0..5), 1..15)) {
        // Each ranking without repeats (first mention kept).
        let rankings: Vec<Vec<usize>> = rankings
            .into_iter()
            .map(|r| {
                let mut seen = [false; 4];
                r.into_iter().filter(|o| !std::mem::replace(&mut seen[*o], true)).collect()
            })
            .collect();
        let input = TallyInput {
            electorate: (0..rankings.len()).map(|i| Voter::new(format!("m{i}"), "users")).collect(),
            ballots: rankings
                .iter()
                .enumerate()
                .map(|(i, r)| Ballot::new(format!("m{i}"), Choice::Rank(r.iter().map(|o| OPTIONS[*o].to_owned()).collect())))
                .collect(),
            options: OPTIONS.iter().map(|o| (*o).to_owned()).collect(),
            ..TallyInput::default()
        };
        let r = tally(&input, &VotingRules::new(Method::Schulze)).unwrap();
        // Head to head, by brute force: an unranked option is below every ranked one.
        let position = |r: &[usize], o: usize| r.iter().position(|x| *x == o).unwrap_or(usize::MAX);
        let prefer = |a: usize, b: usize| rankings.iter().filter(|r| position(r, a) < position(r, b)).count();
        let condorcet = (0..4).find(|a| (0..4).all(|b| b == *a || prefer(*a, b) > prefer(b, *a)));
        if let Some(a) = condorcet {
            prop_assert_eq!(r.winner.as_deref(), Some(OPTIONS[a]));
        }
        // A winner is never beaten head to head by every other option (Schulze never
        // elects a Condorcet loser).
        if let Some(w) = &r.winner {
            let w = OPTIONS.iter().position(|o| o == w).unwrap();
            prop_assert!((0..4).filter(|b| *b != w).any(|b| prefer(w, b) >= prefer(b, w)));
        }
    }
}

/// The worked example of `policies/src/voting/schulze.rs`: a cycle a → b → c → a that
/// the strongest paths break in favour of `a`.
#[test]
fn schulze_by_hand() {
    let mut ballots = Vec::new();
    let mut electorate = Vec::new();
    for (i, ranking) in [
        (0..4).map(|_| ["a", "b", "c"]).collect::<Vec<_>>(),
        (0..3).map(|_| ["b", "c", "a"]).collect(),
        (0..2).map(|_| ["c", "a", "b"]).collect(),
    ]
    .concat()
    .into_iter()
    .enumerate()
    {
        electorate.push(Voter::new(format!("m{i}"), "users"));
        ballots.push(Ballot::new(
            format!("m{i}"),
            Choice::Rank(ranking.iter().map(|o| (*o).to_owned()).collect()),
        ));
    }
    let input = TallyInput {
        electorate,
        ballots,
        options: vec!["a".into(), "b".into(), "c".into()],
        ..TallyInput::default()
    };
    let r = tally(&input, &VotingRules::new(Method::Schulze)).unwrap();
    assert_eq!(r.outcome, Outcome::Passed);
    assert_eq!(r.winner.as_deref(), Some("a"));
    let Counts::Totals { per_option, .. } = &r.counts else {
        panic!("totals")
    };
    // a beats b and c by strongest paths; b beats c; c beats nobody.
    let beaten: Vec<u128> = per_option.iter().map(|c| c.weight / 1000).collect();
    assert_eq!(beaten, [2, 1, 0]);
}
