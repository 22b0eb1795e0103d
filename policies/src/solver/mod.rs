//! The allocation solver: capacity and the allocation in force in, quotas out.
//!
//! Each model's capacity (tokens per second) is shared out on its own, in four steps:
//!
//! 1. **Floors.** Every member has a guaranteed floor: its own floor share (if any) plus
//!    its part of its class's floor share, the class floor being split between the
//!    class's members in proportion to their fair-share weight. Floors add up to at most
//!    100%, so they can all be honoured at once. A member gets its demand up to its floor.
//! 2. **Borrowing by tier.** Whatever floors leave unused, whether because a member asks
//!    for less than its floor or because floors do not add up to 100%, can be borrowed. Members
//!    who want more than their floor borrow tier by tier (tier 0 first); within a tier the
//!    pool is shared by weighted max-min fairness ([`fill`]).
//! 3. **Surplus for sale.** What member demand leaves free, capped by the surplus cap, may
//!    be sold. Customers share it by weighted max-min fairness. A customer is therefore
//!    never served while a member with demand is below its floor.
//! 4. **Budgets.** Rates times the budget period give monthly token budgets.
//!
//! The solver is *work-conserving* (no capacity stays idle while someone with demand could
//! use it, up to the surplus cap for customers) and reclaiming falls out of re-solving:
//! when a member's demand rises back to its floor, customers lose capacity first, then
//! borrowers from the lowest tier up. [`Quotas::reclaim_order`] lists that order for the
//! gateway to act on between solves.
//!
//! # Worked example
//!
//! One model with 1000 tokens/s. Class `workers` (tier 0) has a 40% floor with members
//! `w1` and `w2`; class `schools` (tier 1) a 20% floor with member `s1`; customer `acme`;
//! surplus cap 30%. Demands: `w1` 100, `w2` 500, `s1` 400, `acme` 1000.
//!
//! * Floors: `w1` 200, `w2` 200, `s1` 200. In use: 100 + 200 + 200 = 500; pool 500.
//! * Tier 0 borrows: `w2` wants 300 more and gets it; pool 200.
//! * Tier 1 borrows: `s1` wants 200 more and gets it; pool 0.
//! * Surplus for sale: min(0, 30% of 1000) = 0, so `acme` gets nothing.
//!
//! If `s1` wanted only 200, the pool would keep 200 after borrowing, and `acme` would get
//! min(200, 300) = 200.

mod error;
pub mod fill;
mod quota;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

pub use error::SolveError;
pub use quota::{CallerQuota, ModelQuota, ModelSummary, QuotaHolder, Quotas};

use crate::arith::apportion;
use crate::share::{PPM_WHOLE, Share};
use fill::{Claim, water_fill};

/// Thirty days, a common budget period.
pub const SECONDS_PER_30_DAYS: u64 = 30 * 24 * 60 * 60;

/// A model and its capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelCapacity {
    /// The model's name.
    pub model: String,
    /// Tokens per second it can serve (GPUs × measured throughput).
    pub tokens_per_second: u64,
}

/// A member class in the allocation in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassPolicy {
    /// The class's name.
    pub name: String,
    /// Priority tier: 0 borrows first. Customers always come after every tier.
    pub tier: u32,
    /// The class's guaranteed floor, as a share of each model's capacity, split between
    /// its members by weight.
    pub floor: Share,
}

/// Whether a caller is a member or a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// A member in good standing (leave suspended members out: they are not served).
    Member {
        /// Its class (one of the input's classes).
        class: String,
        /// A floor of its own, on top of its part of the class floor.
        floor: Share,
    },
    /// An outside customer, served only from the surplus.
    Customer,
}

/// Someone who calls the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// The caller's id (unique among callers).
    pub id: String,
    /// Member or customer.
    pub role: Role,
    /// Fair-share weight among equals, and share of the class floor; positive, 1 for equals.
    pub weight: u32,
    /// Current demand in tokens per second, per model; missing models mean no demand.
    pub demand: BTreeMap<String, u64>,
}

impl Caller {
    /// A member of `class` with weight 1, no floor of its own and no demand.
    #[must_use]
    pub fn member(id: impl Into<String>, class: impl Into<String>) -> Caller {
        Caller {
            id: id.into(),
            role: Role::Member {
                class: class.into(),
                floor: Share::ZERO,
            },
            weight: 1,
            demand: BTreeMap::new(),
        }
    }

    /// A customer with weight 1 and no demand.
    #[must_use]
    pub fn customer(id: impl Into<String>) -> Caller {
        Caller {
            id: id.into(),
            role: Role::Customer,
            weight: 1,
            demand: BTreeMap::new(),
        }
    }

