//! What every reconcile shares: the client, the clock, the settings, Events and metrics.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use synco_crds::{Customer, InferenceModel, Member};

use crate::clock::{Clock, SystemClock};
use crate::metrics::Stats;

/// The name Events are reported under.
pub const CONTROLLER_NAME: &str = "synco-operator";

/// Settings of the controllers (the leader-election and HTTP settings live in
/// [`crate::RunOptions`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Only this namespace, or every namespace when `None`.
    pub namespace: Option<String>,
    /// The mistral.rs server image for models that do not name one.
    pub mistralrs_image: String,
    /// The port the mistral.rs server listens on, and the Service's port.
    pub mistralrs_port: u16,
    /// Run engine pods on their node's network (a node without a pod network, such as
    /// a single machine whose pods listen on loopback): each replica's endpoint is then
    /// its node's address.
    pub engine_host_network: bool,
    /// How often to look again at resources whose correctness depends on others that
    /// are not watched (such as duplicate identities), as a safety net.
    pub resync: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: None,
            mistralrs_image: "ghcr.io/synco-coop/synco-engine:0.8.1".to_owned(),
            mistralrs_port: 8080,
            engine_host_network: false,
            resync: Duration::from_secs(300),
        }
    }
}

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    /// The API client, with the operator's identity.
    pub client: Client,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Publishes Events.
    pub recorder: Recorder,
    /// This instance's counts.
    pub stats: Arc<Stats>,
    /// Watch caches of the resources many reconciles read, once the controllers run.
    pub caches: Option<Arc<Caches>>,
    /// When each scaling model (`namespace/name`) last had demand for the replicas it
    /// runs. Kept in memory: a new leader starts without it and waits a whole
    /// scale-down delay before removing replicas.
    pub busy: Arc<std::sync::Mutex<std::collections::HashMap<String, Timestamp>>>,
}

/// Watch caches (reflector stores) of Members, Customers and InferenceModels: the
/// Member and Allocation controllers read every one of them in each reconcile, which
/// with a thousand members would otherwise be a thousand-object list each time.
#[derive(Debug, Clone)]
pub struct Caches {
    /// Every Member the operator watches.
    pub members: Store<Member>,
    /// Every Customer.
    pub customers: Store<Customer>,
    /// Every InferenceModel.
    pub models: Store<InferenceModel>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client and the Event recorder have nothing worth printing.
        f.debug_struct("Context")
            .field("clock", &self.clock)
            .field("settings", &self.settings)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context reporting Events as `instance`.
    pub fn new(client: Client, clock: Arc<dyn Clock>, settings: Settings, instance: &str) -> Context {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: Some(instance.to_owned()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clock,
            settings: Arc::new(settings),
            stats: Arc::new(Stats::default()),
            caches: None,
            busy: Arc::default(),
        }
    }

    /// A context on the system clock with default settings.
    pub fn with_defaults(client: Client) -> Context {
        Context::new(
            client,
            Arc::new(SystemClock),
            Settings::default(),
            CONTROLLER_NAME,
        )
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Now, as a Kubernetes time.
    pub fn now_time(&self) -> Time {
        Time(self.clock.now())
    }

    /// Publishes an Event about `obj`. A failure is logged, never returned: Events are
    /// for people and must not stop a reconcile.
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish an Event");
        }
    }
}
