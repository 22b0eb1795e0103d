//! Proposal: a question put to the members, with the effect to apply if it passes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Conditions;
use super::allocation::AllocationPlan;
use super::cooperative::{MemberClass, PatronageBylaws, Peer, SurplusPolicy, VotingDefault};
use super::inference_model::InferenceModelSpec;
use super::member::MemberSpec;
use super::voting::VotingRules;

/// A question put to the members. When it is created the operator (cluster mode) or the
/// gateway (standalone) opens it: the voting rules and window come from the bylaws for its
/// kind, and the electorate (the members and their weights) is fixed then. Members cast
/// Votes while it is open; at the close it is tallied and, if it passed, the winning
/// effect is applied.
///
/// The spec never changes once created, so what members vote on is what was proposed.
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
    printcolumn(name = "Method", type_ = "string", json_path = ".status.rules.method"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Yes", type_ = "string", json_path = ".status.tally.yes"),
    printcolumn(name = "No", type_ = "string", json_path = ".status.tally.no"),
    printcolumn(name = "Winner", type_ = "string", json_path = ".status.winner"),
    printcolumn(name = "Turnout", type_ = "string", json_path = ".status.turnoutPercent"),
    printcolumn(name = "Closes", type_ = "date", json_path = ".status.closesAt"),
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title", priority = 1)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("a proposal cannot change once created: withdraw it and propose again"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.effect) || self.kind != 'FreeText'").message("a free-text proposal has no effect"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.split) || self.kind == 'Allocation'").message("only an allocation can be split by dot voting"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.options) || self.options.all(o, !has(o.effect) || self.kind != 'FreeText')").message("a free-text proposal's options have no effect"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.options) || self.options.all(a, self.options.exists_one(b, b.name == a.name))").message("option names are unique"))]
#[x_kube(validation = effect_matches_kind())]
pub struct ProposalSpec {
    /// What is being decided.
    pub kind: ProposalKind,
    /// A one-line title.
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// The full text members read before they vote.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 20000))]
    pub body: String,
    /// The Member who put the question. Only that member (or the gateway acting for
    /// it) may create the proposal.
    #[schemars(length(min = 1, max = 253))]
    pub proposer: String,
    /// The options, for the methods that choose between options (approval, score,
    /// ranked choice, dot voting). Each may carry the effect applied if it wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub options: Vec<ProposalOption>,
    /// Yes/no and consent methods: what happens if it passes. Dot-voted allocations:
    /// the floors kept as they are, beside the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<ProposalEffect>,
    /// Dot-voted allocations: the share of capacity the options split between them in
    /// proportion to their points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<AllocationSplit>,
}

/// The CEL rule that every effect of a proposal (its own and its options') is the one its
/// kind calls for.
fn effect_matches_kind() -> kube::core::Rule {
    let fits = |e: &str| {
        [
            ("Allocation", "allocation"),
            ("Bylaw", "bylaw"),
            ("SurplusPrice", "surplusPrice"),
            ("ModelAdoption", "modelAdoption"),
            ("MemberAdmission", "memberAdmission"),
            ("PatronageDistribution", "patronageDistribution"),
        ]
        .iter()
        .map(|(kind, field)| format!("(self.kind == '{kind}') == has({e}.{field})"))
        .collect::<Vec<_>>()
        .join(" && ")
    };
    kube::core::Rule::new(format!(
        "(!has(self.effect) || {}) && (!has(self.options) || self.options.all(o, !has(o.effect) || {}))",
        fits("self.effect"),
        fits("o.effect")
    ))
    .message("every effect must be the one the proposal's kind calls for")
}

/// One option of a proposal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.effect) || !has(self.floor)").message("an option carries an effect or a floor, not both"))]
pub struct ProposalOption {
    /// The option as members see it; unique in the proposal.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// What happens if this option wins; nothing when unset (a status-quo option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<ProposalEffect>,
    /// Dot-voted allocations: the class or member this option's part of the split goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<FloorTarget>,
}

