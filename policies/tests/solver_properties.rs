//! Property tests of the allocation solver's invariants.

use std::collections::BTreeMap;

use proptest::prelude::*;
use synco_policies::{
    Caller, ClassPolicy, ModelCapacity, QuotaHolder, Quotas, Role, Share, SolverInput, solve,
};

fn inputs() -> impl Strategy<Value = SolverInput> {
    (
        proptest::collection::vec(0u64..5_000, 1..4),
        proptest::collection::vec((0u32..3, 0u32..=40), 1..4),
        proptest::collection::vec(
            (
                any::<bool>(),
                0usize..4,
                0u32..=10,
                1u32..4,
                proptest::collection::vec(0u64..6_000, 4),
            ),
            1..16,
        ),
        0u32..=100,
    )
        .prop_map(|(caps, classes, callers, cap)| {
            let models: Vec<ModelCapacity> = caps
                .iter()
                .enumerate()
                .map(|(i, c)| ModelCapacity {
                    model: format!("model-{i}"),
                    tokens_per_second: *c,
                })
                .collect();
            // Scale class floors down so that all floors stay within 100%.
            let classes: Vec<ClassPolicy> = classes
                .iter()
                .enumerate()
                .map(|(i, (tier, floor))| ClassPolicy {
                    name: format!("class-{i}"),
                    tier: *tier,
                    floor: Share::percent(*floor * 60 / 100),
                })
                .collect();
            let n_classes = classes.len();
            let callers = callers
                .into_iter()
                .enumerate()
                .map(|(i, (is_member, class, own, weight, demand))| {
                    let role = if is_member {
                        // Own floors: at most 10% spread over up to 15 members would break 100%,
                        // so only a few members get one.
                        let floor = if i < 3 { Share::percent(own) } else { Share::ZERO };
                        Role::Member {
                            class: format!("class-{}", class % n_classes),
                            floor,
                        }
                    } else {
                        Role::Customer
                    };
                    let demand: BTreeMap<String, u64> = models
                        .iter()
                        .zip(&demand)
                        .map(|(m, d)| (m.model.clone(), *d))
                        .collect();
                    Caller {
                        id: format!("caller-{i:02}"),
                        role,
                        weight,
                        demand,
                    }
                })
                .collect();
            SolverInput {
                models,
                classes,
                callers,
                surplus_cap: Share::percent(cap),
                period_seconds: 3600,
            }
        })
        .prop_filter("floors within 100%", |input| {
            let classes: u32 = input.classes.iter().map(|c| c.floor.ppm()).sum();
            let own: u32 = input
                .callers
                .iter()
                .map(|c| match &c.role {
                    Role::Member { floor, .. } => floor.ppm(),
                    Role::Customer => 0,
                })
                .sum();
            classes + own <= 1_000_000
        })
}

fn check_invariants(input: &SolverInput, q: &Quotas) -> Result<(), TestCaseError> {
    for m in &input.models {
        let cap = m.tokens_per_second;
        let summary = q
            .model(&m.model)
            .ok_or_else(|| TestCaseError::fail("model missing"))?;
        let mut total = 0u64;
        let mut customers = 0u64;
        let mut member_short = false;
        for c in &q.callers {
            let mq = c
                .models
                .iter()
                .find(|x| x.model == m.model)
                .ok_or_else(|| TestCaseError::fail("model quota missing"))?;
            prop_assert!(mq.allocated_rate <= mq.demand, "never more than asked");
            total += mq.allocated_rate;
            match c.holder {
                QuotaHolder::Customer => {
                    customers += mq.allocated_rate;
                    prop_assert_eq!(mq.guaranteed_rate, 0);
                }
                QuotaHolder::Member { .. } => {
                    // Floors honoured whenever demand reaches them.
                    prop_assert!(
                        mq.allocated_rate >= mq.demand.min(mq.guaranteed_rate),
                        "floor not honoured for {}",
                        c.id
                    );
                    if mq.allocated_rate < mq.demand {
                        member_short = true;
                    }
                }
            }
        }
        // Allocations never exceed capacity.
        prop_assert!(total <= cap, "{} allocated of {}", total, cap);
        prop_assert!(summary.guaranteed <= cap);
        prop_assert_eq!(summary.idle, cap - total);
        // Customers are served only from the surplus.
        prop_assert_eq!(customers, summary.allocated_to_customers);
        prop_assert!(customers <= summary.surplus_for_sale);
        prop_assert!(summary.surplus_for_sale <= input.surplus_cap.of(cap));
        prop_assert!(summary.surplus_for_sale + summary.allocated_to_members <= cap);
        // Work-conserving: a member short of its demand means members hold everything.
        if member_short {
            prop_assert_eq!(summary.allocated_to_members, cap);
            prop_assert_eq!(customers, 0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold(input in inputs()) {
        let q = solve(&input).unwrap();
        check_invariants(&input, &q)?;
    }

    #[test]
    fn same_inputs_give_the_same_outputs_in_any_order(input in inputs()) {
        let q = solve(&input).unwrap();
        prop_assert_eq!(&solve(&input.clone()).unwrap(), &q);
        let mut reversed = input.clone();
        reversed.callers.reverse();
        reversed.models.reverse();
        reversed.classes.reverse();
        prop_assert_eq!(&solve(&reversed).unwrap(), &q);
    }

    #[test]
    fn equals_are_treated_equally(input in inputs()) {
        // Two members of the same tier and weight that both still want more borrow within
        // one token per second of each other (weighted max-min fairness).
        let q = solve(&input).unwrap();
        let weight: BTreeMap<&str, u32> = input.callers.iter().map(|c| (c.id.as_str(), c.weight)).collect();
        for m in &input.models {
            let short: Vec<(u32, u32, u64)> = q.callers.iter().filter_map(|c| {
                let QuotaHolder::Member { tier, .. } = c.holder else { return None };
                let mq = c.models.iter().find(|x| x.model == m.model)?;
                (mq.allocated_rate < mq.demand && mq.demand > mq.guaranteed_rate)
                    .then_some((tier, weight[c.id.as_str()], mq.borrow_limit))
            }).collect();
            for a in &short {
                for b in &short {
                    if a.0 == b.0 && a.1 == b.1 {
                        prop_assert!(a.2.abs_diff(b.2) <= 1, "unequal borrowing {:?} vs {:?}", a, b);
                    }
                }
            }
        }
    }
}
