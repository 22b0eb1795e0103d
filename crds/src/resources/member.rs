//! Member: a voting owner of the co-op.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Conditions;

/// A voting owner: a worker co-op, a school, a local business, a household…
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "Member",
    namespaced,
    derive = "PartialEq",
    status = "MemberStatus",
    shortname = "mem",
    category = "synco",
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.class"),
    printcolumn(name = "Standing", type_ = "string", json_path = ".spec.standing"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".spec.votingWeight"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// The member's name as people write it.
    #[schemars(length(min = 1))]
    pub display_name: String,
    /// What kind of organisation the member is.
    #[serde(default)]
    pub organisation: OrganisationKind,
    /// The member class (one of the Cooperative's `memberClasses`).
    #[schemars(length(min = 1, max = 63))]
    pub class: String,
    /// Voting weight within the class. One member, one vote by default.
    #[serde(default = "one")]
    pub voting_weight: u32,
    /// Active members vote and are served; suspended ones do neither.
    #[serde(default)]
    pub standing: Standing,
    /// The identity the member's tokens carry: the JWT `sub`, and the Kubernetes user
    /// name when the member acts through the API server. Unique in the co-op.
    #[schemars(length(min = 1, max = 253))]
    pub identity: String,
    /// Where to reach the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Residency: this member's prompts never leave the co-op (never sent to a peer),
    /// whatever its class allows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local_only: bool,
}

fn one() -> u32 {
    1
}

/// The kinds of organisation that join a co-op.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum OrganisationKind {
    /// A worker co-operative.
    WorkerCoop,
    /// A school, college or other place of learning.
    School,
    /// A local business.
    LocalBusiness,
    /// A charity, association or other non-profit.
    NonProfit,
    /// A household or a single person.
    #[default]
    Household,
    /// Anything else.
    Other,
}

/// Whether a member currently votes and is served.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum Standing {
    /// Votes and is served.
    #[default]
    Active,
    /// Neither votes nor is served until reinstated.
    Suspended,
}

/// What the operator found when it checked the member.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The generation the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type (`Ready` false with a reason such as `DuplicateIdentity`
    /// or `UnknownClass` when the member cannot take part).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = super::conditions_merge())]
    pub conditions: Conditions,
    /// The priority tier of the member's class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<u32>,
}
