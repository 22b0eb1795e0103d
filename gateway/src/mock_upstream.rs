//! A fast, fake OpenAI-compatible upstream, for the external engine's tests and the
//! proxy-latency benchmark. Loopback only; it answers instantly with fixed text.
//!
//! Model names change its behaviour: `break-mid-stream` sends one chunk and then a
//! malformed event, so the gateway's mid-stream error path can be exercised.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const WORDS: [&str; 4] = ["Surplus ", "belongs ", "to the ", "members."];

async fn chat(latency: axum::extract::State<std::time::Duration>, body: axum::Json<Value>) -> Response {
    if !latency.is_zero() {
        tokio::time::sleep(*latency).await;
    }
    let model = body["model"].as_str().unwrap_or("mock").to_owned();
    if model == "missing" {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": "no model named missing", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})),
        )
            .into_response();
    }
    let usage =
        json!({"prompt_tokens": 5, "completion_tokens": WORDS.len(), "total_tokens": 5 + WORDS.len()});
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
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from(text)).into_response()
}

/// The mock's router.
pub fn router() -> Router {
    router_with_latency(std::time::Duration::ZERO)
}

/// The mock's router, answering each request after `latency`.
pub fn router_with_latency(latency: std::time::Duration) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(latency)
}

/// Starts the mock on a random loopback port; returns its address.
pub async fn start() -> std::io::Result<SocketAddr> {
    start_with_latency(std::time::Duration::ZERO).await
}

/// Starts a mock that takes `latency` per request (a fixed service time).
pub async fn start_with_latency(latency: std::time::Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router_with_latency(latency)).await {
            tracing::error!(error = %e, "mock upstream stopped");
        }
    });
    Ok(addr)
}
