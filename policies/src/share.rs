//! Shares and fractions, kept as integers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Parts per million in one whole (100%).
pub const PPM_WHOLE: u32 = 1_000_000;

/// A share of a whole in parts per million: `Share::percent(50)` is 500 000 ppm.
///
/// Parts per million are exact for every whole percentage and for shares such as 12.5%,
/// and small enough that products with token rates stay far inside `u128`. A share above
/// 100% can be built (it comes from user input), but every function that takes one checks
/// it and returns a typed error instead of using it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Share(u32);

impl Share {
    /// Nothing.
    pub const ZERO: Share = Share(0);
    /// All of it.
    pub const WHOLE: Share = Share(PPM_WHOLE);

    /// A share in parts per million.
    #[must_use]
    pub const fn from_ppm(ppm: u32) -> Share {
        Share(ppm)
    }

    /// A whole percentage, such as 50 for one half. Saturates rather than overflowing.
    #[must_use]
    pub const fn percent(percent: u32) -> Share {
        Share(percent.saturating_mul(10_000))
    }

    /// The share in parts per million.
    #[must_use]
    pub const fn ppm(self) -> u32 {
        self.0
    }

    /// Whether the share is at most 100%.
    #[must_use]
    pub const fn is_valid(self) -> bool {
        self.0 <= PPM_WHOLE
    }

    /// `floor(amount × share)`, exact.
    #[must_use]
    pub fn of(self, amount: u64) -> u64 {
        let product = u128::from(amount) * u128::from(self.0) / u128::from(PPM_WHOLE);
        // A valid share never makes the result larger than `amount`; an invalid one is
        // clamped so that the function stays total.
        u64::try_from(product).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 10_000;
        let frac = self.0 % 10_000;
        if frac == 0 {
            write!(f, "{whole}%")
        } else {
            let digits = format!("{frac:04}");
            write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
        }
    }
}

/// An exact fraction such as 2/3, used for supermajority thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fraction {
    /// The top of the fraction.
    pub numerator: u64,
    /// The bottom of the fraction; must be positive.
    pub denominator: u64,
}

impl Fraction {
    /// Two thirds, the usual supermajority.
    pub const TWO_THIRDS: Fraction = Fraction::new(2, 3);

    /// A fraction `numerator / denominator` (checked where it is used).
    #[must_use]
    pub const fn new(numerator: u64, denominator: u64) -> Fraction {
        Fraction {
            numerator,
            denominator,
        }
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_display_and_apply_exactly() {
        assert_eq!(Share::percent(50).to_string(), "50%");
        assert_eq!(Share::from_ppm(125_000).to_string(), "12.5%");
        assert_eq!(Share::from_ppm(333_333).to_string(), "33.3333%");
        assert_eq!(Share::percent(50).of(1001), 500);
        assert_eq!(Share::WHOLE.of(u64::MAX), u64::MAX);
        assert!(!Share::percent(101).is_valid());
        assert_eq!(Fraction::TWO_THIRDS.to_string(), "2/3");
    }
}
