//! The co-op as the gateway sees it: who may call (identities), which models each
//! caller may use, the quota each caller gets from the allocation in force (through
//! the `policies` solver), the surplus rate card and prepaid credit.
//!
//! Built from the same resources in both modes ([`CoopObjects`]): the database founded
//! from the manifests folder (standalone), or the API server (cluster mode).

use std::collections::{BTreeMap, HashMap};

use synco_crds::{Allocation, Billing, ComputePool, Cooperative, Customer, InferenceModel, Manifest, Member};

use crate::admission::{Caller, CallerKind};

/// The tier customers are served at: after every member class.
pub const CUSTOMER_TIER: u32 = u32::MAX - 1;

/// Who may use a model.
#[derive(Debug, Clone, Default)]
pub struct ModelAccess {
    /// Member classes allowed; empty means every class.
    pub classes: Vec<String>,
    pub customers: bool,
}

/// A customer's price for one model, in minor units per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input_per_million: u64,
    pub output_per_million: u64,
}

impl Price {
    /// The cost of `prompt` and `completion` tokens, in millionths of a minor unit:
    /// exact, no rounding.
    pub fn cost_micro(&self, prompt: u64, completion: u64) -> u64 {
        prompt
            .saturating_mul(self.input_per_million)
            .saturating_add(completion.saturating_mul(self.output_per_million))
    }
}

/// One caller's limits, exactly as the Allocation in force publishes them (see
/// [`synco_policies::crd::enforced_limits`]).
pub use synco_policies::crd::CallerLimits;

/// The co-op's objects, as either store holds them: files and the database in
/// standalone mode, the API server in cluster mode.
#[derive(Debug, Clone, Default)]
pub struct CoopObjects {
    pub cooperatives: Vec<Cooperative>,
    pub members: Vec<Member>,
    pub customers: Vec<Customer>,
    pub pools: Vec<ComputePool>,
    pub models: Vec<InferenceModel>,
    pub allocations: Vec<Allocation>,
}

impl CoopObjects {
    /// Sorts manifests into their kinds (Proposals, Votes and Delegations are not the
    /// co-op's objects and are left out).
    pub fn from_manifests(manifests: &[Manifest]) -> Self {
        let mut out = Self::default();
        for m in manifests {
            match m {
                Manifest::Cooperative(c) => out.cooperatives.push((**c).clone()),
                Manifest::Member(m) => out.members.push((**m).clone()),
                Manifest::Customer(c) => out.customers.push((**c).clone()),
                Manifest::ComputePool(p) => out.pools.push((**p).clone()),
                Manifest::InferenceModel(m) => out.models.push((**m).clone()),
                Manifest::Allocation(a) => out.allocations.push((**a).clone()),
                Manifest::Proposal(_) | Manifest::Vote(_) | Manifest::Delegation(_) => {}
            }
        }
        out
    }

    /// The Cooperative: there must be exactly one.
    pub fn cooperative(&self) -> anyhow::Result<&Cooperative> {
        match self.cooperatives.as_slice() {
            [one] => Ok(one),
            [] => anyhow::bail!("no Cooperative"),
            _ => anyhow::bail!("more than one Cooperative"),
        }
    }

    /// The Allocation in force: the highest version.
    pub fn in_force(&self) -> Option<&Allocation> {
        synco_policies::crd::effect::newest(&self.allocations)
    }
}

/// The co-op's rules for the data plane.
#[derive(Debug, Clone, Default)]
pub struct Coop {
    /// By identity (a JWT `sub`) and by name (an API key's owner).
    callers_by_identity: HashMap<String, Caller>,
    callers_by_name: HashMap<(CallerKind, String), Caller>,
    /// By served model name.
    access: HashMap<String, ModelAccess>,
    /// Served name to resource name (the solver and rate card use resource names).
    resource_names: HashMap<String, String>,
    /// Served names of the models run as pods by the operator.
    pod_models: std::collections::HashSet<String>,
    limits: HashMap<String, CallerLimits>,
    prices: HashMap<String, Price>,
    pub currency: String,
    /// The share of engine capacity customers may hold, in percent.
    pub surplus_percent: u32,
    /// Prepaid customers' credit, in minor units.
    pub prepaid_credit_minor: BTreeMap<String, u64>,
    /// The name of the Allocation in force, whose quotas these limits are.
    pub allocation: Option<String>,
    /// The co-op's name (its Cooperative's): what it calls itself to peer co-ops.
    pub name: String,
    /// The peer co-ops in the bylaws, by name.
    pub peers: BTreeMap<String, synco_crds::Peer>,
    /// The governance assistant's model and monthly tokens, when the bylaws name one.
    pub assistant: Option<(String, u64)>,
    /// The embedding model the assistant retrieves with, when the bylaws name one.
    pub assistant_embedding: Option<String>,
}

