//! From an Allocation, its Cooperative, the Members, Customers and InferenceModels to the
//! solver's input, and from the solver's quotas to the Allocation's status.
//!
//! The quotas written to an Allocation's status are its *planning view*: what each
//! caller is entitled to, not what it gets this second (the gateway re-solves with live
//! demand). They are computed with members idle and every customer asking for all it may
//! buy, so that:
//!
//! * a member's guaranteed rate is its floor (its own floor plus its part of its class's),
//!   and its budget that rate over 30 days;
//! * a member's borrow limit is what it could borrow above its floor while every other
//!   caller leaves capacity unused: the rest of each model's capacity;
//! * customers share what may be sold (the surplus cap of the capacity), and the surplus
//!   is that amount.
//!
//! **Contribution earns capacity** when the bylaws' patronage rules say so
//! (`floorPercentPerGpu`): a member's own floor rises by that many points per GPU on the
//! Ready nodes it contributed (the `synco.coop/contributed-by` label the ComputePools'
//! status reports), at most `maxContributionFloorPercent`. The raises share what the
//! Allocation's floors leave of 100%: when they would exceed it, each is scaled down in
//! proportion (rounded down), so that floors never add up to more than all capacity.

use std::collections::BTreeMap;

use synco_crds::{
    Allocation, AllocationPlan, ComputePool, Cooperative, Customer, InferenceModel, Member, Quota,
    SubjectKind, resources::member::Standing as MemberStanding,
};

use crate::{
    Caller, ClassPolicy, ModelCapacity, QuotaHolder, Quotas, Role, SECONDS_PER_30_DAYS, Share, SolverInput,
};

/// The capacity a model would have with every replica ready: replicas × measured
/// tokens per second per replica. The operator publishes the capacity of the ready
/// replicas in the model's status instead; standalone mode, with nothing to wait for,
/// uses this.
#[must_use]
pub fn planned_capacity(model: &InferenceModel) -> u64 {
    u64::from(model.spec.planned_replicas()).saturating_mul(model.spec.tokens_per_second_per_replica)
}

/// The solver's input for `allocation`. Each model's capacity is its status's
/// `capacityTokensPerSecond` (zero until the operator has seen it serve).
///
/// Members that are suspended or whose class the bylaws do not list get no quota;
/// floors naming such members or unknown classes give nothing (the Member's own
/// conditions say why). Suspended customers get nothing.
#[must_use]
pub fn solver_input(
    coop: &Cooperative,
    allocation: &Allocation,
    members: &[Member],
    customers: &[Customer],
    models: &[InferenceModel],
    pools: &[ComputePool],
) -> SolverInput {
    let plan = &allocation.spec.plan;
    let percent_sum = |pick: &dyn Fn(&synco_crds::Floor) -> bool| {
        plan.floors
            .iter()
            .filter(|f| pick(f))
            .map(|f| f.share_percent)
            .sum::<u32>()
    };
    let classes: Vec<ClassPolicy> = coop
        .spec
        .member_classes
        .iter()
        .map(|c| ClassPolicy {
            name: c.name.clone(),
            tier: c.tier,
            floor: Share::percent(percent_sum(&|f: &synco_crds::Floor| {
                f.member_class.as_deref() == Some(c.name.as_str())
            })),
        })
        .collect();

    let mut model_caps: Vec<ModelCapacity> = models
        .iter()
        .filter_map(|m| {
            Some(ModelCapacity {
                model: m.metadata.name.clone()?,
                tokens_per_second: m.status.as_ref().map_or(0, |s| s.capacity_tokens_per_second),
            })
        })
        .collect();
    model_caps.sort_by(|a, b| a.model.cmp(&b.model));
    model_caps.dedup_by(|a, b| a.model == b.model);

    let raises = contribution_raises(coop, members, &classes, pools, percent_sum(&|_| true));
    let mut callers = Vec::with_capacity(members.len() + customers.len());
    for m in members {
        let Some(name) = m.metadata.name.as_deref() else {
            continue;
        };
        if m.spec.standing != MemberStanding::Active || !classes.iter().any(|c| c.name == m.spec.class) {
            continue;
        }
        callers.push(Caller {
            id: name.to_owned(),
            role: Role::Member {
                class: m.spec.class.clone(),
                floor: Share::from_ppm(
                    Share::percent(percent_sum(&|f: &synco_crds::Floor| {
                        f.member.as_deref() == Some(name)
                    }))
                    .ppm()
                    .saturating_add(raises.get(name).copied().unwrap_or(0)),
                ),
            },
            // Fair-share weight follows voting weight; a member with none still shares.
            weight: m.spec.voting_weight.max(1),
            demand: Default::default(),
        });
    }
    for c in customers {
        let Some(name) = c.metadata.name.as_deref() else {
            continue;
        };
        if c.spec.suspended {
            continue;
        }
        let mut caller = Caller::customer(name);
        for (m, cap) in models
            .iter()
            .zip(models.iter().map(|m| m.metadata.name.as_deref()))
        {
            if let Some(model) = cap
                && m.spec.access.customers
                && let Some(mc) = model_caps.iter().find(|mc| mc.model == model)
            {
                caller = caller.wants(model, mc.tokens_per_second);
            }
        }
        callers.push(caller);
    }
    callers.sort_by(|a, b| a.id.cmp(&b.id));
    // A Member and a Customer of the same name would be one caller; the Member wins.
    callers.dedup_by(|later, earlier| later.id == earlier.id);

    let surplus_percent = plan
        .surplus_cap_percent
        .or_else(|| coop.spec.surplus.as_ref().map(|s| s.max_share_percent))
        .unwrap_or(0);
    SolverInput {
        models: model_caps,
        classes,
        callers,
        surplus_cap: Share::percent(surplus_percent),
        period_seconds: SECONDS_PER_30_DAYS,
    }
}

