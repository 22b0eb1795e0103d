//! Patronage refunds: a closed period's pool shared among the members in proportion to
//! their business with the co-op, as the bylaws say.
//!
//! - **The pool** is the margin on the members' own business (their usage valued at the
//!   rate card, less the period's costs) and, if the bylaws send it there, the income
//!   from non-members (surplus sold to customers); otherwise that income goes to a
//!   collective reserve.
//! - **The basis** is each member's usage, its contribution of capacity, or a weighted
//!   mix of the two, each side taken as the member's share of its total (so that money
//!   and GPU-hours can be mixed).
//! - **Exact:** every figure is an integer in minor units. Refunds are rounded by the
//!   largest-remainder method, so they add up to the pool to the unit; equal remainders
//!   go to members in the order of their names, so the result does not depend on the
//!   order members are listed in.
//! - **Cash:** each refund is split into cash (at least the bylaws' share, rounded up,
//!   and never under 20%, as 26 USC §1388 asks of a qualified patronage dividend) and
//!   the retained part.

use std::collections::BTreeMap;

/// The least cash share of a patronage refund, in percent.
pub const MIN_CASH_PERCENT: u32 = 20;

/// What a member's refund is in proportion to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Basis {
    /// Usage: the member's usage valued at the rate card.
    Usage,
    /// Contribution: the GPU-hours of the nodes the member contributed.
    Contribution,
    /// Both: `usage` parts of the member's share of usage to `contribution` parts of its
    /// share of contribution.
    Mix { usage: u32, contribution: u32 },
}

/// Where non-member (surplus) income goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SurplusTo {
    /// Into the patronage pool, shared like the rest.
    Pool,
    /// Into the collective reserve, which no member owns.
    Reserve,
}

/// The bylaws' patronage rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatronageRules {
    pub basis: Basis,
    /// The share of each refund paid in cash (percent, at least [`MIN_CASH_PERCENT`]);
    /// the rest is retained as the member's equity.
    pub cash_percent: u32,
    pub surplus_to: SurplusTo,
}

/// One member's business with the co-op in the period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    pub member: String,
    /// Usage valued at the rate card, in minor units.
    pub usage_minor: u64,
    /// GPU-hours of the nodes it contributed.
    pub contribution_gpu_hours: u64,
}

/// A closed period's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Period {
    pub members: Vec<Activity>,
    /// Income from non-members (customers' charges), in minor units.
    pub surplus_income_minor: u64,
    /// Costs the period bore, in minor units; they come out of the members' margin
    /// first, then out of surplus income.
    pub costs_minor: u64,
}

/// One member's refund.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub member: String,
    pub refund_minor: u64,
    pub cash_minor: u64,
    pub retained_minor: u64,
}

/// The period's distribution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Distribution {
    /// What is shared among the members.
    pub pool_minor: u64,
    /// What goes to the collective reserve (surplus income under
    /// [`SurplusTo::Reserve`], or the whole pool when no member had any business on the
    /// basis).
    pub reserve_minor: u64,
    /// Each member's refund, in the order of their names; they add up to the pool.
    pub refunds: Vec<Refund>,
}

/// Why a distribution cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatronageError {
    #[error("the cash share must be {MIN_CASH_PERCENT}% to 100%, not {0}%")]
    CashShare(u32),
    #[error("a mixed basis needs a positive number of parts")]
    NoParts,
    #[error("member {0} is listed twice")]
    Duplicate(String),
}