/// The co-op as last read, shared by admission, authentication and `/v1/usage`.
/// Cluster mode replaces it whenever the resources change; standalone mode never does.
#[derive(Debug, Clone)]
pub struct CoopHandle(tokio::sync::watch::Receiver<std::sync::Arc<Coop>>);

impl CoopHandle {
    /// A co-op that never changes.
    pub fn fixed(coop: Coop) -> Self {
        Self::channel(coop).1
    }

    /// A co-op replaced through the returned sender.
    pub fn channel(coop: Coop) -> (tokio::sync::watch::Sender<std::sync::Arc<Coop>>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(coop));
        (tx, Self(rx))
    }

    /// The co-op now (a request keeps the one it started with).
    pub fn current(&self) -> std::sync::Arc<Coop> {
        self.0.borrow().clone()
    }
}

/// Overrides for trials and tests.
#[derive(Debug, Clone, Default)]
pub struct CoopOptions {
    /// Monthly token budgets that replace the Allocation's, by caller name (a trial knob:
    /// a real budget is tokens per second times a month).
    pub budget_overrides: BTreeMap<String, u64>,
}

impl Coop {
    /// Reads the co-op's objects. Each caller's limits are the quotas the Allocation in
    /// force publishes in its status (the operator writes them in cluster mode, the
    /// gateway in standalone mode), through [`synco_policies::crd::enforced_limits`].
    pub fn from_objects(objects: &CoopObjects, options: &CoopOptions) -> anyhow::Result<Self> {
        let coop = objects.cooperative()?;
        let mut out = Self {
            name: coop.metadata.name.clone().unwrap_or_default(),
            peers: coop
                .spec
                .peers
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
            assistant: coop
                .spec
                .assistant
                .as_ref()
                .map(|a| (a.model.clone(), u64::try_from(a.monthly_tokens).unwrap_or(0))),
            assistant_embedding: coop
                .spec
                .assistant
                .as_ref()
                .and_then(|a| a.embedding_model.clone()),
            ..Self::default()
        };
        let class_of = |class: &str| coop.spec.member_classes.iter().find(|c| c.name == class);
        for m in &objects.members {
            let Some(name) = m.metadata.name.clone() else {
                continue;
            };
            if m.spec.standing != synco_crds::resources::member::Standing::Active {
                continue;
            }
            let Some(class) = class_of(&m.spec.class) else {
                continue;
            };
            let caller = Caller {
                id: name.clone(),
                kind: CallerKind::Member,
                class: Some(m.spec.class.clone()),
                tier: class.tier,
                weight: m.spec.voting_weight.max(1),
                local_only: class.local_only || m.spec.local_only,
            };
            out.callers_by_identity
                .insert(m.spec.identity.clone(), caller.clone());
            out.callers_by_name.insert((CallerKind::Member, name), caller);
        }
        for c in &objects.customers {
            let Some(name) = c.metadata.name.clone() else {
                continue;
            };
            if c.spec.suspended {
                continue;
            }
            let caller = Caller {
                id: name.clone(),
                kind: CallerKind::Customer,
                class: None,
                tier: CUSTOMER_TIER,
                weight: 1,
                // Customers buy this co-op's surplus: their requests are not passed on
                // to peers (the bylaws lend and borrow for members).
                local_only: true,
            };
            if c.spec.billing == Billing::Prepaid {
                let credit = c.spec.prepaid_credit_minor.unwrap_or(0).max(0);
                out.prepaid_credit_minor
                    .insert(name.clone(), u64::try_from(credit).unwrap_or(0));
            }
            out.callers_by_identity
                .insert(c.spec.identity.clone(), caller.clone());
            out.callers_by_name.insert((CallerKind::Customer, name), caller);
        }
        for m in &objects.models {
            let Some(resource) = m.metadata.name.clone() else {
                continue;
            };
            let served = m.spec.served_name.clone().unwrap_or_else(|| resource.clone());
            out.access.insert(
                served.clone(),
                ModelAccess {
                    classes: m.spec.access.classes.clone(),
                    customers: m.spec.access.customers,
                },
            );
            if m.spec.engine.kind == synco_crds::EngineKind::Mistralrs {
                out.pod_models.insert(served.clone());
            }
            out.resource_names.insert(served, resource);
        }
        if let Some(surplus) = &coop.spec.surplus {
            out.currency = surplus.currency.clone();
            out.surplus_percent = surplus.max_share_percent;
            let floor = &surplus.price_floor;
            for m in &objects.models {
                let Some(resource) = m.metadata.name.clone() else {
                    continue;
                };
                let card = surplus.rate_card.iter().find(|c| c.model == resource);
                // Never below the floor the members voted.
                let input = card.map_or(floor.input_per_million, |c| c.price.input_per_million);
                let output = card.map_or(floor.output_per_million, |c| c.price.output_per_million);
                out.prices.insert(
                    resource,
                    Price {
                        input_per_million: u64::try_from(input.max(floor.input_per_million)).unwrap_or(0),
                        output_per_million: u64::try_from(output.max(floor.output_per_million)).unwrap_or(0),
                    },
                );
            }
        }
        match objects.in_force() {
            Some(allocation) => {
                if let Some(cap) = allocation.spec.plan.surplus_cap_percent {
                    out.surplus_percent = cap;
                }
                for q in allocation.status.iter().flat_map(|s| &s.quotas) {
                    out.limits
                        .insert(q.name.clone(), synco_policies::crd::enforced_limits(q));
                }
                out.allocation = allocation.metadata.name.clone();
            }
            None => tracing::warn!("no Allocation: every caller's quota is zero"),
        }
        for (caller, budget) in &options.budget_overrides {
            let limits = out.limits.entry(caller.clone()).or_default();
            limits.monthly_budget = *budget;
        }
        Ok(out)
    }

