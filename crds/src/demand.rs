//! Demand: what each gateway replica publishes of its models' load, and what the
//! operator scales the models by.
//!
//! Each gateway replica keeps one `coordination.k8s.io` Lease in its co-op's namespace,
//! labelled [`DEMAND_LABEL`], holding the demand per served model (as JSON in the
//! [`DEMAND_ANNOTATION`] annotation) and renewed while the replica lives. The operator
//! adds up the fresh ones: a replica that died stops counting once its lease expires.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The label on every demand Lease (its value: `gateway`).
pub const DEMAND_LABEL: &str = "synco.coop/demand";
/// The annotation holding a replica's demand per model, as JSON.
pub const DEMAND_ANNOTATION: &str = "synco.coop/demand";
/// How long a demand Lease counts after its last renewal.
pub const DEMAND_LEASE_SECONDS: i32 = 15;

/// One model's demand at one gateway replica (or summed over replicas).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDemand {
    /// Requests admitted and waiting for a replica to be ready (the waiting room).
    #[serde(default)]
    pub waiting_requests: u64,
    /// Requests queued for an engine slot.
    #[serde(default)]
    pub queued_requests: u64,
    /// Requests the engine is working on.
    #[serde(default)]
    pub running_requests: u64,
    /// Prompt tokens of the queued requests (as estimated at admission).
    #[serde(default)]
    pub queued_tokens: u64,
    /// Prompt tokens of the running requests.
    #[serde(default)]
    pub running_tokens: u64,
}

impl ModelDemand {
    /// Requests that want a replica: waiting, queued and running.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.waiting_requests
            .saturating_add(self.queued_requests)
            .saturating_add(self.running_requests)
    }

    /// Whether nothing is asked of the model.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.requests() == 0
    }

    /// The sum of two demands.
    #[must_use]
    pub fn plus(self, other: ModelDemand) -> ModelDemand {
        ModelDemand {
            waiting_requests: self.waiting_requests.saturating_add(other.waiting_requests),
            queued_requests: self.queued_requests.saturating_add(other.queued_requests),
            running_requests: self.running_requests.saturating_add(other.running_requests),
            queued_tokens: self.queued_tokens.saturating_add(other.queued_tokens),
            running_tokens: self.running_tokens.saturating_add(other.running_tokens),
        }
    }
}

/// Demand per served model name.
pub type Demands = BTreeMap<String, ModelDemand>;

/// The name of gateway replica `replica`'s demand Lease.
#[must_use]
pub fn lease_name(replica: &str) -> String {
    let clean: String = replica
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(230)
        .collect();
    format!("synco-demand-{}", clean.trim_matches(['-', '.']))
}

/// The demand in `lease`, if it is still fresh at `now` (renewed within its duration)
/// and readable.
#[must_use]
pub fn read(lease: &Lease, now: Timestamp) -> Option<Demands> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(DEMAND_LEASE_SECONDS));
    let expires = renewed
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
        .ok()?;
    if expires < now {
        return None;
    }
    let text = lease.metadata.annotations.as_ref()?.get(DEMAND_ANNOTATION)?;
    serde_json::from_str(text).ok()
}

/// The demand for `model` summed over the fresh `leases`.
#[must_use]
pub fn total(leases: &[Lease], model: &str, now: Timestamp) -> ModelDemand {
    leases
        .iter()
        .filter_map(|l| read(l, now))
        .filter_map(|d| d.get(model).copied())
        .fold(ModelDemand::default(), ModelDemand::plus)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;

    fn lease(renewed: Timestamp, demand: &str) -> Lease {
        let mut l = Lease::default();
        l.metadata.annotations = Some([(DEMAND_ANNOTATION.to_owned(), demand.to_owned())].into());
        l.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(15),
            ..Default::default()
        });
        l
    }

    #[test]
    fn fresh_leases_add_up_and_stale_ones_do_not_count() {
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let ago = |s: i64| {
            now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s))
                .unwrap()
        };
        let leases = [
            lease(
                ago(1),
                r#"{"chat": {"waitingRequests": 2, "runningRequests": 1}}"#,
            ),
            lease(
                ago(14),
                r#"{"chat": {"queuedRequests": 3}, "other": {"runningRequests": 9}}"#,
            ),
            lease(ago(16), r#"{"chat": {"queuedRequests": 100}}"#),
            lease(ago(1), "not json"),
        ];
        let chat = total(&leases, "chat", now);
        assert_eq!(
            (chat.waiting_requests, chat.queued_requests, chat.running_requests),
            (2, 3, 1)
        );
        assert_eq!(chat.requests(), 6);
        assert_eq!(total(&leases, "other", now).requests(), 9);
        assert!(total(&leases, "none", now).is_idle());
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(
            lease_name("synco-gateway-7d9f-abcde"),
            "synco-demand-synco-gateway-7d9f-abcde"
        );
        assert_eq!(lease_name("Host_Name"), "synco-demand-host-name");
    }
}
