//! Cooperative: the bylaws of one co-op, one per namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::proposal::ProposalKind;
use super::voting::VotingRules;

/// The bylaws: voting rules, member classes and their tiers, the surplus policy and peers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "Cooperative",
    namespaced,
    derive = "PartialEq",
    status = "CooperativeStatus",
    shortname = "coop",
    category = "synco",
    printcolumn(name = "Display name", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.activeMembers"),
    printcolumn(
        name = "Allocation",
        type_ = "string",
        json_path = ".status.allocationInForce"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!self.memberClasses.exists(c, has(c.votingPowerPercent)) || self.memberClasses.all(c, has(c.votingPowerPercent))").message("either every member class has votingPowerPercent or none does"))]
#[x_kube(validation = kube::core::Rule::new("!self.memberClasses.all(c, has(c.votingPowerPercent)) || self.memberClasses.map(c, c.votingPowerPercent).sum() == 100").message("class voting power must add up to 100%"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.peers) || self.peers.all(p, self.memberClasses.all(c, p.tier > c.tier))").message("a peer's tier comes after every member class"))]
pub struct CooperativeSpec {
    /// The co-op's name as people write it.
    #[schemars(length(min = 1))]
    pub display_name: String,
    /// Default voting rules for each kind of proposal. A kind not listed uses majority
    /// with no quorum and a seven-day window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["kind".into()]))]
    pub voting_defaults: Vec<VotingDefault>,
    /// The classes of members, each with its priority tier. Names are unique.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub member_classes: Vec<MemberClass>,
    /// How capacity that no member claimed may be sold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surplus: Option<SurplusPolicy>,
    /// How patronage refunds are worked out when a month closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patronage: Option<PatronageBylaws>,
    /// The governance assistant: the co-op's own model summarising discussions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<AssistantBylaws>,
    /// Peer co-ops in the federation: capacity borrowed and lent on the terms set here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub peers: Vec<Peer>,
}

/// The voting rules used for one kind of proposal unless a proposal sets its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VotingDefault {
    /// The kind of proposal these rules apply to.
    pub kind: ProposalKind,
    /// The rules.
    #[serde(flatten)]
    pub rules: VotingRules,
}

/// A class of members, such as workers, users, schools or local businesses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberClass {
    /// The class name that Members refer to.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Priority tier for serving: 0 is served first. Customers always come after every class.
    pub tier: u32,
    /// In a multi-stakeholder co-op, the fixed share of all voting power this class holds
    /// whatever its head count (percent). Set it on every class or on none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub voting_power_percent: Option<u32>,
    /// What the class is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Residency: the class's prompts never leave the co-op (never sent to a peer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local_only: bool,
}

/// A class's share of voting power, as the operator computed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassVotingPower {
    /// The class.
    pub class: String,
    /// Active members in the class.
    pub members: u32,
}

/// How surplus capacity may be sold to outside customers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.rateCard.all(p, p.inputPerMillion >= self.priceFloor.inputPerMillion && p.outputPerMillion >= self.priceFloor.outputPerMillion)").message("no price on the rate card may be below the price floor the members voted"))]
pub struct SurplusPolicy {
    /// The largest share of total capacity that may be sold (percent).
    #[schemars(range(max = 100))]
    pub max_share_percent: u32,
    /// ISO 4217 currency of every price, such as EUR.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// The lowest price the members allow, per million tokens, in minor units (cents).
    pub price_floor: Price,
    /// Prices per model, never below the floor. A model not listed sells at the floor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["model".into()]))]
    pub rate_card: Vec<PriceCard>,
}

/// Prices per million tokens in the currency's minor units (integer, never a float).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    /// Minor units per million input (prompt) tokens.
    #[schemars(range(min = 0))]
    pub input_per_million: i64,
    /// Minor units per million output (completion) tokens.
    #[schemars(range(min = 0))]
    pub output_per_million: i64,
}

/// The price of one model on the rate card.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceCard {
    /// The InferenceModel this price is for.
    #[schemars(length(min = 1, max = 253))]
    pub model: String,
    /// The prices.
    #[serde(flatten)]
    pub price: Price,
}