/// The Ready contributed nodes of `pools`: (node, member, GPUs), by node name (a node in
/// two pools counts once).
#[must_use]
pub fn contributed_nodes(pools: &[ComputePool]) -> Vec<(String, String, u32)> {
    let mut nodes: BTreeMap<&str, (&str, u32)> = BTreeMap::new();
    for n in pools
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.nodes.iter())
        .filter(|n| n.ready)
    {
        if let Some(member) = &n.contributed_by {
            nodes.insert(n.name.as_str(), (member.as_str(), n.gpus));
        }
    }
    nodes
        .into_iter()
        .map(|(node, (member, gpus))| (node.to_owned(), member.to_owned(), gpus))
        .collect()
}

/// GPUs on the Ready nodes each member contributed, over all pools.
#[must_use]
pub fn contributed_gpus(pools: &[ComputePool]) -> BTreeMap<String, u32> {
    let mut gpus = BTreeMap::new();
    for (_, member, n) in contributed_nodes(pools) {
        *gpus.entry(member).or_insert(0u32) += n;
    }
    gpus
}

/// Each active member's raise of its own floor for the GPUs it contributed, in ppm of
/// capacity (see the module's notes); `planned` is the percent the Allocation's floors
/// already take.
fn contribution_raises(
    coop: &Cooperative,
    members: &[Member],
    classes: &[ClassPolicy],
    pools: &[ComputePool],
    planned: u32,
) -> BTreeMap<String, u32> {
    let Some(per_gpu) = coop.spec.patronage.as_ref().and_then(|p| p.floor_percent_per_gpu) else {
        return BTreeMap::new();
    };
    let most = coop
        .spec
        .patronage
        .as_ref()
        .and_then(|p| p.max_contribution_floor_percent)
        .unwrap_or(100);
    let gpus = contributed_gpus(pools);
    let mut raises: BTreeMap<String, u64> = members
        .iter()
        .filter(|m| {
            m.spec.standing == MemberStanding::Active && classes.iter().any(|c| c.name == m.spec.class)
        })
        .filter_map(|m| {
            let name = m.metadata.name.clone()?;
            let n = *gpus.get(&name)?;
            let percent = per_gpu.saturating_mul(n).min(most).min(100);
            Some((name, u64::from(Share::percent(percent).ppm())))
        })
        .collect();
    let room = u64::from(crate::PPM_WHOLE.saturating_sub(Share::percent(planned.min(100)).ppm()));
    let asked: u64 = raises.values().sum();
    if asked > room {
        for r in raises.values_mut() {
            *r = *r * room / asked;
        }
    }
    raises
        .into_iter()
        .map(|(m, r)| (m, u32::try_from(r).unwrap_or(u32::MAX)))
        .collect()
}

/// What an Allocation's status shows, from the solver's answer to `input`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocationFigures {
    /// Total capacity over the co-op's models.
    pub capacity_tokens_per_second: u64,
    /// Capacity that may be sold to customers.
    pub surplus_tokens_per_second: u64,
    /// Every member's and customer's quota, by name.
    pub quotas: Vec<Quota>,
}

