//! The embedded engine: mistral.rs running inside the gateway process.
//!
//! Requests go straight to mistral.rs's scheduler as `NormalRequest`s, so every
//! OpenAI parameter it understands (sampling, stop sequences, `n`, JSON schema
//! constraints) reaches it, and its usage figures come back with the answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use either::Either;
use futures::StreamExt;
use indexmap::IndexMap;
use mistralrs::core::{MessageContent, RequestMessage, TokenizationRequest};
use mistralrs::{
    Constraint, ModelDType, NormalRequest, Request, Response, SamplingParams, StopTokens, TextModelBuilder,
};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc;

use super::{ChunkStream, Engine, PromptRef, Reply};
use crate::error::ApiError;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, Prompt, ResponseFormat,
    Sampling, TextCompletion, Usage, unix_now,
};

pub use super::{EmbeddedOptions, ModelSource};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model folder {path} does not exist")]
    MissingFolder { path: PathBuf },
    #[error(
        "model folder {path} has no {file}; a model folder needs config.json, tokenizer.json and *.safetensors"
    )]
    MissingFile { path: PathBuf, file: &'static str },
    #[error("mistral.rs could not load {source_desc}: {message}")]
    Engine { source_desc: String, message: String },
}

/// mistral.rs in-process, serving one text model.
pub struct EmbeddedEngine {
    model: Arc<mistralrs::Model>,
    source: ModelSource,
    digest: Option<String>,
    /// The sequences mistral.rs runs at once; more wait in its own queue.
    max_num_seqs: usize,
    /// One request constrained by a grammar or JSON schema runs at a time: mistral.rs
    /// 0.8.1 corrupts its KV cache when it batches constrained sequences whose caches
    /// have grown to different sizes ("shape mismatch" in `clone_in_cache`, or a
    /// capacity above the model's length), failing every request in flight. Other
    /// requests batch with it as usual.
    constrained: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for EmbeddedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedEngine")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl EmbeddedEngine {
    /// Loads a text model. A local folder is checked first so that a typo gives a
    /// clear message rather than a hub lookup.
    pub async fn load(source: ModelSource, options: &EmbeddedOptions) -> Result<Self, LoadError> {
        let (model, digest) = load_model(&source, options, &[], "text", |id| async move {
            let mut builder = TextModelBuilder::new(id)
                .with_max_num_seqs(options.max_num_seqs)
                .with_dtype(ModelDType::Auto);
            if options.force_cpu {
                builder = builder.with_force_cpu();
            }
            builder.build().await
        })
        .await?;
        Ok(Self {
            model: Arc::new(model),
            source,
            digest,
            max_num_seqs: options.max_num_seqs,
            constrained: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    async fn send(&self, request: NormalRequest) -> Result<(), ApiError> {
        let sender = self
            .model
            .inner()
            .get_sender(None)
            .map_err(|e| ApiError::Unavailable(format!("embedded engine unavailable: {e:?}")))?;
        sender
            .send(Request::Normal(Box::new(request)))
            .await
            .map_err(|_| ApiError::Unavailable("embedded engine has stopped".to_owned()))
    }

    async fn count_prompt_tokens(&self, text: String) -> Result<u64, ApiError> {
        self.tokenize(Either::Right(text), false).await
    }

    /// Tokens of `text` (a prompt, or chat messages with the model's chat template and
    /// the assistant's turn opened when `generation_prompt`).
    async fn tokenize(
        &self,
        text: Either<Vec<IndexMap<String, MessageContent>>, String>,
        generation_prompt: bool,
    ) -> Result<u64, ApiError> {
        let (tx, mut rx) = mpsc::channel(1);
        let request = Request::Tokenize(TokenizationRequest {
            text,
            tools: None,
            add_generation_prompt: generation_prompt,
            add_special_tokens: true,
            enable_thinking: None,
            reasoning_effort: None,
            response: tx,
        });
        let sender = self
            .model
            .inner()
            .get_sender(None)
            .map_err(|e| ApiError::Unavailable(format!("embedded engine unavailable: {e:?}")))?;
        sender
            .send(request)
            .await
            .map_err(|_| ApiError::Unavailable("embedded engine has stopped".to_owned()))?;
        match rx.recv().await {
            Some(Ok(tokens)) => Ok(tokens.len() as u64),
            Some(Err(e)) => Err(ApiError::Engine(format!("tokenizer failed: {e}"))),
            None => Err(ApiError::Engine("tokenizer gave no answer".to_owned())),
        }
    }
}

/// Loads a model in process with `build` (given the folder's path or the hub id): a
/// local folder is checked for its files (and `needs`) first; the digest of its
/// weights is worked out once it is loaded.
pub(super) async fn load_model<Fut>(
    source: &ModelSource,
    options: &EmbeddedOptions,
    needs: &[&'static str],
    kind: &'static str,
    build: impl FnOnce(String) -> Fut,
) -> Result<(mistralrs::Model, Option<String>), LoadError>
where
    Fut: std::future::Future<Output = anyhow::Result<mistralrs::Model>>,
{
    let id = match source {
        ModelSource::Local(path) => {
            check_folder(path)?;
            if let Some(file) = needs.iter().find(|f| !path.join(f).is_file()) {
                return Err(LoadError::MissingFile {
                    path: path.clone(),
                    file,
                });
            }
            path.to_string_lossy().into_owned()
        }
        ModelSource::Hub(id) => id.clone(),
    };
    tracing::info!(%source, kind, force_cpu = options.force_cpu, "loading an in-process model");
    let started = std::time::Instant::now();
    let model = build(id).await.map_err(|e| LoadError::Engine {
        source_desc: source.to_string(),
        message: format!("{e:#}"),
    })?;
    let digest = super::digest_of(source).await;
    tracing::info!(%source, kind, elapsed_ms = started.elapsed().as_millis(), ?digest, "in-process model loaded");
    Ok((model, digest))
}

fn check_folder(path: &Path) -> Result<(), LoadError> {
    if !path.is_dir() {
        return Err(LoadError::MissingFolder {
            path: path.to_owned(),
        });
    }
    for file in ["config.json", "tokenizer.json"] {
        if !path.join(file).is_file() {
            return Err(LoadError::MissingFile {
                path: path.to_owned(),
                file,
            });
        }
    }
    Ok(())
}

fn sampling_params(sampling: &Sampling, max_tokens: Option<u32>) -> SamplingParams {
    let mut params = SamplingParams::neutral();
    params.temperature = sampling.temperature;
    params.top_p = sampling.top_p;
    params.frequency_penalty = sampling.frequency_penalty;
    params.presence_penalty = sampling.presence_penalty;
    params.max_len = max_tokens.map(|m| m as usize);
    params.n_choices = sampling.choices() as usize;
    params.stop_toks = sampling.stop.clone().map(|s| StopTokens::Seqs(s.into_vec()));
    // mistral.rs has one sampler seed per model, not per request; `seed` is accepted
    // and passed on by external engines only.
    params
}

fn constraint(format: Option<&ResponseFormat>) -> Constraint {
    match format {
        None | Some(ResponseFormat::Text) => Constraint::None,
        Some(ResponseFormat::JsonObject) => Constraint::JsonSchema(json!({"type": "object"})),
        Some(ResponseFormat::JsonSchema { json_schema }) => Constraint::JsonSchema(
            json_schema
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object"})),
        ),
    }
}

fn normal_request(
    messages: RequestMessage,
    sampling_params: SamplingParams,
    constraint: Constraint,
    is_streaming: bool,
    response: mpsc::Sender<Response>,
) -> NormalRequest {
    NormalRequest {
        messages,
        sampling_params,
        response,
        return_logprobs: false,
        is_streaming,
        id: 0,
        constraint,
        suffix: None,
        tools: None,
        tool_choice: None,
        logits_processors: None,
        return_raw_logits: false,
        web_search_options: None,
        model_id: None,
        truncate_sequence: false,
    }
}

/// Re-reads one of mistral.rs's OpenAI-shaped responses as our wire type.
fn convert<T: DeserializeOwned>(value: &impl serde::Serialize) -> Result<T, ApiError> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::Engine(format!("unexpected engine response: {e}")))
}

fn response_error(response: Response) -> ApiError {
    match response {
        Response::ValidationError(e) => ApiError::invalid(e.to_string()),
        Response::InternalError(e) => ApiError::Engine(format!("engine error: {e}")),
        Response::ModelError(msg, _) | Response::CompletionModelError(msg, _) => {
            ApiError::Engine(format!("model error: {msg}"))
        }
        _ => ApiError::Engine("unexpected engine response".to_owned()),
    }
}

fn chat_messages(req: &ChatCompletionRequest) -> Result<RequestMessage, ApiError> {
    Ok(RequestMessage::Chat {
        messages: message_list(req)?,
        enable_thinking: None,
        reasoning_effort: None,
    })
}

fn message_list(req: &ChatCompletionRequest) -> Result<Vec<IndexMap<String, MessageContent>>, ApiError> {
    let mut messages = Vec::with_capacity(req.messages.len());
    for message in &req.messages {
        let text = match &message.content {
            Some(content) => content.text()?,
            None => String::new(),
        };
        let mut entry = IndexMap::new();
        entry.insert("role".to_owned(), Either::Left(message.role.clone()));
        entry.insert("content".to_owned(), Either::Left(text));
        messages.push(entry);
    }
    Ok(messages)
}

#[async_trait]
impl Engine for EmbeddedEngine {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn max_running(&self) -> Option<usize> {
        Some(self.max_num_seqs)
    }

    fn digest(&self) -> Option<String> {
        self.digest.clone()
    }

    async fn count_prompt_tokens(&self, prompt: PromptRef<'_>) -> Option<u64> {
        let counted = match prompt {
            PromptRef::Chat(req) => match message_list(req) {
                Ok(messages) => self.tokenize(Either::Left(messages), true).await,
                Err(e) => Err(e),
            },
            PromptRef::Completion(req) => match &req.prompt {
                Prompt::Text(text) => self.tokenize(Either::Right(text.clone()), false).await,
                Prompt::Texts(texts) if texts.len() == 1 => {
                    self.tokenize(Either::Right(texts[0].clone()), false).await
                }
                _ => return None,
            },
            PromptRef::Embeddings(_) => return None,
        };
        counted
            .inspect_err(|e| tracing::debug!(error = %e, "could not count the prompt; using the bound"))
            .ok()
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<Reply<ChatCompletion, ChatCompletionChunk>, ApiError> {
        let messages = chat_messages(&req)?;
        let params = sampling_params(&req.sampling, req.max_tokens());
        let constraint = constraint(req.response_format.as_ref());
        // Held until the answer has come (or the stream ends): see `constrained`.
        let permit = match constraint {
            Constraint::None => None,
            _ => Some(
                self.constrained
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ApiError::Unavailable("embedded engine has stopped".to_owned()))?,
            ),
        };
        let stream = req.is_stream();
        let (tx, mut rx) = mpsc::channel(16);
        self.send(normal_request(messages, params, constraint, stream, tx))
            .await?;
        if !stream {
            let answer = match rx.recv().await {
                Some(Response::Done(done)) => Ok(Reply::Full(convert(&done)?)),
                Some(other) => Err(response_error(other)),
                None => Err(ApiError::Engine("engine gave no answer".to_owned())),
            };
            drop(permit);
            return answer;
        }
        let choices = req.sampling.choices() as usize;
        let chunks = futures::stream::unfold(
            (rx, vec![false; choices], permit),
            |(mut rx, mut finished, permit)| async move {
                if finished.iter().all(|f| *f) {
                    return None;
                }
                let item = match rx.recv().await? {
                    Response::Chunk(chunk) => {
                        for choice in &chunk.choices {
                            if choice.finish_reason.is_some()
                                && let Some(f) = finished.get_mut(choice.index)
                            {
                                *f = true;
                            }
                        }
                        convert::<ChatCompletionChunk>(&chunk)
                    }
                    // A whole answer on a stream (mistral.rs may send one for a
                    // request that ended before producing any chunk).
                    Response::Done(done) => {
                        finished.iter_mut().for_each(|f| *f = true);
                        convert::<ChatCompletion>(&done).map(done_as_chunk)
                    }
                    other => {
                        finished.iter_mut().for_each(|f| *f = true);
                        Err(response_error(other))
                    }
                };
                Some((item, (rx, finished, permit)))
            },
        );
        Ok(Reply::Stream(chunks.boxed()))
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<Reply<TextCompletion, TextCompletion>, ApiError> {
        let text = match &req.prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Texts(texts) if texts.len() == 1 => texts[0].clone(),
            _ => {
                return Err(ApiError::invalid_param(
                    "prompt",
                    "the embedded engine takes one text prompt per request",
                ));
            }
        };
        let params = sampling_params(&req.sampling, req.max_tokens);
        let stream = req.is_stream();
        let prompt_tokens = if stream {
            self.count_prompt_tokens(text.clone()).await?
        } else {
            0
        };
        let messages = RequestMessage::Completion {
            text,
            echo_prompt: req.echo.unwrap_or(false),
            best_of: None,
        };
        let (tx, mut rx) = mpsc::channel(16);
        self.send(normal_request(messages, params, Constraint::None, stream, tx))
            .await?;
        if !stream {
            return match rx.recv().await {
                Some(Response::CompletionDone(done)) => Ok(Reply::Full(convert(&done)?)),
                Some(other) => Err(response_error(other)),
                None => Err(ApiError::Engine("engine gave no answer".to_owned())),
            };
        }
        Ok(Reply::Stream(completion_stream(
            rx,
            req.sampling.choices() as usize,
            prompt_tokens,
        )))
    }
}

/// Text-completion chunks from mistral.rs carry no usage; the engine counts the
/// generated pieces itself and sends usage on a last, choice-less chunk.
fn completion_stream(
    rx: mpsc::Receiver<Response>,
    choices: usize,
    prompt_tokens: u64,
) -> ChunkStream<TextCompletion> {
    struct State {
        rx: mpsc::Receiver<Response>,
        finished: Vec<bool>,
        completion_tokens: u64,
        last: Option<(String, String, u64)>,
        done: bool,
    }
    let state = State {
        rx,
        finished: vec![false; choices],
        completion_tokens: 0,
        last: None,
        done: false,
    };
    futures::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        let all_finished = st.finished.iter().all(|f| *f);
        let next = if all_finished { None } else { st.rx.recv().await };
        let item = match next {
            Some(Response::CompletionChunk(chunk)) => {
                st.completion_tokens += chunk.choices.len() as u64;
                for choice in &chunk.choices {
                    if choice.finish_reason.is_some()
                        && let Some(f) = st.finished.get_mut(choice.index)
                    {
                        *f = true;
                    }
                }
                st.last = Some((chunk.id.clone(), chunk.model.clone(), unix_now()));
                convert::<TextCompletion>(&chunk)
            }
            Some(Response::CompletionDone(done)) => {
                st.done = true;
                convert::<TextCompletion>(&done)
            }
            Some(other) => {
                st.done = true;
                Err(response_error(other))
            }
            None => {
                st.done = true;
                let (id, model, created) = st.last.clone().unwrap_or_default();
                Ok(TextCompletion {
                    id,
                    object: "text_completion".to_owned(),
                    created,
                    model,
                    choices: Vec::new(),
                    usage: Some(Usage::new(prompt_tokens, st.completion_tokens)),
                    extra: serde_json::Map::new(),
                })
            }
        };
        Some((item, st))
    })
    .boxed()
}

fn done_as_chunk(done: ChatCompletion) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: done.id,
        object: "chat.completion.chunk".to_owned(),
        created: done.created,
        model: done.model,
        choices: done
            .choices
            .into_iter()
            .map(|c| crate::openai::ChunkChoice {
                index: c.index,
                delta: c.message,
                finish_reason: c.finish_reason,
                logprobs: None,
            })
            .collect(),
        usage: done.usage,
        extra: serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_folder_is_a_clear_error() {
        let err = check_folder(Path::new("/definitely/not/here")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn json_object_becomes_a_schema_constraint() {
        assert!(matches!(
            constraint(Some(&ResponseFormat::JsonObject)),
            Constraint::JsonSchema(_)
        ));
    }
}
