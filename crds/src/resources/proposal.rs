//! Proposal: a question put to the members, with the effect to apply if it passes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Conditions;
use super::allocation::AllocationPlan;
use super::cooperative::{MemberClass, SurplusPolicy, VotingDefault};
use super::inference_model::InferenceModelSpec;
use super::member::MemberSpec;
use super::voting::VotingRules;

/// A question put to the members. Votes are cast while it is open; at the close the
/// operator tallies and, if it passed, applies the effect.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "Proposal",
    namespaced,
    derive = "PartialEq",
    status = "ProposalStatus",
    shortname = "prop",
    category = "synco",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.kind"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Yes", type_ = "string", json_path = ".status.tally.yes"),
    printcolumn(name = "No", type_ = "string", json_path = ".status.tally.no"),
    printcolumn(name = "Abstain", type_ = "string", json_path = ".status.tally.abstain"),
    printcolumn(name = "Turnout", type_ = "string", json_path = ".status.turnoutPercent"),
    printcolumn(name = "Closes", type_ = "date", json_path = ".spec.closesAt"),
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title", priority = 1)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("timestamp(self.closesAt) > timestamp(self.opensAt)").message("the voting window must close after it opens"))]
#[x_kube(validation = kube::core::Rule::new("self.kind == oldSelf.kind && self.opensAt == oldSelf.opensAt && self.closesAt == oldSelf.closesAt").message("kind and voting window cannot change once proposed"))]
#[x_kube(validation = kube::core::Rule::new("self.kind == 'FreeText' || has(self.effect)").message("this kind of proposal needs an effect"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.effect) || (self.kind == 'Allocation') == has(self.effect.allocation) && (self.kind == 'Bylaw') == has(self.effect.bylaw) && (self.kind == 'SurplusPrice') == has(self.effect.surplusPrice) && (self.kind == 'ModelAdoption') == has(self.effect.modelAdoption) && (self.kind == 'MemberAdmission') == has(self.effect.memberAdmission)").message("the effect must match the proposal's kind"))]
pub struct ProposalSpec {
    /// What is being decided.
    pub kind: ProposalKind,
    /// A one-line title.
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// The full text members read before they vote.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// The member who put the question.
    #[schemars(length(min = 1, max = 253))]
    pub proposer: String,
    /// The options for approval, score, ranked-choice and dot voting. Yes/no methods need none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 200)))]
    pub options: Vec<String>,
    /// The rules of this vote; the Cooperative's default for the kind when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voting: Option<VotingRules>,
    /// When voting opens.
    pub opens_at: Time,
    /// When voting closes; after `opensAt`.
    pub closes_at: Time,
    /// What happens if it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<ProposalEffect>,
}

/// The kinds of question a co-op decides.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, schemars::JsonSchema,
)]
pub enum ProposalKind {
    /// A new Allocation of capacity.
    Allocation,
    /// A change to the bylaws (voting defaults, member classes).
    Bylaw,
    /// A new surplus price policy.
    SurplusPrice,
    /// Serving a new model.
    ModelAdoption,
    /// Admitting a new member.
    MemberAdmission,
    /// A question with no effect in the cluster.
    FreeText,
}

/// The effect of a passed proposal. Exactly the field matching its kind is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalEffect {
    /// Allocation: the floors of the new Allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<AllocationPlan>,
    /// Bylaw: the parts of the Cooperative's spec to replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bylaw: Option<BylawChange>,
    /// SurplusPrice: the new surplus policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surplus_price: Option<SurplusPolicy>,
    /// ModelAdoption: the model to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_adoption: Option<ModelAdoption>,
    /// MemberAdmission: the member to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_admission: Option<MemberAdmission>,
}

/// Parts of the bylaws that a Bylaw proposal replaces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BylawChange {
    /// New voting defaults, replacing the old list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub voting_defaults: Option<Vec<VotingDefault>>,
    /// New member classes, replacing the old list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub member_classes: Option<Vec<MemberClass>>,
}

/// A model to create when a ModelAdoption proposal passes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelAdoption {
    /// The InferenceModel's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its spec.
    pub spec: InferenceModelSpec,
}

/// A member to create when a MemberAdmission proposal passes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberAdmission {
    /// The Member's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its spec.
    pub spec: MemberSpec,
}

/// Where a proposal is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum ProposalPhase {
    /// Not open yet.
    #[default]
    Draft,
    /// Accepting votes.
    Open,
    /// Closed and passed; the effect is being applied.
    Passed,
    /// Closed and not passed.
    Rejected,
    /// Closed without enough turnout; nothing changes.
    NoQuorum,
    /// Passed and its effect applied.
    Applied,
}

/// Weighted counts, written as exact decimals (weights may be fractions when
/// classes hold fixed shares of voting power).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Weight for yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yes: Option<String>,
    /// Weight for no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no: Option<String>,
    /// Weight that abstained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstain: Option<String>,
    /// Consent: weight that blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    /// Consent: weight that stood aside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stand_aside: Option<String>,
    /// Option methods: the count per option (approvals, score totals, points, or final-round votes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionCount>,
    /// Ranked choice: each round of instant-runoff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Round>,
}

/// The count for one option.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OptionCount {
    /// The option.
    pub option: String,
    /// Its count, as an exact decimal.
    pub count: String,
    /// Dot voting: its share of all points, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_percent: Option<String>,
}

/// One round of instant-runoff.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Round {
    /// First preferences among the options still running.
    pub counts: Vec<OptionCount>,
    /// The option eliminated after this round, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eliminated: Option<String>,
}

/// A vote that was not counted, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredVote {
    /// The Vote's name.
    pub vote: String,
    /// The member it was cast for.
    pub member: String,
    /// Why it was not counted (outside the window, not eligible, …).
    pub reason: String,
}

/// The outcome and its audit trail.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = super::conditions_merge())]
    pub conditions: Conditions,
    /// Where the proposal is.
    #[serde(default)]
    pub phase: ProposalPhase,
    /// The counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
    /// Voting weight of every eligible member at the close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_weight: Option<String>,
    /// Weight that took part, directly or by delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cast_weight: Option<String>,
    /// Weight that arrived by delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_weight: Option<String>,
    /// Turnout as a percentage of eligible weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turnout_percent: Option<String>,
    /// The rule applied, in words, including how ties were broken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The winning option, for single-winner option methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Ballots counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_votes: Option<u32>,
    /// Votes not counted, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_votes: Vec<IgnoredVote>,
    /// When the outcome was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
    /// When the effect was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// The object the effect created or changed (such as `Allocation/allocation-v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_to: Option<String>,
}