/// Requests one replica serves at once when a model does not say.
pub const DEFAULT_CONCURRENT_REQUESTS_PER_REPLICA: u32 = 32;

/// Turns the solver's answer into the figures of an Allocation's status (see the module
/// documentation for what the borrow limits mean). The surplus counts only the models
/// that customers may buy (`access.customers`).
///
/// A member's borrow limit on a model is what it could borrow above its floor while
/// everyone else leaves capacity unused, at most the plan's `borrowLimitPercent` of the
/// model's capacity. A caller's concurrency is, summed over models, its rate's part of
/// the model's concurrent requests (replicas × `concurrentRequestsPerReplica`), rounded
/// up, and at least one when it has any rate.
#[must_use]
pub fn allocation_figures(
    input: &SolverInput,
    quotas: &Quotas,
    models: &[InferenceModel],
    plan: &AllocationPlan,
) -> AllocationFigures {
    let model = |name: &str| models.iter().find(|m| m.metadata.name.as_deref() == Some(name));
    let sellable = |name: &str| model(name).is_some_and(|m| m.spec.access.customers);
    let slots = |name: &str| {
        model(name).map_or(0, |m| {
            u64::from(m.spec.planned_replicas())
                .saturating_mul(u64::from(m.spec.concurrent_requests_per_replica))
        })
    };
    let capacity = quotas
        .models
        .iter()
        .map(|m| m.capacity)
        .fold(0u64, u64::saturating_add);
    let surplus = quotas
        .models
        .iter()
        .filter(|m| sellable(&m.model))
        .map(|m| m.surplus_for_sale)
        .fold(0u64, u64::saturating_add);
    let customer_tier = input
        .classes
        .iter()
        .map(|c| c.tier)
        .max()
        .map_or(0, |t| t.saturating_add(1));
    let borrow_cap = plan.borrow_limit_percent.map(Share::percent);
    // The caller's part of `model`'s concurrent requests for a rate of `rate`.
    let concurrency = |model: &str, rate: u64| -> u64 {
        let cap = quotas.model(model).map_or(0, |m| m.capacity);
        if cap == 0 || rate == 0 {
            return 0;
        }
        let part = u128::from(slots(model)) * u128::from(rate.min(cap));
        u64::try_from(part.div_ceil(u128::from(cap))).unwrap_or(u64::MAX)
    };
    let total_concurrency = |per_model: u64, rate: u64| {
        let c = if rate > 0 { per_model.max(1) } else { per_model };
        u32::try_from(c).unwrap_or(u32::MAX)
    };
    let quotas = quotas
        .callers
        .iter()
        .map(|c| match &c.holder {
            QuotaHolder::Member { class, tier } => {
                let (mut borrow, mut conc) = (0u64, 0u64);
                for q in &c.models {
                    let cap = quotas.model(&q.model).map_or(0, |m| m.capacity);
                    let room = cap.saturating_sub(q.guaranteed_rate);
                    let b = borrow_cap.map_or(room, |share| room.min(share.of(cap)));
                    borrow = borrow.saturating_add(b);
                    conc = conc.saturating_add(concurrency(&q.model, q.guaranteed_rate.saturating_add(b)));
                }
                Quota {
                    kind: SubjectKind::Member,
                    name: c.id.clone(),
                    class: Some(class.clone()),
                    tier: *tier,
                    guaranteed_tokens_per_second: c.guaranteed_rate,
                    borrow_limit_tokens_per_second: borrow,
                    monthly_token_budget: c.monthly_budget,
                    max_concurrent_requests: total_concurrency(
                        conc,
                        c.guaranteed_rate.saturating_add(borrow),
                    ),
                }
            }
            QuotaHolder::Customer => {
                let conc = c
                    .models
                    .iter()
                    .map(|q| concurrency(&q.model, q.borrow_limit))
                    .fold(0u64, u64::saturating_add);
                Quota {
                    kind: SubjectKind::Customer,
                    name: c.id.clone(),
                    class: None,
                    tier: customer_tier,
                    guaranteed_tokens_per_second: 0,
                    borrow_limit_tokens_per_second: c.borrow_limit,
                    monthly_token_budget: c.monthly_budget,
                    max_concurrent_requests: total_concurrency(conc, c.borrow_limit),
                }
            }
        })
        .collect();
    AllocationFigures {
        capacity_tokens_per_second: capacity,
        surplus_tokens_per_second: surplus,
        quotas,
    }
}

