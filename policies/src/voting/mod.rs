//! Tallying ballots.
//!
//! [`tally`] checks the input, works out weights ([`crate::weights`]), follows
//! delegations ([`crate::delegation`]), counts with the chosen method, then applies quorum
//! ([`crate::quorum`]). Every sum is an exact integer and nothing depends on the order of
//! the ballots, so a tally can be reproduced from the recorded ballots at any time.
//!
//! The methods, each with a worked example:
//! [`majority`] (and supermajority), [`consent`], [`approval`], [`score`], [`irv`]
//! (ranked choice) and [`dot`] (dot voting for splits).

pub mod approval;
mod ballot;
pub mod consent;
pub mod dot;
mod error;
pub mod irv;
pub mod majority;
mod result;
mod rules;
pub mod schulze;
pub mod score;
mod tiebreak;

use foldhash::HashMap;

pub use ballot::{Ballot, Choice, ConsentPosition, Delegation};
pub use error::TallyError;
pub use result::{
    Audit, Counts, DelegationReport, DelegationUse, IrvRound, OptionCount, OptionShare, Outcome, SetAside,
    SetAsideReason, TallyResult, Tie, Turnout,
};
pub use rules::{Method, VotingRules};
pub use tiebreak::TieBreak;

use serde::{Deserialize, Serialize};

use crate::quorum::{quorum_met, turnout_share};
use crate::weights::{Voter, Weight, weigh};

/// Everything recorded about one proposal's vote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TallyInput {
    /// The options, in the proposal's order (empty for yes/no and consent decisions).
    pub options: Vec<String>,
    /// Every member, with class, weight and standing, suspended ones included.
    pub electorate: Vec<Voter>,
    /// The ballots cast, in any order.
    pub ballots: Vec<Ballot>,
    /// Standing delegations, in any order.
    pub delegations: Vec<Delegation>,
}

/// A counted ballot with the weight it carries (its own plus what was delegated to it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cast<'a> {
    pub member: &'a str,
    pub weight: Weight,
    pub choice: &'a Choice,
}

/// What the methods need besides the ballots.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub options: &'a [String],
    pub option_index: HashMap<&'a str, usize>,
    /// Tie-break rank of each option; lower wins.
    pub priority: Vec<usize>,
    pub method: &'static str,
    pub abstain: Weight,
}

impl Ctx<'_> {
    /// The index of `option`, or the error naming the member who chose it.
    pub fn option(&self, member: &str, option: &str) -> Result<usize, TallyError> {
        self.option_index
            .get(option)
            .copied()
            .ok_or_else(|| TallyError::UnknownOption {
                member: member.to_owned(),
                option: option.to_owned(),
            })
    }

    pub fn wrong_kind(&self, member: &str) -> TallyError {
        TallyError::WrongBallotKind {
            member: member.to_owned(),
            method: self.method,
        }
    }

    pub fn name(&self, option: usize) -> String {
        self.options.get(option).cloned().unwrap_or_default()
    }

    /// Options in tie-break order (the winner of a tie first).
    pub fn in_priority_order(&self, mut options: Vec<usize>) -> Vec<usize> {
        options.sort_by_key(|o| (self.priority.get(*o).copied(), *o));
        options
    }
}

/// What a method decided, before quorum is applied.
#[derive(Debug)]
pub(crate) struct MethodOutcome {
    pub passed: bool,
    pub winner: Option<usize>,
    pub counts: Counts,
    pub ties: Vec<Tie>,
    pub rule: String,
}

