//! What members hand in: ballots and delegations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One member's ballot on one proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ballot {
    /// The member who cast it.
    pub member: String,
    /// When it was cast, in Unix seconds; checked against the voting window if one is given.
    pub cast_at: i64,
    /// What the member chose.
    pub choice: Choice,
}

impl Ballot {
    /// A ballot cast at time 0 (for callers that check the window themselves).
    #[must_use]
    pub fn new(member: impl Into<String>, choice: Choice) -> Ballot {
        Ballot {
            member: member.into(),
            cast_at: 0,
            choice,
        }
    }
}

/// The content of a ballot. Which variants fit depends on the method; [`Choice::Abstain`]
/// fits every method and counts for turnout (and so for quorum) but for no option.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Choice {
    /// Takes part without taking a side.
    Abstain,
    /// Majority and supermajority: for.
    Yes,
    /// Majority and supermajority: against.
    No,
    /// Consent: the member's position.
    Consent(ConsentPosition),
    /// Approval: the options the member approves of (any number, each once).
    Approve(Vec<String>),
    /// Score: a score per option; an option left out gets the lowest score.
    Score(BTreeMap<String, i64>),
    /// Instant-runoff: options in order of preference, best first; need not rank all.
    Rank(Vec<String>),
    /// Dot voting: points per option, at most the points each member has in all.
    Dots(BTreeMap<String, i64>),
}

/// A position in a consent decision (after Loomio's proposal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConsentPosition {
    /// In favour.
    Agree,
    /// Will not take part in carrying it out, but lets it go ahead. Recorded by name.
    StandAside,
    /// Against, but does not stop it.
    Disagree,
    /// Stops it: a principled objection. Recorded by name.
    Block,
}

/// A standing delegation: when `from` does not vote, `to`'s ballot counts for both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delegation {
    /// The member who delegates.
    pub from: String,
    /// The member delegated to.
    pub to: String,
}

impl Delegation {
    /// `from` delegates to `to`.
    #[must_use]
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Delegation {
        Delegation {
            from: from.into(),
            to: to.into(),
        }
    }
}
