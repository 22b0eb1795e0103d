//! Vote: one member's ballot on one proposal, immutable once cast.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Conditions;

/// One member's ballot on one proposal. It is named `<proposal>-<member>`, so the
/// API server itself keeps it to one per member and proposal; it cannot be changed
/// once created, and an admission policy refuses its deletion.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "Vote",
    namespaced,
    derive = "PartialEq",
    status = "VoteStatus",
    shortname = "ballot",
    category = "synco",
    printcolumn(name = "Proposal", type_ = "string", json_path = ".spec.proposal"),
    printcolumn(name = "Member", type_ = "string", json_path = ".spec.member"),
    printcolumn(name = "Position", type_ = "string", json_path = ".spec.position"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name == self.spec.proposal + '-' + self.spec.member").message("a vote must be named <proposal>-<member>: one ballot per member and proposal")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("a vote cannot be changed once cast"))]
#[x_kube(validation = kube::core::Rule::new("[has(self.position), has(self.approvals), has(self.scores), has(self.ranking), has(self.points)].filter(x, x).size() == 1").message("a ballot sets exactly one of position, approvals, scores, ranking or points"))]
pub struct VoteSpec {
    /// The Proposal voted on.
    #[schemars(length(min = 1, max = 120))]
    pub proposal: String,
    /// The Member casting the ballot.
    #[schemars(length(min = 1, max = 120))]
    pub member: String,
    /// Majority, supermajority and consent: the member's position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Approval voting: the options approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub approvals: Option<Vec<String>>,
    /// Score voting: a score per option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<BTreeMap<String, u32>>,
    /// Ranked choice: options from most to least preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub ranking: Option<Vec<String>>,
    /// Dot voting: points per option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<BTreeMap<String, u32>>,
    /// Why the member voted so, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub comment: Option<String>,
}

/// A position on a yes/no or consent question.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Position {
    /// For.
    Yes,
    /// Against.
    No,
    /// Takes part without taking a side; counts for turnout only.
    Abstain,
    /// Consent: a principled objection that stops the proposal.
    Block,
    /// Consent: disagrees but lets it pass; recorded.
    StandAside,
}

/// The Vote's status. Whether each ballot counted is recorded once, on the Proposal
/// (`status.ignoredVotes`), where the whole result is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoteStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = super::conditions_merge())]
    pub conditions: Conditions,
}