/// The bylaws' patronage rules: what refunds are in proportion to, how much is paid in
/// cash, where income from non-members goes, and whether contributing capacity earns a
/// higher floor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.basis != 'Mix' || self.usageParts + self.contributionParts > 0").message("a mixed basis needs a positive number of parts"))]
pub struct PatronageBylaws {
    /// What each member's refund is in proportion to.
    pub basis: PatronageBasis,
    /// Mix: the parts of the member's share of usage…
    #[serde(default = "one")]
    #[schemars(range(max = 100))]
    pub usage_parts: u32,
    /// …to the parts of its share of contributed GPU-hours.
    #[serde(default = "one")]
    #[schemars(range(max = 100))]
    pub contribution_parts: u32,
    /// The share of each refund paid in cash (percent; at least 20, as 26 USC §1388
    /// asks); the rest is retained as the member's equity.
    #[schemars(range(min = 20, max = 100))]
    pub cash_percent: u32,
    /// Where income from non-members (surplus sold to customers) goes.
    pub surplus_to: SurplusDestination,
    /// Contribution earns capacity: a member's floor rises by this many percentage points
    /// of capacity per GPU it contributes (nodes labelled `synco.coop/contributed-by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub floor_percent_per_gpu: Option<u32>,
    /// The most a member's floor can rise by contributing (percentage points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub max_contribution_floor_percent: Option<u32>,
}

fn one() -> u32 {
    1
}

/// What patronage refunds are in proportion to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PatronageBasis {
    /// The member's usage, valued at the rate card.
    Usage,
    /// The GPU-hours of the nodes the member contributed.
    Contribution,
    /// A weighted mix of the two shares.
    Mix,
}

/// Where income from non-members goes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SurplusDestination {
    /// Into the patronage pool, shared like the rest.
    Pool,
    /// Into the collective reserve, which no member owns.
    Reserve,
}

/// The governance assistant's model and budget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssistantBylaws {
    /// The served model it runs on (one of the co-op's InferenceModels).
    #[schemars(length(min = 1, max = 253))]
    pub model: String,
    /// Tokens it may use in a month, metered to the co-op, not to a member.
    #[schemars(range(min = 0))]
    pub monthly_tokens: i64,
    /// An embedding model (one of the co-op's InferenceModels) it retrieves past
    /// decisions and the bylaws with, for its drafts and summaries; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub embedding_model: Option<String>,
}

/// A peer co-op in the federation: how it proves who it is, which models flow each way,
/// how much of our capacity it may hold, the tier its requests get here, and the terms.
/// Adding, changing or removing a peer is a Bylaw proposal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.publicKey) != has(self.jwksUrl)").message("a peer proves who it is with exactly one of publicKey and jwksUrl"))]
pub struct Peer {
    /// The peer co-op's federation name: the issuer of its tokens (usually its
    /// Cooperative's name).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The base URL of the peer's gateway (`https://gateway.peer.example`); the
    /// federation endpoints are under `/federation`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// The peer's Ed25519 public key: the 32 bytes in unpadded base64url (a JWK's `x`),
    /// as `synco-gateway federation keygen` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{43}$"))]
    pub public_key: Option<String>,
    /// Or a URL serving the peer's JWKS (its gateway serves one at `/federation/jwks.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub jwks_url: Option<String>,
    /// The peer's models our members may be sent to (served names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub borrow: Vec<String>,
    /// Our models the peer may use (served names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub lend: Vec<String>,
    /// The largest share of a lent model's capacity (its engine's measured slots) the
    /// peer's requests may hold at once (percent).
    #[serde(default)]
    #[schemars(range(max = 100))]
    pub max_lend_percent: u32,
    /// The priority tier the peer's requests get here: after every member class (the
    /// Cooperative checks this) and before customers.
    pub tier: u32,
    /// What lending costs: a price, or reciprocity.
    pub terms: PeerTerms,
}

/// The terms between two co-ops.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.price) != has(self.reciprocal)").message("terms are exactly one of price and reciprocal"))]
pub struct PeerTerms {
    /// Tokens are paid for at these prices per million, in `currency`'s minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<PeerPrice>,
    /// Tokens are repaid in tokens: the peer may borrow up to what it lent us in the
    /// month plus this allowance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reciprocal: Option<Reciprocity>,
}

/// A price between peers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerPrice {
    /// ISO 4217 currency, such as EUR.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// The prices.
    #[serde(flatten)]
    pub price: Price,
}

/// The reciprocity rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reciprocity {
    /// Tokens the peer may borrow in a month beyond what it lent us in that month.
    #[schemars(range(min = 0))]
    pub allowance_tokens: i64,
}

/// What the operator observed of the co-op.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CooperativeStatus {
    /// The generation the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = super::conditions_merge())]
    pub conditions: Vec<Condition>,
    /// Members in good standing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_members: Option<u32>,
    /// Active members per class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassVotingPower>,
    /// The name of the Allocation in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_in_force: Option<String>,
}
