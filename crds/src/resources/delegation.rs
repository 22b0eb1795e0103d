//! Delegation: a member's standing delegation of its vote (liquid democracy).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A member's standing delegation: when the member does not vote on a proposal, the
/// delegate's ballot counts for both. Chains are followed; a cycle counts as no
/// delegation. It is named after the member, so each member has at most one, and only
/// that member (or the gateway acting for it) may set or revoke it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "Delegation",
    namespaced,
    derive = "PartialEq",
    shortname = "deleg",
    category = "synco",
    printcolumn(name = "Member", type_ = "string", json_path = ".spec.member"),
    printcolumn(name = "Delegate", type_ = "string", json_path = ".spec.delegate"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name == self.spec.member").message("a delegation is named after the member who delegates: one per member")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.member != self.delegate").message("a member cannot delegate to itself"))]
#[x_kube(validation = kube::core::Rule::new("self.member == oldSelf.member").message("a delegation belongs to one member"))]
pub struct DelegationSpec {
    /// The Member who delegates.
    #[schemars(length(min = 1, max = 120))]
    pub member: String,
    /// The Member whose ballot counts for it.
    #[schemars(length(min = 1, max = 253))]
    pub delegate: String,
}
