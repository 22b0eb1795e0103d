//! Engines: what actually produces tokens. Handlers see them only through [`Engine`].
//!
//! - [`embedded::EmbeddedEngine`]: mistral.rs in the gateway process.
//! - [`external::ExternalEngine`]: any OpenAI-compatible upstream, including the
//!   mistral.rs pods the operator deploys.
//!
//! Engines always report usage (an external engine is asked for it even when the
//! caller did not ask), so the gateway can meter every request; the handler decides
//! whether the caller sees the usage chunk of a stream.

#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "embedded")]
pub mod embedder;
pub mod external;
pub mod replicas;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::ApiError;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingsRequest,
    EmbeddingsResponse, ModelCard, TextCompletion,
};

/// A stream of chunks; an `Err` item ends the stream with an error event.
pub type ChunkStream<C> = BoxStream<'static, Result<C, ApiError>>;

/// Either a whole answer or a stream of chunks, as the request asked.
pub enum Reply<Full, Chunk> {
    Full(Full),
    Stream(ChunkStream<Chunk>),
}

impl<F: Debug, C> Debug for Reply<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(full) => f.debug_tuple("Full").field(full).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// A request's prompt, as handed to [`Engine::count_prompt_tokens`].
#[derive(Debug, Clone, Copy)]
pub enum PromptRef<'a> {
    Chat(&'a ChatCompletionRequest),
    Completion(&'a CompletionRequest),
    Embeddings(&'a EmbeddingsRequest),
}

/// Something that serves one model.
#[async_trait]
pub trait Engine: Send + Sync + Debug {
    /// Short name for logs and metrics: `embedded` or `external`.
    fn kind(&self) -> &'static str;

    /// The most requests the engine runs at once, when it says (an in-process engine:
    /// its sequences); more would wait in its own queue, where tiers and fairness do
    /// not apply. The gateway gives it no more than this.
    fn max_running(&self) -> Option<usize> {
        None
    }

    /// The digest of the weights it runs (`sha256:` over the folder's safetensors
    /// files), when it can know them: in-process models loaded from a folder.
    fn digest(&self) -> Option<String> {
        None
    }

    /// Whether the engine can take requests now.
    async fn ready(&self) -> bool {
        true
    }

    /// The prompt's tokens as this engine will count them, when it can tell before
    /// running the request (with the model's own tokenizer and chat template).
    /// `None`: it cannot (admission then uses a conservative bound).
    async fn count_prompt_tokens(&self, _prompt: PromptRef<'_>) -> Option<u64> {
        None
    }

    /// A chat completion. `req.model` is the served name; the engine maps it to its own.
    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<Reply<ChatCompletion, ChatCompletionChunk>, ApiError>;

    /// A text completion. Streamed chunks use the same shape as the whole answer.
    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<Reply<TextCompletion, TextCompletion>, ApiError>;

    /// Embeddings, or a 400 when the model cannot embed.
    async fn embeddings(&self, req: EmbeddingsRequest) -> Result<EmbeddingsResponse, ApiError> {
        Err(ApiError::invalid_param(
            "model",
            format!("The model `{}` does not support embeddings.", req.model),
        ))
    }
}

/// A model the gateway serves: its card and its engine.
#[derive(Debug, Clone)]
pub struct ServedModel {
    pub card: ModelCard,
    pub engine: Arc<dyn Engine>,
}

/// The models served, by the name callers use. Clones share one table, which cluster
/// mode replaces as InferenceModels change (a request keeps the engine it started with).
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    models: Arc<RwLock<BTreeMap<String, ServedModel>>>,
    /// Woken whenever the table is replaced (for requests in the waiting room).
    changed: Arc<tokio::sync::Notify>,
    /// Requests in the waiting room, per model.
    waiting: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

/// Counts a request in the waiting room while it lives.
struct Waiting<'a> {
    counts: &'a std::sync::Mutex<BTreeMap<String, u64>>,
    id: &'a str,
}

/// The waiting room's count in `/metrics` (the same count the demand Lease publishes).
fn waiting_gauge(id: &str) -> metrics::Gauge {
    metrics::gauge!("synco_gateway_waiting_room_requests", "model" => id.to_owned())
}

impl<'a> Waiting<'a> {
    fn enter(counts: &'a std::sync::Mutex<BTreeMap<String, u64>>, id: &'a str) -> Self {
        if let Ok(mut c) = counts.lock() {
            *c.entry(id.to_owned()).or_default() += 1;
        }
        waiting_gauge(id).increment(1.0);
        Waiting { counts, id }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        waiting_gauge(self.id).decrement(1.0);
        if let Ok(mut c) = self.counts.lock()
            && let Some(n) = c.get_mut(self.id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(self.id);
            }
        }
    }
}