/// Who a floor is for: exactly one of a member class or a member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.memberClass) != has(self.member)").message("a floor names exactly one of memberClass or member"))]
pub struct FloorTarget {
    /// A member class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub member_class: Option<String>,
    /// A member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub member: Option<String>,
}

/// The part of capacity a dot vote splits.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationSplit {
    /// The share of capacity split between the options (percent).
    #[schemars(range(min = 1, max = 100))]
    pub share_percent: u32,
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
    /// The patronage refunds of a closed month, recorded in the books once passed.
    PatronageDistribution,
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
    /// PatronageDistribution: the refunds to record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patronage_distribution: Option<PatronageDistribution>,
}

/// The patronage refunds of one closed month, as the books computed them under the
/// bylaws' patronage rules. Recorded in the ledger (in the open month) once passed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.poolMinor >= 0 && self.reserveMinor >= 0").message("the pool and the reserve are not negative"))]
pub struct PatronageDistribution {
    /// The closed month (`YYYY-MM`).
    #[schemars(regex(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$"))]
    pub period: String,
    /// ISO 4217 currency of every amount.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// What is shared among the members, in minor units.
    pub pool_minor: i64,
    /// What goes to the collective reserve, in minor units.
    pub reserve_minor: i64,
    /// Each member's refund; they add up to the pool.
    #[schemars(length(max = 10000))]
    pub refunds: Vec<RefundLine>,
}

/// One member's patronage refund.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundLine {
    /// The Member.
    #[schemars(length(min = 1, max = 253))]
    pub member: String,
    /// The refund, in minor units.
    #[schemars(range(min = 0))]
    pub refund_minor: i64,
    /// The part paid in cash.
    #[schemars(range(min = 0))]
    pub cash_minor: i64,
    /// The part retained as the member's equity.
    #[schemars(range(min = 0))]
    pub retained_minor: i64,
}

impl PatronageDistribution {
    /// The refunds add up to the pool, each splits into its cash and retained parts, and
    /// the cash part is at least the legal least share (20%, rounded up).
    ///
    /// # Errors
    ///
    /// What does not add up, in words.
    pub fn check(&self) -> Result<(), String> {
        let mut total: i64 = 0;
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.refunds {
            if !seen.insert(r.member.as_str()) {
                return Err(format!("member {} has two refunds", r.member));
            }
            if r.refund_minor < 0 || r.cash_minor < 0 || r.retained_minor < 0 {
                return Err(format!("member {}'s refund is negative", r.member));
            }
            if r.cash_minor.checked_add(r.retained_minor) != Some(r.refund_minor) {
                return Err(format!(
                    "member {}'s cash and retained parts do not add up to its refund",
                    r.member
                ));
            }
            if r.cash_minor.saturating_mul(5) < r.refund_minor {
                return Err(format!(
                    "member {}'s cash part is under 20% of its refund",
                    r.member
                ));
            }
            total = total
                .checked_add(r.refund_minor)
                .ok_or_else(|| "the refunds overflow".to_owned())?;
        }
        if total != self.pool_minor {
            return Err(format!(
                "the refunds add up to {total}, not to the pool of {}",
                self.pool_minor
            ));
        }
        if self.pool_minor < 0 || self.reserve_minor < 0 {
            return Err("the pool and the reserve are not negative".to_owned());
        }
        Ok(())
    }
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
    /// New patronage rules, replacing the old ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patronage: Option<PatronageBylaws>,
    /// New peers, replacing the old list (adds, changes and removes peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub peers: Option<Vec<Peer>>,
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
    /// Created, not opened yet.
    #[default]
    Draft,
    /// Accepting votes.
    Open,
    /// Closed and passed; the effect is being applied.
    Passed,
    /// Closed and not passed (a tie keeps the status quo).
    Rejected,
    /// Closed without enough turnout; nothing changes.
    NoQuorum,
    /// Passed and its effect applied.
    Applied,
    /// Withdrawn by its proposer before anyone voted.
    Withdrawn,
    /// Does not fit the bylaws (say, an option method with no options); never opened.
    Invalid,
}

