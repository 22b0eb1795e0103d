//! A fast mock OpenAI-compatible upstream with a FIXED latency, for the comparison
//! benchmark (`gateway/bench/run.sh`). Loopback only.
//!
//!     cargo run --release -p synco-gateway --example bench_upstream -- \
//!         [--listen 127.0.0.1:0] [--latency-ms 10] [--port-file FILE]
//!
//! `POST /v1/chat/completions`:
//! - not streamed: waits the latency, then answers one chat completion with `usage`;
//! - streamed (`"stream": true`): sends the headers at once, then 4 content chunks spaced
//!   evenly so that the last one (and `data: [DONE]`) leaves after the latency; a usage
//!   chunk is added when `stream_options.include_usage` is set.
//!
//! `GET /v1/models` lists one model so that clients probing the upstream are happy.
//! It runs until killed (the harness kills it by its pid).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const WORDS: [&str; 4] = ["Surplus ", "belongs ", "to the ", "members."];

#[derive(Clone, Copy)]
struct Latency(Duration);

async fn chat(State(Latency(latency)): State<Latency>, body: axum::Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("mock").to_owned();
    let usage = json!({"prompt_tokens": 5, "completion_tokens": WORDS.len(), "total_tokens": 5 + WORDS.len()});
    if !body["stream"].as_bool().unwrap_or(false) {
        tokio::time::sleep(latency).await;
        return axum::Json(json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": WORDS.concat()}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response();
    }
    let include_usage = body["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    let step = latency / u32::try_from(WORDS.len()).unwrap_or(1);
    let stream = async_stream(model, usage, include_usage, step);
    (
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn async_stream(
    model: String,
    usage: Value,
    include_usage: bool,
    step: Duration,
) -> impl futures::Stream<Item = Result<String, std::convert::Infallible>> {
    futures::stream::unfold(0usize, move |i| {
        let model = model.clone();
        let usage = usage.clone();
        async move {
            if i < WORDS.len() {
                tokio::time::sleep(step).await;
                let finish = if i + 1 == WORDS.len() { json!("stop") } else { Value::Null };
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": WORDS[i]})
                } else {
                    json!({"content": WORDS[i]})
                };
                let chunk = json!({
                    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                });
                let mut text = format!("data: {chunk}\n\n");
                if i + 1 == WORDS.len() {
                    if include_usage {
                        let last = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage});
                        text.push_str(&format!("data: {last}\n\n"));
                    }
                    text.push_str("data: [DONE]\n\n");
                }
                Some((Ok(text), i + 1))
            } else {
                None
            }
        }
    })
}

async fn models() -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [{"id": "bench", "object": "model", "created": 1, "owned_by": "bench"}]}))
}

#[expect(clippy::print_stdout, reason = "prints the address it bound")]
fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut latency_ms: u64 = 10;
    let mut port_file: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_default().parse()?,
            "--latency-ms" => latency_ms = args.next().unwrap_or_default().parse()?,
            "--port-file" => port_file = args.next(),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(listen.ip().is_loopback(), "the mock listens on loopback only");
    let threads = std::env::var("BENCH_UPSTREAM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        println!("bench upstream on http://{addr}/v1 latency {latency_ms} ms");
        if let Some(file) = port_file {
            std::fs::write(file, addr.to_string())?;
        }
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .with_state(Latency(Duration::from_millis(latency_ms)));
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}
