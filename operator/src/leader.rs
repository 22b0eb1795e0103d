//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run
//! and exactly one reconciles.
//!
//! The holder renews the Lease every `renew_every`. Another replica takes it over when
//! the holder has not renewed it for `lease_duration`, or at once when the holder
//! released it on a graceful shutdown. Every write carries the `resourceVersion` it read,
//! so two replicas racing for the Lease cannot both win. A holder that cannot renew for
//! two thirds of the lease duration stops reconciling before anyone else may start.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

use crate::error::Result;

/// How the Lease is held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (the pod name, say).
    pub identity: String,
    /// How long a Lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How often a replica that does not hold the Lease tries to take it.
    pub retry_every: Duration,
}

/// Why holding the Lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for.
    Cancelled,
    /// Another replica holds the Lease now, or it could not be renewed in time.
    Lost,
}

/// One replica's side of the election.
#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

impl Elector {
    /// An elector for `settings`.
    #[must_use]
    pub fn new(client: Client, settings: LeaseSettings) -> Elector {
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    /// This replica's identity.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.settings.identity
    }

    /// Takes or renews the Lease once. `Ok(true)` when this replica holds it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let me = self.settings.identity.clone();
        let duration = seconds(self.settings.lease_duration);
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        let held_by_me = spec.holder_identity.as_deref() == Some(me.as_str());
        if !held_by_me {
            let expired = match (&spec.holder_identity, &spec.renew_time) {
                (None, _) | (_, None) => true,
                (Some(h), _) if h.is_empty() => true,
                (Some(_), Some(renewed)) => {
                    let valid_for = i64::from(spec.lease_duration_seconds.unwrap_or(duration));
                    match renewed.0.checked_add(jiff::SignedDuration::from_secs(valid_for)) {
                        Ok(until) => until <= now,
                        Err(_) => true,
                    }
                }
            };
            if !expired {
                return Ok(false);
            }
            spec.holder_identity = Some(me);
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.lease_duration_seconds = Some(duration);
        spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(spec);
        // `replace` sends the resourceVersion read above: a concurrent write makes it fail.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica holds the Lease. `false` when cancelled first.
    pub async fn acquire(&self, cancel: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not read or take the leader Lease"),
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(self.settings.retry_every) => {}
            }
        }
    }

    /// Renews the Lease until cancelled or lost.
    pub async fn hold(&self, cancel: &CancellationToken) -> Ended {
        let deadline = self.settings.lease_duration * 2 / 3;
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ended::Cancelled,
                () = tokio::time::sleep(self.settings.renew_every) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => return Ended::Lost,
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the leader Lease");
                    if renewed.elapsed() >= deadline {
                        return Ended::Lost;
                    }
                }
            }
        }
    }

    /// Gives the Lease up so that another replica can take it at once.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
