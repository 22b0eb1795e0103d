//! Ranked choice with instant-runoff: one winner.
//!
//! Each member ranks options, best first, and need not rank them all. In every round
//! each ballot counts, with its full weight, for its highest-ranked option still in the
//! race. If an option has more than half of the weight of the ballots still counting, it
//! wins. Otherwise the option with the least weight is eliminated and its ballots move to
//! their next choice. A ballot with no option left in the race is *exhausted* and stops
//! counting. Every round is in the result.
//!
//! **Ties for last place** are settled by the earlier rounds: going back one round at a
//! time, the tied option that had less weight then goes out. If they were level in every
//! earlier round, a lot decides: the option that comes last in the order drawn from the
//! proposal's published seed (see [`TieBreak`](crate::TieBreak)) goes out. Every tie and
//! how it was settled is recorded. When the **last two** options tie, neither wins: a tie
//! keeps the status quo.
//!
//! Ballots with identical short rankings (one or two options: most ballots in a real
//! election) are counted once, with their weights added; they are found in a dense table
//! indexed by the options, so grouping costs no hashing.
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

/// Distinct rankings as option indices, flattened: ranking `b` is
/// `prefs[start[b]..start[b + 1]]`, carried by `weight[b]` (the sum over its ballots).
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
    let k = ctx.options.len();
    let mut marked = vec![usize::MAX; k];
    // Group of each short ranking: `[a]` at `a`, `[a, b]` at `k + a × k + b`.
    let mut short: Vec<usize> = vec![usize::MAX; k + k * k];
    let mut ranking = Vec::with_capacity(k);
    for (ballot, c) in casts.iter().enumerate() {
        let Choice::Rank(names) = c.choice else {
            return Err(ctx.wrong_kind(c.member));
        };
        ranking.clear();
        for name in names {
            let o = ctx.option(c.member, name)?;
            if std::mem::replace(&mut marked[o], ballot) == ballot {
                return Err(TallyError::DuplicateChoice {
                    member: c.member.to_owned(),
                    option: name.clone(),
                });
            }
            // Option indices fit in u32: a proposal has far fewer than 4 billion options.
            ranking.push(u32::try_from(o).map_err(|_| TallyError::WeightOverflow)?);
        }
        let slot = match ranking[..] {
            [a] => Some(a as usize),
            [a, b] => Some(k + a as usize * k + b as usize),
            _ => None,
        };
        if let Some(slot) = slot {
            match short.get(slot).copied() {
                Some(group) if group != usize::MAX => {
                    add(&mut r.weight[group], c.weight)?;
                    continue;
                }
                _ => {
                    if let Some(s) = short.get_mut(slot) {
                        *s = r.weight.len();
                    }
                }
            }
        }
        r.start.push(r.prefs.len());
        r.weight.push(c.weight);
        r.prefs.extend_from_slice(&ranking);
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
    // Position of each ranking's current choice within `prefs`.
    let mut pos: Vec<usize> = r.start[..r.start.len() - 1].to_vec();
    let mut exhausted: Weight = 0;

    // Moves ranking `b` to its first choice still in the race, at or after `pos[b]`.
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
    // Every option's count in every round so far, for settling ties by earlier rounds.
    let mut history: Vec<Vec<Weight>> = Vec::new();
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
        let lowest: Vec<usize> = live.iter().copied().filter(|o| counts[*o] == least).collect();
        if lowest.len() == 2 && live.len() == 2 {
            ties.push(Tie {
                round: Some(round),
                tied: lowest.iter().map(|o| ctx.name(*o)).collect(),
                resolution: "the last two options tie: the status quo stays and no option wins".to_owned(),
            });
            rounds.push(record);
            break;
        }
        let Some((out, how)) = settle_last_place(&lowest, &history, ctx) else {
            break;
        };
        if let Some(how) = how {
            ties.push(Tie {
                round: Some(round),
                tied: lowest.iter().map(|o| ctx.name(*o)).collect(),
                resolution: format!("{} is eliminated: {how}", ctx.name(out)),
            });
        }
        record.eliminated = Some(ctx.name(out));
        rounds.push(record);
        history.push(counts.clone());
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
               option with the least weight is eliminated and its ballots move to their next choice; a tie \
               for last place goes to the earlier rounds' counts, then to the lot; a tie of the last two \
               keeps the status quo"
            .to_owned(),
    })
}

/// Which of the options tied for last place goes out, and how the tie was settled (`None`
/// when there was no tie): by the most recent earlier round in which they differ, else
/// by the lot (the option last in tie-break order goes out).
fn settle_last_place(
    lowest: &[usize],
    history: &[Vec<Weight>],
    ctx: &Ctx<'_>,
) -> Option<(usize, Option<String>)> {
    if let [only] = lowest {
        return Some((*only, None));
    }
    let mut left = lowest.to_vec();
    let mut decided_in = None;
    for (i, earlier) in history.iter().enumerate().rev() {
        let at = |o: &usize| earlier.get(*o).copied().unwrap_or(0);
        let min = left.iter().map(at).min()?;
        let fewer: Vec<usize> = left.iter().copied().filter(|o| at(o) == min).collect();
        if fewer.len() < left.len() {
            left = fewer;
            decided_in = Some(i + 1);
        }
        if left.len() == 1 {
            break;
        }
    }
    match (left.as_slice(), decided_in) {
        ([only], Some(r)) => Some((*only, Some(format!("it had the least weight in round {r}")))),
        _ => {
            let out = *ctx.in_priority_order(left.clone()).last()?;
            let why = match decided_in {
                Some(r) => format!(
                    "still level after looking back to round {r}, the lot (the published seed's order) decided"
                ),
                None => {
                    "level in every earlier round, the lot (the published seed's order) decided".to_owned()
                }
            };
            Some((out, Some(why)))
        }
    }
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
    fn ties_for_last_go_to_the_lot_and_a_final_tie_keeps_the_status_quo() {
        // solar 2, wind 1, grid 1: wind and grid tie for last with no earlier round; the
        // lot (here the listed order) puts grid, listed later, out.
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
        // Round 2: solar 2, wind 2 (grid's ballot moved): the last two tie, nobody wins.
        assert_eq!(r.winner, None);
        assert_eq!(r.outcome, Outcome::Rejected);
        assert_eq!(rounds.len(), 2);
        assert!(r.ties[1].resolution.contains("status quo"));
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
