//! Ranked choice with instant-runoff: one winner.
//!
//! Each member ranks options, best first, and need not rank them all. In every round
//! each ballot counts, with its full weight, for its highest-ranked option still in the
//! race. If an option has more than half of the weight of the ballots still counting, it
//! wins. Otherwise the option with the least weight is eliminated (a tie for last is
//! settled by the tie-break rule: the option that would *lose* a tie goes out) and its
//! ballots move to their next choice. A ballot with no option left in the race is
//! *exhausted* and stops counting. Every round is in the result.
//!
//! # Worked example
//!
//! Options `solar`, `wind`, `grid` (how to power the new rack). Nine members, one vote
//! each:
//!
//! | ballots | ranking |
//! |---|---|
//! | 4 | solar > wind |
//! | 3 | grid > wind |
//! | 2 | wind > grid |
//!
//! * Round 1: solar 4000, grid 3000, wind 2000 of 9000. Nobody has more than 4500, so
//!   **wind** (last) is eliminated; its two ballots move to grid.
//! * Round 2: solar 4000, grid 5000 of 9000. **grid** has a majority and wins, although
//!   solar led the first round.
//!
//! If the two `wind > grid` ballots had ranked only wind, they would be exhausted in
//! round 2: solar 4000 and grid 3000 of 7000 still counting. 4000 is more than half of
//! 7000, so **solar** wins: exhausted ballots no longer count toward the majority.

use crate::voting::{Cast, Choice, Counts, Ctx, IrvRound, MethodOutcome, OptionCount, TallyError, Tie, add};
use crate::weights::Weight;

/// Ballots as option indices, flattened: ballot `b` ranks `prefs[start[b]..start[b + 1]]`.
struct Rankings {
    prefs: Vec<u32>,
    start: Vec<usize>,
    weight: Vec<Weight>,
}

