//! The rules of one decision.

use serde::{Deserialize, Serialize};

use crate::share::{Fraction, Share};
use crate::voting::TallyError;
use crate::voting::tiebreak::TieBreak;
use crate::weights::Weighting;
use crate::window::VotingWindow;

/// How ballots are counted. See each method's module for a worked example.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// More yes than no among votes cast ([`crate::voting::majority`]).
    Majority,
    /// Yes reaches at least `threshold` of yes and no, such as 2/3
    /// ([`crate::voting::majority`]).
    Supermajority {
        /// The share of yes needed; above 0 and at most 1.
        threshold: Fraction,
    },
    /// Passes unless more than `blocks_allowed` members block ([`crate::voting::consent`]).
    Consent {
        /// Blocks tolerated: 0 for full consent, 1 for "consensus minus one".
        blocks_allowed: u32,
    },
    /// The most approved option wins ([`crate::voting::approval`]).
    Approval,
    /// The highest total score wins ([`crate::voting::score`]).
    Score {
        /// The lowest score (also what an unscored option gets).
        min: i64,
        /// The highest score.
        max: i64,
    },
    /// Ranked choice, instant-runoff, one winner ([`crate::voting::irv`]).
    InstantRunoff,
    /// Ranked choice, the Condorcet winner by strongest paths ([`crate::voting::schulze`]).
    Schulze,
    /// Points spread over options give a split in shares ([`crate::voting::dot`]).
    Dot {
        /// The points each member may spread.
        points_per_member: u64,
    },
}

impl Method {
    /// A short name for messages and results.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Method::Majority => "majority",
            Method::Supermajority { .. } => "supermajority",
            Method::Consent { .. } => "consent",
            Method::Approval => "approval",
            Method::Score { .. } => "score",
            Method::InstantRunoff => "instant-runoff",
            Method::Schulze => "schulze",
            Method::Dot { .. } => "dot",
        }
    }

    /// Whether the method chooses between listed options (rather than yes or no).
    #[must_use]
    pub fn needs_options(&self) -> bool {
        matches!(
            self,
            Method::Approval
                | Method::Score { .. }
                | Method::InstantRunoff
                | Method::Schulze
                | Method::Dot { .. }
        )
    }
}

/// Everything that decides how a proposal is counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VotingRules {
    /// The counting method.
    pub method: Method,
    /// The share of eligible weight that must take part (abstentions and delegated weight
    /// included). Missing it gives [`Outcome::NoQuorum`](crate::Outcome::NoQuorum).
    pub quorum: Share,
    /// How voting power is spread over members.
    pub weighting: Weighting,
    /// How ties between options are broken.
    pub tie_break: TieBreak,
    /// If given, ballots cast outside it are refused.
    pub window: Option<VotingWindow>,
}

impl VotingRules {
    /// `method` with no quorum, one member one vote, first-listed tie-break and no window check.
    #[must_use]
    pub fn new(method: Method) -> VotingRules {
        VotingRules {
            method,
            quorum: Share::ZERO,
            weighting: Weighting::PerMember,
            tie_break: TieBreak::FirstListed,
            window: None,
        }
    }

    /// The same rules with a quorum.
    #[must_use]
    pub fn with_quorum(mut self, quorum: Share) -> VotingRules {
        self.quorum = quorum;
        self
    }

    /// Checks the rules themselves, before any ballot is looked at.
    pub(crate) fn validate(&self) -> Result<(), TallyError> {
        if !self.quorum.is_valid() {
            return Err(TallyError::ShareOverWhole {
                what: "quorum".to_owned(),
                ppm: self.quorum.ppm(),
            });
        }
        if let Some(w) = self.window
            && w.closes_at < w.opens_at
        {
            return Err(TallyError::InvalidWindow {
                opens_at: w.opens_at,
                closes_at: w.closes_at,
            });
        }
        match self.method {
            Method::Supermajority {
                threshold:
                    Fraction {
                        numerator,
                        denominator,
                    },
            } if numerator == 0 || denominator == 0 || numerator > denominator => {
                Err(TallyError::InvalidThreshold {
                    numerator,
                    denominator,
                })
            }
            Method::Score { min, max } if min > max => Err(TallyError::InvalidScoreRange { min, max }),
            Method::Dot { points_per_member: 0 } => Err(TallyError::NoPoints),
            _ => Ok(()),
        }
    }
}
