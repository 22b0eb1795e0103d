//! Conversions between Synco's custom resources (`synco-crds`) and the plain inputs and
//! results of this crate.
//!
//! The operator (cluster mode) and the gateway (standalone mode) both read the same
//! resources, so both call these functions: a proposal is tallied, and an allocation
//! turned into quotas, the same way whichever of them does it. Everything here is pure:
//! the resources and the time of the decision go in, plain values come out.
//!
//! * [`proposal`]: a [`Proposal`](synco_crds::Proposal) is opened under its
//!   Cooperative's bylaws, its Votes and Delegations become a
//!   [`Record`](crate::lifecycle::Record), a close is written into its status, and the
//!   decided effect becomes the change to apply (see [`crate::lifecycle`]).
//! * [`allocation`]: an [`Allocation`](synco_crds::Allocation) with its Cooperative,
//!   Members, Customers and InferenceModels becomes a [`SolverInput`](crate::SolverInput);
//!   [`Quotas`](crate::Quotas) become the quotas of an
//!   [`AllocationStatus`](synco_crds::AllocationStatus).

pub mod allocation;
pub mod effect;
pub mod patronage;
pub mod proposal;

pub use allocation::{
    AllocationFigures, CallerLimits, allocation_figures, enforced_limits, figures_for, planned_capacity,
    solver_input,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::share::PPM_WHOLE;

/// A Kubernetes timestamp in Unix seconds.
#[must_use]
pub fn unix_seconds(t: &Time) -> i64 {
    t.0.as_second()
}

/// Writes `numerator / 10^scale` as an exact decimal without trailing zeros, such as
/// `2.5` for (2500, 3) or `3` for (3000, 3).
pub(crate) fn decimal(numerator: u128, scale: u32) -> String {
    let unit = 10u128.pow(scale);
    let whole = numerator / unit;
    let frac = numerator % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = scale as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A share in parts per million as a percentage: `66.6666` for 666 666 ppm.
pub(crate) fn ppm_percent(ppm: u32) -> String {
    // 1% is 10 000 ppm, so four decimals are always exact.
    decimal(u128::from(ppm.min(PPM_WHOLE)), 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_and_short() {
        assert_eq!(decimal(3000, 3), "3");
        assert_eq!(decimal(2500, 3), "2.5");
        assert_eq!(decimal(1, 3), "0.001");
        assert_eq!(decimal(0, 3), "0");
        assert_eq!(ppm_percent(666_666), "66.6666");
        assert_eq!(ppm_percent(1_000_000), "100");
        assert_eq!(ppm_percent(125_000), "12.5");
    }
}
