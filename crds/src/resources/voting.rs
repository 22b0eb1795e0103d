//! Voting rules: the method, quorum, threshold and window of a decision.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How ballots are counted. Each method is worked through in `synco-policies`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, schemars::JsonSchema,
)]
pub enum VotingMethod {
    /// Yes against no, of votes cast; abstentions count for turnout only.
    Majority,
    /// Like majority, but yes must reach the configured threshold (such as 2/3).
    Supermajority,
    /// Passes unless a member blocks; stand-asides are recorded (Loomio's proposal).
    Consent,
    /// Each member approves any number of options; the most approved wins.
    Approval,
    /// Each member scores every option within a range; the highest total wins.
    Score,
    /// Members rank options; instant-runoff picks a single winner.
    RankedChoice,
    /// Members rank options; the option that beats every other by the strongest path of
    /// pairwise wins is chosen (a Condorcet method).
    Schulze,
    /// Members spread points over options; the result is a split in shares.
    DotVoting,
}

/// A fraction such as 2/3, kept exact so that tallies are reproducible.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.denominator > 0 && self.numerator <= self.denominator").message("a fraction must have a positive denominator and be at most 1"))]
pub struct Fraction {
    /// The top of the fraction.
    pub numerator: u32,
    /// The bottom of the fraction; more than zero.
    pub denominator: u32,
}

/// The rules of one decision. The Cooperative's bylaws set them per kind of proposal;
/// a proposal is decided by the rules in force when voting opened, never its proposer's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VotingRules {
    /// The counting method.
    pub method: VotingMethod,
    /// The share of eligible voting weight that must take part, as a percentage (0 to 100).
    /// A proposal that misses it ends `NoQuorum`, not rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub quorum_percent: Option<u32>,
    /// The share of yes among yes and no needed to pass. Majority means more than
    /// half when unset; supermajority needs it (such as 2/3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Fraction>,
    /// How long voting stays open: a whole number and a unit, `s`, `m`, `h` or `d`
    /// (`90s`, `30m`, `2h`, `7d`). Seven days when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,6}(s|m|h|d)$"))]
    pub voting_period: Option<String>,
    /// For score voting: the highest score a member may give (the lowest is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_score: Option<u32>,
    /// For dot voting: the points each member spreads over the options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub points_per_member: Option<u32>,
}
