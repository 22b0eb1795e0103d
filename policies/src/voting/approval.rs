//! Approval voting: each member approves any number of options; the most approved wins.
//!
//! Each ballot adds its full weight to every option it approves. The option with the
//! largest total wins; a tie between the top options keeps the status quo (no winner).
//! When no option got any approval there is no winner and the proposal is rejected.
//! Naming an option twice on one ballot is an error rather than a double vote.
//!
//! # Worked example
//!
//! Options `llama`, `mistral`, `qwen` (which model to adopt). Five members, one vote
//! each:
//!
//! | member | approves |
//! |---|---|
//! | a | llama, mistral |
//! | b | mistral |
//! | c | qwen, llama |
//! | d | mistral, qwen |
//! | e | (abstains) |
//!
//! Totals: llama 2000, mistral 3000, qwen 2000. **mistral** wins. Had `d` approved only
//! qwen, llama, mistral and qwen would tie at 2000: nothing is adopted, and the tie is
//! recorded in the result.

use crate::voting::{Cast, Choice, Counts, Ctx, MethodOutcome, OptionCount, TallyError, add, top};

pub(crate) fn count(casts: &[Cast<'_>], ctx: &Ctx<'_>) -> Result<MethodOutcome, TallyError> {
    let mut totals = vec![0u128; ctx.options.len()];
    let mut marked = vec![usize::MAX; ctx.options.len()];
    for (ballot, c) in casts.iter().enumerate() {
        let Choice::Approve(options) = c.choice else {
            return Err(ctx.wrong_kind(c.member));
        };
        for name in options {
            let o = ctx.option(c.member, name)?;
            // `marked[o] == ballot` means this ballot already approved `o`.
            if std::mem::replace(&mut marked[o], ballot) == ballot {
                return Err(TallyError::DuplicateChoice {
                    member: c.member.to_owned(),
                    option: name.clone(),
                });
            }
            add(&mut totals[o], c.weight)?;
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
        rule: "approval: the option approved by the most weight wins".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use crate::TallyError;
    use crate::voting::{Ballot, Choice, Counts, Method, Outcome, TallyInput, VotingRules, tally};
    use crate::weights::Voter;

    fn approve(member: &str, options: &[&str]) -> Ballot {
        Ballot::new(
            member,
            Choice::Approve(options.iter().map(|o| (*o).to_owned()).collect()),
        )
    }

    fn example(d: &[&str]) -> TallyInput {
        TallyInput {
            options: vec!["llama".into(), "mistral".into(), "qwen".into()],
            electorate: ["a", "b", "c", "d", "e"]
                .iter()
                .map(|n| Voter::new(*n, "members"))
                .collect(),
            ballots: vec![
                approve("a", &["llama", "mistral"]),
                approve("b", &["mistral"]),
                approve("c", &["qwen", "llama"]),
                approve("d", d),
                Ballot::new("e", Choice::Abstain),
            ],
            delegations: vec![],
        }
    }

    #[test]
    fn worked_example() {
        let r = tally(
            &example(&["mistral", "qwen"]),
            &VotingRules::new(Method::Approval),
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
        assert_eq!(r.winner.as_deref(), Some("mistral"));
        let Counts::Totals { per_option, abstain } = &r.counts else {
            panic!("totals")
        };
        let weights: Vec<u128> = per_option.iter().map(|c| c.weight).collect();
        assert_eq!(weights, vec![2000, 3000, 2000]);
        assert_eq!(*abstain, 1000);
        assert!(r.ties.is_empty());
    }

    #[test]
    fn a_three_way_tie_keeps_the_status_quo() {
        let r = tally(&example(&["qwen"]), &VotingRules::new(Method::Approval)).unwrap();
        assert_eq!(r.winner, None);
        assert_eq!(r.outcome, Outcome::Rejected);
        assert_eq!(r.ties[0].tied, vec!["llama", "mistral", "qwen"]);
    }

    #[test]
    fn bad_approvals_are_errors() {
        let rules = VotingRules::new(Method::Approval);
        assert_eq!(
            tally(&example(&["gpt"]), &rules).unwrap_err(),
            TallyError::UnknownOption {
                member: "d".into(),
                option: "gpt".into()
            }
        );
        assert_eq!(
            tally(&example(&["qwen", "qwen"]), &rules).unwrap_err(),
            TallyError::DuplicateChoice {
                member: "d".into(),
                option: "qwen".into()
            }
        );
        let mut input = example(&[]);
        input.ballots.push(approve("a", &["llama"]));
        assert_eq!(
            tally(&input, &rules).unwrap_err(),
            TallyError::DuplicateBallot("a".into())
        );
        let mut input = example(&[]);
        input.options.clear();
        assert!(matches!(tally(&input, &rules), Err(TallyError::NoOptions { .. })));
    }

    #[test]
    fn nobody_approving_anything_is_rejected() {
        let mut input = example(&[]);
        for b in &mut input.ballots {
            b.choice = Choice::Approve(vec![]);
        }
        let r = tally(&input, &VotingRules::new(Method::Approval)).unwrap();
        assert_eq!(r.outcome, Outcome::Rejected);
        assert_eq!(r.winner, None);
    }
}
