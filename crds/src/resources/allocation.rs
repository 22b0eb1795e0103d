//! Allocation: the shares of capacity in force, versioned for audit.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Conditions;

/// One version of how capacity is shared. Each passed allocation proposal creates a
/// new one; earlier versions stay as history. Its spec never changes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "Allocation",
    namespaced,
    derive = "PartialEq",
    status = "AllocationStatus",
    shortname = "alloc",
    category = "synco",
    printcolumn(name = "Version", type_ = "integer", json_path = ".spec.version"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Capacity",
        type_ = "integer",
        json_path = ".status.capacityTokensPerSecond"
    ),
    printcolumn(
        name = "Surplus",
        type_ = "integer",
        json_path = ".status.surplusTokensPerSecond"
    ),
    printcolumn(name = "Proposal", type_ = "string", json_path = ".spec.proposal"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("an allocation is a record: create a new version instead of changing it"))]
pub struct AllocationSpec {
    /// The version, counting up from 1.
    #[schemars(range(min = 1))]
    pub version: u32,
    /// The Proposal that decided it; empty for the founding allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
    /// The shares.
    #[serde(flatten)]
    pub plan: AllocationPlan,
}

/// Guaranteed floors and the surplus cap: the part of an allocation members vote on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.floors.map(f, f.sharePercent).sum() <= 100").message("allocation shares must add up to at most 100%"))]
pub struct AllocationPlan {
    /// Guaranteed shares of capacity for classes or members.
    #[schemars(length(max = 512))]
    pub floors: Vec<Floor>,
    /// The share of capacity that may be sold to customers (percent); the
    /// Cooperative's surplus policy when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub surplus_cap_percent: Option<u32>,
    /// The most a member may borrow above its floor while others leave capacity
    /// unused, as a share of each model's capacity (percent), as Kueue's
    /// `borrowingLimit`; unset, a member may borrow all that is unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub borrow_limit_percent: Option<u32>,
}

/// A guaranteed share for one class or one member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.memberClass) != has(self.member)").message("a floor names exactly one of memberClass or member"))]
pub struct Floor {
    /// The member class the share is for (split among its active members by voting weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub member_class: Option<String>,
    /// The member the share is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub member: Option<String>,
    /// The share of total capacity, in percent.
    #[schemars(range(max = 100))]
    pub share_percent: u32,
}

/// Where an allocation is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum AllocationPhase {
    /// Created, not yet in force.
    #[default]
    Pending,
    /// The allocation in force; exactly one at a time.
    InForce,
    /// Replaced by a later version; kept for audit.
    Superseded,
}

/// Whether the quota is a member's or a customer's.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SubjectKind {
    /// A Member.
    Member,
    /// A Customer.
    Customer,
}

/// The effective quota of one caller. The gateway enforces exactly these: a rate of
/// `guaranteedTokensPerSecond + borrowLimitTokensPerSecond`, the monthly budget, and
/// `maxConcurrentRequests` requests at once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Member or Customer.
    pub kind: SubjectKind,
    /// The Member's or Customer's name.
    pub name: String,
    /// The member's class (empty for customers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Priority tier (0 first); customers come last.
    pub tier: u32,
    /// Tokens per second guaranteed whenever the caller asks for them.
    pub guaranteed_tokens_per_second: u64,
    /// Tokens per second the caller may borrow beyond its floor while others leave theirs unused.
    pub borrow_limit_tokens_per_second: u64,
    /// Tokens per calendar month.
    pub monthly_token_budget: u64,
    /// Requests the caller may run at once: its part of the models' concurrent
    /// requests, in proportion to its rate (at least one when it has a rate).
    #[serde(default)]
    pub max_concurrent_requests: u32,
}

/// The quotas the operator computed from this allocation and the pool's capacity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = super::conditions_merge())]
    pub conditions: Conditions,
    /// Where the allocation is in its life.
    #[serde(default)]
    pub phase: AllocationPhase,
    /// When it came into force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<Time>,
    /// The version that replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// Total capacity in tokens per second across the co-op's models.
    #[serde(default)]
    pub capacity_tokens_per_second: u64,
    /// Capacity that may be sold to customers now.
    #[serde(default)]
    pub surplus_tokens_per_second: u64,
    /// The quota of every member and customer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<Quota>,
}
