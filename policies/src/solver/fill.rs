//! Weighted max-min fair sharing ("water-filling"), in whole tokens per second.
//!
//! Split an amount between claimants so that nobody gets more than it asks for, and
//! nobody can get more without taking from someone whose share per unit of weight is
//! already no larger. Picture water poured over columns of height `demand / weight`: the
//! short columns fill up, the rest share the level.
//!
//! Example: 90 tokens/s between `a` (demand 20, weight 1), `b` (demand 100, weight 1)
//! and `c` (demand 100, weight 2). The fair level starts at 90 / 4 = 22.5 per weight,
//! which is more than `a` needs, so `a` gets 20. That leaves 70 for `b` and `c` with 3
//! units of weight: 23.33 per weight, so `b` gets 23.33 and `c` 46.67. In whole tokens
//! `b` gets 23 and `c` 47: the leftover token goes to the largest remainder (`c`'s 0.67),
//! and equal remainders to the earlier claimant in the given order.

use std::cmp::Ordering;

use crate::arith::cmp_products;

/// One claimant: how much it wants and its weight (positive).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    pub demand: u64,
    pub weight: u64,
}

/// Splits `amount` between `claims` by weighted max-min fairness. The result never gives
/// a claimant more than its demand, and gives out `min(amount, Σ demand)` in total.
/// Claims with zero weight get nothing. Ties are settled by position in `claims`, so
/// callers pass claims in a canonical order.
pub(crate) fn water_fill(amount: u64, claims: &[Claim]) -> Vec<u64> {
    let mut out = vec![0u64; claims.len()];
    let mut order: Vec<usize> = (0..claims.len()).filter(|i| claims[*i].weight > 0).collect();
    // Ascending demand per unit of weight; compare d_i / w_i with d_j / w_j exactly.
    order.sort_by(|&i, &j| {
        let (a, b) = (claims[i], claims[j]);
        cmp_products(
            u128::from(a.demand),
            u128::from(b.weight),
            u128::from(b.demand),
            u128::from(a.weight),
        )
        .then(i.cmp(&j))
    });
    let mut left = u128::from(amount);
    let mut weight_left: u128 = order.iter().map(|i| u128::from(claims[*i].weight)).sum();
    let mut k = 0;
    while k < order.len() {
        let i = order[k];
        let c = claims[i];
        // Satisfied in full if demand / weight ≤ left / weight_left.
        if cmp_products(u128::from(c.demand), weight_left, left, u128::from(c.weight)) != Ordering::Greater {
            out[i] = c.demand;
            left -= u128::from(c.demand);
            weight_left -= u128::from(c.weight);
            k += 1;
        } else {
            break;
        }
    }
    if k == order.len() || weight_left == 0 {
        return out;
    }
    // Everyone from `k` on wants more than the level: each gets floor(level × weight),
    // then the leftover whole tokens go to the largest remainders.
    let rest = &order[k..];
    let mut given: u128 = 0;
    let mut remainders = Vec::with_capacity(rest.len());
    for &i in rest {
        let w = u128::from(claims[i].weight);
        // left ≤ 2^64 and w < 2^64, so the product fits in u128.
        let share = left * w / weight_left;
        remainders.push((left * w % weight_left, i));
        given += share;
        out[i] = u64::try_from(share).unwrap_or(u64::MAX);
    }
    remainders.sort_by(|(ra, ia), (rb, ib)| rb.cmp(ra).then(ia.cmp(ib)));
    let leftover = left - given;
    for (_, i) in remainders
        .into_iter()
        .take(usize::try_from(leftover).unwrap_or(usize::MAX))
    {
        // Each claimant here wants strictly more than its exact share, so one more whole
        // token never exceeds its demand.
        out[i] = out[i].saturating_add(1).min(claims[i].demand);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(amount: u64, claims: &[(u64, u64)]) -> Vec<u64> {
        let claims: Vec<Claim> = claims
            .iter()
            .map(|(d, w)| Claim {
                demand: *d,
                weight: *w,
            })
            .collect();
        water_fill(amount, &claims)
    }

    #[test]
    fn worked_example() {
        assert_eq!(fill(90, &[(20, 1), (100, 1), (100, 2)]), vec![20, 23, 47]);
    }

    #[test]
    fn everyone_satisfied_when_there_is_enough() {
        assert_eq!(fill(1000, &[(20, 1), (100, 1), (100, 2)]), vec![20, 100, 100]);
    }

    #[test]
    fn equals_get_equal_shares_and_leftovers_go_in_order() {
        assert_eq!(fill(10, &[(100, 1), (100, 1), (100, 1)]), vec![4, 3, 3]);
        assert_eq!(fill(0, &[(100, 1), (5, 1)]), vec![0, 0]);
        assert_eq!(fill(7, &[(0, 1), (100, 3), (100, 0)]), vec![0, 7, 0]);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let out = fill(u64::MAX, &[(u64::MAX, u64::MAX), (u64::MAX, 1)]);
        assert!(out[0] > out[1]);
        assert_eq!(u128::from(out[0]) + u128::from(out[1]), u128::from(u64::MAX));
    }
}