/// Weighted counts, written as exact decimals (weights may be fractions when
/// classes hold fixed shares of voting power).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Weight for yes (consent: agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yes: Option<String>,
    /// Weight for no (consent: disagree).
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
    /// Consent: the members who blocked, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    /// Consent: the members who stood aside, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stood_aside: Vec<String>,
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
    /// Weight of the ballots with no option left running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted: Option<String>,
    /// The option eliminated after this round, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eliminated: Option<String>,
    /// The option elected in this round, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elected: Option<String>,
}

/// A ballot that was not counted, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredVote {
    /// The Vote's name.
    pub vote: String,
    /// The member it was cast for.
    pub member: String,
    /// Why it was not counted (late, suspended, not in the electorate, …).
    pub reason: String,
}

/// A member of the electorate, as fixed when voting opened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Elector {
    /// The Member.
    pub member: String,
    /// Its class.
    pub class: String,
    /// Its voting weight.
    pub voting_weight: u32,
    /// Whether it was in good standing when voting opened.
    pub active: bool,
}

/// A tie, and how it was settled.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TieRecord {
    /// The instant-runoff round, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// The tied options.
    pub tied: Vec<String>,
    /// How the tie was settled.
    pub resolution: String,
}

/// A delegation that carried weight to a ballot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelegationUsed {
    /// The member who delegated and did not vote.
    pub from: String,
    /// The member whose ballot carried its weight (the end of the chain).
    pub to: String,
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
    /// The rules it is decided by: the bylaws' for its kind when it opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<VotingRules>,
    /// When voting opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<Time>,
    /// When voting closes; nothing closes it earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<Time>,
    /// The seed of the lot that settles ties, published when voting opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_break_seed: Option<String>,
    /// The electorate, fixed when voting opened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub electorate: Vec<Elector>,
    /// Multi-stakeholder co-ops: each class's fixed share of voting power (percent) when
    /// voting opened; empty when every member counts its own weight.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub class_voting_power: std::collections::BTreeMap<String, u32>,
    /// The counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
    /// Voting weight of every eligible member.
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
    /// Whether turnout reached the quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_met: Option<bool>,
    /// The rule applied, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How ties are settled, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_break_rule: Option<String>,
    /// Every tie and how it was settled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<TieRecord>,
    /// The winning option, for single-winner option methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Ballots counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_votes: Option<u32>,
    /// The delegations that carried weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegations_used: Vec<DelegationUsed>,
    /// Every standing delegation at the close (`from` delegates to `to`), as the tally
    /// read them: part of the record a recount starts from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegations_at_close: Vec<DelegationUsed>,
    /// Members of the electorate no longer in good standing at the close: part of the
    /// record a recount starts from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspended_at_close: Vec<String>,
    /// Ballots not counted, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_votes: Vec<IgnoredVote>,
    /// SHA-256 of the canonical ballots, rules and electorate: anyone who recounts the
    /// published ballots gets the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// When the outcome was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
    /// The effect to apply, as decided (the winning option's, or the split's floors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_effect: Option<ProposalEffect>,
    /// When the effect was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// The object the effect created or changed (such as `Allocation/allocation-v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_to: Option<String>,
}