    /// The caller whose tokens carry `identity` (a JWT `sub`).
    pub fn by_identity(&self, identity: &str) -> Option<&Caller> {
        self.callers_by_identity.get(identity)
    }

    /// The Member or Customer called `name`.
    pub fn by_name(&self, kind: CallerKind, name: &str) -> Option<&Caller> {
        self.callers_by_name.get(&(kind, name.to_owned()))
    }

    /// Whether `model` is the served name of one of the co-op's InferenceModels that
    /// the operator runs as pods (`Mistralrs`), which may have no replica ready yet
    /// (starting, or scaled to zero): requests for it wait in the waiting room.
    pub fn scales(&self, model: &str) -> bool {
        self.pod_models.contains(model)
    }

    /// Whether `caller` may use the served model `model` (unlisted models: members only).
    pub fn may_use(&self, caller: &Caller, model: &str) -> bool {
        let access = self.access.get(model);
        match caller.kind {
            CallerKind::Member => access.is_none_or(|a| {
                a.classes.is_empty() || caller.class.as_ref().is_some_and(|c| a.classes.contains(c))
            }),
            CallerKind::Customer => access.is_some_and(|a| a.customers),
            CallerKind::Peer => self
                .peers
                .get(&caller.id)
                .is_some_and(|p| p.lend.iter().any(|m| m == model)),
            // The assistant runs on the models the bylaws name for it.
            CallerKind::Coop => {
                self.assistant.as_ref().is_some_and(|(m, _)| m == model)
                    || self.assistant_embedding.as_deref() == Some(model)
            }
            CallerKind::Anonymous => false,
        }
    }

    pub fn limits(&self, caller: &str) -> CallerLimits {
        self.limits.get(caller).cloned().unwrap_or_default()
    }

    /// A customer's price for the served model `model`.
    pub fn price(&self, model: &str) -> Price {
        let resource = self.resource_names.get(model).map_or(model, String::as_str);
        self.prices.get(resource).copied().unwrap_or_default()
    }

    /// Every caller, for the `keys` command's checks and the usage export.
    pub fn callers(&self) -> impl Iterator<Item = &Caller> {
        self.callers_by_name.values()
    }
}
