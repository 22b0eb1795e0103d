//! The OpenAI-compatible handlers: one completion handler for chat and text, embeddings,
//! and the model list.
//!
//! Each inference request: parse and validate, find the model (404), ask admission, call
//! the engine, and keep a [`UsageGuard`] alive until the answer has been sent.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::admission::{AdmissionRequest, Caller, CallerKind, Endpoint, Overflow};
use crate::app::AppState;
use crate::engine::external::ExternalEngine;
use crate::engine::{Engine, PromptRef, Reply, ServedModel};
use crate::error::{ApiError, ApiJson};
use crate::federation::{COOP_HEADER, ENGINE_HEADER, Federation, MODEL_HEADER};
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingsRequest,
    EmbeddingsResponse, ModelCard, ModelList, TextCompletion, Usage,
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

/// Where an admitted request runs.
enum Place {
    Here(ServedModel),
    /// At a peer co-op (federation).
    Peer(Arc<Federation>),
}

/// What admission gives a request to run with.
struct Admitted {
    place: Place,
    request_id: String,
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

/// Whether a request for `model` may go to a peer co-op: only a member's that is not
/// local only, only for chat and text completions, and only when a peer serves the model.
/// Whether `model` is one of the co-op's models run as pods, which may have no replica
/// ready yet (see `Coop::scales`).
fn scales_from_zero(state: &AppState, model: &str) -> bool {
    state
        .accounts
        .as_ref()
        .is_some_and(|a| a.coop.current().scales(model))
}

fn overflow(
    state: &AppState,
    caller: &Caller,
    model: &str,
    endpoint: Endpoint,
    here: Result<&ServedModel, &ApiError>,
) -> Result<Overflow, ApiError> {
    let elsewhere =
        endpoint != Endpoint::Embeddings && state.federation.as_ref().is_some_and(|f| f.can_serve(model));
    let may_leave = caller.kind == CallerKind::Member && !caller.local_only;
    Ok(match (here, elsewhere, may_leave) {
        (Ok(_), true, true) => Overflow::After(
            state
                .federation
                .as_ref()
                .map_or(std::time::Duration::ZERO, |f| f.overflow_after()),
        ),
        (Ok(_), _, _) => Overflow::Never,
        (Err(_), true, true) => Overflow::Only,
        (Err(_), true, false) => {
            return Err(ApiError::PermissionDenied(format!(
                "The model `{model}` is served only by peer co-ops, and {}'s prompts stay in this co-op.",
                caller.id
            )));
        }
        (Err(_), false, true) if state.federation.as_ref().is_some_and(|f| f.borrows(model)) => {
            return Err(ApiError::Unavailable(format!(
                "The model `{model}` is not served here, and no peer co-op that serves it can be reached now; retry later."
            )));
        }
        // One of the co-op's pod models with no replica ready: the waiting room (in `admit`).
        (Err(_), false, _) if scales_from_zero(state, model) => Overflow::Never,
        (Err(_), false, _) => return Err(ApiError::ModelNotFound(model.to_owned())),
    })
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
    let here = state.models.get(model);
    let overflow = overflow(state, &start.caller, model, endpoint, here.as_ref())?;
    let body_bytes = match prompt {
        PromptRef::Chat(req) => json_size(req),
        PromptRef::Completion(req) => json_size(req),
        PromptRef::Embeddings(req) => json_size(req),
    };
    let prompt_tokens = match &here {
        Ok(served) => served.engine.count_prompt_tokens(prompt).await,
        Err(_) => None,
    };
    let engine_max_running = here.as_ref().ok().and_then(|s| s.engine.max_running());
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
            overflow,
            engine_max_running,
        })
        .await?;
    // The waiting room: a model of the co-op with no replica ready yet (scaling up
    // from zero) is waited for, once the caller is admitted (a caller over quota has
    // had its 429 already); past the wait, 503 with Retry-After.
    let here = match here {
        Err(ApiError::ModelNotFound(_)) if !reservation.at_peer() && scales_from_zero(state, model) => {
            let served = state.models.wait_for(model, state.settings.waiting_room).await;
            served.ok_or_else(|| ApiError::NoCapacityYet {
                message: format!(
                    "The model `{model}` has no replica ready yet (it is scaling up); retry shortly."
                ),
                retry_after: 10,
            })
        }
        other => other,
    };
    let place = match (reservation.at_peer(), state.federation.clone(), here) {
        (true, Some(federation), _) => Place::Peer(federation),
        (false, _, Ok(served)) => Place::Here(served),
        (_, _, Err(e)) => return Err(e),
        (true, None, Ok(served)) => Place::Here(served),
    };
    let engine_kind = match &place {
        Place::Here(served) => served.engine.kind(),
        Place::Peer(_) => "peer",
    };
    let headers = reservation.headers();
    let allowance = reservation
        .completion_allowance()
        .map(|a| u32::try_from(a).unwrap_or(u32::MAX));
    let request_id = start.request_id.clone();
    let lent_to = (start.caller.kind == CallerKind::Peer).then(|| start.caller.id.clone());
    let mut guard = UsageGuard::new(
        start.request_id,
        start.caller,
        model.to_owned(),
        engine_kind,
        endpoint,
        start.at,
        reservation,
        state.usage.clone(),
    );
    guard.set_slot(slot);
    if let Some(peer) = lent_to
        && let Some(accounts) = &state.accounts
    {
        let price = accounts
            .coop
            .current()
            .peers
            .get(&peer)
            .map(crate::federation::price_of)
            .unwrap_or_default();
        guard.set_peer(peer, price);
    }
    Ok(Admitted {
        place,
        request_id,
        guard,
        headers,
        allowance,
    })
}

