//! The Allocation controller: exactly one Allocation is in force (the highest version);
//! it gets the quotas the `synco-policies` solver computes from the pool's capacity, the
//! members, the customers and the models, and every earlier one is marked Superseded and
//! kept, quotas and all, for audit.
//!
//! Members, Customers, InferenceModels (whose status carries the capacity the pools
//! allow) and the Cooperative are watched and mapped to the Allocation in force, so the
//! quotas follow every change of capacity, membership or throughput.

use std::sync::Arc;

use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use synco_crds::conditions::{self, IN_FORCE, reason};
use synco_crds::{
    Allocation, AllocationPhase, AllocationStatus, ClassVotingPower, ComputePool, Cooperative,
    CooperativeStatus, Customer, InferenceModel, Member, Standing,
};
use synco_policies::crd::{allocation_figures, solver_input};

use super::{cached, cooperative, list};
use crate::apply;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Measure;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "allocation";

/// Reconciles one Allocation.
pub async fn reconcile(allocation: Arc<Allocation>, ctx: Arc<Context>) -> Result<Action> {
    let measure = Measure::start(CONTROLLER, &ctx.stats);
    let result = reconcile_allocation(&allocation, &ctx).await;
    measure.done(&result);
    result
}

/// Retries after a delay that depends on the error.
pub fn error_policy(_: Arc<Allocation>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "allocation reconcile failed");
    Action::requeue(error.requeue_after())
}

/// The newest Allocation: the highest version, then the greatest name.
pub fn newest<'a>(all: impl Iterator<Item = &'a Allocation>) -> Option<&'a Allocation> {
    all.max_by(|a, b| (a.spec.version, &a.metadata.name).cmp(&(b.spec.version, &b.metadata.name)))
}

/// The Allocation in force in `namespace`, from the controller's cache.
pub fn in_force_ref(store: &Store<Allocation>, namespace: Option<String>) -> Option<ObjectRef<Allocation>> {
    let all = store.state();
    newest(
        all.iter()
            .map(|a| a.as_ref())
            .filter(|a| a.namespace() == namespace),
    )
    .map(ObjectRef::from_obj)
}