/// Each member's weight on the basis, over a common denominator.
fn weights(basis: Basis, members: &[&Activity]) -> Result<Vec<u128>, PatronageError> {
    let usage: u128 = members.iter().map(|m| u128::from(m.usage_minor)).sum();
    let contribution: u128 = members.iter().map(|m| u128::from(m.contribution_gpu_hours)).sum();
    let (u_parts, c_parts) = match basis {
        Basis::Usage => (1, 0),
        Basis::Contribution => (0, 1),
        Basis::Mix { usage, contribution } => {
            if usage == 0 && contribution == 0 {
                return Err(PatronageError::NoParts);
            }
            (u128::from(usage), u128::from(contribution))
        }
    };
    // A side nobody has counts for nothing (its parts go to the other side).
    let (u_parts, c_parts) = match (usage, contribution) {
        (0, _) => (0, c_parts),
        (_, 0) => (u_parts, 0),
        _ => (u_parts, c_parts),
    };
    // w = u_parts * usage_i / usage + c_parts * contribution_i / contribution, times
    // usage * contribution (a side's total stands in as 1 when it is zero).
    let (u_total, c_total) = (usage.max(1), contribution.max(1));
    Ok(members
        .iter()
        .map(|m| {
            u_parts * u128::from(m.usage_minor) * c_total
                + c_parts * u128::from(m.contribution_gpu_hours) * u_total
        })
        .collect())
}