/// The provenance headers of an answer produced here.
fn provenance_here(state: &AppState, model: &str, engine: &dyn Engine) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (MODEL_HEADER, model.to_owned()),
        (ENGINE_HEADER, engine.kind().to_owned()),
    ];
    if let Some(accounts) = &state.accounts {
        let name = accounts.coop.current().name.clone();
        if !name.is_empty() {
            out.push((COOP_HEADER, name));
        }
    }
    out
}

/// The provenance a peer's answer gave (its co-op, model and engine), else its name.
fn provenance_of_peer(
    headers: &reqwest::header::HeaderMap,
    peer: &str,
    model: &str,
) -> Vec<(&'static str, String)> {
    let get = |name: &str, default: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| default.to_owned(), ToOwned::to_owned)
    };
    vec![
        (COOP_HEADER, get(COOP_HEADER, peer)),
        (MODEL_HEADER, get(MODEL_HEADER, model)),
        (ENGINE_HEADER, get(ENGINE_HEADER, "peer")),
    ]
}

/// Whether a peer's failure means it is down (skipped until it answers again), rather
/// than a refusal of this one request.
fn peer_is_down(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::BadGateway(_) | ApiError::Timeout(_) | ApiError::Unavailable(_)
    ) || matches!(e, ApiError::Upstream { status, .. } if *status >= 500)
}

