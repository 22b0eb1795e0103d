//! Customer: an outside buyer of surplus capacity.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Conditions;

/// An outside buyer of surplus capacity. No vote, lowest priority.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "Customer",
    namespaced,
    derive = "PartialEq",
    status = "CustomerStatus",
    shortname = "cust",
    category = "synco",
    printcolumn(name = "Billing", type_ = "string", json_path = ".spec.billing"),
    printcolumn(name = "Balance", type_ = "integer", json_path = ".status.balanceMinor"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspended")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.billing != 'Prepaid' || has(self.prepaidCreditMinor)").message("a prepaid customer needs prepaidCreditMinor"))]
pub struct CustomerSpec {
    /// The customer's name as people write it.
    #[schemars(length(min = 1))]
    pub display_name: String,
    /// The identity the customer's tokens carry (JWT `sub`). Unique in the co-op.
    #[schemars(length(min = 1, max = 253))]
    pub identity: String,
    /// How the customer pays.
    pub billing: Billing,
    /// For prepaid customers: credit bought so far, in the co-op currency's minor units.
    /// Usage draws it down; requests are refused when it is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub prepaid_credit_minor: Option<i64>,
    /// A suspended customer is refused.
    #[serde(default)]
    pub suspended: bool,
    /// Where to send statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// How a customer pays for what it uses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Billing {
    /// Buys credit first; usage draws it down.
    Prepaid,
    /// Receives a monthly statement to pay.
    Invoiced,
}

/// What the gateway and operator report of a customer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = super::conditions_merge())]
    pub conditions: Conditions,
    /// Remaining prepaid credit in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_minor: Option<i64>,
}
