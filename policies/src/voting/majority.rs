//! Majority and supermajority: yes against no, of the votes cast.
//!
//! Abstentions count toward turnout (and so quorum) but not toward the threshold.
//!
//! * **Majority** passes when yes weighs strictly more than no. A tie keeps the status
//!   quo: the proposal is rejected.
//! * **Supermajority** with threshold `p/q` passes when `yes × q ≥ p × (yes + no)`, i.e.
//!   yes is *at least* `p/q` of yes and no, and at least one vote is yes.
//!
//! # Worked example
//!
//! Ten members, one vote each (1000 milli-votes), quorum 50%. Five vote yes, three no,
//! one abstains, one does not vote but delegates to a yes voter.
//!
//! * Turnout: nine ballots plus one delegated vote = 10 000 of 10 000, quorum met.
//! * Yes = 6000 (five plus the delegated vote), no = 3000, abstain = 1000.
//! * Majority: 6000 > 3000, **passed**.
//! * Supermajority 2/3: `6000 × 3 = 18 000 ≥ 2 × 9000 = 18 000`, exactly two thirds,
//!   **passed**. With one yes fewer (5000 against 3000) it would be 15 000 < 16 000,
//!   rejected.

use crate::share::Fraction;
use crate::voting::{Cast, Choice, Counts, Ctx, MethodOutcome, TallyError, Tie, add};
use crate::weights::Weight;

