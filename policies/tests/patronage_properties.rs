//! Property tests of patronage refunds: exact to the unit and independent of the order
//! members are listed in.

use proptest::prelude::*;
use synco_policies::patronage::{Activity, Basis, PatronageRules, Period, SurplusTo, distribute};

fn periods() -> impl Strategy<Value = (Period, PatronageRules)> {
    (
        proptest::collection::vec((0u64..1_000_000, 0u64..5_000), 0..40),
        0u64..10_000_000,
        0u64..2_000_000,
        prop_oneof![
            Just(Basis::Usage),
            Just(Basis::Contribution),
            (0u32..5, 0u32..5)
                .prop_filter("some parts", |(u, c)| u + c > 0)
                .prop_map(|(usage, contribution)| Basis::Mix { usage, contribution }),
        ],
        20u32..=100,
        any::<bool>(),
    )
        .prop_map(|(members, surplus, costs, basis, cash_percent, to_pool)| {
            let period = Period {
                members: members
                    .into_iter()
                    .enumerate()
                    .map(|(i, (usage, gpu))| Activity {
                        member: format!("m{i:03}"),
                        usage_minor: usage,
                        contribution_gpu_hours: gpu,
                    })
                    .collect(),
                surplus_income_minor: surplus,
                costs_minor: costs,
            };
            let rules = PatronageRules {
                basis,
                cash_percent,
                surplus_to: if to_pool {
                    SurplusTo::Pool
                } else {
                    SurplusTo::Reserve
                },
            };
            (period, rules)
        })
}

proptest! {
    #[test]
    fn refunds_add_up_to_the_pool_to_the_unit((period, rules) in periods()) {
        let d = distribute(&period, &rules).unwrap();
        let refunded: u64 = d.refunds.iter().map(|r| r.refund_minor).sum();
        if d.refunds.is_empty() {
            prop_assert_eq!(d.pool_minor, 0);
        } else {
            prop_assert_eq!(refunded, d.pool_minor);
        }
        // Nothing is made or lost: income less costs is the pool and the reserve.
        let margin: u64 = period.members.iter().map(|m| m.usage_minor).sum();
        let net = (margin + period.surplus_income_minor).saturating_sub(period.costs_minor);
        prop_assert_eq!(d.pool_minor + d.reserve_minor, net);
        for r in &d.refunds {
            prop_assert_eq!(r.cash_minor + r.retained_minor, r.refund_minor);
            // At least the bylaws' cash share (so at least 20%), rounded up.
            prop_assert!(u128::from(r.cash_minor) * 100 >= u128::from(r.refund_minor) * u128::from(rules.cash_percent));
        }
    }

    #[test]
    fn no_refund_depends_on_the_order_members_are_listed_in(
        (period, rules) in periods(),
        seed in any::<u64>(),
    ) {
        let mut shuffled = period.clone();
        // A deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut state = seed;
        for i in (1..shuffled.members.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from(state >> 33).unwrap() % (i + 1);
            shuffled.members.swap(i, j);
        }
        prop_assert_eq!(distribute(&period, &rules).unwrap(), distribute(&shuffled, &rules).unwrap());
    }

    #[test]
    fn more_business_never_earns_a_smaller_refund((period, rules) in periods()) {
        prop_assume!(rules.basis == Basis::Usage);
        let d = distribute(&period, &rules).unwrap();
        for a in &d.refunds {
            for b in &d.refunds {
                let (ua, ub) = (
                    period.members.iter().find(|m| m.member == a.member).unwrap().usage_minor,
                    period.members.iter().find(|m| m.member == b.member).unwrap().usage_minor,
                );
                if ua > ub {
                    prop_assert!(a.refund_minor >= b.refund_minor, "{} used more than {}", a.member, b.member);
                }
            }
        }
    }
}
