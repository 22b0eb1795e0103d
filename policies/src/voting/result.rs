//! What a tally returns: the outcome and everything needed to audit it.

use serde::{Deserialize, Serialize};

use crate::share::Share;
use crate::weights::{Weight, WeightUnit};

/// How a proposal ended. These map one-to-one onto the Proposal phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// It passed (for option methods: a winner or a split was found).
    Passed,
    /// Enough members took part and it did not pass.
    Rejected,
    /// Too little of the eligible weight took part; not the same as rejected.
    NoQuorum,
}

/// The result of a tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TallyResult {
    /// Passed, rejected or no quorum.
    pub outcome: Outcome,
    /// The winning option, for approval, score and instant-runoff when passed.
    pub winner: Option<String>,
    /// The method used.
    pub method: String,
    /// The counting rule applied, in words.
    pub rule: String,
    /// The tie-break rule, in words (stated whether or not a tie happened).
    pub tie_break_rule: String,
    /// Every tie the tie-break rule had to settle.
    pub ties: Vec<Tie>,
    /// Weight, turnout, quorum and delegation figures.
    pub audit: Audit,
    /// The counts themselves.
    pub counts: Counts,
}

/// Figures to check a tally against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    /// What one unit of weight means.
    pub unit: WeightUnit,
    /// The weight of all eligible (active) members.
    pub eligible_weight: Weight,
    /// The quorum, as a share of eligible weight.
    pub quorum: Share,
    /// Whether turnout reached it.
    pub quorum_met: bool,
    /// Who took part and with how much weight.
    pub turnout: Turnout,
    /// How delegations were followed.
    pub delegation: DelegationReport,
    /// Ballots that were not counted, with the reason.
    pub set_aside: Vec<SetAside>,
}

/// Turnout, in weight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Turnout {
    /// Ballots counted.
    pub ballots: u64,
    /// Weight of the members who voted themselves.
    pub direct_weight: Weight,
    /// Weight that arrived by delegation.
    pub delegated_weight: Weight,
    /// Of the total, weight that abstained.
    pub abstain_weight: Weight,
    /// Direct plus delegated weight: what quorum is measured on.
    pub total_weight: Weight,
    /// Total as a share of eligible weight (rounded down).
    pub share: Share,
}

/// What happened to delegations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegationReport {
    /// Members whose weight was carried to another member's ballot.
    pub followed: u64,
    /// Each delegation that carried weight: from the member who did not vote to the
    /// member whose ballot carried it (sorted).
    #[serde(default)]
    pub used: Vec<DelegationUse>,
    /// Members whose delegation ran into a cycle with no voter on it, so counted as no
    /// delegation (sorted).
    pub cycles: Vec<String>,
    /// Members whose delegation chain ended at someone suspended or unknown (sorted).
    pub broken: Vec<String>,
}

/// One delegation that carried weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegationUse {
    /// The member who delegated and did not vote.
    pub from: String,
    /// The member whose ballot carried the weight (the end of the chain).
    pub to: String,
}

/// A ballot that was not counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetAside {
    /// The member who cast it.
    pub member: String,
    /// Why it was not counted.
    pub reason: SetAsideReason,
}

/// Why a ballot was not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetAsideReason {
    /// The member is suspended, so not eligible.
    Suspended,
}

/// A tie, and how the tie-break rule settled it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tie {
    /// The instant-runoff round (from 1), if any.
    pub round: Option<u32>,
    /// The tied options (`yes` and `no` for a yes/no vote), in tie-break order.
    pub tied: Vec<String>,
    /// What the rule decided.
    pub resolution: String,
}

/// The weight behind one option.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionCount {
    /// The option.
    pub option: String,
    /// Its weight (for score voting: weighted score above the minimum).
    pub weight: Weight,
}

/// One instant-runoff round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IrvRound {
    /// Weight per continuing option, in proposal order.
    pub counts: Vec<OptionCount>,
    /// Weight of ballots with no continuing option left.
    pub exhausted: Weight,
    /// The option eliminated at the end of the round, if any.
    pub eliminated: Option<String>,
    /// The option elected in this round, if any.
    pub elected: Option<String>,
}

/// One option's part of a dot-voting split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionShare {
    /// The option.
    pub option: String,
    /// Weighted points (weight × points, summed over ballots).
    pub points: Weight,
    /// Its share; the shares add up to exactly 100% when any points were given.
    pub share: Share,
}

/// The counts, by method.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Counts {
    /// Majority and supermajority.
    YesNo {
        /// Weight for.
        yes: Weight,
        /// Weight against.
        no: Weight,
        /// Weight abstaining.
        abstain: Weight,
    },
    /// Consent.
    Consent {
        /// Weight agreeing.
        agree: Weight,
        /// Weight standing aside.
        stand_aside: Weight,
        /// Weight disagreeing.
        disagree: Weight,
        /// Weight blocking.
        block: Weight,
        /// Weight abstaining.
        abstain: Weight,
        /// Members who blocked (sorted).
        blocked_by: Vec<String>,
        /// Members who stood aside (sorted).
        stood_aside: Vec<String>,
    },
    /// Approval and score: a total per option, in proposal order.
    Totals {
        /// Per option.
        per_option: Vec<OptionCount>,
        /// Weight abstaining.
        abstain: Weight,
    },
    /// Instant-runoff.
    Rounds {
        /// The rounds, first to last.
        rounds: Vec<IrvRound>,
        /// Weight abstaining.
        abstain: Weight,
    },
    /// Dot voting.
    Split {
        /// Per option, in proposal order.
        per_option: Vec<OptionShare>,
        /// Weight abstaining.
        abstain: Weight,
    },
}
