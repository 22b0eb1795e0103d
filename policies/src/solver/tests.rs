//! Hand-worked solver cases.

use super::*;

fn coop(demands: &[(&str, u64)]) -> SolverInput {
    let demand = |id: &str| demands.iter().find(|(d, _)| *d == id).map_or(0, |(_, r)| *r);
    SolverInput {
        models: vec![ModelCapacity {
            model: "llama".into(),
            tokens_per_second: 1000,
        }],
        classes: vec![
            ClassPolicy {
                name: "workers".into(),
                tier: 0,
                floor: Share::percent(40),
            },
            ClassPolicy {
                name: "schools".into(),
                tier: 1,
                floor: Share::percent(20),
            },
        ],
        callers: vec![
            Caller::member("w1", "workers").wants("llama", demand("w1")),
            Caller::member("w2", "workers").wants("llama", demand("w2")),
            Caller::member("s1", "schools").wants("llama", demand("s1")),
            Caller::customer("acme").wants("llama", demand("acme")),
        ],
        surplus_cap: Share::percent(30),
        period_seconds: 10,
    }
}

fn rate(q: &Quotas, id: &str) -> (u64, u64, u64) {
    let m = &q.caller(id).unwrap().models[0];
    (m.guaranteed_rate, m.borrow_limit, m.allocated_rate)
}

#[test]
fn worked_example_members_take_everything() {
    let q = solve(&coop(&[("w1", 100), ("w2", 500), ("s1", 400), ("acme", 1000)])).unwrap();
    assert_eq!(rate(&q, "w1"), (200, 0, 100));
    assert_eq!(rate(&q, "w2"), (200, 300, 500));
    assert_eq!(rate(&q, "s1"), (200, 200, 400));
    assert_eq!(rate(&q, "acme"), (0, 0, 0));
    let m = q.model("llama").unwrap();
    assert_eq!(
        (m.guaranteed, m.allocated_to_members, m.surplus_for_sale, m.idle),
        (600, 1000, 0, 0)
    );
}

#[test]
fn worked_example_surplus_goes_to_customers_up_to_the_cap() {
    let q = solve(&coop(&[("w1", 100), ("w2", 500), ("s1", 200), ("acme", 1000)])).unwrap();
    assert_eq!(rate(&q, "acme"), (0, 200, 200));
    let q = solve(&coop(&[("acme", 1000)])).unwrap();
    assert_eq!(
        rate(&q, "acme"),
        (0, 300, 300),
        "capped at 30% even with everything idle"
    );
    let m = q.model("llama").unwrap();
    assert_eq!(
        (m.surplus_for_sale, m.allocated_to_customers, m.idle),
        (300, 300, 700)
    );
}

#[test]
fn higher_tiers_borrow_first_and_lower_tiers_are_reclaimed_first() {
    // Everyone wants everything: floors first, then tier 0 takes the whole pool.
    let q = solve(&coop(&[("w1", 1000), ("w2", 1000), ("s1", 1000), ("acme", 1000)])).unwrap();
    assert_eq!(rate(&q, "w1"), (200, 200, 400));
    assert_eq!(rate(&q, "w2"), (200, 200, 400));
    assert_eq!(rate(&q, "s1"), (200, 0, 200));
    assert_eq!(rate(&q, "acme"), (0, 0, 0));
    // Workers idle: the school borrows, the customer gets the rest of the cap.
    let q = solve(&coop(&[("s1", 500), ("acme", 1000)])).unwrap();
    assert_eq!(rate(&q, "s1"), (200, 300, 500));
    assert_eq!(rate(&q, "acme"), (0, 300, 300));
    assert_eq!(q.reclaim_order("llama"), vec!["acme", "s1"]);
}

#[test]
fn equals_share_the_pool_by_weight() {
    let mut input = coop(&[("w1", 1000), ("w2", 1000)]);
    input.callers[1].weight = 3;
    let q = solve(&input).unwrap();
    // Class floor 400 split 1:3 = 100 and 300; pool 600 split 1:3 = 150 and 450.
    assert_eq!(rate(&q, "w1"), (100, 150, 250));
    assert_eq!(rate(&q, "w2"), (300, 450, 750));
}

#[test]
fn member_floors_add_to_class_floors_and_budgets_follow() {
    let mut input = coop(&[]);
    input.callers[0].role = Role::Member {
        class: "workers".into(),
        floor: Share::percent(10),
    };
    let q = solve(&input).unwrap();
    let w1 = q.caller("w1").unwrap();
    assert_eq!(w1.guaranteed_rate, 300);
    assert_eq!(w1.monthly_budget, 3000);
    assert_eq!(
        w1.holder,
        QuotaHolder::Member {
            class: "workers".into(),
            tier: 0
        }
    );
}

#[test]
fn several_models_are_solved_separately_and_summed() {
    let mut input = coop(&[("w1", 50)]);
    input.models.push(ModelCapacity {
        model: "embed".into(),
        tokens_per_second: 10_000,
    });
    input.callers[0] = input.callers[0].clone().wants("embed", 9000);
    let q = solve(&input).unwrap();
    let w1 = q.caller("w1").unwrap();
    assert_eq!(
        w1.models.iter().map(|m| m.model.as_str()).collect::<Vec<_>>(),
        vec!["embed", "llama"]
    );
    assert_eq!(w1.models[0].allocated_rate, 9000);
    assert_eq!(w1.guaranteed_rate, 2000 + 200);
    assert_eq!(w1.borrow_limit, 7000);
}

#[test]
fn bad_input_is_refused() {
    let mut input = coop(&[]);
    input.classes[0].floor = Share::percent(90);
    assert_eq!(
        solve(&input).unwrap_err(),
        SolveError::FloorsOverWhole { total_ppm: 1_100_000 }
    );
    let mut input = coop(&[]);
    input.surplus_cap = Share::percent(101);
    assert!(matches!(solve(&input), Err(SolveError::ShareOverWhole { .. })));
    let mut input = coop(&[]);
    input.callers.push(Caller::customer("w1"));
    assert_eq!(
        solve(&input).unwrap_err(),
        SolveError::DuplicateCaller("w1".into())
    );
    let mut input = coop(&[]);
    input.callers.push(Caller::member("x", "nobody"));
    assert!(matches!(solve(&input), Err(SolveError::UnknownClass { .. })));
    let mut input = coop(&[]);
    input.callers.push(Caller::customer("x").wants("gpt", 1));
    assert!(matches!(solve(&input), Err(SolveError::UnknownModel { .. })));
    let mut input = coop(&[]);
    input.callers[0].weight = 0;
    assert_eq!(solve(&input).unwrap_err(), SolveError::ZeroWeight("w1".into()));
    let mut input = coop(&[]);
    input.models.push(input.models[0].clone());
    assert_eq!(
        solve(&input).unwrap_err(),
        SolveError::DuplicateModel("llama".into())
    );
    let mut input = coop(&[]);
    input.classes.push(input.classes[0].clone());
    assert!(matches!(
        solve(&input),
        Err(SolveError::DuplicateClass(_)) | Err(SolveError::FloorsOverWhole { .. })
    ));
    let mut input = coop(&[]);
    input.models[0].tokens_per_second = u64::MAX;
    input.period_seconds = 6;
    assert_eq!(solve(&input).unwrap_err(), SolveError::Overflow);
}
