//! A fast, fake OpenAI-compatible upstream, for the external engine's tests and the
//! proxy-latency benchmark. Loopback only; it answers instantly with fixed text.
//!
//! Model names change its behaviour: `break-mid-stream` sends one chunk and then a
//! malformed event, so the gateway's mid-stream error path can be exercised.
//!
//! With a [`Cost`] per prompt token ([`start_with_cost`]) it behaves like an engine
//! whose work grows with the prompt: the prompt's words are its tokens, and the
//! answer takes the fixed time plus the per-token time for each of them (the fairness
//! tests' saturated engine).
//!
//! With a prefix cache ([`start_caching`]) it remembers the system prompts (the first
//! message) of its last few requests, as an engine's prompt cache would, reports a hit
//! as `usage.prompt_tokens_details.cached_tokens`, and counts hits and misses.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const WORDS: [&str; 4] = ["Surplus ", "belongs ", "to the ", "members."];

/// What an answer costs in time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Per request.
    pub fixed: std::time::Duration,
    /// Per prompt token; when zero, every prompt counts as 5 tokens.
    pub per_prompt_token: std::time::Duration,
    /// Requests it works on at once (0: no limit); the rest wait inside it, as in an
    /// engine's own queue, so its latency grows with what it is given.
    pub capacity: usize,
    /// A streamed answer's pause before each chunk after the first (zero: the whole
    /// stream is sent at once), so that a stream can be caught in the middle.
    pub per_output_token: std::time::Duration,
}

#[derive(Debug)]
struct Mock {
    cost: Cost,
    gate: Option<tokio::sync::Semaphore>,
    cache: Option<PrefixCache>,
}

/// The prompts a caching mock holds, most recent last.
#[derive(Debug)]
struct PrefixCache {
    capacity: usize,
    held: std::sync::Mutex<std::collections::VecDeque<String>>,
    stats: std::sync::Arc<CacheStats>,
}

/// A caching mock's hits and misses.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
}

impl PrefixCache {
    /// Whether `prefix` was held (it is held, most recent, afterwards).
    fn look_up(&self, prefix: &str) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let Ok(mut held) = self.held.lock() else {
            return false;
        };
        let hit = match held.iter().position(|p| p == prefix) {
            Some(at) => {
                held.remove(at);
                true
            }
            None => false,
        };
        held.push_back(prefix.to_owned());
        while held.len() > self.capacity {
            held.pop_front();
        }
        if hit {
            self.stats.hits.fetch_add(1, Relaxed);
        } else {
            self.stats.misses.fetch_add(1, Relaxed);
        }
        hit
    }
}

/// The words of the messages' text contents.
fn prompt_words(body: &Value) -> u64 {
    body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m["content"].as_str())
                .map(|text| text.split_whitespace().count() as u64)
                .sum()
        })
        .unwrap_or(0)
}

async fn chat(mock: axum::extract::State<std::sync::Arc<Mock>>, body: axum::Json<Value>) -> Response {
    let cost = mock.cost;
    let _working = match &mock.gate {
        Some(gate) => gate.acquire().await.ok(),
        None => None,
    };
    let prompt_tokens = if cost.per_prompt_token.is_zero() {
        5
    } else {
        prompt_words(&body).max(1)
    };
    let latency = cost.fixed + cost.per_prompt_token * u32::try_from(prompt_tokens).unwrap_or(u32::MAX);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let model = body["model"].as_str().unwrap_or("mock").to_owned();
    if model == "missing" {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": "no model named missing", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})),
        )
            .into_response();
    }
    let completion_tokens = WORDS.len() as u64;
    let mut usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    if let Some(cache) = &mock.cache {
        let system = body["messages"][0]["content"].as_str().unwrap_or_default();
        let cached = if cache.look_up(system) { prompt_tokens } else { 0 };
        usage["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    if !body["stream"].as_bool().unwrap_or(false) {
        return axum::Json(json!({
            "id": "mock-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": WORDS.concat()}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response();
    }
    let mut text = String::new();
    for (i, word) in WORDS.iter().enumerate() {
        let finish = if i + 1 == WORDS.len() {
            json!("stop")
        } else {
            Value::Null
        };
        let chunk = json!({
            "id": "mock-1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": word}, "finish_reason": finish}],
        });
        text.push_str(&format!("data: {chunk}\n\n"));
        if model == "break-mid-stream" {
            text.push_str("data: {not json\n\n");
            break;
        }
    }
    if body["stream_options"]["include_usage"].as_bool().unwrap_or(false) {
        let chunk = json!({"id": "mock-1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage});
        text.push_str(&format!("data: {chunk}\n\n"));
    }
    text.push_str("data: [DONE]\n\n");
    if cost.per_output_token.is_zero() {
        return ([(header::CONTENT_TYPE, "text/event-stream")], Body::from(text)).into_response();
    }
    let pause = cost.per_output_token;
    let events: Vec<String> = text.split_inclusive("\n\n").map(ToOwned::to_owned).collect();
    let paced = futures::StreamExt::then(
        futures::stream::iter(events.into_iter().enumerate()),
        move |(i, event)| async move {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            Ok::<_, std::convert::Infallible>(event)
        },
    );
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(paced),
    )
        .into_response()
}

/// The mock's router.
pub fn router() -> Router {
    router_with_latency(std::time::Duration::ZERO)
}

/// The mock's router, answering each request after `latency`.
pub fn router_with_latency(latency: std::time::Duration) -> Router {
    router_with_cost(Cost {
        fixed: latency,
        ..Cost::default()
    })
}

/// The mock's router, answering each request after its [`Cost`].
pub fn router_with_cost(cost: Cost) -> Router {
    let gate = (cost.capacity > 0).then(|| tokio::sync::Semaphore::new(cost.capacity));
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(std::sync::Arc::new(Mock {
            cost,
            gate,
            cache: None,
        }))
}

/// Starts a mock that answers at once and holds the system prompts of its last
/// `capacity` requests; returns its address and its hit counts.
pub async fn start_caching(capacity: usize) -> std::io::Result<(SocketAddr, std::sync::Arc<CacheStats>)> {
    let stats = std::sync::Arc::new(CacheStats::default());
    let router = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(std::sync::Arc::new(Mock {
            cost: Cost::default(),
            gate: None,
            cache: Some(PrefixCache {
                capacity,
                held: std::sync::Mutex::default(),
                stats: stats.clone(),
            }),
        }));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "mock upstream stopped");
        }
    });
    Ok((addr, stats))
}

/// Starts the mock on a random loopback port; returns its address.
pub async fn start() -> std::io::Result<SocketAddr> {
    start_with_latency(std::time::Duration::ZERO).await
}

/// Starts a mock that takes `latency` per request (a fixed service time).
pub async fn start_with_latency(latency: std::time::Duration) -> std::io::Result<SocketAddr> {
    start_with_cost(Cost {
        fixed: latency,
        ..Cost::default()
    })
    .await
}

/// Starts a mock whose answers take their [`Cost`].
pub async fn start_with_cost(cost: Cost) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router_with_cost(cost)).await {
            tracing::error!(error = %e, "mock upstream stopped");
        }
    });
    Ok(addr)
}
