//! The bylaws' patronage rules and a distribution, between the CRD types and
//! [`crate::patronage`].

use synco_crds::{PatronageBasis, PatronageBylaws, PatronageDistribution, RefundLine, SurplusDestination};

use crate::patronage::{Basis, Distribution, PatronageRules, SurplusTo};

/// The rules the bylaws set.
#[must_use]
pub fn rules(bylaws: &PatronageBylaws) -> PatronageRules {
    PatronageRules {
        basis: match bylaws.basis {
            PatronageBasis::Usage => Basis::Usage,
            PatronageBasis::Contribution => Basis::Contribution,
            PatronageBasis::Mix => Basis::Mix {
                usage: bylaws.usage_parts,
                contribution: bylaws.contribution_parts,
            },
        },
        cash_percent: bylaws.cash_percent,
        surplus_to: match bylaws.surplus_to {
            SurplusDestination::Pool => SurplusTo::Pool,
            SurplusDestination::Reserve => SurplusTo::Reserve,
        },
    }
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `d`, the refunds of `period` in `currency`, as a PatronageDistribution proposal's
/// effect.
#[must_use]
pub fn effect(period: &str, currency: &str, d: &Distribution) -> PatronageDistribution {
    PatronageDistribution {
        period: period.to_owned(),
        currency: currency.to_owned(),
        pool_minor: signed(d.pool_minor),
        reserve_minor: signed(d.reserve_minor),
        refunds: d
            .refunds
            .iter()
            .map(|r| RefundLine {
                member: r.member.clone(),
                refund_minor: signed(r.refund_minor),
                cash_minor: signed(r.cash_minor),
                retained_minor: signed(r.retained_minor),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patronage::{Activity, Period, distribute};

    #[test]
    fn a_mix_keeps_its_parts_and_the_effect_adds_up() {
        let bylaws = PatronageBylaws {
            basis: PatronageBasis::Mix,
            usage_parts: 3,
            contribution_parts: 1,
            cash_percent: 30,
            surplus_to: SurplusDestination::Reserve,
            floor_percent_per_gpu: None,
            max_contribution_floor_percent: None,
        };
        let r = rules(&bylaws);
        assert_eq!(
            r.basis,
            Basis::Mix {
                usage: 3,
                contribution: 1
            }
        );
        let period = Period {
            members: vec![
                Activity {
                    member: "a".into(),
                    usage_minor: 700,
                    contribution_gpu_hours: 0,
                },
                Activity {
                    member: "b".into(),
                    usage_minor: 300,
                    contribution_gpu_hours: 10,
                },
            ],
            surplus_income_minor: 500,
            costs_minor: 0,
        };
        let d = distribute(&period, &r).unwrap();
        let e = effect("2026-11", "EUR", &d);
        assert_eq!(e.reserve_minor, 500, "surplus to the reserve");
        assert_eq!(e.pool_minor, 1000);
        e.check().unwrap();
    }
}
