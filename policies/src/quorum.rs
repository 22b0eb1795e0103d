//! Quorum: enough of the eligible weight must take part.
//!
//! Turnout is the weight of every counted ballot, abstentions and weight that arrived by
//! delegation included, and quorum is met when `turnout ≥ quorum × eligible weight`,
//! compared exactly. A proposal that misses quorum ends
//! [`Outcome::NoQuorum`](crate::Outcome::NoQuorum), which is not a rejection: the
//! members did not decide.
//!
//! Example: 40 members with one vote each and a quorum of 25% need 10 votes' worth of
//! turnout. Eight ballots plus two members who delegated to a voter make 10: quorum met.

use crate::arith::{cmp_products, mul_div_floor};
use crate::share::{PPM_WHOLE, Share};
use crate::weights::Weight;

/// Whether `turnout` reaches `quorum` of `eligible`. A quorum of zero is always met.
#[must_use]
pub fn quorum_met(turnout: Weight, eligible: Weight, quorum: Share) -> bool {
    cmp_products(turnout, u128::from(PPM_WHOLE), u128::from(quorum.ppm()), eligible).is_ge()
}

/// `turnout` as a share of `eligible`, rounded down (100% when nobody is eligible and
/// nobody voted, so an empty electorate does not look like a failed turnout).
#[must_use]
pub fn turnout_share(turnout: Weight, eligible: Weight) -> Share {
    if eligible == 0 {
        return Share::WHOLE;
    }
    let ppm = mul_div_floor(turnout.min(eligible), u128::from(PPM_WHOLE), eligible).map_or(0, |(q, _)| q);
    Share::from_ppm(u32::try_from(ppm).unwrap_or(PPM_WHOLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_inclusive_and_exact() {
        assert!(quorum_met(10_000, 40_000, Share::percent(25)));
        assert!(!quorum_met(9_999, 40_000, Share::percent(25)));
        assert!(quorum_met(0, 40_000, Share::ZERO));
        // A third of three members is exactly one member, though 1/3 has no exact ppm:
        // 333 334 ppm needs a little more than one member.
        assert!(quorum_met(1, 3, Share::from_ppm(333_333)));
        assert!(!quorum_met(1, 3, Share::from_ppm(333_334)));
        assert_eq!(turnout_share(1, 3), Share::from_ppm(333_333));
        assert_eq!(turnout_share(0, 0), Share::WHOLE);
    }
}
