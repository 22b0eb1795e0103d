//! What the solver returns: quotas per caller and figures per model.

use serde::{Deserialize, Serialize};

/// Who a quota is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum QuotaHolder {
    /// A member, with its class and the class's priority tier (0 is served first).
    Member {
        /// The class.
        class: String,
        /// The tier.
        tier: u32,
    },
    /// An outside customer: served last, from the surplus only.
    Customer,
}

/// One caller's quota on one model, in tokens per second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelQuota {
    /// The model.
    pub model: String,
    /// The demand the solver was given.
    pub demand: u64,
    /// The floor: always available to a member up to this rate, taken back from
    /// borrowers when needed. Zero for customers.
    pub guaranteed_rate: u64,
    /// How far above the floor the caller may go now (for a customer, its whole
    /// allocation). Borrowed capacity can be reclaimed.
    pub borrow_limit: u64,
    /// What the caller gets now: its demand up to the floor, plus what it borrows.
    pub allocated_rate: u64,
    /// Tokens for the budget period on this model (see [`CallerQuota::monthly_budget`]).
    pub monthly_budget: u64,
}

/// Everything one caller may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerQuota {
    /// The caller.
    pub id: String,
    /// Member (with class and tier) or customer.
    pub holder: QuotaHolder,
    /// Per model, in the models' name order.
    pub models: Vec<ModelQuota>,
    /// Sum of the guaranteed rates over models.
    pub guaranteed_rate: u64,
    /// Sum of the borrow limits over models.
    pub borrow_limit: u64,
    /// Tokens for the budget period, over all models: a member's guaranteed rate times
    /// the period (what its floor entitles it to); a customer's allocated rate times the
    /// period (what the surplus it was sold would deliver).
    pub monthly_budget: u64,
}

/// Figures for one model, in tokens per second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSummary {
    /// The model.
    pub model: String,
    /// Its capacity.
    pub capacity: u64,
    /// The sum of all members' floors.
    pub guaranteed: u64,
    /// What members get now (floors in use plus borrowing).
    pub allocated_to_members: u64,
    /// What customers get now.
    pub allocated_to_customers: u64,
    /// What may be sold now: capacity that member demand leaves free, up to the surplus cap.
    pub surplus_for_sale: u64,
    /// Capacity nobody uses now.
    pub idle: u64,
}

/// The solver's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quotas {
    /// Every caller, sorted by id.
    pub callers: Vec<CallerQuota>,
    /// Every model, sorted by name.
    pub models: Vec<ModelSummary>,
}

impl Quotas {
    /// The quota of `id`, if it is a caller.
    #[must_use]
    pub fn caller(&self, id: &str) -> Option<&CallerQuota> {
        self.callers
            .binary_search_by(|c| c.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.callers.get(i))
    }

    /// The figures for `model`, if it is listed.
    #[must_use]
    pub fn model(&self, model: &str) -> Option<&ModelSummary> {
        self.models
            .binary_search_by(|m| m.model.as_str().cmp(model))
            .ok()
            .and_then(|i| self.models.get(i))
    }

    /// The order in which to take borrowed capacity back on `model` when a member claims
    /// its floor: customers first, then borrowing members from the lowest-priority tier
    /// up; within a group the largest borrower first, then by id.
    #[must_use]
    pub fn reclaim_order(&self, model: &str) -> Vec<&str> {
        let mut borrowers: Vec<(u8, std::cmp::Reverse<u32>, std::cmp::Reverse<u64>, &str)> = self
            .callers
            .iter()
            .filter_map(|c| {
                let q = c.models.iter().find(|q| q.model == model)?;
                if q.borrow_limit == 0 {
                    return None;
                }
                let (group, tier) = match &c.holder {
                    QuotaHolder::Customer => (0, u32::MAX),
                    QuotaHolder::Member { tier, .. } => (1, *tier),
                };
                Some((
                    group,
                    std::cmp::Reverse(tier),
                    std::cmp::Reverse(q.borrow_limit),
                    c.id.as_str(),
                ))
            })
            .collect();
        borrowers.sort_unstable();
        borrowers.into_iter().map(|(_, _, _, id)| id).collect()
    }
}