fn parse(casts: &[Cast<'_>], ctx: &Ctx<'_>) -> Result<Rankings, TallyError> {
    let mut r = Rankings {
        prefs: Vec::with_capacity(casts.len() * 3),
        start: Vec::with_capacity(casts.len() + 1),
        weight: Vec::with_capacity(casts.len()),
    };
    let mut marked = vec![usize::MAX; ctx.options.len()];
    for (ballot, c) in casts.iter().enumerate() {
        let Choice::Rank(ranking) = c.choice else {
            return Err(ctx.wrong_kind(c.member));
        };
        r.start.push(r.prefs.len());
        r.weight.push(c.weight);
        for name in ranking {
            let o = ctx.option(c.member, name)?;
            if std::mem::replace(&mut marked[o], ballot) == ballot {
                return Err(TallyError::DuplicateChoice {
                    member: c.member.to_owned(),
                    option: name.clone(),
                });
            }
            // Option indices fit in u32: a proposal has far fewer than 4 billion options.
            r.prefs
                .push(u32::try_from(o).map_err(|_| TallyError::WeightOverflow)?);
        }
    }
    r.start.push(r.prefs.len());
    Ok(r)
}

pub(crate) fn count(casts: &[Cast<'_>], ctx: &Ctx<'_>) -> Result<MethodOutcome, TallyError> {
    let r = parse(casts, ctx)?;
    let k = ctx.options.len();
    let mut continuing = vec![true; k];
    let mut counts = vec![0u128; k];
    let mut piles: Vec<Vec<u32>> = vec![Vec::new(); k];
    // Position of each ballot's current choice within `prefs`.
    let mut pos: Vec<usize> = r.start[..r.start.len() - 1].to_vec();
    let mut exhausted: Weight = 0;

    // Moves ballot `b` to its first choice still in the race, at or after `pos[b]`.
    let place = |b: usize,
                 pos: &mut [usize],
                 continuing: &[bool],
                 counts: &mut [Weight],
                 piles: &mut [Vec<u32>],
                 exhausted: &mut Weight|
     -> Result<(), TallyError> {
        let end = r.start[b + 1];
        while pos[b] < end && !continuing[r.prefs[pos[b]] as usize] {
            pos[b] += 1;
        }
        if pos[b] < end {
            let o = r.prefs[pos[b]] as usize;
            add(&mut counts[o], r.weight[b])?;
            piles[o].push(u32::try_from(b).map_err(|_| TallyError::WeightOverflow)?);
        } else {
            add(exhausted, r.weight[b])?;
        }
        Ok(())
    };
    for b in 0..r.weight.len() {
        place(b, &mut pos, &continuing, &mut counts, &mut piles, &mut exhausted)?;
    }

    let mut rounds = Vec::new();
    let mut ties = Vec::new();
    let mut winner = None;
    for round in 1u32.. {
        let live: Vec<usize> = (0..k).filter(|o| continuing[*o]).collect();
        let total = live.iter().try_fold(0u128, |acc, o| acc.checked_add(counts[*o]));
        let total = total.ok_or(TallyError::WeightOverflow)?;
        let mut record = IrvRound {
            counts: live
                .iter()
                .map(|o| OptionCount {
                    option: ctx.name(*o),
                    weight: counts[*o],
                })
                .collect(),
            exhausted,
            eliminated: None,
            elected: None,
        };
        if total == 0 || live.is_empty() {
            rounds.push(record);
            break;
        }
        // A strict majority of the weight still counting: `2 × count > total`.
        if let Some(w) = live.iter().copied().find(|o| counts[*o] > total - counts[*o]) {
            record.elected = Some(ctx.name(w));
            rounds.push(record);
            winner = Some(w);
            break;
        }
        let least = live.iter().map(|o| counts[*o]).min().unwrap_or(0);
        let lowest = ctx.in_priority_order(live.iter().copied().filter(|o| counts[*o] == least).collect());
        // The option that would lose a tie-break goes out: the last in priority order.
        let Some(&out) = lowest.last() else { break };
        if lowest.len() > 1 {
            ties.push(Tie {
                round: Some(round),
                tied: lowest.iter().map(|o| ctx.name(*o)).collect(),
                resolution: format!("{} is eliminated", ctx.name(out)),
            });
        }
        record.eliminated = Some(ctx.name(out));
        rounds.push(record);
        continuing[out] = false;
        counts[out] = 0;
        for b in std::mem::take(&mut piles[out]) {
            place(
                b as usize,
                &mut pos,
                &continuing,
                &mut counts,
                &mut piles,
                &mut exhausted,
            )?;
        }
    }
    Ok(MethodOutcome {
        passed: winner.is_some(),
        winner,
        counts: Counts::Rounds {
            rounds,
            abstain: ctx.abstain,
        },
        ties,
        rule: "instant-runoff: an option with more than half of the continuing weight wins; otherwise the \
               option with the least weight is eliminated and its ballots move to their next choice"
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use crate::TallyError;
    use crate::voting::{Ballot, Choice, Counts, Method, Outcome, TallyInput, VotingRules, tally};
    use crate::weights::Voter;

    fn input(groups: &[(usize, &[&str])]) -> TallyInput {
        let mut ballots = Vec::new();
        for (n, ranking) in groups {
            for _ in 0..*n {
                let id = format!("m{}", ballots.len());
                ballots.push(Ballot::new(
                    id,
                    Choice::Rank(ranking.iter().map(|o| (*o).to_owned()).collect()),
                ));
            }
        }
        TallyInput {
            options: vec!["solar".into(), "wind".into(), "grid".into()],
            electorate: (0..ballots.len())
                .map(|i| Voter::new(format!("m{i}"), "members"))
                .collect(),
            ballots,
            delegations: vec![],
        }
    }

    fn rules() -> VotingRules {
        VotingRules::new(Method::InstantRunoff)
    }

    #[test]
    fn worked_example_transfers_elect_grid() {
        let r = tally(
            &input(&[
                (4, &["solar", "wind"]),
                (3, &["grid", "wind"]),
                (2, &["wind", "grid"]),
            ]),
            &rules(),
        )
        .unwrap();
        assert_eq!(r.winner.as_deref(), Some("grid"));
        let Counts::Rounds { rounds, .. } = &r.counts else {
            panic!("rounds")
        };
        assert_eq!(rounds.len(), 2);
        let first: Vec<u128> = rounds[0].counts.iter().map(|c| c.weight).collect();
        assert_eq!(first, vec![4000, 2000, 3000]);
        assert_eq!(rounds[0].eliminated.as_deref(), Some("wind"));
        let second: Vec<u128> = rounds[1].counts.iter().map(|c| c.weight).collect();
        assert_eq!(second, vec![4000, 5000]);
        assert_eq!(rounds[1].elected.as_deref(), Some("grid"));
    }

    #[test]
    fn exhausted_ballots_stop_counting() {
        let r = tally(
            &input(&[(4, &["solar", "wind"]), (3, &["grid", "wind"]), (2, &["wind"])]),
            &rules(),
        )
        .unwrap();
        assert_eq!(r.winner.as_deref(), Some("solar"));
        let Counts::Rounds { rounds, .. } = &r.counts else {
            panic!("rounds")
        };
        assert_eq!(rounds[1].exhausted, 2000);
    }

    #[test]
    fn tie_for_last_eliminates_the_later_listed() {
        // solar 2, wind 1, grid 1: wind and grid tie for last; grid (listed later) goes.
        let r = tally(
            &input(&[(2, &["solar"]), (1, &["wind", "solar"]), (1, &["grid", "wind"])]),
            &rules(),
        )
        .unwrap();
        let Counts::Rounds { rounds, .. } = &r.counts else {
            panic!("rounds")
        };
        assert_eq!(rounds[0].eliminated.as_deref(), Some("grid"));
        assert_eq!(r.ties[0].round, Some(1));
        assert_eq!(r.ties[0].tied, vec!["wind", "grid"]);
        // Round 2: solar 2, wind 2 (grid's ballot moved) → tie, wind listed later goes; solar wins.
        assert_eq!(r.winner.as_deref(), Some("solar"));
        assert_eq!(rounds.len(), 3);
    }

    #[test]
    fn a_first_round_majority_wins_at_once_and_empty_rankings_elect_nobody() {
        let r = tally(&input(&[(5, &["wind"]), (4, &["solar"])]), &rules()).unwrap();
        assert_eq!(r.winner.as_deref(), Some("wind"));
        let r = tally(&input(&[(3, &[])]), &rules()).unwrap();
        assert_eq!(r.outcome, Outcome::Rejected);
        assert_eq!(r.winner, None);
    }

    #[test]
    fn duplicate_and_unknown_rankings_are_errors() {
        assert!(matches!(
            tally(&input(&[(1, &["wind", "wind"])]), &rules()),
            Err(TallyError::DuplicateChoice { .. })
        ));
        assert!(matches!(
            tally(&input(&[(1, &["coal"])]), &rules()),
            Err(TallyError::UnknownOption { .. })
        ));
    }
}
