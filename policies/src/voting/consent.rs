//! Consent (sociocratic consent, Loomio's "proposal"): it passes unless someone blocks.
//!
//! Each member agrees, stands aside, disagrees or blocks (or abstains). A proposal passes
//! when at most `blocks_allowed` members block (0 for full consent, 1 for "consensus
//! minus one") and quorum is met. Disagreeing is recorded but does not stop it. The
//! members who block or stand aside are named in the result, because in a consent
//! process those are the voices the group has to hear.
//!
//! A block is a personal objection, so blocks are counted per member who blocked, not by
//! weight: weight delegated to a blocking member adds to the `block` weight shown, but not
//! to the number of blocks.
//!
//! # Worked example
//!
//! Six members, `blocks_allowed = 0`. Ana, Ben and Caro agree, Dev stands aside, Eli
//! disagrees, Fay abstains.
//!
//! * Blocks: none, so it **passes**; the result records Dev as standing aside.
//! * Counts: agree 3000, stand aside 1000, disagree 1000, abstain 1000, block 0.
//!
//! If Eli had blocked instead, one block > 0 allowed: **rejected**, Eli named in
//! `blocked_by`. With `blocks_allowed = 1` it would pass.

use crate::voting::{Cast, Choice, ConsentPosition, Counts, Ctx, MethodOutcome, TallyError, add};
use crate::weights::Weight;

pub(crate) fn count(
    casts: &[Cast<'_>],
    ctx: &Ctx<'_>,
    blocks_allowed: u32,
) -> Result<MethodOutcome, TallyError> {
    let (mut agree, mut stand_aside, mut disagree, mut block): (Weight, Weight, Weight, Weight) =
        (0, 0, 0, 0);
    let mut blocked_by = Vec::new();
    let mut stood_aside = Vec::new();
    for c in casts {
        let Choice::Consent(position) = c.choice else {
            return Err(ctx.wrong_kind(c.member));
        };
        match position {
            ConsentPosition::Agree => add(&mut agree, c.weight)?,
            ConsentPosition::Disagree => add(&mut disagree, c.weight)?,
            ConsentPosition::StandAside => {
                add(&mut stand_aside, c.weight)?;
                stood_aside.push(c.member.to_owned());
            }
            ConsentPosition::Block => {
                add(&mut block, c.weight)?;
                blocked_by.push(c.member.to_owned());
            }
        }
    }
    blocked_by.sort_unstable();
    stood_aside.sort_unstable();
    let passed = blocked_by.len() as u64 <= u64::from(blocks_allowed);
    let rule = format!(
        "consent: passes unless more than {blocks_allowed} member(s) block; stand-asides and disagreement are \
         recorded but do not stop it"
    );
    Ok(MethodOutcome {
        passed,
        winner: None,
        counts: Counts::Consent {
            agree,
            stand_aside,
            disagree,
            block,
            abstain: ctx.abstain,
            blocked_by,
            stood_aside,
        },
        ties: Vec::new(),
        rule,
    })
}

#[cfg(test)]
mod tests {
    use crate::voting::{
        Ballot, Choice, ConsentPosition as P, Counts, Method, Outcome, TallyInput, VotingRules, tally,
    };
    use crate::weights::Voter;

    fn example(eli: P) -> TallyInput {
        let names = ["ana", "ben", "caro", "dev", "eli", "fay"];
        let positions = [P::Agree, P::Agree, P::Agree, P::StandAside, eli];
        let mut ballots: Vec<Ballot> = positions
            .iter()
            .zip(names)
            .map(|(p, n)| Ballot::new(n, Choice::Consent(*p)))
            .collect();
        ballots.push(Ballot::new("fay", Choice::Abstain));
        TallyInput {
            electorate: names.iter().map(|n| Voter::new(*n, "members")).collect(),
            ballots,
            ..TallyInput::default()
        }
    }

    #[test]
    fn worked_example_passes_without_blocks() {
        let r = tally(
            &example(P::Disagree),
            &VotingRules::new(Method::Consent { blocks_allowed: 0 }),
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
        assert_eq!(
            r.counts,
            Counts::Consent {
                agree: 3000,
                stand_aside: 1000,
                disagree: 1000,
                block: 0,
                abstain: 1000,
                blocked_by: vec![],
                stood_aside: vec!["dev".into()],
            }
        );
    }

    #[test]
    fn one_block_stops_it_unless_tolerated() {
        let r = tally(
            &example(P::Block),
            &VotingRules::new(Method::Consent { blocks_allowed: 0 }),
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Rejected);
        let Counts::Consent {
            blocked_by, block, ..
        } = &r.counts
        else {
            panic!("consent counts")
        };
        assert_eq!(blocked_by, &vec!["eli".to_owned()]);
        assert_eq!(*block, 1000);
        let r = tally(
            &example(P::Block),
            &VotingRules::new(Method::Consent { blocks_allowed: 1 }),
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Passed);
    }

    #[test]
    fn yes_no_ballots_do_not_fit_consent() {
        let mut input = example(P::Agree);
        input.ballots[0].choice = Choice::Yes;
        assert!(tally(&input, &VotingRules::new(Method::Consent { blocks_allowed: 0 })).is_err());
    }
}
