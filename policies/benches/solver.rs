//! The allocation solver for 10,000 callers over 20 models.
//!
//! Run with `cargo bench -p synco-policies --bench solver`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use synco_policies::{Caller, ClassPolicy, ModelCapacity, SECONDS_PER_30_DAYS, Share, SolverInput, solve};

fn input() -> SolverInput {
    let mut seed: u64 = 0x5eed;
    let mut next = |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let models: Vec<ModelCapacity> = (0..20)
        .map(|i| ModelCapacity {
            model: format!("model-{i:02}"),
            tokens_per_second: 50_000 + 10_000 * i,
        })
        .collect();
    let classes = (0..8)
        .map(|i| ClassPolicy {
            name: format!("class-{i}"),
            tier: i / 3,
            floor: Share::percent(8),
        })
        .collect();
    let callers = (0..10_000)
        .map(|i| {
            let mut caller = if i < 9_000 {
                let mut m = Caller::member(format!("member-{i:05}"), format!("class-{}", i % 8));
                m.weight = 1 + u32::try_from(i % 3).unwrap_or(0);
                m
            } else {
                Caller::customer(format!("customer-{i:05}"))
            };
            // Each caller uses a handful of models.
            for _ in 0..5 {
                let model = &models[usize::try_from(next(20)).unwrap_or(0)];
                caller = caller.wants(model.model.clone(), next(40));
            }
            caller
        })
        .collect();
    SolverInput {
        models,
        classes,
        callers,
        surplus_cap: Share::percent(30),
        period_seconds: SECONDS_PER_30_DAYS,
    }
}

fn benches(c: &mut Criterion) {
    let input = input();
    let mut group = c.benchmark_group("solver");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function("10k_callers_20_models", |b| b.iter(|| solve(black_box(&input))));
    group.finish();
}

criterion_group!(solver_benches, benches);
criterion_main!(solver_benches);