/// The refunds of a closed `period` under `rules`.
///
/// # Errors
///
/// The rules are out of range, or a member is listed twice.
pub fn distribute(period: &Period, rules: &PatronageRules) -> Result<Distribution, PatronageError> {
    if !(MIN_CASH_PERCENT..=100).contains(&rules.cash_percent) {
        return Err(PatronageError::CashShare(rules.cash_percent));
    }
    let mut by_name: BTreeMap<&str, &Activity> = BTreeMap::new();
    for m in &period.members {
        if by_name.insert(m.member.as_str(), m).is_some() {
            return Err(PatronageError::Duplicate(m.member.clone()));
        }
    }
    let members: Vec<&Activity> = by_name.into_values().collect();
    let margin: u64 = members.iter().map(|m| m.usage_minor).fold(0, u64::saturating_add);
    let costs_left = period.costs_minor.saturating_sub(margin);
    let member_margin = margin.saturating_sub(period.costs_minor);
    let surplus = period.surplus_income_minor.saturating_sub(costs_left);
    let (mut pool, mut reserve) = match rules.surplus_to {
        SurplusTo::Pool => (member_margin.saturating_add(surplus), 0),
        SurplusTo::Reserve => (member_margin, surplus),
    };
    let weights = weights(rules.basis, &members)?;
    let total: u128 = weights.iter().sum();
    if total == 0 {
        // Nobody did business on this basis: nothing to refund by it.
        reserve = reserve.saturating_add(pool);
        pool = 0;
        return Ok(Distribution {
            pool_minor: pool,
            reserve_minor: reserve,
            refunds: Vec::new(),
        });
    }
    // Largest remainder: floors first, then one unit each to the largest remainders
    // (equal remainders by name, the order `members` is in).
    let whole = u128::from(pool);
    let mut shares: Vec<(u128, u128)> = weights
        .iter()
        .map(|w| (whole * w / total, whole * w % total))
        .collect();
    let given: u128 = shares.iter().map(|(q, _)| q).sum();
    let mut left = whole - given;
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|a, b| shares[*b].1.cmp(&shares[*a].1).then(a.cmp(b)));
    for i in order {
        if left == 0 {
            break;
        }
        shares[i].0 += 1;
        left -= 1;
    }
    let refunds = members
        .iter()
        .zip(shares)
        .map(|(m, (refund, _))| {
            let refund = u64::try_from(refund).unwrap_or(u64::MAX);
            let cash = (u128::from(refund) * u128::from(rules.cash_percent)).div_ceil(100);
            let cash = u64::try_from(cash).unwrap_or(refund);
            Refund {
                member: m.member.clone(),
                refund_minor: refund,
                cash_minor: cash,
                retained_minor: refund - cash,
            }
        })
        .collect();
    Ok(Distribution {
        pool_minor: pool,
        reserve_minor: reserve,
        refunds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(member: &str, usage: u64, gpu_hours: u64) -> Activity {
        Activity {
            member: member.to_owned(),
            usage_minor: usage,
            contribution_gpu_hours: gpu_hours,
        }
    }

    fn refunds(d: &Distribution) -> Vec<(&str, u64, u64, u64)> {
        d.refunds
            .iter()
            .map(|r| (r.member.as_str(), r.refund_minor, r.cash_minor, r.retained_minor))
            .collect()
    }

    /// Worked by hand: three members used 600, 300 and 100 (1,000 of margin); costs 400
    /// leave 600; customers paid 300, which the bylaws send to the pool: 900 shared.
    /// By usage 540, 270 and 90; cash 30% rounded up: 162, 81, 27.
    #[test]
    fn a_period_shared_by_usage_by_hand() {
        let period = Period {
            members: vec![
                activity("cleo", 100, 0),
                activity("ana", 600, 0),
                activity("ben", 300, 0),
            ],
            surplus_income_minor: 300,
            costs_minor: 400,
        };
        let rules = PatronageRules {
            basis: Basis::Usage,
            cash_percent: 30,
            surplus_to: SurplusTo::Pool,
        };
        let d = distribute(&period, &rules).unwrap();
        assert_eq!((d.pool_minor, d.reserve_minor), (900, 0));
        assert_eq!(
            refunds(&d),
            [
                ("ana", 540, 162, 378),
                ("ben", 270, 81, 189),
                ("cleo", 90, 27, 63)
            ]
        );
        // To the reserve instead: 600 shared, 300 kept.
        let d = distribute(
            &period,
            &PatronageRules {
                surplus_to: SurplusTo::Reserve,
                ..rules
            },
        )
        .unwrap();
        assert_eq!((d.pool_minor, d.reserve_minor), (600, 300));
        assert_eq!(refunds(&d)[0], ("ana", 360, 108, 252));
    }

    /// 100 among three equal members: 34, 33, 33, the odd unit to the first by name.
    /// A 50/50 mix of usage (ana 1, ben 3) and GPU-hours (only ben, 10): ana 1/8, ben 7/8.
    #[test]
    fn remainders_and_a_mixed_basis_by_hand() {
        let even = Period {
            members: vec![
                activity("cleo", 5, 0),
                activity("ben", 5, 0),
                activity("ana", 5, 0),
            ],
            surplus_income_minor: 85,
            costs_minor: 0,
        };
        let rules = PatronageRules {
            basis: Basis::Usage,
            cash_percent: 20,
            surplus_to: SurplusTo::Pool,
        };
        let d = distribute(&even, &rules).unwrap();
        assert_eq!(
            refunds(&d),
            [("ana", 34, 7, 27), ("ben", 33, 7, 26), ("cleo", 33, 7, 26)]
        );
        let mixed = Period {
            members: vec![activity("ana", 1, 0), activity("ben", 3, 10)],
            surplus_income_minor: 796,
            costs_minor: 0,
        };
        let rules = PatronageRules {
            basis: Basis::Mix {
                usage: 1,
                contribution: 1,
            },
            ..rules
        };
        let d = distribute(&mixed, &rules).unwrap();
        assert_eq!(d.pool_minor, 800);
        assert_eq!(refunds(&d), [("ana", 100, 20, 80), ("ben", 700, 140, 560)]);
    }

    #[test]
    fn rules_out_of_range_and_empty_bases_are_handled() {
        let period = Period {
            members: vec![activity("ana", 0, 0)],
            surplus_income_minor: 50,
            costs_minor: 0,
        };
        let mut rules = PatronageRules {
            basis: Basis::Usage,
            cash_percent: 19,
            surplus_to: SurplusTo::Pool,
        };
        assert_eq!(distribute(&period, &rules), Err(PatronageError::CashShare(19)));
        rules.cash_percent = 20;
        // Nobody used anything: the pool goes to the reserve.
        let d = distribute(&period, &rules).unwrap();
        assert_eq!((d.pool_minor, d.reserve_minor, d.refunds.len()), (0, 50, 0));
        rules.basis = Basis::Mix {
            usage: 0,
            contribution: 0,
        };
        assert_eq!(distribute(&period, &rules), Err(PatronageError::NoParts));
        let twice = Period {
            members: vec![activity("ana", 1, 0), activity("ana", 2, 0)],
            ..Period::default()
        };
        assert!(matches!(
            distribute(
                &twice,
                &PatronageRules {
                    basis: Basis::Usage,
                    ..rules
                }
            ),
            Err(PatronageError::Duplicate(_))
        ));
    }
}
