//! The InferenceModel controller.
//!
//! * `Mistralrs`: a Deployment of the mistral.rs server on the model's pool (its node
//!   selector and tolerations, the GPUs per replica) and a Service in front of it, both
//!   owned by the model so that deleting the model deletes them. The status shows the
//!   ready replicas, the endpoint the gateway should use, and the capacity: ready
//!   replicas (no more than the pool's GPUs can hold) × measured tokens per second.
//! * `External`: the URL is checked and published as the endpoint.
//! * `Embedded`: nothing to deploy; the gateway serves it in-process.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt as _;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use synco_crds::conditions::{self, READY, reason};
use synco_crds::{ComputePool, EngineKind, InferenceModel, InferenceModelStatus, ModelPhase};
use synco_policies::crd::planned_capacity;

use super::model_objects::{self, engine_name};
use super::scale;
use crate::apply;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Measure;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "inferencemodel";

/// Reconciles one InferenceModel.
pub async fn reconcile(model: Arc<InferenceModel>, ctx: Arc<Context>) -> Result<Action> {
    let measure = Measure::start(CONTROLLER, &ctx.stats);
    let result = reconcile_model(&model, &ctx).await;
    measure.done(&result);
    result
}

/// Retries after a delay that depends on the error.
pub fn error_policy(_: Arc<InferenceModel>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "model reconcile failed");
    Action::requeue(error.requeue_after())
}

