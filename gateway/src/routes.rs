//! The OpenAI-compatible handlers.
//!
//! Each inference handler: parse and validate, find the model (404), ask admission,
//! call the engine, and keep a [`UsageGuard`] alive until the answer has been sent.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::admission::{AdmissionRequest, Caller, Endpoint};
use crate::app::AppState;
use crate::engine::{PromptRef, Reply, ServedModel};
use crate::error::{ApiError, ApiJson};
use crate::openai::{ChatCompletionRequest, CompletionRequest, EmbeddingsRequest, ModelCard, ModelList};
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

fn json_size<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
    ApiJson(mut req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let start = started(&headers, caller);
    req.validate()?;
    let max = req
        .max_tokens()
        .map(|m| u64::from(m) * u64::from(req.sampling.choices()));
    let model = req.model.clone();
    let Admitted {
        served,
        mut guard,
        headers,
        allowance,
    } = admit(
        &state,
        start,
        &model,
        Endpoint::ChatCompletions,
        max,
        PromptRef::Chat(&req),
    )
    .await?;
    if req.max_tokens().is_none() {
        req.max_completion_tokens = allowance;
    }
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let result = match served.engine.chat(req).await {
        Ok(Reply::Full(mut done)) => {
            if let Some(usage) = done.usage {
                guard.add_reported(usage);
            }
            done.usage = Some(guard.usage());
            done.id = id;
            done.model = model;
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

/// `POST /v1/completions`
pub async fn completions(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    caller: Option<Extension<Caller>>,
    ApiJson(mut req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let start = started(&headers, caller);
    req.validate()?;
    let max = req
        .max_tokens
        .map(|m| u64::from(m) * u64::from(req.sampling.choices()));
    let model = req.model.clone();
    let Admitted {
        served,
        mut guard,
        headers,
        allowance,
    } = admit(
        &state,
        start,
        &model,
        Endpoint::Completions,
        max,
        PromptRef::Completion(&req),
    )
    .await?;
    if req.max_tokens.is_none() {
        req.max_tokens = allowance;
    }
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let result = match served.engine.completion(req).await {
        Ok(Reply::Full(mut done)) => {
            if let Some(usage) = done.usage {
                guard.add_reported(usage);
            }
            done.usage = Some(guard.usage());
            done.id = id;
            done.model = model;
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

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: every engine can take requests and the gateway is not draining.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    for (name, served) in state.models.engines() {
        if !served.engine.ready().await {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("model {name} is not ready"),
            )
                .into_response();
        }
    }
    (StatusCode::OK, "ready").into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are disabled").into_response(),
    }
}
