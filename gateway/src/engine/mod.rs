//! Engines: what actually produces tokens. Handlers see them only through [`Engine`].
//!
//! - [`embedded::EmbeddedEngine`]: mistral.rs in the gateway process.
//! - [`external::ExternalEngine`]: any OpenAI-compatible upstream, including the
//!   mistral.rs pods the operator deploys.
//!
//! Engines always report usage (an external engine is asked for it even when the
//! caller did not ask), so the gateway can meter every request; the handler decides
//! whether the caller sees the usage chunk of a stream.

pub mod embedded;
pub mod external;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

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

/// The models served, by the name callers use.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, ServedModel>,
}

impl ModelRegistry {
    pub fn insert(&mut self, id: impl Into<String>, owned_by: &str, engine: Arc<dyn Engine>) {
        let id = id.into();
        let card = ModelCard {
            id: id.clone(),
            object: "model".to_owned(),
            created: crate::openai::unix_now(),
            owned_by: owned_by.to_owned(),
        };
        self.models.insert(id, ServedModel { card, engine });
    }

    /// The model by name, or 404 `model_not_found`.
    pub fn get(&self, id: &str) -> Result<&ServedModel, ApiError> {
        self.models
            .get(id)
            .ok_or_else(|| ApiError::ModelNotFound(id.to_owned()))
    }

    pub fn cards(&self) -> impl Iterator<Item = &ModelCard> {
        self.models.values().map(|m| &m.card)
    }

    pub fn engines(&self) -> impl Iterator<Item = (&String, &ServedModel)> {
        self.models.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }
}