/// Checks an external engine's URL: `http` or `https`, a host, no spaces.
pub fn check_url(url: &str) -> std::result::Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_only = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host_only.is_empty() || host_only.starts_with(':') {
        return Err(format!("{url:?} has no host"));
    }
    if url.chars().any(char::is_whitespace) {
        return Err(format!("{url:?} contains spaces"));
    }
    if let Some((_, port)) = host_only.rsplit_once(':')
        && !host_only.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("{url:?} has a bad port"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// What a reconcile decided to report.
struct Observed {
    phase: ModelPhase,
    ready_replicas: u32,
    replicas: u32,
    endpoint: Option<String>,
    endpoints: Vec<String>,
    demand: Option<synco_crds::demand::ModelDemand>,
    /// When to look again without an event (a model that scales).
    recheck: Option<std::time::Duration>,
    capacity: u64,
    ok: bool,
    reason: &'static str,
    message: String,
}

impl Observed {
    /// A model that serves nothing, for `why`.
    fn not_serving(phase: ModelPhase, reason: &'static str, message: String) -> Observed {
        Observed {
            phase,
            ready_replicas: 0,
            replicas: 0,
            endpoint: None,
            endpoints: Vec::new(),
            demand: None,
            recheck: None,
            capacity: 0,
            ok: false,
            reason,
            message,
        }
    }

    /// A model served without pods (external or in the gateway).
    fn published(
        model: &InferenceModel,
        endpoint: Option<String>,
        reason: &'static str,
        message: String,
    ) -> Observed {
        Observed {
            phase: ModelPhase::Ready,
            ready_replicas: model.spec.replicas,
            replicas: model.spec.replicas,
            endpoint,
            endpoints: Vec::new(),
            demand: None,
            recheck: None,
            capacity: planned_capacity(model),
            ok: true,
            reason,
            message,
        }
    }
}

async fn reconcile_model(model: &InferenceModel, ctx: &Context) -> Result<Action> {
    let ns = model.namespace().ok_or(Error::Unnamed("InferenceModel"))?;
    let observed = match model.spec.engine.kind {
        EngineKind::Mistralrs => deploy(model, ctx, &ns).await?,
        EngineKind::External => match check_url(model.spec.engine.url.as_deref().unwrap_or_default()) {
            Ok(url) => Observed::published(
                model,
                Some(url.clone()),
                reason::PUBLISHED,
                format!("served by {url}"),
            ),
            Err(why) => Observed::not_serving(ModelPhase::Failed, reason::INVALID_SPEC, why),
        },
        EngineKind::Embedded => Observed::published(
            model,
            None,
            reason::RECONCILED,
            "served in the gateway process".to_owned(),
        ),
    };
    let current = model.status.clone().unwrap_or_default();
    let mut status = InferenceModelStatus {
        observed_generation: model.metadata.generation,
        conditions: current.conditions.clone(),
        phase: observed.phase,
        ready_replicas: observed.ready_replicas,
        replicas: observed.replicas,
        endpoint: observed.endpoint,
        endpoints: observed.endpoints,
        demand: observed.demand,
        capacity_tokens_per_second: observed.capacity,
    };
    conditions::set_condition(
        &mut status.conditions,
        conditions::condition(
            READY,
            observed.ok,
            observed.reason,
            observed.message.clone(),
            model.metadata.generation,
            ctx.now_time(),
        ),
    );
    let api: Api<InferenceModel> = Api::namespaced(ctx.client.clone(), &ns);
    if apply::status(&api, model, model.status.as_ref(), &status).await? && current.phase != status.phase {
        let note = format!("{:?}: {}", status.phase, observed.message);
        ctx.event(
            model,
            !observed.ok,
            &format!("{:?}", status.phase),
            "Deploy",
            note,
        )
        .await;
    }
    Ok(observed
        .recheck
        .map_or_else(Action::await_change, Action::requeue))
}

/// Applies the Deployment and Service of a mistral.rs model (for a model that scales,
/// first the Deployment's scale from the published demand), and reads back how many
/// replicas are ready and where.
async fn deploy(model: &InferenceModel, ctx: &Context, ns: &str) -> Result<Observed> {
    let name = model.name_any();
    let Some(pool_name) = model.spec.pool.clone() else {
        return Err(Error::InvalidSpec("a mistralrs model needs a pool".to_owned()));
    };
    let pools: Api<ComputePool> = Api::namespaced(ctx.client.clone(), ns);
    let Some(pool) = pools.get_opt(&pool_name).await? else {
        return Ok(Observed::not_serving(
            ModelPhase::Pending,
            reason::UNKNOWN_REFERENCE,
            format!("ComputePool {pool_name} does not exist"),
        ));
    };
    let engine = engine_name(&name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let existing = deployments.get_opt(&engine).await?;
    let scaled = match model.spec.scaling() {
        Some(bounds) => Some(autoscale(model, ctx, ns, bounds, existing.as_ref()).await?),
        None => None,
    };
    let replicas = scaled
        .as_ref()
        .map_or(model.spec.replicas, |s| s.decision.replicas);
    // A model that scales leaves `replicas` to the scale subresource once its
    // Deployment exists; it sets the scale first, so that the field always has an owner.
    let applied_replicas = match (&scaled, &existing) {
        (Some(_), Some(_)) => {
            scale::set(&deployments, &engine, replicas).await?;
            None
        }
        _ => Some(replicas),
    };
    let deployment_body = match model_objects::deployment(model, &pool, &ctx.settings, applied_replicas) {
        Ok(d) => d,
        Err(Error::InvalidSpec(why)) => {
            return Ok(Observed::not_serving(
                ModelPhase::Failed,
                reason::INVALID_SPEC,
                why,
            ));
        }
        Err(e) => return Err(e),
    };
    let service_body = model_objects::service(model, &ctx.settings)?;
    model_objects::check(&deployment_body, &service_body)?;
    let deployment = apply::object(&deployments, &engine, deployment_body).await?;
    if scaled.is_some() && existing.is_none() {
        scale::set(&deployments, &engine, replicas).await?;
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    apply::object(&services, &engine, service_body).await?;

    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(0);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = model_objects::selector(&name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let listed = pods.list(&ListParams::default().labels(&selector)).await?;
    let endpoints = if ready > 0 {
        model_objects::replica_endpoints(&listed.items, ctx.settings.mistralrs_port)
    } else {
        Vec::new()
    };
    // Replicas the pool's ready GPUs can hold: a node that left takes its replicas'
    // capacity with it at once, before its pods are rescheduled.
    let planned = model.spec.planned_replicas();
    let fit = match model.spec.gpus_per_replica {
        0 => planned,
        g => pool.status.as_ref().map_or(0, |s| s.total_gpus / g),
    };
    // A model that scales is planned at the replicas it may scale to (that the pool
    // holds): its quotas do not swing with its scale.
    let serving = if scaled.is_some() {
        planned.min(fit)
    } else {
        ready.min(fit)
    };
    let capacity = u64::from(serving).saturating_mul(model.spec.tokens_per_second_per_replica);
    let gpus = pool.status.as_ref().map_or(0, |s| s.total_gpus);
    let (phase, ok, why) = match (&scaled, ready.min(fit)) {
        (_, 1..) => (ModelPhase::Ready, true, reason::DEPLOYED),
        (Some(_), 0) if replicas == 0 => (ModelPhase::Idle, true, reason::DEPLOYED),
        _ => (ModelPhase::Progressing, false, reason::PROGRESSING),
    };
    let mut message = format!(
        "{ready} of {replicas} replicas ready on pool {pool_name} ({gpus} GPUs); serving {capacity} tokens/s"
    );
    if let Some(s) = &scaled {
        let (min, max) = model.spec.scaling().unwrap_or_default();
        message = format!(
            "{message}; scaling {min} to {max} for {} requests",
            s.demand.requests()
        );
    }
    Ok(Observed {
        phase,
        ready_replicas: ready,
        replicas,
        endpoint: (ready > 0).then(|| model_objects::endpoint(&name, ns, ctx.settings.mistralrs_port)),
        endpoints,
        demand: scaled.as_ref().map(|s| s.demand),
        recheck: scaled
            .as_ref()
            .map(|s| s.decision.recheck.unwrap_or(DEMAND_RECHECK).min(DEMAND_RECHECK)),
        capacity,
        ok,
        reason: why,
        message,
    })
}

/// How often a model that scales is looked at with no event (a gateway replica that
/// died stops renewing its demand Lease, which is no event).
const DEMAND_RECHECK: std::time::Duration =
    std::time::Duration::from_secs(synco_crds::demand::DEMAND_LEASE_SECONDS.unsigned_abs() as u64);

/// A scaling decision and the demand it was made on.
struct Scaled {
    decision: scale::Decision,
    demand: synco_crds::demand::ModelDemand,
}

/// Decides the replicas of a model that scales, from the demand the gateways publish,
/// and reports a change as an Event.
async fn autoscale(
    model: &InferenceModel,
    ctx: &Context,
    ns: &str,
    bounds: (u32, u32),
    existing: Option<&Deployment>,
) -> Result<Scaled> {
    let name = model.name_any();
    let served = model.spec.served_name.clone().unwrap_or_else(|| name.clone());
    let demand = scale::demand(ctx, ns, &served).await?;
    let key = format!("{ns}/{name}");
    let busy_at = ctx.busy.lock().ok().and_then(|b| b.get(&key).copied());
    let current = scale::current(existing).unwrap_or(bounds.0);
    let decision = scale::decide(
        current,
        &demand,
        model.spec.concurrent_requests_per_replica,
        bounds,
        busy_at,
        ctx.now(),
        std::time::Duration::from_secs(u64::from(model.spec.scale_down_delay_seconds)),
    );
    if let Ok(mut busy) = ctx.busy.lock() {
        busy.insert(key, decision.busy_at);
    }
    if existing.is_some() && decision.replicas != current {
        let (reason, verb) = if decision.replicas > current {
            ("ScaledUp", "up")
        } else {
            ("ScaledDown", "down")
        };
        tracing::info!(model = %name, namespace = %ns, from = current, to = decision.replicas, requests = demand.requests(), "scaling {verb}");
        ctx.event(
            model,
            false,
            reason,
            // Events of one reason and action on one object are counted as one series
            // under its first note: the target in the action keeps each scale visible.
            &format!("ScaleTo{}", decision.replicas),
            format!(
                "scaled from {current} to {} replicas for {} requests (waiting {}, queued {}, running {})",
                decision.replicas,
                demand.requests(),
                demand.waiting_requests,
                demand.queued_requests,
                demand.running_requests
            ),
        )
        .await;
    }
    Ok(Scaled { decision, demand })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_urls_are_checked() {
        assert_eq!(
            check_url("https://peer.example/v1/").unwrap(),
            "https://peer.example/v1"
        );
        assert!(check_url("http://10.0.0.1:8000/v1").is_ok());
        assert!(check_url("ftp://peer.example").is_err());
        assert!(check_url("https:///v1").is_err());
        assert!(check_url("https://peer.example:99999/v1").is_err());
        assert!(check_url("https://peer example/v1").is_err());
    }
}
