//! The Schulze method: members rank options; the option that beats every other by the
//! strongest path of pairwise wins is chosen. It is a Condorcet method (an option that
//! beats each other one head to head always wins), the one the Habermas Machine uses to
//! pick a group statement.
//!
//! 1. `d[a][b]` is the weight of the ballots that rank `a` above `b`. An option a
//!    ballot ranks is above every option it leaves out; the options it leaves out are
//!    equal to each other.
//! 2. A path's strength is its weakest link; a link `a → b` exists when
//!    `d[a][b] > d[b][a]`, with strength `d[a][b]`. `p[a][b]` is the strongest path's
//!    strength (a widest-path search, Floyd–Warshall style).
//! 3. `a` is a winner when `p[a][b] ≥ p[b][a]` for every `b`. One winner wins; several
//!    are a tie, which keeps the status quo, as with the other methods.
//!
//! The counts are, per option, the number of options it beats by the strongest path
//! (in whole units, as a count of options, not of weight).
//!
//! # Worked example
//!
//! Options `a`, `b`, `c`; nine members, one vote each (1000 milli-votes):
//! four rank `a > b > c`, three `b > c > a`, two `c > a > b`.
//!
//! | d | a | b | c |
//! |---|---|---|---|
//! | a | – | 6 | 4 |
//! | b | 3 | – | 7 |
//! | c | 5 | 2 | – |
//!
//! (in votes). Links: `a → b` (6), `b → c` (7), `c → a` (5): a cycle, so there is no
//! option that beats all others head to head. Strongest paths: `a → b` 6, `a → c`
//! min(6, 7) = 6; `b → a` min(7, 5) = 5, `b → c` 7; `c → a` 5, `c → b` min(5, 6) = 5.
//! `a` beats `b` (6 ≥ 5) and `c` (6 ≥ 5): **a** wins. Instant runoff would eliminate
//! `c` (2 first preferences), move those ballots to `a`, and also elect `a` (6 of 9).

use crate::voting::{Cast, Choice, Counts, Ctx, MethodOutcome, OptionCount, TallyError, Tie, add};
use crate::weights::{ONE_VOTE_MILLI, Weight};

/// The pairwise preferences: `d[a * k + b]`, the weight preferring `a` to `b`.
fn pairwise(casts: &[Cast<'_>], ctx: &Ctx<'_>) -> Result<Vec<Weight>, TallyError> {
    let k = ctx.options.len();
    let mut d = vec![0u128; k * k];
    let mut rank = vec![usize::MAX; k];
    for c in casts {
        let Choice::Rank(names) = c.choice else {
            return Err(ctx.wrong_kind(c.member));
        };
        rank.fill(usize::MAX);
        for (r, name) in names.iter().enumerate() {
            let o = ctx.option(c.member, name)?;
            if rank[o] != usize::MAX {
                return Err(TallyError::DuplicateChoice {
                    member: c.member.to_owned(),
                    option: name.clone(),
                });
            }
            rank[o] = r;
        }
        // Unranked options sit below every ranked one (usize::MAX), equal to each other.
        for a in 0..k {
            for b in 0..k {
                if rank[a] < rank[b] {
                    add(&mut d[a * k + b], c.weight)?;
                }
            }
        }
    }
    Ok(d)
}

/// The strongest paths from the pairwise preferences.
fn strongest_paths(d: &[Weight], k: usize) -> Vec<Weight> {
    let mut p = vec![0u128; k * k];
    for a in 0..k {
        for b in 0..k {
            if a != b && d[a * k + b] > d[b * k + a] {
                p[a * k + b] = d[a * k + b];
            }
        }
    }
    for via in 0..k {
        for a in 0..k {
            if a == via {
                continue;
            }
            for b in 0..k {
                if b != a && b != via {
                    let through = p[a * k + via].min(p[via * k + b]);
                    if through > p[a * k + b] {
                        p[a * k + b] = through;
                    }
                }
            }
        }
    }
    p
}

pub(crate) fn count(casts: &[Cast<'_>], ctx: &Ctx<'_>) -> Result<MethodOutcome, TallyError> {
    let k = ctx.options.len();
    let d = pairwise(casts, ctx)?;
    let p = strongest_paths(&d, k);
    let beats = |a: usize, b: usize| p[a * k + b] > p[b * k + a];
    let wins: Vec<u128> = (0..k)
        .map(|a| (0..k).filter(|b| beats(a, *b)).count() as u128)
        .collect();
    let winners: Vec<usize> = (0..k)
        .filter(|a| (0..k).all(|b| b == *a || p[a * k + b] >= p[b * k + a]))
        .collect();
    let anyone = casts
        .iter()
        .any(|c| matches!(c.choice, Choice::Rank(r) if !r.is_empty()));
    let (winner, ties) = match winners[..] {
        [w] if anyone => (Some(w), Vec::new()),
        _ if !anyone || winners.is_empty() => (None, Vec::new()),
        _ => (
            None,
            vec![Tie {
                round: None,
                tied: winners.iter().map(|o| ctx.name(*o)).collect(),
                resolution: "several options are unbeaten by strongest paths: the status quo stays"
                    .to_owned(),
            }],
        ),
    };
    Ok(MethodOutcome {
        passed: winner.is_some(),
        winner,
        counts: Counts::Totals {
            per_option: wins
                .iter()
                .enumerate()
                .map(|(o, w)| OptionCount {
                    option: ctx.name(o),
                    // A count of options beaten, written in the weight's unit so that it
                    // reads as a whole number.
                    weight: w * ONE_VOTE_MILLI.unsigned_abs() as u128,
                })
                .collect(),
            abstain: ctx.abstain,
        },
        ties,
        rule: "Schulze: the option that beats every other by the strongest path of pairwise wins is \
               chosen; the counts are the options each beats"
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_paths_of_the_worked_example() {
        // a, b, c in votes, as in the module's example.
        let d = [0, 6, 4, 3, 0, 7, 5, 2, 0];
        let p = strongest_paths(&d, 3);
        assert_eq!(p, [0, 6, 6, 5, 0, 7, 5, 5, 0]);
    }
}