impl ModelRegistry {
    /// A card for a model called `id`.
    pub fn card(id: &str, owned_by: &str) -> ModelCard {
        ModelCard {
            id: id.to_owned(),
            object: "model".to_owned(),
            created: crate::openai::unix_now(),
            owned_by: owned_by.to_owned(),
        }
    }

    pub fn insert(&mut self, id: impl Into<String>, owned_by: &str, engine: Arc<dyn Engine>) {
        let id = id.into();
        let card = Self::card(&id, owned_by);
        if let Ok(mut models) = self.models.write() {
            models.insert(id, ServedModel { card, engine });
        }
    }

    /// Serves exactly `models` from now on.
    pub fn replace(&self, models: BTreeMap<String, ServedModel>) {
        if let Ok(mut current) = self.models.write() {
            *current = models;
        }
        self.changed.notify_waiters();
    }

    /// Waits up to `wait` for `id` to be served (a model scaling up from zero): the
    /// model, or `None` when the wait ran out.
    pub async fn wait_for(&self, id: &str, wait: std::time::Duration) -> Option<ServedModel> {
        let deadline = tokio::time::Instant::now() + wait;
        let _counted = Waiting::enter(&self.waiting, id);
        loop {
            let changed = self.changed.notified();
            if let Ok(served) = self.get(id) {
                return Some(served);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.get(id).ok();
            }
        }
    }

    /// Requests in the waiting room now, per model (none listed for none).
    #[must_use]
    pub fn waiting(&self) -> BTreeMap<String, u64> {
        self.waiting.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// The model by name, or 404 `model_not_found`.
    pub fn get(&self, id: &str) -> Result<ServedModel, ApiError> {
        self.models
            .read()
            .ok()
            .and_then(|m| m.get(id).cloned())
            .ok_or_else(|| ApiError::ModelNotFound(id.to_owned()))
    }

    pub fn cards(&self) -> Vec<ModelCard> {
        self.models
            .read()
            .map(|m| m.values().map(|m| m.card.clone()).collect())
            .unwrap_or_default()
    }

    pub fn engines(&self) -> Vec<(String, ServedModel)> {
        self.models
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.models.read().map(|m| m.len()).unwrap_or(0)
    }
}

/// Where the weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder with `config.json`, `*.safetensors`, `tokenizer.json` and a chat template.
    Local(PathBuf),
    /// A Hugging Face hub id such as `Qwen/Qwen2.5-0.5B-Instruct` (downloaded on first use).
    Hub(String),
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "local folder {}", p.display()),
            Self::Hub(id) => write!(f, "hub model {id}"),
        }
    }
}

/// `sha256:<hex>` over a local model folder's `*.safetensors` files, in name order
/// (each file's name, then its bytes), read off the async threads. `None` for a hub
/// id (mistral.rs resolves its files) or an unreadable folder.
pub async fn digest_of(source: &ModelSource) -> Option<String> {
    let ModelSource::Local(path) = source else {
        return None;
    };
    let path = path.clone();
    tokio::task::spawn_blocking(move || folder_digest(&path).ok())
        .await
        .ok()
        .flatten()
}

fn folder_digest(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        let mut reader = std::io::BufReader::new(std::fs::File::open(&file)?);
        std::io::copy(&mut reader, &mut HashWriter(&mut hasher))?;
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Lets `io::copy` stream a file into a hasher.
struct HashWriter<'a, H>(&'a mut H);

impl<H: sha2::Digest> std::io::Write for HashWriter<'_, H> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How the embedded engine runs.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Run on the CPU even when the build has CUDA.
    pub force_cpu: bool,
    /// Sequences mistral.rs schedules at once.
    pub max_num_seqs: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            force_cpu: !cfg!(feature = "cuda"),
            max_num_seqs: 32,
        }
    }
}
