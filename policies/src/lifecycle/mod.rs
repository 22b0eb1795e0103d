//! The life of a proposal, as pure steps: open it, accept or refuse each ballot, close
//! it, tally, and decide the effect.
//!
//! Both ways of running Synco call these functions and only store what they return: the
//! operator over the API server (cluster mode) and the gateway over its database
//! (standalone). So a proposal is opened, a ballot accepted and a result decided the same
//! way whichever of them does it.
//!
//! * [`open`]: the rules come from the bylaws for the proposal's kind, never from its
//!   proposer; the window starts now and lasts the bylaws' voting period; the electorate
//!   (members, classes, weights, standing) is fixed; a seed for the lot that settles
//!   ties is drawn by the caller and published with the rules.
//! * [`accept_ballot`]: inside the window, from a member of the electorate in good
//!   standing who has not voted, in the form the method asks for. A ballot is final.
//! * [`close`](close::close): the recorded ballots, the standing delegations and who is
//!   suspended at the close go in; the tally, the ballots set aside and why, the effect
//!   to apply and a fingerprint come out. [`close::recount`] does the same from a
//!   published [`Record`], so anyone can check a result.
//! * [`withdraw`]: only the proposer, only while nobody has voted.
//!
//! Time is passed in as Unix seconds; nothing here reads a clock or draws a random number.

mod ballot_form;
pub mod close;
mod duration;

use serde::{Deserialize, Serialize};

pub use ballot_form::{BallotForm, Position};
pub use close::{
    CastBallot, Closed, DecidedEffect, Record, SetAsideBallot, SetAsideWhy, SplitPart, close, fingerprint,
    receipt, recount,
};
pub use duration::{DurationError, parse_duration};

use crate::voting::{Method, TallyError, TieBreak, VotingRules};
use crate::weights::{Standing, Voter};
use crate::window::VotingWindow;

/// The kinds of question a co-op decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// A new allocation of capacity.
    Allocation,
    /// A change to the bylaws.
    Bylaw,
    /// A new surplus price policy.
    SurplusPrice,
    /// Serving a new model.
    ModelAdoption,
    /// Admitting a new member.
    MemberAdmission,
    /// A question with no effect.
    FreeText,
    /// A closed month's patronage refunds.
    PatronageDistribution,
}

/// What the bylaws say for one kind of proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindRules {
    /// The counting rules (their window and tie-break are set when a proposal opens).
    pub rules: VotingRules,
    /// How long voting stays open, in seconds.
    pub period_seconds: i64,
}

/// One option of a proposal, as far as opening it is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionShape {
    /// Its name.
    pub name: String,
    /// Whether it carries an effect of its own.
    pub has_effect: bool,
    /// Whether it names a floor (dot-voted allocations).
    pub has_floor: bool,
}

/// What [`open`] checks of a proposal against its method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposalShape {
    /// Its kind.
    pub kind: Kind,
    /// Its options, in order.
    pub options: Vec<OptionShape>,
    /// Whether it carries an effect of its own (yes/no methods; the base of a split).
    pub has_effect: bool,
    /// The share a dot vote splits, in percent.
    pub split_percent: Option<u32>,
    /// The floors of its own effect's allocation, in percent (kept beside a split).
    pub base_floor_percent: u32,
}

/// A proposal once open: its rules (with window and tie-break seed) and its electorate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The rules, window and seeded tie-break included.
    pub rules: VotingRules,
    /// The members as they were when voting opened, sorted by name.
    pub electorate: Vec<Voter>,
}

impl Opened {
    /// The window (always set by [`open`]).
    #[must_use]
    pub fn window(&self) -> VotingWindow {
        self.rules.window.unwrap_or(VotingWindow::new(0, 0))
    }
}

