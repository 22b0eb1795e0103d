//! Exact integer helpers.
//!
//! Every decision in this crate is made with integers, so a tally or an allocation is the
//! same on every platform and every run. Comparing two ratios `a/b` and `c/d` is done by
//! cross-multiplying; the products of two `u128` can need 256 bits, so [`cmp_products`]
//! computes them exactly instead of risking overflow.

use std::cmp::Ordering;

/// Multiplies two `u128` into a 256-bit value `(high, low)`.
fn widening_mul(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a_hi, a_lo) = (a >> 64, a & MASK);
    let (b_hi, b_lo) = (b >> 64, b & MASK);
    // Each partial product fits in u128 because both factors fit in u64.
    let lo_lo = a_lo * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_lo = a_hi * b_lo;
    let hi_hi = a_hi * b_hi;
    // The middle column: at most three u64-sized numbers, so no overflow in u128.
    let mid = (lo_lo >> 64) + (lo_hi & MASK) + (hi_lo & MASK);
    let low = (lo_lo & MASK) | (mid << 64);
    let high = hi_hi + (lo_hi >> 64) + (hi_lo >> 64) + (mid >> 64);
    (high, low)
}

/// Compares `a * b` with `c * d` exactly.
#[must_use]
pub fn cmp_products(a: u128, b: u128, c: u128, d: u128) -> Ordering {
    widening_mul(a, b).cmp(&widening_mul(c, d))
}

/// Greatest common divisor.
#[must_use]
pub fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Least common multiple, or `None` on overflow. `lcm(0, x)` is `x` so that an empty
/// fold starts from 1 or 0 without surprises.
#[must_use]
pub fn lcm(a: u128, b: u128) -> Option<u128> {
    if a == 0 {
        return Some(b);
    }
    if b == 0 {
        return Some(a);
    }
    (a / gcd(a, b)).checked_mul(b)
}

/// `floor(a * b / c)` for `c > 0`, or `None` when the quotient does not fit in `u128`
/// (it always fits when `a <= c` or `b <= c`). Returns `None` when `c == 0`.
#[must_use]
pub fn mul_div_floor(a: u128, b: u128, c: u128) -> Option<(u128, u128)> {
    if c == 0 {
        return None;
    }
    if let Some(p) = a.checked_mul(b) {
        return Some((p / c, p % c));
    }
    // Long division of the 256-bit product by c, one bit at a time. Slow, but only
    // reached with astronomically large weights.
    let (high, low) = widening_mul(a, b);
    if high >= c {
        return None;
    }
    let mut rem = high;
    let mut quot: u128 = 0;
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((low >> i) & 1);
        quot <<= 1;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            quot |= 1;
        }
    }
    Some((quot, rem))
}

/// Splits `total` units in proportion to `parts` (largest-remainder method, also called
/// Hamilton's method). Leftover units go to the largest remainders; equal remainders are
/// settled by `priority` (lower wins), so the result is deterministic. The returned
/// amounts always sum to `total` when `parts` is not all zero, and are all zero otherwise.
#[must_use]
pub fn apportion(total: u128, parts: &[u128], priority: &[usize]) -> Option<Vec<u128>> {
    let sum = parts.iter().try_fold(0u128, |acc, p| acc.checked_add(*p))?;
    if sum == 0 {
        return Some(vec![0; parts.len()]);
    }
    let mut out = Vec::with_capacity(parts.len());
    let mut rems = Vec::with_capacity(parts.len());
    let mut given: u128 = 0;
    for (i, p) in parts.iter().enumerate() {
        let (q, r) = mul_div_floor(total, *p, sum)?;
        given += q;
        out.push(q);
        rems.push((r, i));
    }
    // Largest remainder first, then the better priority.
    rems.sort_by(|(ra, ia), (rb, ib)| {
        rb.cmp(ra)
            .then_with(|| priority.get(*ia).cmp(&priority.get(*ib)))
            .then_with(|| ia.cmp(ib))
    });
    let mut left = total - given;
    for (_, i) in rems {
        if left == 0 {
            break;
        }
        if let Some(slot) = out.get_mut(i) {
            *slot += 1;
            left -= 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_compare_exactly_past_u128() {
        let big = u128::MAX / 3;
        assert_eq!(cmp_products(big, 6, big, 6), Ordering::Equal);
        assert_eq!(cmp_products(big, 7, big, 6), Ordering::Greater);
        assert_eq!(
            cmp_products(u128::MAX, u128::MAX, u128::MAX, u128::MAX - 1),
            Ordering::Greater
        );
        assert_eq!(cmp_products(2, 3, 1, 6), Ordering::Equal);
    }

    #[test]
    fn mul_div_handles_wide_products() {
        assert_eq!(mul_div_floor(7, 5, 3), Some((11, 2)));
        let big = u128::MAX / 2;
        assert_eq!(mul_div_floor(big, 4, 8), Some((big / 2, (big % 2) * 4)));
        assert_eq!(
            mul_div_floor(u128::MAX, u128::MAX, u128::MAX),
            Some((u128::MAX, 0))
        );
        assert_eq!(mul_div_floor(u128::MAX, 2, 1), None);
        assert_eq!(mul_div_floor(1, 1, 0), None);
    }

    #[test]
    fn apportion_sums_to_total_and_breaks_ties_by_priority() {
        assert_eq!(apportion(10, &[1, 1, 1], &[2, 0, 1]), Some(vec![3, 4, 3]));
        assert_eq!(
            apportion(1_000_000, &[1, 2], &[0, 1]),
            Some(vec![333_333, 666_667])
        );
        assert_eq!(apportion(5, &[0, 0], &[0, 1]), Some(vec![0, 0]));
        assert_eq!(lcm(4, 6), Some(12));
        assert_eq!(lcm(u128::MAX, u128::MAX - 1), None);
    }
}