    /// The same caller with demand `rate` on `model`.
    #[must_use]
    pub fn wants(mut self, model: impl Into<String>, rate: u64) -> Caller {
        self.demand.insert(model.into(), rate);
        self
    }
}

/// Everything the solver needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolverInput {
    /// Capacity per model.
    pub models: Vec<ModelCapacity>,
    /// Member classes, with tiers and floors.
    pub classes: Vec<ClassPolicy>,
    /// Members and customers, with demand.
    pub callers: Vec<Caller>,
    /// The largest share of each model's capacity that may be sold to customers.
    pub surplus_cap: Share,
    /// The budget period in seconds (such as [`SECONDS_PER_30_DAYS`]).
    pub period_seconds: u64,
}

/// A caller after checking, in canonical (id) order.
struct Checked<'a> {
    caller: &'a Caller,
    /// `None` for customers.
    class: Option<&'a ClassPolicy>,
    own_floor: Share,
}

/// Works out every caller's quota.
///
/// # Errors
///
/// A [`SolveError`] for bad input: a duplicate model, class or caller, a member of an
/// unknown class, demand for an unknown model, a share over 100%, floors adding up to
/// over 100%, a zero weight, or a budget too large for 64 bits.
pub fn solve(input: &SolverInput) -> Result<Quotas, SolveError> {
    let callers = check(input)?;
    let mut models: Vec<&ModelCapacity> = input.models.iter().collect();
    models.sort_by(|a, b| a.model.cmp(&b.model));

    // Members grouped by class (for floors) and by tier (for borrowing), by position.
    let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut by_tier: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    let mut customers = Vec::new();
    for (pos, c) in callers.iter().enumerate() {
        match c.class {
            Some(class) => {
                by_class.entry(class.name.as_str()).or_default().push(pos);
                by_tier.entry(class.tier).or_default().push(pos);
            }
            None => customers.push(pos),
        }
    }
    let class_floor: HashMap<&str, Share> =
        input.classes.iter().map(|c| (c.name.as_str(), c.floor)).collect();

    let n = callers.len();
    let mut per_caller: Vec<Vec<ModelQuota>> = (0..n).map(|_| Vec::with_capacity(models.len())).collect();
    let mut summaries = Vec::with_capacity(models.len());
    let mut floor = vec![0u64; n];
    let mut alloc = vec![0u64; n];
    for m in models {
        let capacity = m.tokens_per_second;
        // 1. Floors.
        for (pos, c) in callers.iter().enumerate() {
            floor[pos] = c.own_floor.of(capacity);
        }
        for (class, members) in &by_class {
            let total = class_floor
                .get(class)
                .copied()
                .unwrap_or(Share::ZERO)
                .of(capacity);
            let weights: Vec<u128> = members
                .iter()
                .map(|p| u128::from(callers[*p].caller.weight))
                .collect();
            let priority: Vec<usize> = (0..members.len()).collect();
            let parts = apportion(u128::from(total), &weights, &priority).ok_or(SolveError::Overflow)?;
            for (p, part) in members.iter().zip(parts) {
                // A part of a u64 total fits in u64; floors stay within capacity because
                // all floor shares add up to at most 100%.
                floor[*p] = floor[*p].saturating_add(u64::try_from(part).map_err(|_| SolveError::Overflow)?);
            }
        }
        let demand: Vec<u64> = callers
            .iter()
            .map(|c| c.caller.demand.get(&m.model).copied().unwrap_or(0))
            .collect();
        let mut pool = capacity;
        for pos in 0..n {
            alloc[pos] = if callers[pos].class.is_some() {
                demand[pos].min(floor[pos])
            } else {
                0
            };
            pool = pool.saturating_sub(alloc[pos]);
        }
        // 2. Borrowing, tier by tier.
        for members in by_tier.values() {
            let claims: Vec<Claim> = members
                .iter()
                .map(|p| Claim {
                    demand: demand[*p] - alloc[*p],
                    weight: u64::from(callers[*p].caller.weight),
                })
                .collect();
            for (p, extra) in members.iter().zip(water_fill(pool, &claims)) {
                alloc[*p] += extra;
                pool -= extra;
            }
        }
        let allocated_to_members = capacity - pool;
        // 3. Surplus for customers.
        let surplus_for_sale = pool.min(input.surplus_cap.of(capacity));
        let claims: Vec<Claim> = customers
            .iter()
            .map(|p| Claim {
                demand: demand[*p],
                weight: u64::from(callers[*p].caller.weight),
            })
            .collect();
        let mut allocated_to_customers = 0;
        for (p, got) in customers.iter().zip(water_fill(surplus_for_sale, &claims)) {
            alloc[*p] = got;
            allocated_to_customers += got;
        }
        // 4. Quotas and budgets.
        let mut guaranteed = 0u64;
        for (pos, c) in callers.iter().enumerate() {
            let (guaranteed_rate, budget_rate) = match c.class {
                Some(_) => (floor[pos], floor[pos]),
                None => (0, alloc[pos]),
            };
            guaranteed += guaranteed_rate;
            per_caller[pos].push(ModelQuota {
                model: m.model.clone(),
                demand: demand[pos],
                guaranteed_rate,
                borrow_limit: alloc[pos].saturating_sub(guaranteed_rate),
                allocated_rate: alloc[pos],
                monthly_budget: budget_rate
                    .checked_mul(input.period_seconds)
                    .ok_or(SolveError::Overflow)?,
            });
        }
        summaries.push(ModelSummary {
            model: m.model.clone(),
            capacity,
            guaranteed,
            allocated_to_members,
            allocated_to_customers,
            surplus_for_sale,
            idle: pool - allocated_to_customers,
        });
    }

    let callers = callers
        .into_iter()
        .zip(per_caller)
        .map(|(c, models)| {
            let sum = |f: fn(&ModelQuota) -> u64| {
                models
                    .iter()
                    .try_fold(0u64, |acc, q| acc.checked_add(f(q)))
                    .ok_or(SolveError::Overflow)
            };
            Ok(CallerQuota {
                id: c.caller.id.clone(),
                holder: match c.class {
                    Some(class) => QuotaHolder::Member {
                        class: class.name.clone(),
                        tier: class.tier,
                    },
                    None => QuotaHolder::Customer,
                },
                guaranteed_rate: sum(|q| q.guaranteed_rate)?,
                borrow_limit: sum(|q| q.borrow_limit)?,
                monthly_budget: sum(|q| q.monthly_budget)?,
                models,
            })
        })
        .collect::<Result<Vec<_>, SolveError>>()?;
    Ok(Quotas {
        callers,
        models: summaries,
    })
}