/// Why a proposal cannot be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The proposer is not a member.
    #[error("{0} is not a member of the co-op: only members make proposals")]
    NotAMember(String),
    /// The proposer is suspended (or in a class the bylaws do not list).
    #[error("{0} is not in good standing and cannot make proposals")]
    NotEligible(String),
    /// The method chooses between options and the proposal has too few.
    #[error("the bylaws decide {kind:?} proposals by {method}, which needs at least two options")]
    NeedsOptions {
        /// The kind.
        kind: Kind,
        /// The method.
        method: &'static str,
    },
    /// Options on a yes/no question.
    #[error("the bylaws decide {kind:?} proposals by {method}, a yes/no question: give no options")]
    OptionsNotUsed {
        /// The kind.
        kind: Kind,
        /// The method.
        method: &'static str,
    },
    /// A yes/no question on a kind that changes something, without the change.
    #[error("a {kind:?} proposal decided by {method} needs an effect: what changes if it passes")]
    NeedsEffect {
        /// The kind.
        kind: Kind,
        /// The method.
        method: &'static str,
    },
    /// An option method with an effect outside the options.
    #[error("under {method} each option carries its own effect; the proposal itself has none")]
    EffectOnOptionMethod {
        /// The method.
        method: &'static str,
    },
    /// A split outside a dot-voted allocation.
    #[error("only a dot-voted allocation is split; the bylaws decide {kind:?} proposals by {method}")]
    SplitNotUsed {
        /// The kind.
        kind: Kind,
        /// The method.
        method: &'static str,
    },
    /// A dot-voted allocation without the share to split.
    #[error("a dot-voted allocation needs split.sharePercent: the share of capacity the options divide")]
    NeedsSplit,
    /// A dot-voted allocation option without a floor.
    #[error("option {0:?} needs a floor: the class or member its part of the split goes to")]
    NeedsFloor(String),
    /// A floor outside a dot-voted allocation.
    #[error("option {0:?} names a floor, which only a dot-voted allocation uses")]
    FloorNotUsed(String),
    /// An option effect under dot voting.
    #[error("option {0:?} carries an effect: dot voting splits, it does not pick a winner")]
    EffectOnDotOption(String),
    /// Dot voting on a kind other than an allocation or a free-text question.
    #[error("dot voting decides splits: the bylaws cannot decide {0:?} proposals by points")]
    DotOnKind(Kind),
    /// The split and the floors kept add up to more than everything.
    #[error("the floors kept ({base}%) and the split ({split}%) add up to more than 100%")]
    SplitOverWhole {
        /// The floors kept.
        base: u32,
        /// The split.
        split: u32,
    },
    /// The bylaws' rules themselves are wrong (say, a threshold of 0).
    #[error("the bylaws' rules for this kind are invalid: {0}")]
    InvalidRules(TallyError),
    /// An option listed twice.
    #[error("option {0:?} is listed twice")]
    DuplicateOption(String),
    /// The voting period is not positive.
    #[error("the voting period must be positive")]
    EmptyPeriod,
}

/// Opens a proposal at `now`: its rules are the bylaws' for its kind, its window runs for
/// the bylaws' voting period, its electorate is `members` as they are now, and ties are
/// settled by a lot drawn from `seed` (which the caller draws at random and publishes).
///
/// # Errors
///
/// An [`OpenError`] when the proposer may not propose or the proposal does not fit the
/// method the bylaws set for its kind.
pub fn open(
    shape: &ProposalShape,
    proposer: &str,
    members: &[Voter],
    bylaws: &KindRules,
    now: i64,
    seed: u64,
) -> Result<Opened, OpenError> {
    let me = members
        .iter()
        .find(|m| m.id == proposer)
        .ok_or_else(|| OpenError::NotAMember(proposer.to_owned()))?;
    if me.standing != Standing::Active {
        return Err(OpenError::NotEligible(proposer.to_owned()));
    }
    check_shape(shape, &bylaws.rules.method)?;
    if bylaws.period_seconds <= 0 {
        return Err(OpenError::EmptyPeriod);
    }
    let mut rules = bylaws.rules.clone();
    rules.window = Some(VotingWindow::new(now, now.saturating_add(bylaws.period_seconds)));
    rules.tie_break = TieBreak::Seeded { seed };
    rules.validate().map_err(OpenError::InvalidRules)?;
    let mut electorate = members.to_vec();
    electorate.sort_by(|a, b| a.id.cmp(&b.id));
    electorate.dedup_by(|a, b| a.id == b.id);
    Ok(Opened { rules, electorate })
}

/// Checks that a proposal fits the method its kind is decided by.
fn check_shape(shape: &ProposalShape, method: &Method) -> Result<(), OpenError> {
    let name = method.name();
    let kind = shape.kind;
    let mut seen = std::collections::BTreeSet::new();
    for o in &shape.options {
        if !seen.insert(o.name.as_str()) {
            return Err(OpenError::DuplicateOption(o.name.clone()));
        }
    }
    let dot = matches!(method, Method::Dot { .. });
    if shape.split_percent.is_some() && !(dot && kind == Kind::Allocation) {
        return Err(OpenError::SplitNotUsed { kind, method: name });
    }
    if !(dot && kind == Kind::Allocation)
        && let Some(o) = shape.options.iter().find(|o| o.has_floor)
    {
        return Err(OpenError::FloorNotUsed(o.name.clone()));
    }
    if !method.needs_options() {
        if !shape.options.is_empty() {
            return Err(OpenError::OptionsNotUsed { kind, method: name });
        }
        if kind != Kind::FreeText && !shape.has_effect {
            return Err(OpenError::NeedsEffect { kind, method: name });
        }
        return Ok(());
    }
    if shape.options.len() < 2 {
        return Err(OpenError::NeedsOptions { kind, method: name });
    }
    if !dot {
        if shape.has_effect {
            return Err(OpenError::EffectOnOptionMethod { method: name });
        }
        return Ok(());
    }
    if let Some(o) = shape.options.iter().find(|o| o.has_effect) {
        return Err(OpenError::EffectOnDotOption(o.name.clone()));
    }
    match kind {
        Kind::FreeText => Ok(()),
        Kind::Allocation => {
            let split = shape.split_percent.ok_or(OpenError::NeedsSplit)?;
            if let Some(o) = shape.options.iter().find(|o| !o.has_floor) {
                return Err(OpenError::NeedsFloor(o.name.clone()));
            }
            if shape.base_floor_percent.saturating_add(split) > 100 {
                return Err(OpenError::SplitOverWhole {
                    base: shape.base_floor_percent,
                    split,
                });
            }
            Ok(())
        }
        other => Err(OpenError::DotOnKind(other)),
    }
}