async fn reconcile_allocation(allocation: &Allocation, ctx: &Context) -> Result<Action> {
    let ns = allocation.namespace().ok_or(Error::Unnamed("Allocation"))?;
    let api: Api<Allocation> = Api::namespaced(ctx.client.clone(), &ns);
    let all: Vec<Allocation> = list(ctx, &ns).await?;
    let Some(in_force) = newest(all.iter()) else {
        // Deleted meanwhile.
        return Ok(Action::await_change());
    };
    let in_force_name = in_force.name_any();
    if in_force_name != allocation.name_any() {
        supersede(ctx, &api, allocation, &in_force_name).await?;
        return Ok(Action::await_change());
    }

    let coop = cooperative(ctx, &ns).await?;
    let members: Vec<Member> = cached(ctx, &ns, |c| &c.members).await?;
    // Few of these, and their changes trigger this reconcile: read them fresh.
    let customers: Vec<Customer> = list(ctx, &ns).await?;
    let models: Vec<InferenceModel> = list(ctx, &ns).await?;
    let pools: Vec<ComputePool> = list(ctx, &ns).await?;
    let input = solver_input(&coop, in_force, &members, &customers, &models, &pools);
    let current = in_force.status.clone().unwrap_or_default();
    let now = ctx.now_time();
    let quotas = match synco_policies::solve(&input) {
        Ok(q) => q,
        Err(e) => {
            let mut status = current.clone();
            status.observed_generation = in_force.metadata.generation;
            conditions::set_condition(
                &mut status.conditions,
                conditions::condition(
                    conditions::READY,
                    false,
                    reason::INVALID_SPEC,
                    format!("cannot compute quotas: {e}"),
                    in_force.metadata.generation,
                    now,
                ),
            );
            apply::status(&api, in_force, in_force.status.as_ref(), &status).await?;
            return Err(e.into());
        }
    };
    let figures = allocation_figures(&input, &quotas, &models, &in_force.spec.plan);
    let status = AllocationStatus {
        observed_generation: in_force.metadata.generation,
        conditions: {
            let mut cs = current.conditions.clone();
            let g = in_force.metadata.generation;
            let msg = format!(
                "in force: {} tokens/s of capacity, {} for sale",
                figures.capacity_tokens_per_second, figures.surplus_tokens_per_second
            );
            conditions::set_condition(
                &mut cs,
                conditions::condition(IN_FORCE, true, reason::RECONCILED, msg, g, now.clone()),
            );
            conditions::set_condition(
                &mut cs,
                conditions::condition(
                    conditions::READY,
                    true,
                    reason::RECONCILED,
                    "quotas computed",
                    g,
                    now.clone(),
                ),
            );
            cs
        },
        phase: AllocationPhase::InForce,
        effective_from: current.effective_from.clone().or(Some(now)),
        superseded_by: None,
        capacity_tokens_per_second: figures.capacity_tokens_per_second,
        surplus_tokens_per_second: figures.surplus_tokens_per_second,
        quotas: figures.quotas,
    };
    let became = current.phase != AllocationPhase::InForce;
    if apply::status(&api, in_force, in_force.status.as_ref(), &status).await? {
        let note = if became {
            format!("version {} is in force", in_force.spec.version)
        } else {
            format!(
                "quotas recomputed: {} tokens/s of capacity, {} for sale",
                status.capacity_tokens_per_second, status.surplus_tokens_per_second
            )
        };
        ctx.event(
            in_force,
            false,
            if became { "InForce" } else { "QuotasRecomputed" },
            "Solve",
            note,
        )
        .await;
    }
    for older in all.iter().filter(|a| a.name_any() != in_force_name) {
        supersede(ctx, &api, older, &in_force_name).await?;
    }
    cooperative_status(ctx, &coop, &members, &in_force_name).await?;
    // Members come from a watch cache that can trail the event that woke this reconcile
    // by a moment; look again a little later (cheap, and a no-op when nothing changed).
    Ok(Action::requeue(
        ctx.settings.resync.min(std::time::Duration::from_secs(30)),
    ))
}

/// Marks an older Allocation Superseded by `by`, keeping its quotas as they were.
async fn supersede(ctx: &Context, api: &Api<Allocation>, allocation: &Allocation, by: &str) -> Result<()> {
    let mut status = allocation.status.clone().unwrap_or_default();
    status.phase = AllocationPhase::Superseded;
    status.superseded_by = Some(by.to_owned());
    status.observed_generation = allocation.metadata.generation;
    conditions::set_condition(
        &mut status.conditions,
        conditions::condition(
            IN_FORCE,
            false,
            reason::SUPERSEDED,
            format!("superseded by {by}"),
            allocation.metadata.generation,
            ctx.now_time(),
        ),
    );
    if apply::status(api, allocation, allocation.status.as_ref(), &status).await? {
        ctx.event(
            allocation,
            false,
            "Superseded",
            "Supersede",
            format!("superseded by {by}"),
        )
        .await;
    }
    Ok(())
}

/// Publishes the Allocation in force and the active members per class on the
/// Cooperative.
async fn cooperative_status(
    ctx: &Context,
    coop: &Cooperative,
    members: &[Member],
    in_force: &str,
) -> Result<()> {
    let active: Vec<&Member> = members
        .iter()
        .filter(|m| m.spec.standing == Standing::Active)
        .collect();
    let classes = coop
        .spec
        .member_classes
        .iter()
        .map(|c| ClassVotingPower {
            class: c.name.clone(),
            members: u32::try_from(active.iter().filter(|m| m.spec.class == c.name).count())
                .unwrap_or(u32::MAX),
        })
        .collect();
    let status = CooperativeStatus {
        observed_generation: coop.metadata.generation,
        conditions: Vec::new(),
        active_members: Some(u32::try_from(active.len()).unwrap_or(u32::MAX)),
        classes,
        allocation_in_force: Some(in_force.to_owned()),
    };
    let api: Api<Cooperative> = Api::namespaced(ctx.client.clone(), &coop.namespace().unwrap_or_default());
    apply::status(&api, coop, coop.status.as_ref(), &status).await?;
    Ok(())
}