/// Sends the request to the best peer that takes it; a peer that fails before
/// answering is marked down and the next is tried. Returns the answer and its
/// provenance. A stream that breaks later ends with an error event (it is never moved)
/// and marks its peer down.
async fn forward<R: CompletionKind>(
    federation: &Arc<Federation>,
    req: R,
    request_id: &str,
    guard: &mut UsageGuard,
) -> Result<(Reply<R::Full, R::Chunk>, Vec<(&'static str, String)>), ApiError> {
    let model = req.model().to_owned();
    let mut last = None;
    for route in federation.routes(&model) {
        let extra = [
            (
                "authorization",
                format!("Bearer {}", federation.token_for(&route.peer)?),
            ),
            ("x-request-id", request_id.to_owned()),
        ];
        match req.clone().forward(&route.engine, &extra).await {
            Ok((reply, headers)) => {
                guard.set_peer(route.peer.clone(), route.price);
                let reply = match reply {
                    Reply::Full(full) => Reply::Full(full),
                    Reply::Stream(chunks) => {
                        let (federation, peer) = (federation.clone(), route.peer.clone());
                        Reply::Stream(futures::StreamExt::boxed(futures::StreamExt::inspect(
                            chunks,
                            move |item| {
                                if let Err(e) = item {
                                    federation.failed(&peer, &e.to_string());
                                }
                            },
                        )))
                    }
                };
                return Ok((reply, provenance_of_peer(&headers, &route.peer, &model)));
            }
            Err(e) => {
                if peer_is_down(&e) {
                    federation.failed(&route.peer, &e.to_string());
                }
                tracing::info!(peer = %route.peer, error = %e, "peer did not take the request");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        ApiError::Unavailable(format!(
            "No peer co-op can serve `{model}` now, and it is not served here."
        ))
    }))
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
pub trait CompletionKind: DeserializeOwned + Clone + Send + Sync + 'static {
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
    /// Sends the request to a peer's gateway with `extra` headers.
    async fn forward(
        self,
        engine: &ExternalEngine,
        extra: &[(&'static str, String)],
    ) -> Result<(Reply<Self::Full, Self::Chunk>, reqwest::header::HeaderMap), ApiError>;
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
    async fn forward(
        self,
        engine: &ExternalEngine,
        extra: &[(&'static str, String)],
    ) -> Result<(Reply<Self::Full, Self::Chunk>, reqwest::header::HeaderMap), ApiError> {
        engine.chat_with(self, extra).await
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
    async fn forward(
        self,
        engine: &ExternalEngine,
        extra: &[(&'static str, String)],
    ) -> Result<(Reply<Self::Full, Self::Chunk>, reqwest::header::HeaderMap), ApiError> {
        engine.completion_with(self, extra).await
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
        place,
        request_id,
        mut guard,
        mut headers,
        allowance,
    } = admit(&state, start, &model, R::ENDPOINT, max, req.prompt()).await?;
    if req.max_tokens().is_none() {
        req.set_max_tokens(allowance);
    }
    let id = format!("{}-{}", R::ID_PREFIX, uuid::Uuid::new_v4().simple());
    let include_usage = req.include_usage();
    let ran = match place {
        Place::Here(served) => {
            headers.extend(provenance_here(&state, &model, served.engine.as_ref()));
            req.run(served.engine.as_ref()).await
        }
        Place::Peer(federation) => match forward(&federation, req, &request_id, &mut guard).await {
            Ok((reply, provenance)) => {
                headers.extend(provenance);
                Ok(reply)
            }
            Err(e) => Err(e),
        },
    };
    let result = match ran {
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

/// Runs a whole chat completion as `caller` through admission and metering, like any
/// request: for the gateway's own work (the governance assistant). Returns the answer
/// and the kind of engine that produced it.
pub(crate) async fn chat_as(
    state: &AppState,
    caller: Caller,
    req: ChatCompletionRequest,
) -> Result<(ChatCompletion, &'static str), ApiError> {
    req.validate()?;
    let start = Started {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        caller,
        at: Instant::now(),
    };
    let model = req.model.clone();
    let max = req.max_tokens().map(u64::from);
    let Admitted { place, mut guard, .. } = admit(
        state,
        start,
        &model,
        Endpoint::ChatCompletions,
        max,
        PromptRef::Chat(&req),
    )
    .await?;
    let Place::Here(served) = place else {
        return Err(ApiError::ModelNotFound(model));
    };
    let kind = served.engine.kind();
    match served.engine.chat(req).await {
        Ok(Reply::Full(mut done)) => {
            if let Some(usage) = done.usage {
                guard.add_reported(usage);
            }
            done.usage = Some(guard.usage());
            guard.finish(Outcome::Completed);
            Ok((done, kind))
        }
        Ok(Reply::Stream(_)) => {
            guard.finish(Outcome::Failed("engine_error"));
            Err(ApiError::Engine(
                "the engine streamed an answer not asked to stream".to_owned(),
            ))
        }
        Err(e) => {
            guard.finish(Outcome::Failed(e.metric_label()));
            Err(e)
        }
    }
}

/// Embeddings as `caller` through admission and metering, like any request: for the
/// gateway's own work (the governance assistant's retrieval).
pub(crate) async fn embed_as(
    state: &AppState,
    caller: Caller,
    req: EmbeddingsRequest,
) -> Result<EmbeddingsResponse, ApiError> {
    let start = Started {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        caller,
        at: Instant::now(),
    };
    embed(state, start, req).await.map(|(done, _)| done)
}

/// Admits and runs an embeddings request, metering what the engine reports: the answer
/// (named by the served model) and the headers for the caller (limits, provenance).
async fn embed(
    state: &AppState,
    start: Started,
    req: EmbeddingsRequest,
) -> Result<(EmbeddingsResponse, Vec<(&'static str, String)>), ApiError> {
    let model = req.model.clone();
    let Admitted {
        place,
        mut guard,
        mut headers,
        ..
    } = admit(
        state,
        start,
        &model,
        Endpoint::Embeddings,
        Some(0),
        PromptRef::Embeddings(&req),
    )
    .await?;
    let Place::Here(served) = place else {
        return Err(ApiError::ModelNotFound(model));
    };
    headers.extend(provenance_here(state, &model, served.engine.as_ref()));
    match served.engine.embeddings(req).await {
        Ok(mut done) => {
            guard.add_reported(done.usage);
            done.model = model;
            guard.finish(Outcome::Completed);
            Ok((done, headers))
        }
        Err(e) => {
            guard.finish(Outcome::Failed(e.metric_label()));
            Err(e)
        }
    }
}

/// `POST /v1/embeddings`
pub async fn embeddings(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let start = started(&headers, caller);
    let (done, headers) = embed(&state, start, req).await?;
    Ok(with_headers(Json(done).into_response(), &headers))
}

/// `GET /v1/models`: the models served here, then those a peer co-op serves for this
/// co-op's members (owned by the peer).
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    let mut data = state.models.cards();
    if let Some(federation) = &state.federation {
        for (model, peer) in federation.borrowable() {
            if !data.iter().any(|c| c.id == model) {
                data.push(crate::engine::ModelRegistry::card(&model, &peer));
            }
        }
    }
    Json(ModelList {
        object: "list".to_owned(),
        data,
    })
}

/// `GET /v1/models/{id}`
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    Ok(Json(state.models.get(&id)?.card))
}