/// A moment as people read it (UTC, RFC 3339), from Unix seconds.
fn utc(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map_or_else(|_| format!("{seconds} (Unix seconds)"), |t| t.to_string())
}

/// Why a ballot is refused when it is cast.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Before the window.
    #[error("voting opens at {}", utc(*opens_at))]
    NotOpenYet {
        /// When it opens.
        opens_at: i64,
    },
    /// At or after the close: a late ballot.
    #[error("voting closed at {}", utc(*closes_at))]
    Closed {
        /// When it closed.
        closes_at: i64,
    },
    /// Not a member when voting opened.
    #[error("{0} was not a member when voting opened, so is not in this proposal's electorate")]
    NotInElectorate(String),
    /// Suspended when voting opened.
    #[error("{0} was not in good standing when voting opened")]
    NotEligible(String),
    /// A second ballot.
    #[error("{0} has already voted; a ballot is final")]
    AlreadyVoted(String),
    /// The ballot does not fit the method or names an option that is not on the proposal.
    #[error("{0}")]
    InvalidBallot(String),
}

/// Decides whether `member`'s ballot `form` may be recorded at `now`. `already_voted`
/// says whether a ballot of this member is already recorded (the store enforces that
/// too, so two ballots racing each other cannot both be recorded).
///
/// # Errors
///
/// The [`Refusal`], checked in this order: the window, the electorate, standing, a
/// second ballot, the ballot itself.
pub fn accept_ballot(
    opened: &Opened,
    options: &[String],
    member: &str,
    form: &BallotForm,
    already_voted: bool,
    now: i64,
) -> Result<(), Refusal> {
    let window = opened.window();
    if now < window.opens_at {
        return Err(Refusal::NotOpenYet {
            opens_at: window.opens_at,
        });
    }
    if now >= window.closes_at {
        return Err(Refusal::Closed {
            closes_at: window.closes_at,
        });
    }
    let voter = opened
        .electorate
        .binary_search_by(|v| v.id.as_str().cmp(member))
        .ok()
        .and_then(|i| opened.electorate.get(i))
        .ok_or_else(|| Refusal::NotInElectorate(member.to_owned()))?;
    if voter.standing != Standing::Active {
        return Err(Refusal::NotEligible(member.to_owned()));
    }
    if already_voted {
        return Err(Refusal::AlreadyVoted(member.to_owned()));
    }
    form.choice(&opened.rules.method, options)
        .map(|_| ())
        .map_err(Refusal::InvalidBallot)
}

/// Why a proposal cannot be withdrawn.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WithdrawRefusal {
    /// Someone else asked.
    #[error("only the proposer, {proposer}, may withdraw this proposal")]
    NotProposer {
        /// The proposer.
        proposer: String,
    },
    /// Ballots were cast.
    #[error("{0} ballots have been cast: a proposal members have voted on runs to its close")]
    HasBallots(u64),
    /// Already decided or withdrawn.
    #[error("the proposal is no longer open")]
    NotOpen,
}

/// Decides whether `caller` may withdraw a proposal of `proposer` that is `open` and has
/// `ballots` ballots recorded.
///
/// # Errors
///
/// A [`WithdrawRefusal`] saying why not.
pub fn withdraw(proposer: &str, caller: &str, open: bool, ballots: u64) -> Result<(), WithdrawRefusal> {
    if caller != proposer {
        return Err(WithdrawRefusal::NotProposer {
            proposer: proposer.to_owned(),
        });
    }
    if !open {
        return Err(WithdrawRefusal::NotOpen);
    }
    if ballots > 0 {
        return Err(WithdrawRefusal::HasBallots(ballots));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
