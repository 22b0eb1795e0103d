//! Dot voting for splits: each member spreads points over options; the result is shares.
//!
//! This is the participatory-budgeting way to divide capacity between purposes. Each
//! member has `points_per_member` points and puts any whole, non-negative number on each
//! option, spending at most that many in all (unspent points are simply not used). An
//! option's weighted points are `Σ weight × points`, and its share is its part of all
//! weighted points, rounded to parts per million by the largest-remainder method so the
//! shares add up to exactly 100%; equal remainders are settled by the tie-break rule. The
//! outcome is passed when any points were given; there is no single winner.
//!
//! # Worked example
//!
//! Ten points each; options `schools`, `research`, `surplus` (how to split the GPU hours).
//! Three members, one vote each (1000 milli-votes):
//!
//! | member | schools | research | surplus |
//! |---|---|---|---|
//! | a | 6 | 4 | 0 |
//! | b | 2 | 2 | 6 |
//! | c | 10 | 0 | 0 |
//!
//! Weighted points: schools 18 000, research 6000, surplus 6000, of 30 000. Shares:
//! **schools 60%, research 20%, surplus 20%**. Had `c` spent 11 points, the ballot would
//! be a [`TooManyPoints`](crate::TallyError::TooManyPoints) error.

use crate::arith::apportion;
use crate::share::{PPM_WHOLE, Share};
use crate::voting::{Cast, Choice, Counts, Ctx, MethodOutcome, OptionShare, TallyError, add};

pub(crate) fn count(casts: &[Cast<'_>], ctx: &Ctx<'_>, budget: u64) -> Result<MethodOutcome, TallyError> {
    let mut totals = vec![0u128; ctx.options.len()];
    for c in casts {
        let Choice::Dots(points) = c.choice else {
            return Err(ctx.wrong_kind(c.member));
        };
        let mut spent: u128 = 0;
        for (name, p) in points {
            let o = ctx.option(c.member, name)?;
            let Ok(p) = u64::try_from(*p) else {
                return Err(TallyError::NegativePoints {
                    member: c.member.to_owned(),
                    option: name.clone(),
                    points: *p,
                });
            };
            spent += u128::from(p);
            if spent > u128::from(budget) {
                return Err(TallyError::TooManyPoints {
                    member: c.member.to_owned(),
                    spent: points.values().map(|v| i128::from(*v).unsigned_abs()).sum(),
                    budget,
                });
            }
            add(
                &mut totals[o],
                c.weight
                    .checked_mul(u128::from(p))
                    .ok_or(TallyError::WeightOverflow)?,
            )?;
        }
    }
    let shares =
        apportion(u128::from(PPM_WHOLE), &totals, &ctx.priority).ok_or(TallyError::WeightOverflow)?;
    let passed = totals.iter().any(|t| *t > 0);
    let per_option = totals
        .iter()
        .zip(shares)
        .enumerate()
        .map(|(o, (points, share))| OptionShare {
            option: ctx.name(o),
            points: *points,
            share: Share::from_ppm(u32::try_from(share).unwrap_or(PPM_WHOLE)),
        })
        .collect();
    Ok(MethodOutcome {
        passed,
        winner: None,
        counts: Counts::Split {
            per_option,
            abstain: ctx.abstain,
        },
        ties: Vec::new(),
        rule: format!(
            "dot voting, {budget} points each: each option's share is its part of all weight × points, rounded to \
             parts per million by largest remainder (equal remainders by the tie-break rule)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::TallyError;
    use crate::share::Share;
    use crate::voting::{Ballot, Choice, Counts, Method, Outcome, TallyInput, VotingRules, tally};
    use crate::weights::Voter;

    fn dots(pairs: &[(&str, i64)]) -> Choice {
        Choice::Dots(
            pairs
                .iter()
                .map(|(o, p)| ((*o).to_owned(), *p))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn example(c: &[(&str, i64)]) -> TallyInput {
        TallyInput {
            options: vec!["schools".into(), "research".into(), "surplus".into()],
            electorate: ["a", "b", "c"]
                .iter()
                .map(|n| Voter::new(*n, "members"))
                .collect(),
            ballots: vec![
                Ballot::new("a", dots(&[("schools", 6), ("research", 4)])),
                Ballot::new("b", dots(&[("schools", 2), ("research", 2), ("surplus", 6)])),
                Ballot::new("c", dots(c)),
            ],
            delegations: vec![],
        }
    }

    fn rules() -> VotingRules {
        VotingRules::new(Method::Dot {
            points_per_member: 10,
        })
    }

    fn shares(counts: &Counts) -> Vec<Share> {
        let Counts::Split { per_option, .. } = counts else {
            panic!("split")
        };
        per_option.iter().map(|s| s.share).collect()
    }

    #[test]
    fn worked_example() {
        let r = tally(&example(&[("schools", 10)]), &rules()).unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
        assert_eq!(
            shares(&r.counts),
            vec![Share::percent(60), Share::percent(20), Share::percent(20)]
        );
    }

    #[test]
    fn thirds_round_to_exactly_a_whole() {
        let mut input = example(&[("surplus", 10)]);
        input.ballots[0].choice = dots(&[("schools", 10)]);
        input.ballots[1].choice = dots(&[("research", 10)]);
        let s = shares(&tally(&input, &rules()).unwrap().counts);
        assert_eq!(
            s,
            vec![
                Share::from_ppm(333_334),
                Share::from_ppm(333_333),
                Share::from_ppm(333_333)
            ]
        );
    }

    #[test]
    fn bad_points_are_errors() {
        assert_eq!(
            tally(&example(&[("schools", 11)]), &rules()).unwrap_err(),
            TallyError::TooManyPoints {
                member: "c".into(),
                spent: 11,
                budget: 10
            }
        );
        assert!(matches!(
            tally(&example(&[("schools", -1)]), &rules()),
            Err(TallyError::NegativePoints { .. })
        ));
        assert!(matches!(
            tally(
                &example(&[("schools", 1)]),
                &VotingRules::new(Method::Dot { points_per_member: 0 })
            ),
            Err(TallyError::NoPoints)
        ));
    }

    #[test]
    fn no_points_no_split() {
        let mut input = example(&[]);
        input.ballots[0].choice = dots(&[]);
        input.ballots[1].choice = Choice::Abstain;
        let r = tally(&input, &rules()).unwrap();
        assert_eq!(r.outcome, Outcome::Rejected);
        assert_eq!(shares(&r.counts), vec![Share::ZERO; 3]);
    }
}
