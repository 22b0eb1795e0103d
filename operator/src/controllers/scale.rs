//! Scaling a model with demand: how many replicas the demand the gateways publish
//! calls for, when to remove replicas, and the Deployment's scale subresource.
//!
//! Up at once, down only after `scaleDownDelaySeconds` of demand below the replicas
//! running (so a pause between bursts does not drop a warm replica), never outside
//! `minReplicas..=maxReplicas`. Each replica takes `concurrentRequestsPerReplica`
//! requests (waiting, queued or running); any demand at all asks for one replica.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use synco_crds::demand::{self, DEMAND_LABEL, ModelDemand};

use crate::context::Context;
use crate::error::Result;

/// The field manager of the Deployments' scale (apart from the operator's own, so that
/// the Deployment it applies can leave `replicas` to this one).
pub const SCALE_MANAGER: &str = "synco-operator-scale";

/// What the demand calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The replicas to ask for.
    pub replicas: u32,
    /// When the demand last needed the replicas running (or more).
    pub busy_at: Timestamp,
    /// When to look again if nothing changes before (a scale-down that is waiting for
    /// its delay).
    pub recheck: Option<Duration>,
}

/// Replicas `demand` needs at `per_replica` requests each: none for no demand, at
/// least one for any.
#[must_use]
pub fn wanted(demand: &ModelDemand, per_replica: u32) -> u32 {
    let per = u64::from(per_replica.max(1));
    u32::try_from(demand.requests().div_ceil(per)).unwrap_or(u32::MAX)
}

/// Decides the replicas for a model now running `current`, with `demand`, scaling
/// between `min` and `max`, that was last busy at `busy_at` (now, when not known).
#[must_use]
pub fn decide(
    current: u32,
    demand: &ModelDemand,
    per_replica: u32,
    (min, max): (u32, u32),
    busy_at: Option<Timestamp>,
    now: Timestamp,
    delay: Duration,
) -> Decision {
    let target = wanted(demand, per_replica).clamp(min, max.max(min));
    if target >= current {
        return Decision {
            replicas: target,
            busy_at: now,
            recheck: None,
        };
    }
    let busy_at = busy_at.unwrap_or(now);
    let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
    let idle = now.duration_since(busy_at);
    if idle >= delay {
        Decision {
            replicas: target,
            busy_at: now,
            recheck: None,
        }
    } else {
        let left = delay.checked_sub(idle).unwrap_or(SignedDuration::ZERO);
        Decision {
            replicas: current,
            busy_at,
            recheck: Some(Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_millis(50)),
        }
    }
}

/// The demand the gateways in `ns` publish for the model served as `served`.
pub async fn demand(ctx: &Context, ns: &str, served: &str) -> Result<ModelDemand> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), ns);
    let listed = leases.list(&ListParams::default().labels(DEMAND_LABEL)).await?;
    Ok(demand::total(&listed.items, served, ctx.now()))
}

/// The replicas the Deployment `name` asks for now, if it exists.
#[must_use]
pub fn current(deployment: Option<&Deployment>) -> Option<u32> {
    let replicas = deployment?.spec.as_ref()?.replicas.unwrap_or(1);
    Some(u32::try_from(replicas).unwrap_or(0))
}

/// Sets the Deployment's replicas through its scale subresource (server-side apply,
/// with [`SCALE_MANAGER`]).
pub async fn set(deployments: &Api<Deployment>, name: &str, replicas: u32) -> Result<()> {
    let scale = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": { "name": name },
        "spec": { "replicas": replicas },
    });
    deployments
        .patch_scale(
            name,
            &PatchParams::apply(SCALE_MANAGER).force(),
            &Patch::Apply(&scale),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(requests: u64) -> ModelDemand {
        ModelDemand {
            waiting_requests: requests,
            ..ModelDemand::default()
        }
    }

    #[test]
    fn replicas_follow_requests_over_the_per_replica_share() {
        assert_eq!(wanted(&asking(0), 4), 0);
        assert_eq!(wanted(&asking(1), 4), 1);
        assert_eq!(wanted(&asking(4), 4), 1);
        assert_eq!(wanted(&asking(5), 4), 2);
        let mixed = ModelDemand {
            waiting_requests: 1,
            queued_requests: 2,
            running_requests: 3,
            ..ModelDemand::default()
        };
        assert_eq!(wanted(&mixed, 2), 3);
        assert_eq!(wanted(&asking(3), 0), 3, "a zero share counts as one");
    }

    #[test]
    fn up_at_once_down_after_the_delay_within_the_bounds() {
        let t0: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let at = |s: i64| t0.checked_add(SignedDuration::from_secs(s)).unwrap();
        let delay = Duration::from_secs(30);
        // From zero, the first request asks for a replica at once.
        let d = decide(0, &asking(1), 4, (0, 3), None, t0, delay);
        assert_eq!((d.replicas, d.recheck), (1, None));
        // More than the maximum asks for the maximum.
        assert_eq!(
            decide(1, &asking(100), 4, (0, 3), Some(t0), t0, delay).replicas,
            3
        );
        // No demand: kept until the delay has passed since it was last busy.
        let d = decide(1, &asking(0), 4, (0, 3), Some(t0), at(10), delay);
        assert_eq!(d.replicas, 1);
        assert_eq!(d.busy_at, t0);
        assert!(d.recheck.unwrap() >= Duration::from_secs(20));
        let d = decide(1, &asking(0), 4, (0, 3), Some(t0), at(30), delay);
        assert_eq!(d.replicas, 0);
        // ... but never under the minimum.
        assert_eq!(
            decide(2, &asking(0), 4, (1, 3), Some(t0), at(60), delay).replicas,
            1
        );
        // An operator that just started does not know when it was last busy: it waits
        // a whole delay.
        assert_eq!(decide(2, &asking(0), 4, (0, 3), None, at(60), delay).replicas, 2);
        // Demand that still fills the replicas running keeps them, and resets the clock.
        let d = decide(2, &asking(5), 4, (0, 3), Some(t0), at(60), delay);
        assert_eq!((d.replicas, d.busy_at), (2, at(60)));
    }
}
