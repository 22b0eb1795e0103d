//! Score voting: each member scores options within a range; the highest total wins.
//!
//! Scores must lie in `min..=max`; an option a ballot leaves out gets `min`. Each ballot
//! adds `weight × (score − min)` to each option, so totals are non-negative integers and
//! the ranking is the same as summing raw scores. The highest total wins, ties settled by
//! the tie-break rule; if every total is zero (nobody scored anything above `min`) there
//! is no winner and the proposal is rejected.
//!
//! # Worked example
//!
//! Range 0..=5; options `north` and `south` (where to put the new GPU rack). Three
//! members, one vote each (1000 milli-votes):
//!
//! | member | north | south |
//! |---|---|---|
//! | a | 5 | 1 |
//! | b | 2 | 4 |
//! | c | – | 5 |
//!
//! `c` left `north` out, so it counts as 0. Totals: north `1000 × (5 + 2 + 0) = 7000`,
//! south `1000 × (1 + 4 + 5) = 10 000`. **south** wins. A score of 6 or −1 would be a
//! [`ScoreOutOfRange`](crate::TallyError::ScoreOutOfRange) error.

use crate::voting::{Cast, Choice, Counts, Ctx, MethodOutcome, OptionCount, TallyError, add, top};

pub(crate) fn count(
    casts: &[Cast<'_>],
    ctx: &Ctx<'_>,
    min: i64,
    max: i64,
) -> Result<MethodOutcome, TallyError> {
    let mut totals = vec![0u128; ctx.options.len()];
    for c in casts {
        let Choice::Score(scores) = c.choice else {
            return Err(ctx.wrong_kind(c.member));
        };
        for (name, score) in scores {
            let o = ctx.option(c.member, name)?;
            if !(min..=max).contains(score) {
                return Err(TallyError::ScoreOutOfRange {
                    member: c.member.to_owned(),
                    option: name.clone(),
                    score: *score,
                    min,
                    max,
                });
            }
            // In range, so `score - min` is between 0 and `max - min`; i128 cannot overflow.
            let above_min = u128::try_from(i128::from(*score) - i128::from(min)).unwrap_or(0);
            add(
                &mut totals[o],
                c.weight
                    .checked_mul(above_min)
                    .ok_or(TallyError::WeightOverflow)?,
            )?;
        }
    }
    let (winner, tie) = top(&totals, ctx);
    Ok(MethodOutcome {
        passed: winner.is_some(),
        winner,
        counts: Counts::Totals {
            per_option: totals
                .iter()
                .enumerate()
                .map(|(o, w)| OptionCount {
                    option: ctx.name(o),
                    weight: *w,
                })
                .collect(),
            abstain: ctx.abstain,
        },
        ties: tie.into_iter().collect(),
        rule: format!(
            "score {min}..={max}: the option with the highest total of weight × (score − {min}) wins; an \
             unscored option counts as {min}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::TallyError;
    use crate::voting::{Ballot, Choice, Counts, Method, Outcome, TallyInput, VotingRules, tally};
    use crate::weights::Voter;

    fn scores(pairs: &[(&str, i64)]) -> Choice {
        Choice::Score(
            pairs
                .iter()
                .map(|(o, s)| ((*o).to_owned(), *s))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn example(c_south: i64) -> TallyInput {
        TallyInput {
            options: vec!["north".into(), "south".into()],
            electorate: ["a", "b", "c"]
                .iter()
                .map(|n| Voter::new(*n, "members"))
                .collect(),
            ballots: vec![
                Ballot::new("a", scores(&[("north", 5), ("south", 1)])),
                Ballot::new("b", scores(&[("north", 2), ("south", 4)])),
                Ballot::new("c", scores(&[("south", c_south)])),
            ],
            delegations: vec![],
        }
    }

    #[test]
    fn worked_example() {
        let r = tally(&example(5), &VotingRules::new(Method::Score { min: 0, max: 5 })).unwrap();
        assert_eq!(r.winner.as_deref(), Some("south"));
        let Counts::Totals { per_option, .. } = &r.counts else {
            panic!("totals")
        };
        assert_eq!(per_option[0].weight, 7000);
        assert_eq!(per_option[1].weight, 10_000);
    }

    #[test]
    fn negative_ranges_shift_but_rank_the_same() {
        // -2..=3 is 0..=5 shifted by 2; c's missing north now counts as -2 (i.e. 0 above min).
        let mut input = example(5);
        for b in &mut input.ballots {
            if let Choice::Score(s) = &mut b.choice {
                for v in s.values_mut() {
                    *v -= 2;
                }
            }
        }
        let r = tally(&input, &VotingRules::new(Method::Score { min: -2, max: 3 })).unwrap();
        assert_eq!(r.winner.as_deref(), Some("south"));
        // A tie: c gives south 2 instead of 5 → 7 against 7; the status quo stays.
        let r = tally(&example(2), &VotingRules::new(Method::Score { min: 0, max: 5 })).unwrap();
        assert_eq!(r.winner, None);
        assert_eq!(r.ties.len(), 1);
    }

    #[test]
    fn out_of_range_scores_are_errors() {
        let rules = VotingRules::new(Method::Score { min: 0, max: 5 });
        assert_eq!(
            tally(&example(6), &rules).unwrap_err(),
            TallyError::ScoreOutOfRange {
                member: "c".into(),
                option: "south".into(),
                score: 6,
                min: 0,
                max: 5
            }
        );
        assert!(matches!(
            tally(&example(-1), &rules),
            Err(TallyError::ScoreOutOfRange { .. })
        ));
        assert!(matches!(
            tally(&example(1), &VotingRules::new(Method::Score { min: 3, max: 2 })),
            Err(TallyError::InvalidScoreRange { .. })
        ));
    }

    #[test]
    fn all_minimum_scores_pick_no_winner() {
        let r = tally(&example(0), &VotingRules::new(Method::Score { min: 0, max: 0 }));
        assert!(r.is_err(), "5 is out of 0..=0");
        let mut input = example(0);
        input.ballots.truncate(1);
        input.ballots[0].choice = scores(&[("north", 0)]);
        let r = tally(&input, &VotingRules::new(Method::Score { min: 0, max: 5 })).unwrap();
        assert_eq!(r.outcome, Outcome::Rejected);
    }
}