/// The limits the gateway enforces for one caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerLimits {
    /// Tokens per second: the floor plus what the caller may borrow.
    pub tokens_per_second: u64,
    /// Tokens per second guaranteed: the caller's share when the engine is contended.
    pub floor_tokens_per_second: u64,
    /// Tokens per calendar month.
    pub monthly_budget: u64,
    /// Requests running at once.
    pub concurrency: u32,
}

/// The limits the gateway enforces for the caller of `quota`: exactly what the
/// Allocation publishes, a rate of guaranteed plus borrow limit, the monthly budget and
/// the concurrency.
#[must_use]
pub fn enforced_limits(quota: &Quota) -> CallerLimits {
    CallerLimits {
        tokens_per_second: quota
            .guaranteed_tokens_per_second
            .saturating_add(quota.borrow_limit_tokens_per_second),
        floor_tokens_per_second: quota.guaranteed_tokens_per_second,
        monthly_budget: quota.monthly_token_budget,
        concurrency: quota.max_concurrent_requests,
    }
}

/// The figures of `allocation` for these resources: the solver's input, solved, as the
/// status shows them. The operator writes them to the Allocation in force; the gateway
/// in standalone mode computes them the same way.
///
/// # Errors
///
/// The solver's error when the allocation cannot be solved.
pub fn figures_for(
    coop: &Cooperative,
    allocation: &Allocation,
    members: &[Member],
    customers: &[Customer],
    models: &[InferenceModel],
    pools: &[ComputePool],
) -> Result<AllocationFigures, crate::SolveError> {
    let input = solver_input(coop, allocation, members, customers, models, pools);
    let quotas = crate::solve(&input)?;
    Ok(allocation_figures(&input, &quotas, models, &allocation.spec.plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solve;
    use synco_crds::Manifest;

    fn riverside() -> (
        Cooperative,
        Vec<Member>,
        Vec<Customer>,
        Vec<InferenceModel>,
        Allocation,
    ) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples");
        let all = synco_crds::manifests::load_dir(&dir).unwrap();
        let (mut coop, mut members, mut customers, mut models, mut alloc) =
            (None, vec![], vec![], vec![], None);
        for m in all {
            match m {
                Manifest::Cooperative(c) => coop = Some(*c),
                Manifest::Member(m) => members.push(*m),
                Manifest::Customer(c) => customers.push(*c),
                Manifest::InferenceModel(m) => models.push(*m),
                Manifest::Allocation(a) => alloc = Some(*a),
                _ => {}
            }
        }
        (coop.unwrap(), members, customers, models, alloc.unwrap())
    }

    #[test]
    fn riverside_quotas_follow_floors_and_surplus_cap() {
        let (coop, members, customers, mut models, alloc) = riverside();
        for m in &mut models {
            m.status = Some(synco_crds::InferenceModelStatus {
                capacity_tokens_per_second: planned_capacity(m),
                ..Default::default()
            });
        }
        let input = solver_input(&coop, &alloc, &members, &customers, &models, &[]);
        assert_eq!(input.callers.len(), 6);
        assert_eq!(input.surplus_cap, Share::percent(30));
        let quotas = solve(&input).unwrap();
        let fig = allocation_figures(&input, &quotas, &models, &alloc.spec.plan);
        // tiny-chat 400 + coop-large 1500 + coop-embed 4000.
        assert_eq!(fig.capacity_tokens_per_second, 5900);
        // Only tiny-chat and coop-embed may be sold: 30% of 400 and of 4000.
        assert_eq!(fig.surplus_tokens_per_second, 120 + 1200);
        let q = |n: &str| fig.quotas.iter().find(|q| q.name == n).unwrap().clone();
        // community: 60% split over four members; business: 10% to its one member.
        assert_eq!(q("bakery-coop").guaranteed_tokens_per_second, 60 + 225 + 600);
        assert_eq!(q("hardware-store").guaranteed_tokens_per_second, 40 + 150 + 400);
        assert_eq!(q("hardware-store").tier, 1);
        assert_eq!(q("bakery-coop").borrow_limit_tokens_per_second, 5900 - 885);
        assert_eq!(q("bakery-coop").monthly_token_budget, 885 * SECONDS_PER_30_DAYS);
        let cust = q("city-translation");
        assert_eq!(cust.kind, SubjectKind::Customer);
        assert_eq!(cust.tier, 2);
        assert_eq!(cust.borrow_limit_tokens_per_second, 1320);
        assert_eq!(cust.guaranteed_tokens_per_second, 0);
    }

    #[test]
    fn suspended_and_unknown_class_members_get_nothing() {
        let (coop, mut members, customers, models, alloc) = riverside();
        members[0].spec.standing = MemberStanding::Suspended;
        members[1].spec.class = "nobody".to_owned();
        let input = solver_input(&coop, &alloc, &members, &customers, &models, &[]);
        assert_eq!(input.callers.len(), 4);
        let quotas = solve(&input).unwrap();
        let fig = allocation_figures(&input, &quotas, &models, &alloc.spec.plan);
        // No model has reported capacity yet.
        assert_eq!(fig.capacity_tokens_per_second, 0);
        assert!(fig.quotas.iter().all(|q| q.guaranteed_tokens_per_second == 0));
    }

    fn pool(name: &str, nodes: &[(&str, u32, bool, Option<&str>)]) -> ComputePool {
        let mut p = ComputePool::new(
            name,
            synco_crds::ComputePoolSpec {
                node_selector: Default::default(),
                tolerations: vec![],
                gpu_resource: "nvidia.com/gpu".into(),
            },
        );
        p.status = Some(synco_crds::ComputePoolStatus {
            nodes: nodes
                .iter()
                .map(|(n, gpus, ready, by)| synco_crds::PoolNode {
                    name: (*n).into(),
                    gpus: *gpus,
                    ready: *ready,
                    contributed_by: by.map(str::to_owned),
                })
                .collect(),
            ..Default::default()
        });
        p
    }

    /// Floors with contributions: `per_gpu` points per GPU, at most `most`.
    fn contributed(per_gpu: u32, most: Option<u32>) -> Vec<Quota> {
        let (mut coop, members, customers, mut models, alloc) = riverside();
        coop.spec.patronage = Some(synco_crds::PatronageBylaws {
            basis: synco_crds::PatronageBasis::Usage,
            usage_parts: 1,
            contribution_parts: 1,
            cash_percent: 20,
            surplus_to: synco_crds::SurplusDestination::Reserve,
            floor_percent_per_gpu: Some(per_gpu),
            max_contribution_floor_percent: most,
        });
        for m in &mut models {
            m.status = Some(synco_crds::InferenceModelStatus {
                capacity_tokens_per_second: planned_capacity(m),
                ..Default::default()
            });
        }
        let pools = [
            pool(
                "a",
                &[
                    ("n1", 2, true, Some("bakery-coop")),
                    ("n2", 4, true, Some("hardware-store")),
                    // Not Ready: counts for nothing.
                    ("n3", 8, false, Some("bakery-coop")),
                ],
            ),
            // The same node seen by a second pool counts once.
            pool("b", &[("n1", 2, true, Some("bakery-coop"))]),
        ];
        assert_eq!(
            contributed_gpus(&pools),
            BTreeMap::from([("bakery-coop".to_owned(), 2), ("hardware-store".to_owned(), 4)])
        );
        figures_for(&coop, &alloc, &members, &customers, &models, &pools)
            .unwrap()
            .quotas
    }

    #[test]
    fn contributed_gpus_raise_their_members_floors_within_what_the_floors_leave() {
        let q = |quotas: &[Quota], n: &str| {
            quotas
                .iter()
                .find(|q| q.name == n)
                .unwrap()
                .guaranteed_tokens_per_second
        };
        // 5 points per GPU, at most 15: bakery-coop 15% + 10%, hardware-store 10% + 15%
        // (20 capped), of 400, 1500 and 4000 tokens/s.
        let quotas = contributed(5, Some(15));
        assert_eq!(q(&quotas, "bakery-coop"), 100 + 375 + 1000);
        assert_eq!(q(&quotas, "hardware-store"), 100 + 375 + 1000);
        assert_eq!(
            q(&quotas, "riverside-school"),
            60 + 225 + 600,
            "no contribution, no raise"
        );
        // 20 points per GPU ask for 40 and 80 points; the floors (70%) leave 30, shared
        // in proportion: 10 and 20.
        let quotas = contributed(20, None);
        assert_eq!(q(&quotas, "bakery-coop"), 100 + 375 + 1000);
        assert_eq!(q(&quotas, "hardware-store"), 120 + 450 + 1200);
    }
}