/// Counts the ballots of one proposal under `rules`.
///
/// # Errors
///
/// A [`TallyError`] for any bad input: invalid rules, a duplicate or negative-weight
/// member, an unknown voter or option, two ballots from one member, a ballot of the wrong
/// kind, a score or points out of range, a ballot outside the window, or weights too
/// large to add exactly. Nothing is counted when there is an error.
pub fn tally(input: &TallyInput, rules: &VotingRules) -> Result<TallyResult, TallyError> {
    rules.validate()?;
    let method = rules.method.name();
    if rules.method.needs_options() && input.options.is_empty() {
        return Err(TallyError::NoOptions { method });
    }
    let mut option_index = HashMap::with_capacity_and_hasher(input.options.len(), Default::default());
    for (i, o) in input.options.iter().enumerate() {
        if option_index.insert(o.as_str(), i).is_some() {
            return Err(TallyError::DuplicateOption(o.clone()));
        }
    }
    let table = weigh(&input.electorate, &rules.weighting)?;

    // Check every ballot; set aside those of suspended members.
    let n = input.electorate.len();
    let mut seen = vec![false; n];
    let mut voted = vec![false; n];
    let mut counted: Vec<(usize, &Ballot)> = Vec::with_capacity(input.ballots.len());
    let mut set_aside = Vec::new();
    for b in &input.ballots {
        let idx = *table
            .index
            .get(b.member.as_str())
            .ok_or_else(|| TallyError::UnknownMember(b.member.clone()))?;
        // Indices come from the table, so they are in range.
        if std::mem::replace(&mut seen[idx], true) {
            return Err(TallyError::DuplicateBallot(b.member.clone()));
        }
        if let Some(w) = rules.window
            && !w.contains(b.cast_at)
        {
            return Err(TallyError::CastOutsideWindow {
                member: b.member.clone(),
                cast_at: b.cast_at,
            });
        }
        if table.is_eligible(idx) {
            voted[idx] = true;
            counted.push((idx, b));
        } else {
            set_aside.push(SetAside {
                member: b.member.clone(),
                reason: SetAsideReason::Suspended,
            });
        }
    }
    set_aside.sort_by(|a, b| a.member.cmp(&b.member));

    let delegation = crate::delegation::resolve(&table, &voted, &input.delegations)?;
    let overflow = || TallyError::WeightOverflow;
    let mut turnout = Turnout {
        ballots: counted.len() as u64,
        ..Turnout::default()
    };
    let mut casts = Vec::with_capacity(counted.len());
    for (idx, b) in counted {
        let own = table.weight[idx];
        let weight = own.checked_add(delegation.extra[idx]).ok_or_else(overflow)?;
        turnout.direct_weight = turnout.direct_weight.checked_add(own).ok_or_else(overflow)?;
        if b.choice == Choice::Abstain {
            turnout.abstain_weight = turnout.abstain_weight.checked_add(weight).ok_or_else(overflow)?;
        } else {
            casts.push(Cast {
                member: &b.member,
                weight,
                choice: &b.choice,
            });
        }
    }
    turnout.delegated_weight = delegation.delegated_total;
    turnout.total_weight = turnout
        .direct_weight
        .checked_add(delegation.delegated_total)
        .ok_or_else(overflow)?;
    turnout.share = turnout_share(turnout.total_weight, table.eligible_total);

    let ctx = Ctx {
        options: &input.options,
        option_index,
        priority: rules.tie_break.priority(&input.options),
        method,
        abstain: turnout.abstain_weight,
    };
    let decided = match &rules.method {
        Method::Majority => majority::count(&casts, &ctx, None)?,
        Method::Supermajority { threshold } => majority::count(&casts, &ctx, Some(*threshold))?,
        Method::Consent { blocks_allowed } => consent::count(&casts, &ctx, *blocks_allowed)?,
        Method::Approval => approval::count(&casts, &ctx)?,
        Method::Score { min, max } => score::count(&casts, &ctx, *min, *max)?,
        Method::InstantRunoff => irv::count(&casts, &ctx)?,
        Method::Schulze => schulze::count(&casts, &ctx)?,
        Method::Dot { points_per_member } => dot::count(&casts, &ctx, *points_per_member)?,
    };

    let met = quorum_met(turnout.total_weight, table.eligible_total, rules.quorum);
    let (outcome, winner) = match (met, decided.passed) {
        (false, _) => (Outcome::NoQuorum, None),
        (true, true) => (Outcome::Passed, decided.winner.map(|w| ctx.name(w))),
        (true, false) => (Outcome::Rejected, None),
    };
    Ok(TallyResult {
        outcome,
        winner,
        method: method.to_owned(),
        rule: decided.rule,
        tie_break_rule: rules.tie_break.describe(),
        ties: decided.ties,
        audit: Audit {
            unit: table.unit,
            eligible_weight: table.eligible_total,
            quorum: rules.quorum,
            quorum_met: met,
            turnout,
            delegation: DelegationReport {
                followed: delegation.followed,
                used: delegation
                    .used
                    .into_iter()
                    .map(|(from, to)| DelegationUse { from, to })
                    .collect(),
                cycles: delegation.cycles,
                broken: delegation.broken,
            },
            set_aside,
        },
        counts: decided.counts,
    })
}

/// Adds `w` to `slot`, failing on overflow.
pub(crate) fn add(slot: &mut Weight, w: Weight) -> Result<(), TallyError> {
    *slot = slot.checked_add(w).ok_or(TallyError::WeightOverflow)?;
    Ok(())
}

/// The option with the largest total. When several share the top there is no winner: a
/// tie keeps the status quo, and the [`Tie`] naming them is recorded. No winner either
/// when every total is zero.
pub(crate) fn top(totals: &[Weight], ctx: &Ctx<'_>) -> (Option<usize>, Option<Tie>) {
    let Some(max) = totals.iter().copied().max().filter(|m| *m > 0) else {
        return (None, None);
    };
    let tied: Vec<usize> = (0..totals.len())
        .filter(|i| totals.get(*i) == Some(&max))
        .collect();
    if let [winner] = tied[..] {
        return (Some(winner), None);
    }
    let tie = Tie {
        round: None,
        tied: tied.iter().map(|o| ctx.name(*o)).collect(),
        resolution: "a tie for the most keeps the status quo: no option wins".to_owned(),
    };
    (None, Some(tie))
}
