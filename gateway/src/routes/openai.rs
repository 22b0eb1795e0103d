//! The OpenAI-compatible handlers: one completion handler for chat and text, embeddings,
//! and the model list.
//!
//! Each inference request: parse and validate, find the model (404), ask admission, call
//! the engine, and keep a [`UsageGuard`] alive until the answer has been sent.

use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::admission::{AdmissionRequest, Caller, Endpoint};
use crate::app::AppState;
use crate::engine::{Engine, PromptRef, Reply, ServedModel};
use crate::error::{ApiError, ApiJson};
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingsRequest,
    ModelCard, ModelList, TextCompletion, Usage,
};
use crate::sse::Chunk;
use crate::usage::{Outcome, UsageGuard};

fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), ToOwned::to_owned)
}

struct Started {
    request_id: String,
    caller: Caller,
    at: Instant,
}

fn started(headers: &axum::http::HeaderMap, caller: Option<Extension<Caller>>) -> Started {
    Started {
        request_id: request_id(headers),
        caller: caller.map_or_else(Caller::anonymous, |Extension(c)| c),
        at: Instant::now(),
    }
}

/// What admission gives a request to run with.
struct Admitted {
    served: ServedModel,
    guard: UsageGuard,
    /// `x-ratelimit-*` headers for the response.
    headers: Vec<(&'static str, String)>,
    /// `max_tokens` to enforce when the request set none.
    allowance: Option<u32>,
}

/// Adds the rate-limit headers to a response.
fn with_headers(mut response: Response, headers: &[(&'static str, String)]) -> Response {
    for (name, value) in headers {
        if let Ok(value) = axum::http::HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}

fn json_size<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// Finds the model and admits the request; returns the guard that meters it.
async fn admit(
    state: &AppState,
    start: Started,
    model: &str,
    endpoint: Endpoint,
    max_completion_tokens: Option<u64>,
    prompt: PromptRef<'_>,
) -> Result<Admitted, ApiError> {
    let served = state.models.get(model)?;
    let body_bytes = match prompt {
        PromptRef::Chat(req) => json_size(req),
        PromptRef::Completion(req) => json_size(req),
        PromptRef::Embeddings(req) => json_size(req),
    };
    let prompt_tokens = served.engine.count_prompt_tokens(prompt).await;
    // Room in the usage buffer first: a backed-up metering database slows callers
    // down instead of losing their records.
    let slot = state.usage.slot().await?;
    let reservation = state
        .admission
        .admit(&AdmissionRequest {
            request_id: &start.request_id,
            caller: &start.caller,
            model,
            endpoint,
            max_completion_tokens,
            body_bytes,
            prompt_tokens,
        })
        .await?;
    let headers = reservation.headers();
    let allowance = reservation
        .completion_allowance()
        .map(|a| u32::try_from(a).unwrap_or(u32::MAX));
    let mut guard = UsageGuard::new(
        start.request_id,
        start.caller,
        model.to_owned(),
        served.engine.kind(),
        endpoint,
        start.at,
        reservation,
        state.usage.clone(),
    );
    guard.set_slot(slot);
    Ok(Admitted {
        served,
        guard,
        headers,
        allowance,
    })
}

/// A whole completion: the gateway stamps its id and model and sets the usage it metered.
pub trait Completed: Serialize {
    fn reported_usage(&self) -> Option<Usage>;
    fn finish(&mut self, id: String, model: String, usage: Usage);
}

impl Completed for ChatCompletion {
    fn reported_usage(&self) -> Option<Usage> {
        self.usage
    }
    fn finish(&mut self, id: String, model: String, usage: Usage) {
        self.id = id;
        self.model = model;
        self.usage = Some(usage);
    }
}

impl Completed for TextCompletion {
    fn reported_usage(&self) -> Option<Usage> {
        self.usage
    }
    fn finish(&mut self, id: String, model: String, usage: Usage) {
        self.id = id;
        self.model = model;
        self.usage = Some(usage);
    }
}

/// What the completion handler needs of a chat or a text completion request.
#[async_trait]
pub trait CompletionKind: DeserializeOwned + Send + Sync + 'static {
    type Full: Completed + Send;
    type Chunk: Chunk;
    const ENDPOINT: Endpoint;
    /// The prefix of the response id (`chatcmpl`, `cmpl`).
    const ID_PREFIX: &'static str;

    fn validate(&self) -> Result<(), ApiError>;
    fn model(&self) -> &str;
    /// `max_tokens` (or `max_completion_tokens`), if set.
    fn max_tokens(&self) -> Option<u32>;
    /// How many choices it asks for.
    fn choices(&self) -> u32;
    /// Enforces `max_tokens` when the request set none.
    fn set_max_tokens(&mut self, max: Option<u32>);
    fn include_usage(&self) -> bool;
    fn prompt(&self) -> PromptRef<'_>;
    async fn run(self, engine: &dyn Engine) -> Result<Reply<Self::Full, Self::Chunk>, ApiError>;
}

#[async_trait]
impl CompletionKind for ChatCompletionRequest {
    type Full = ChatCompletion;
    type Chunk = ChatCompletionChunk;
    const ENDPOINT: Endpoint = Endpoint::ChatCompletions;
    const ID_PREFIX: &'static str = "chatcmpl";

    fn validate(&self) -> Result<(), ApiError> {
        ChatCompletionRequest::validate(self)
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn max_tokens(&self) -> Option<u32> {
        ChatCompletionRequest::max_tokens(self)
    }
    fn choices(&self) -> u32 {
        self.sampling.choices()
    }
    fn set_max_tokens(&mut self, max: Option<u32>) {
        self.max_completion_tokens = max;
    }
    fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
    fn prompt(&self) -> PromptRef<'_> {
        PromptRef::Chat(self)
    }
    async fn run(self, engine: &dyn Engine) -> Result<Reply<Self::Full, Self::Chunk>, ApiError> {
        engine.chat(self).await
    }
}

#[async_trait]
impl CompletionKind for CompletionRequest {
    type Full = TextCompletion;
    type Chunk = TextCompletion;
    const ENDPOINT: Endpoint = Endpoint::Completions;
    const ID_PREFIX: &'static str = "cmpl";

    fn validate(&self) -> Result<(), ApiError> {
        CompletionRequest::validate(self)
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn max_tokens(&self) -> Option<u32> {
        self.max_tokens
    }
    fn choices(&self) -> u32 {
        self.sampling.choices()
    }
    fn set_max_tokens(&mut self, max: Option<u32>) {
        self.max_tokens = max;
    }
    fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
    fn prompt(&self) -> PromptRef<'_> {
        PromptRef::Completion(self)
    }
    async fn run(self, engine: &dyn Engine) -> Result<Reply<Self::Full, Self::Chunk>, ApiError> {
        engine.completion(self).await
    }
}

/// `POST /v1/chat/completions` and `POST /v1/completions`.
pub async fn complete<R: CompletionKind>(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
    ApiJson(mut req): ApiJson<R>,
) -> Result<Response, ApiError> {
    let start = started(&headers, caller);
    req.validate()?;
    let max = req.max_tokens().map(|m| u64::from(m) * u64::from(req.choices()));
    let model = req.model().to_owned();
    let Admitted {
        served,
        mut guard,
        headers,
        allowance,
    } = admit(&state, start, &model, R::ENDPOINT, max, req.prompt()).await?;
    if req.max_tokens().is_none() {
        req.set_max_tokens(allowance);
    }
    let id = format!("{}-{}", R::ID_PREFIX, uuid::Uuid::new_v4().simple());
    let include_usage = req.include_usage();
    let result = match req.run(served.engine.as_ref()).await {
        Ok(Reply::Full(mut done)) => {
            if let Some(usage) = done.reported_usage() {
                guard.add_reported(usage);
            }
            done.finish(id, model, guard.usage());
            guard.finish(Outcome::Completed);
            Ok(Json(done).into_response())
        }
        Ok(Reply::Stream(chunks)) => Ok(crate::sse::respond(
            chunks,
            guard,
            id,
            model,
            include_usage,
            state.settings.keep_alive,
        )),
        Err(e) => {
            guard.finish(Outcome::Failed(e.metric_label()));
            Err(e)
        }
    };
    result.map(|response| with_headers(response, &headers))
}

/// `POST /v1/embeddings`
pub async fn embeddings(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let start = started(&headers, caller);
    let model = req.model.clone();
    let Admitted {
        served,
        mut guard,
        headers,
        ..
    } = admit(
        &state,
        start,
        &model,
        Endpoint::Embeddings,
        Some(0),
        PromptRef::Embeddings(&req),
    )
    .await?;
    let result = match served.engine.embeddings(req).await {
        Ok(mut done) => {
            guard.add_reported(done.usage);
            done.model = model;
            guard.finish(Outcome::Completed);
            Ok(Json(done).into_response())
        }
        Err(e) => {
            guard.finish(Outcome::Failed(e.metric_label()));
            Err(e)
        }
    };
    result.map(|response| with_headers(response, &headers))
}

/// `GET /v1/models`
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".to_owned(),
        data: state.models.cards(),
    })
}

/// `GET /v1/models/{id}`
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    Ok(Json(state.models.get(&id)?.card))
}
