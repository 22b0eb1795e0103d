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
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;
use synco_crds::conditions::{self, READY, reason};
use synco_crds::{ComputePool, EngineKind, InferenceModel, InferenceModelStatus, ModelPhase};
use synco_policies::crd::planned_capacity;

use super::model_objects::{self, engine_name};
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
    endpoint: Option<String>,
    capacity: u64,
    ok: bool,
    reason: &'static str,
    message: String,
}

async fn reconcile_model(model: &InferenceModel, ctx: &Context) -> Result<Action> {
    let ns = model.namespace().ok_or(Error::Unnamed("InferenceModel"))?;
    let observed = match model.spec.engine.kind {
        EngineKind::Mistralrs => deploy(model, ctx, &ns).await?,
        EngineKind::External => match check_url(model.spec.engine.url.as_deref().unwrap_or_default()) {
            Ok(url) => Observed {
                phase: ModelPhase::Ready,
                ready_replicas: model.spec.replicas,
                message: format!("served by {url}"),
                endpoint: Some(url),
                capacity: planned_capacity(model),
                ok: true,
                reason: reason::PUBLISHED,
            },
            Err(why) => Observed {
                phase: ModelPhase::Failed,
                ready_replicas: 0,
                endpoint: None,
                capacity: 0,
                ok: false,
                reason: reason::INVALID_SPEC,
                message: why,
            },
        },
        EngineKind::Embedded => Observed {
            phase: ModelPhase::Ready,
            ready_replicas: model.spec.replicas,
            endpoint: None,
            capacity: planned_capacity(model),
            ok: true,
            reason: reason::RECONCILED,
            message: "served in the gateway process".to_owned(),
        },
    };
    let current = model.status.clone().unwrap_or_default();
    let mut status = InferenceModelStatus {
        observed_generation: model.metadata.generation,
        conditions: current.conditions.clone(),
        phase: observed.phase,
        ready_replicas: observed.ready_replicas,
        endpoint: observed.endpoint,
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
    Ok(Action::await_change())
}

/// Applies the Deployment and Service of a mistral.rs model and reads back how many
/// replicas are ready.
async fn deploy(model: &InferenceModel, ctx: &Context, ns: &str) -> Result<Observed> {
    let name = model.name_any();
    let Some(pool_name) = model.spec.pool.clone() else {
        return Err(Error::InvalidSpec("a mistralrs model needs a pool".to_owned()));
    };
    let pools: Api<ComputePool> = Api::namespaced(ctx.client.clone(), ns);
    let Some(pool) = pools.get_opt(&pool_name).await? else {
        return Ok(Observed {
            phase: ModelPhase::Pending,
            ready_replicas: 0,
            endpoint: None,
            capacity: 0,
            ok: false,
            reason: reason::UNKNOWN_REFERENCE,
            message: format!("ComputePool {pool_name} does not exist"),
        });
    };
    let deployment_body = match model_objects::deployment(model, &pool, &ctx.settings) {
        Ok(d) => d,
        Err(Error::InvalidSpec(why)) => {
            return Ok(Observed {
                phase: ModelPhase::Failed,
                ready_replicas: 0,
                endpoint: None,
                capacity: 0,
                ok: false,
                reason: reason::INVALID_SPEC,
                message: why,
            });
        }
        Err(e) => return Err(e),
    };
    let service_body = model_objects::service(model, &ctx.settings)?;
    model_objects::check(&deployment_body, &service_body)?;
    let engine = engine_name(&name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let deployment = apply::object(&deployments, &engine, deployment_body).await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    apply::object(&services, &engine, service_body).await?;

    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(0);
    // Replicas the pool's ready GPUs can hold: a node that left takes its replicas'
    // capacity with it at once, before its pods are rescheduled.
    let fit = match model.spec.gpus_per_replica {
        0 => model.spec.replicas,
        g => pool.status.as_ref().map_or(0, |s| s.total_gpus / g),
    };
    let serving = ready.min(fit);
    let capacity = u64::from(serving).saturating_mul(model.spec.tokens_per_second_per_replica);
    let (phase, ok, why) = if serving > 0 {
        (ModelPhase::Ready, true, reason::DEPLOYED)
    } else {
        (ModelPhase::Progressing, false, reason::PROGRESSING)
    };
    Ok(Observed {
        phase,
        ready_replicas: ready,
        endpoint: Some(model_objects::endpoint(&name, ns, ctx.settings.mistralrs_port)),
        capacity,
        ok,
        reason: why,
        message: format!(
            "{ready} of {} replicas ready on pool {pool_name} ({} GPUs); serving {capacity} tokens/s",
            model.spec.replicas,
            pool.status.as_ref().map_or(0, |s| s.total_gpus)
        ),
    })
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
