//! InferenceModel: a model the co-op serves, and the engine that serves it.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Conditions;

/// A model the co-op serves: where its weights come from, which engine runs it, and who may use it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "synco.coop",
    version = "v1alpha1",
    kind = "InferenceModel",
    namespaced,
    derive = "PartialEq",
    status = "InferenceModelStatus",
    shortname = "im",
    category = "synco",
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.servedName"),
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine.kind"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.engine.kind != 'Mistralrs' || has(self.pool)").message("a model served by mistralrs pods needs a pool"))]
#[x_kube(validation = kube::core::Rule::new("self.engine.kind == 'External' || has(self.source)").message("a model served by mistral.rs needs a source"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.maxReplicas) || self.engine.kind == 'Mistralrs'").message("only a model served by mistralrs pods scales (maxReplicas)"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.minReplicas) || has(self.maxReplicas)").message("minReplicas needs maxReplicas"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct InferenceModelSpec {
    /// The model id callers use (`"model": …`). Defaults to the resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub served_name: Option<String>,
    /// Where the weights come from (not needed for an external engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ModelSource>,
    /// The engine that serves the model.
    pub engine: ModelEngine,
    /// The ComputePool the model's pods run on (mistralrs engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub pool: Option<String>,
    /// Engine replicas (mistralrs engine) when the model does not scale with demand
    /// (no `maxReplicas`).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Scale with demand (mistralrs engine): the fewest replicas kept, 0 to scale to
    /// zero when idle (the first request then waits in the gateway's waiting room).
    /// Defaults to 1 when `maxReplicas` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// Scale with demand (mistralrs engine): the most replicas. Setting it turns on
    /// scaling: the operator sets the Deployment's scale from the demand the gateways
    /// publish (requests waiting, queued and running, over `concurrentRequestsPerReplica`),
    /// and plans quotas for this many replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub max_replicas: Option<u32>,
    /// Scale with demand: how long demand must stay below the replicas running before
    /// the operator removes any (scaling up is immediate).
    #[serde(default = "sixty")]
    #[schemars(range(max = 86400))]
    pub scale_down_delay_seconds: u32,
    /// GPUs each replica needs (mistralrs engine).
    #[serde(default)]
    pub gpus_per_replica: u32,
    /// Measured throughput of one replica in tokens per second; capacity is
    /// replicas × this.
    #[serde(default)]
    pub tokens_per_second_per_replica: u64,
    /// Requests one replica serves at once; callers' concurrency limits are shares of
    /// replicas × this.
    #[serde(default = "thirty_two")]
    #[schemars(range(min = 1))]
    pub concurrent_requests_per_replica: u32,
    /// What the model can do.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Who may call the model.
    #[serde(default)]
    pub access: ModelAccess,
}

fn one() -> u32 {
    1
}

fn sixty() -> u32 {
    60
}

impl InferenceModelSpec {
    /// The replicas the model scales between, when it scales with demand.
    #[must_use]
    pub fn scaling(&self) -> Option<(u32, u32)> {
        let max = self.max_replicas?;
        Some((self.min_replicas.unwrap_or(1).min(max), max))
    }

    /// The replicas the co-op plans for: `maxReplicas` for a model that scales, else
    /// `replicas`. Quotas and pool GPUs are planned for this many, so that they do not
    /// swing as the model scales.
    #[must_use]
    pub fn planned_replicas(&self) -> u32 {
        self.max_replicas.unwrap_or(self.replicas)
    }
}

fn thirty_two() -> u32 {
    32
}

/// Where a model's weights come from. Exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("[has(self.hub), has(self.path), has(self.volume)].filter(x, x).size() == 1").message("set exactly one of hub, path or volume"))]
pub struct ModelSource {
    /// A Hugging Face hub id, such as `Qwen/Qwen2.5-0.5B-Instruct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub hub: Option<String>,
    /// A folder on the serving host (standalone mode) or in the engine's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub path: Option<String>,
    /// A PersistentVolumeClaim holding the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeSource>,
}

/// Weights on a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    /// The claim's name.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// The folder inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// The engine that serves a model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.kind != 'External' || has(self.url)").message("an external engine needs a url"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.url) || self.url.matches('^https?://')").message("url must start with http:// or https://"))]
#[x_kube(validation = kube::core::Rule::new("self.kind == 'External' || !has(self.replicas)").message("only an external engine lists replicas (the operator runs a mistralrs engine's)"))]
pub struct ModelEngine {
    /// Which engine.
    pub kind: EngineKind,
    /// External engines: the OpenAI-compatible base URL, such as a peer co-op's `…/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub url: Option<String>,
    /// External engines: further base URLs serving the same model (its replicas);
    /// requests are spread over `url` and these as `routing` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 2048), regex(pattern = r"^https?://")))]
    pub replicas: Vec<String>,
    /// How requests are spread over the replicas: by the prompt's prefix (so that a
    /// replica's prompt cache is reused; the default) or to the least loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<EngineRouting>,
    /// Mistralrs engine: the server image; the operator's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,
    /// Extra arguments for the engine process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// Environment for the engine process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// How requests are spread over an engine's replicas.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum EngineRouting {
    /// Consistent hashing with bounded loads on the prompt's prefix.
    PrefixHash,
    /// The replica with the fewest requests in flight.
    LeastLoad,
}

/// Which engine serves a model.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum EngineKind {
    /// mistral.rs server pods on the pool, deployed by the operator.
    Mistralrs,
    /// mistral.rs inside the gateway process (standalone mode, small models).
    Embedded,
    /// Any OpenAI-compatible URL, such as a peer co-op.
    External,
}

/// What a model can do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Serves `/v1/chat/completions` and `/v1/completions`.
    #[serde(default = "yes")]
    pub chat: bool,
    /// Serves `/v1/embeddings`.
    #[serde(default)]
    pub embeddings: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            chat: true,
            embeddings: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// Who may call a model. Empty `classes` means every member class.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelAccess {
    /// Member classes allowed; every class when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Whether outside customers may buy this model's surplus.
    #[serde(default)]
    pub customers: bool,
}

/// Where a model is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum ModelPhase {
    /// Accepted, not yet serving.
    #[default]
    Pending,
    /// Replicas are starting.
    Progressing,
    /// Scaled to zero for want of demand; the next request starts a replica.
    Idle,
    /// Serving.
    Ready,
    /// The spec cannot be served (see conditions).
    Failed,
}

/// What the operator reports of a model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceModelStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = super::conditions_merge())]
    pub conditions: Conditions,
    /// Where the model is in its life.
    #[serde(default)]
    pub phase: ModelPhase,
    /// Replicas ready to serve.
    #[serde(default)]
    pub ready_replicas: u32,
    /// Replicas asked of the Deployment now (for a model that scales: what the demand
    /// calls for, between `minReplicas` and `maxReplicas`).
    #[serde(default)]
    pub replicas: u32,
    /// The base URL the gateway should use (`http://service.namespace.svc:port/v1`, or
    /// the external URL); unset while no replica is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Each ready replica's own base URL (its pod's address), so that the gateway can
    /// route by prompt prefix across them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// The demand the gateways last published for the model (a model that scales).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demand: Option<crate::demand::ModelDemand>,
    /// Tokens per second the ready replicas can serve.
    #[serde(default)]
    pub capacity_tokens_per_second: u64,
}