impl ProposalSpec {
    /// The schema's rules for a proposal, checked in Rust for the stores that are not the
    /// API server (the gateway's database in standalone mode). The API server enforces
    /// the same rules through the CRD's schema and CEL; `e2e/tests/proposal_rules.rs`
    /// checks both agree on the examples there.
    ///
    /// # Errors
    ///
    /// The first rule broken, in words.
    pub fn check(&self) -> Result<(), String> {
        let len = |what: &str, s: &str, min: usize, max: usize| {
            let n = s.chars().count();
            if n < min || n > max {
                Err(format!("{what} must be {min} to {max} characters long"))
            } else {
                Ok(())
            }
        };
        len("title", &self.title, 1, 200)?;
        len("body", &self.body, 0, 20000)?;
        len("proposer", &self.proposer, 1, 253)?;
        if self.options.len() > 64 {
            return Err("a proposal has at most 64 options".to_owned());
        }
        let mut names = std::collections::BTreeSet::new();
        for o in &self.options {
            len("an option's name", &o.name, 1, 200)?;
            if !names.insert(o.name.as_str()) {
                return Err("option names are unique".to_owned());
            }
            if o.effect.is_some() && o.floor.is_some() {
                return Err("an option carries an effect or a floor, not both".to_owned());
            }
            if let Some(f) = &o.floor
                && f.member_class.is_some() == f.member.is_some()
            {
                return Err("a floor names exactly one of memberClass or member".to_owned());
            }
        }
        if self.kind == ProposalKind::FreeText
            && (self.effect.is_some() || self.options.iter().any(|o| o.effect.is_some()))
        {
            return Err("a free-text proposal has no effect".to_owned());
        }
        if let Some(split) = self.split {
            if self.kind != ProposalKind::Allocation {
                return Err("only an allocation can be split by dot voting".to_owned());
            }
            if !(1..=100).contains(&split.share_percent) {
                return Err("split.sharePercent must be 1 to 100".to_owned());
            }
        }
        for effect in self
            .effect
            .iter()
            .chain(self.options.iter().filter_map(|o| o.effect.as_ref()))
        {
            effect.check(self.kind)?;
        }
        Ok(())
    }
}

impl ProposalEffect {
    /// Exactly the part the proposal's kind calls for is set, and an allocation's floors
    /// are well formed.
    fn check(&self, kind: ProposalKind) -> Result<(), String> {
        let set = [
            (ProposalKind::Allocation, self.allocation.is_some()),
            (ProposalKind::Bylaw, self.bylaw.is_some()),
            (ProposalKind::SurplusPrice, self.surplus_price.is_some()),
            (ProposalKind::ModelAdoption, self.model_adoption.is_some()),
            (ProposalKind::MemberAdmission, self.member_admission.is_some()),
            (
                ProposalKind::PatronageDistribution,
                self.patronage_distribution.is_some(),
            ),
        ];
        if set.iter().any(|(k, is_set)| (*k == kind) != *is_set) {
            return Err("every effect must be the one the proposal's kind calls for".to_owned());
        }
        if let Some(plan) = &self.allocation {
            if plan.floors.len() > 512 {
                return Err("an allocation has at most 512 floors".to_owned());
            }
            if plan
                .floors
                .iter()
                .any(|f| f.member_class.is_some() == f.member.is_some())
            {
                return Err("a floor names exactly one of memberClass or member".to_owned());
            }
            if plan
                .floors
                .iter()
                .map(|f| u64::from(f.share_percent))
                .sum::<u64>()
                > 100
            {
                return Err("allocation shares must add up to at most 100%".to_owned());
            }
            for (what, p) in [
                ("surplusCapPercent", plan.surplus_cap_percent),
                ("borrowLimitPercent", plan.borrow_limit_percent),
            ] {
                if p.is_some_and(|p| p > 100) {
                    return Err(format!("{what} is at most 100"));
                }
            }
        }
        if let Some(d) = &self.patronage_distribution {
            d.check()?;
        }
        if let Some(p) = self.bylaw.as_ref().and_then(|b| b.patronage.as_ref()) {
            if !(20..=100).contains(&p.cash_percent) {
                return Err(format!(
                    "the cash share of a patronage refund is 20% to 100%, not {}%",
                    p.cash_percent
                ));
            }
            if p.basis == super::cooperative::PatronageBasis::Mix
                && p.usage_parts.saturating_add(p.contribution_parts) == 0
            {
                return Err("a mixed basis needs a positive number of parts".to_owned());
            }
        }
        if let Some(s) = &self.surplus_price
            && s.rate_card.iter().any(|p| {
                p.price.input_per_million < s.price_floor.input_per_million
                    || p.price.output_per_million < s.price_floor.output_per_million
            })
        {
            return Err(
                "no price on the rate card may be below the price floor the members voted".to_owned(),
            );
        }
        Ok(())
    }
}