pub(crate) fn count(
    casts: &[Cast<'_>],
    ctx: &Ctx<'_>,
    threshold: Option<Fraction>,
) -> Result<MethodOutcome, TallyError> {
    let (mut yes, mut no): (Weight, Weight) = (0, 0);
    for c in casts {
        match c.choice {
            Choice::Yes => add(&mut yes, c.weight)?,
            Choice::No => add(&mut no, c.weight)?,
            _ => return Err(ctx.wrong_kind(c.member)),
        }
    }
    let mut ties = Vec::new();
    let (passed, rule) = match threshold {
        None => {
            if yes == no && yes > 0 {
                ties.push(Tie {
                    round: None,
                    tied: vec!["yes".to_owned(), "no".to_owned()],
                    resolution: "the status quo stands: rejected".to_owned(),
                });
            }
            (
                yes > no,
                "majority of votes cast: passes when yes outweighs no; abstentions count for turnout only"
                    .to_owned(),
            )
        }
        Some(f) => {
            let cast = yes.checked_add(no).ok_or(TallyError::WeightOverflow)?;
            let reaches =
                crate::arith::cmp_products(yes, u128::from(f.denominator), u128::from(f.numerator), cast)
                    .is_ge();
            (
                yes > 0 && reaches,
                format!(
                    "supermajority of votes cast: passes when yes is at least {f} of yes and no; abstentions \
                     count for turnout only"
                ),
            )
        }
    };
    Ok(MethodOutcome {
        passed,
        winner: None,
        counts: Counts::YesNo {
            yes,
            no,
            abstain: ctx.abstain,
        },
        ties,
        rule,
    })
}

#[cfg(test)]
mod tests {
    use crate::share::{Fraction, Share};
    use crate::voting::{
        Ballot, Choice, Counts, Delegation, Method, Outcome, TallyInput, VotingRules, tally,
    };
    use crate::weights::Voter;

    /// The worked example from the module documentation.
    fn example() -> TallyInput {
        let electorate = (0..10).map(|i| Voter::new(format!("m{i}"), "members")).collect();
        let mut ballots: Vec<Ballot> = (0..5)
            .map(|i| Ballot::new(format!("m{i}"), Choice::Yes))
            .collect();
        ballots.extend((5..8).map(|i| Ballot::new(format!("m{i}"), Choice::No)));
        ballots.push(Ballot::new("m8", Choice::Abstain));
        TallyInput {
            options: vec![],
            electorate,
            ballots,
            delegations: vec![Delegation::new("m9", "m0")],
        }
    }

    #[test]
    fn worked_example_majority() {
        let r = tally(
            &example(),
            &VotingRules::new(Method::Majority).with_quorum(Share::percent(50)),
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
        assert_eq!(
            r.counts,
            Counts::YesNo {
                yes: 6000,
                no: 3000,
                abstain: 1000
            }
        );
        assert_eq!(r.audit.turnout.total_weight, 10_000);
        assert_eq!(r.audit.turnout.delegated_weight, 1000);
        assert_eq!(r.audit.turnout.share, Share::WHOLE);
        assert_eq!(r.audit.eligible_weight, 10_000);
    }

    #[test]
    fn worked_example_supermajority_at_exactly_two_thirds() {
        let rules = VotingRules::new(Method::Supermajority {
            threshold: Fraction::TWO_THIRDS,
        });
        assert_eq!(tally(&example(), &rules).unwrap().outcome, Outcome::Passed);
        let mut input = example();
        input.ballots[1].choice = Choice::Abstain; // 5000 yes (m0 carries m9's vote), 3000 no
        let r = tally(&input, &rules).unwrap();
        assert_eq!(
            r.counts,
            Counts::YesNo {
                yes: 5000,
                no: 3000,
                abstain: 2000
            }
        );
        assert_eq!(r.outcome, Outcome::Rejected);
    }

    fn yes_no(yes: usize, no: usize, abstain: usize) -> TallyInput {
        let electorate = (0..yes + no + abstain)
            .map(|i| Voter::new(format!("m{i}"), "members"))
            .collect();
        let ballots = (0..yes + no + abstain)
            .map(|i| {
                let choice = if i < yes {
                    Choice::Yes
                } else if i < yes + no {
                    Choice::No
                } else {
                    Choice::Abstain
                };
                Ballot::new(format!("m{i}"), choice)
            })
            .collect();
        TallyInput {
            electorate,
            ballots,
            ..TallyInput::default()
        }
    }

    #[test]
    fn a_tie_keeps_the_status_quo() {
        let r = tally(&yes_no(3, 3, 3), &VotingRules::new(Method::Majority)).unwrap();
        assert_eq!(
            r.counts,
            Counts::YesNo {
                yes: 3000,
                no: 3000,
                abstain: 3000
            }
        );
        assert_eq!(r.outcome, Outcome::Rejected);
        assert_eq!(r.ties.len(), 1);
        assert!(r.ties[0].resolution.contains("status quo"));
        let r = tally(&yes_no(4, 3, 0), &VotingRules::new(Method::Majority)).unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
        assert!(r.ties.is_empty());
        // Nobody took a side: nothing passes.
        let r = tally(&yes_no(0, 0, 5), &VotingRules::new(Method::Majority)).unwrap();
        assert_eq!(r.outcome, Outcome::Rejected);
    }

    #[test]
    fn supermajority_needs_at_least_the_threshold() {
        let rules = VotingRules::new(Method::Supermajority {
            threshold: Fraction::new(3, 4),
        });
        assert_eq!(tally(&yes_no(3, 1, 9), &rules).unwrap().outcome, Outcome::Passed);
        assert_eq!(
            tally(&yes_no(5, 2, 0), &rules).unwrap().outcome,
            Outcome::Rejected
        );
        let unanimity = VotingRules::new(Method::Supermajority {
            threshold: Fraction::new(1, 1),
        });
        assert_eq!(
            tally(&yes_no(9, 0, 1), &unanimity).unwrap().outcome,
            Outcome::Passed
        );
        assert_eq!(
            tally(&yes_no(9, 1, 0), &unanimity).unwrap().outcome,
            Outcome::Rejected
        );
        assert_eq!(
            tally(&yes_no(0, 0, 3), &unanimity).unwrap().outcome,
            Outcome::Rejected
        );
    }

    #[test]
    fn missing_quorum_is_not_rejection() {
        let mut input = example();
        input.ballots.truncate(3);
        input.delegations.clear();
        let r = tally(
            &input,
            &VotingRules::new(Method::Majority).with_quorum(Share::percent(40)),
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::NoQuorum);
        assert!(!r.audit.quorum_met);
        let r = tally(
            &input,
            &VotingRules::new(Method::Majority).with_quorum(Share::percent(30)),
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
    }

    #[test]
    fn wrong_ballot_kind_and_bad_threshold_are_errors() {
        let mut input = example();
        input.ballots[0].choice = Choice::Rank(vec![]);
        assert!(matches!(
            tally(&input, &VotingRules::new(Method::Majority)),
            Err(crate::TallyError::WrongBallotKind { .. })
        ));
        let rules = VotingRules::new(Method::Supermajority {
            threshold: Fraction::new(4, 3),
        });
        assert!(matches!(
            tally(&example(), &rules),
            Err(crate::TallyError::InvalidThreshold { .. })
        ));
    }
}
