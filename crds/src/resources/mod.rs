//! One module per custom resource, plus the voting rules they share.

#![expect(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) in #[kube] repeats the keys name, type_ and json_path by design"
)]

pub mod allocation;
pub mod compute_pool;
pub mod cooperative;
pub mod customer;
pub mod delegation;
pub mod inference_model;
pub mod member;
pub mod proposal;
pub mod vote;
pub mod voting;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Conditions are a list keyed by `type`, so server-side apply merges them
/// entry by entry, as for the built-in resources.
pub(crate) fn conditions_merge() -> kube::core::ListMerge {
    kube::core::ListMerge::Map(vec!["type".to_owned()])
}

/// Shorthand used by status structs.
pub(crate) type Conditions = Vec<Condition>;
