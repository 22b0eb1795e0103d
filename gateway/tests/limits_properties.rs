//! For random co-ops, the limits the gateway enforces are exactly the quotas the
//! Allocation in force publishes: the status is computed as the operator (cluster) and
//! the gateway's database store (standalone) compute it, and the gateway's co-op is
//! built from the objects with that status, as in both modes.

#![expect(clippy::expect_used, reason = "tests")]

use proptest::prelude::*;
use synco_crds::{
    Allocation, AllocationPlan, AllocationSpec, Billing, Cooperative, CooperativeSpec, Customer,
    CustomerSpec, EngineKind, Floor, InferenceModel, InferenceModelSpec, Member, MemberClass, MemberSpec,
    ModelEngine, SubjectKind,
};
use synco_gateway::coop::{Coop, CoopObjects, CoopOptions};
use synco_policies::crd::{enforced_limits, figures_for};

#[derive(Debug, Clone)]
struct Case {
    classes: u32,
    members: Vec<(u32, u32, bool)>,
    customers: Vec<bool>,
    models: Vec<(u32, u64, u32, bool)>,
    class_floors: Vec<u32>,
    member_floor: Option<(usize, u32)>,
    surplus_cap: u32,
    borrow_limit: Option<u32>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1u32..4,
        prop::collection::vec((0u32..4, 1u32..4, any::<bool>()), 1..12),
        prop::collection::vec(any::<bool>(), 0..4),
        prop::collection::vec((1u32..4, 1u64..5000, 1u32..64, any::<bool>()), 1..4),
        prop::collection::vec(0u32..30, 3),
        prop::option::of((0usize..12, 0u32..10)),
        0u32..60,
        prop::option::of(0u32..100),
    )
        .prop_map(
            |(classes, members, customers, models, class_floors, member_floor, surplus_cap, borrow_limit)| {
                Case {
                    classes,
                    members,
                    customers,
                    models,
                    class_floors,
                    member_floor,
                    surplus_cap,
                    borrow_limit,
                }
            },
        )
}

fn objects(c: &Case) -> CoopObjects {
    let class = |i: u32| format!("class-{}", i % c.classes);
    let coop = Cooperative::new(
        "coop",
        CooperativeSpec {
            display_name: "Co-op".into(),
            voting_defaults: vec![],
            member_classes: (0..c.classes)
                .map(|i| MemberClass {
                    name: class(i),
                    tier: i,
                    voting_power_percent: None,
                    description: None,
                    local_only: false,
                })
                .collect(),
            surplus: None,
            patronage: None,
            peers: vec![],
            assistant: None,
        },
    );
    let members: Vec<Member> = c
        .members
        .iter()
        .enumerate()
        .map(|(i, (cl, weight, suspended))| {
            Member::new(
                &format!("m{i:02}"),
                MemberSpec {
                    display_name: format!("m{i}"),
                    organisation: synco_crds::OrganisationKind::Other,
                    class: class(*cl),
                    voting_weight: *weight,
                    standing: if *suspended {
                        synco_crds::Standing::Suspended
                    } else {
                        synco_crds::Standing::Active
                    },
                    identity: format!("m{i}"),
                    contact: None,
                    local_only: false,
                },
            )
        })
        .collect();
    let customers = c
        .customers
        .iter()
        .enumerate()
        .map(|(i, suspended)| {
            Customer::new(
                &format!("c{i}"),
                CustomerSpec {
                    display_name: format!("c{i}"),
                    identity: format!("c{i}"),
                    billing: Billing::Invoiced,
                    prepaid_credit_minor: None,
                    suspended: *suspended,
                    contact: None,
                },
            )
        })
        .collect();
    let models = c
        .models
        .iter()
        .enumerate()
        .map(|(i, (replicas, tps, conc, customers))| {
            let mut spec: InferenceModelSpec = serde_json::from_value(serde_json::json!({
                "engine": {"kind": "External", "url": "http://127.0.0.1:9/v1"}
            }))
            .expect("a model spec");
            spec.engine = ModelEngine {
                kind: EngineKind::External,
                url: Some("http://127.0.0.1:9/v1".into()),
                replicas: vec![],
                routing: None,
                image: None,
                args: vec![],
                env: Default::default(),
            };
            spec.replicas = *replicas;
            spec.tokens_per_second_per_replica = *tps;
            spec.concurrent_requests_per_replica = *conc;
            spec.access.customers = *customers;
            let mut m = InferenceModel::new(&format!("model-{i}"), spec);
            let capacity = synco_policies::crd::planned_capacity(&m);
            m.status = Some(synco_crds::InferenceModelStatus {
                capacity_tokens_per_second: capacity,
                ..Default::default()
            });
            m
        })
        .collect();
    let mut floors: Vec<Floor> = (0..c.classes)
        .map(|i| Floor {
            member_class: Some(class(i)),
            member: None,
            share_percent: c.class_floors[i as usize],
        })
        .collect();
    if let Some((i, share)) = c.member_floor
        && i < c.members.len()
    {
        floors.push(Floor {
            member_class: None,
            member: Some(format!("m{i:02}")),
            share_percent: share,
        });
    }
    let allocation = Allocation::new(
        "shares-v1",
        AllocationSpec {
            version: 1,
            proposal: None,
            plan: AllocationPlan {
                floors,
                surplus_cap_percent: Some(c.surplus_cap),
                borrow_limit_percent: c.borrow_limit,
            },
        },
    );
    CoopObjects {
        cooperatives: vec![coop],
        members,
        customers,
        pools: vec![],
        models,
        allocations: vec![allocation],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_gateway_enforces_exactly_the_allocations_quotas(c in case()) {
        let mut objects = objects(&c);
        let coop = objects.cooperatives[0].clone();
        let figures = figures_for(&coop, &objects.allocations[0], &objects.members, &objects.customers, &objects.models, &[])
            .expect("the allocation solves");
        objects.allocations[0].status = Some(synco_crds::AllocationStatus {
            phase: synco_crds::AllocationPhase::InForce,
            quotas: figures.quotas.clone(),
            ..Default::default()
        });
        let gateway = Coop::from_objects(&objects, &CoopOptions::default()).expect("the co-op reads");
        for q in &figures.quotas {
            let limits = gateway.limits(&q.name);
            prop_assert_eq!(&limits, &enforced_limits(q));
            prop_assert_eq!(limits.tokens_per_second, q.guaranteed_tokens_per_second + q.borrow_limit_tokens_per_second);
            prop_assert_eq!(limits.monthly_budget, q.monthly_token_budget);
            prop_assert_eq!(limits.concurrency, q.max_concurrent_requests);
            // A caller with a rate can run at least one request.
            prop_assert!(limits.tokens_per_second == 0 || limits.concurrency >= 1);
            if q.kind == SubjectKind::Member && c.borrow_limit == Some(0) {
                prop_assert_eq!(q.borrow_limit_tokens_per_second, 0);
            }
        }
        // Every active member and customer has a quota; nobody else has limits.
        for (i, (_, _, suspended)) in c.members.iter().enumerate() {
            let name = format!("m{i:02}");
            let quota = figures.quotas.iter().any(|q| q.name == name);
            prop_assert_eq!(quota, !suspended);
            if *suspended {
                prop_assert_eq!(gateway.limits(&name), Default::default());
            }
        }
        for (i, suspended) in c.customers.iter().enumerate() {
            prop_assert_eq!(figures.quotas.iter().any(|q| q.name == format!("c{i}")), !suspended);
        }
    }
}