/// Checks the input and puts the callers in id order.
fn check(input: &SolverInput) -> Result<Vec<Checked<'_>>, SolveError> {
    let share_ok = |what: String, s: Share| {
        if s.is_valid() {
            Ok(())
        } else {
            Err(SolveError::ShareOverWhole { what, ppm: s.ppm() })
        }
    };
    share_ok("the surplus cap".to_owned(), input.surplus_cap)?;
    let mut model_names = HashMap::with_capacity(input.models.len());
    for m in &input.models {
        if model_names.insert(m.model.as_str(), ()).is_some() {
            return Err(SolveError::DuplicateModel(m.model.clone()));
        }
    }
    let mut classes = HashMap::with_capacity(input.classes.len());
    let mut total_ppm = 0u64;
    for c in &input.classes {
        share_ok(format!("the floor of class {:?}", c.name), c.floor)?;
        total_ppm += u64::from(c.floor.ppm());
        if classes.insert(c.name.as_str(), c).is_some() {
            return Err(SolveError::DuplicateClass(c.name.clone()));
        }
    }
    let mut checked = Vec::with_capacity(input.callers.len());
    for caller in &input.callers {
        if caller.weight == 0 {
            return Err(SolveError::ZeroWeight(caller.id.clone()));
        }
        if let Some(model) = caller
            .demand
            .keys()
            .find(|m| !model_names.contains_key(m.as_str()))
        {
            return Err(SolveError::UnknownModel {
                caller: caller.id.clone(),
                model: model.clone(),
            });
        }
        let (class, own_floor) = match &caller.role {
            Role::Member { class, floor } => {
                share_ok(format!("the floor of member {:?}", caller.id), *floor)?;
                total_ppm += u64::from(floor.ppm());
                let policy = classes
                    .get(class.as_str())
                    .ok_or_else(|| SolveError::UnknownClass {
                        member: caller.id.clone(),
                        class: class.clone(),
                    })?;
                (Some(*policy), *floor)
            }
            Role::Customer => (None, Share::ZERO),
        };
        checked.push(Checked {
            caller,
            class,
            own_floor,
        });
    }
    if total_ppm > u64::from(PPM_WHOLE) {
        return Err(SolveError::FloorsOverWhole { total_ppm });
    }
    checked.sort_by(|a, b| a.caller.id.cmp(&b.caller.id));
    if let Some(w) = checked.windows(2).find(|w| w[0].caller.id == w[1].caller.id) {
        return Err(SolveError::DuplicateCaller(w[0].caller.id.clone()));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests;
