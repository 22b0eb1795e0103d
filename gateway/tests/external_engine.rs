//! The external engine against a mock OpenAI upstream, in process over loopback:
//! passthrough of whole and streamed answers, usage, upstream errors, a stream that
//! breaks mid-way, and an upstream that is down.

use std::time::Duration;

use serde_json::{Value, json};
use synco_gateway::app::AppState;
use synco_gateway::engine::ModelRegistry;
use synco_gateway::engine::external::{ExternalEngine, ExternalOptions};
use tokio::net::TcpListener;

#[expect(clippy::unwrap_used, reason = "test helper: a failure fails the test")]
async fn with_models(upstream: &str, names: &[(&str, Option<&str>)]) -> String {
    let mut models = ModelRegistry::default();
    for (name, upstream_model) in names {
        let mut options = ExternalOptions::new(upstream.to_owned());
        options.upstream_model = upstream_model.map(ToOwned::to_owned);
        options.connect_timeout = Duration::from_millis(500);
        options.retries = 1;
        models.insert(
            *name,
            "peer-coop",
            std::sync::Arc::new(ExternalEngine::new(options).unwrap()),
        );
    }
    let state = AppState::new(models);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        synco_gateway::server::serve(listener, state, Duration::from_secs(5))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, "max_tokens": 4})
}

/// Splits an SSE body into its `data:` payloads.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        })
        .map(ToOwned::to_owned)
        .collect()
}

#[tokio::test]
async fn proxies_whole_and_streamed_answers() {
    let upstream = synco_gateway::mock_upstream::start().await.unwrap();
    let base = with_models(&format!("http://{upstream}/v1"), &[("peer", None)]).await;
    let client = reqwest::Client::new();

    let whole: Value = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("peer", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["model"], "peer");
    assert_eq!(
        whole["choices"][0]["message"]["content"],
        "Surplus belongs to the members."
    );
    assert_eq!(whole["usage"]["total_tokens"], 9);

    let body = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("peer", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = events(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), 4, "{body}");
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage hidden unless asked: {body}"
    );

    let mut asked = chat("peer", true);
    asked["stream_options"] = json!({"include_usage": true});
    let body = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&asked)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = events(&body);
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn upstream_errors_keep_their_shape_and_a_broken_stream_ends_with_an_error_event() {
    let upstream = synco_gateway::mock_upstream::start().await.unwrap();
    let base = with_models(
        &format!("http://{upstream}/v1"),
        &[("gone", Some("missing")), ("flaky", Some("break-mid-stream"))],
    )
    .await;
    let client = reqwest::Client::new();

    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("gone", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");

    let response = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("flaky", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let data = events(&body);
    assert_eq!(data.len(), 3, "{body}");
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["content"], "Surplus ");
    let error: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(error["error"]["type"], "server_error", "{body}");
    assert_eq!(data[2], "[DONE]");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502_after_retries() {
    // Bind then drop, so the port is (very likely) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = with_models(&format!("http://127.0.0.1:{port}/v1"), &[("down", None)]).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("down", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
}

/// Tenants (system prompts), requests per tenant, and prompts each replica's cache holds.
const TENANTS: usize = 32;
const PER_TENANT: usize = 20;
const CACHED: usize = 12;

/// The hit rate of the replicas' prompt caches under one routing.
#[expect(clippy::unwrap_used, reason = "test helper: a failure fails the test")]
async fn cache_hit_rate(routing: &str) -> f64 {
    use futures::StreamExt as _;
    use rand::SeedableRng as _;
    use rand::seq::SliceRandom as _;
    use std::sync::atomic::Ordering::Relaxed;
    let mut engines = Vec::new();
    for _ in 0..4 {
        engines.push(synco_gateway::mock_upstream::start_caching(CACHED).await.unwrap());
    }
    let urls: Vec<String> = engines.iter().map(|(a, _)| format!("http://{a}/v1")).collect();
    let config: synco_gateway::config::GatewayConfig = serde_yaml_ng::from_str(&format!(
        "models:\n- name: m\n  engine: {{kind: external, url: '{}', replicas: ['{}', '{}', '{}'], routing: {routing}}}\n",
        urls[0], urls[1], urls[2], urls[3]
    ))
    .unwrap();
    let models = synco_gateway::config::load_models(&config.models, &Default::default())
        .await
        .unwrap();
    let state = AppState::new(models);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        synco_gateway::server::serve(listener, state, Duration::from_secs(5))
            .await
            .unwrap();
    });
    // Each tenant has its own long system prompt; its requests come in a fixed
    // shuffled order, eight at a time.
    let mut work: Vec<(usize, usize)> = (0..TENANTS)
        .flat_map(|t| (0..PER_TENANT).map(move |i| (t, i)))
        .collect();
    work.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/chat/completions");
    futures::stream::iter(work)
        .map(|(tenant, i)| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let body = json!({"model": "m", "messages": [
                    {"role": "system", "content": format!("You are tenant {tenant}'s assistant. {}", "Answer with care. ".repeat(20))},
                    {"role": "user", "content": format!("Question {i}")}
                ]});
                let r = client.post(url).json(&body).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let (hits, misses) = engines.iter().fold((0, 0), |(h, m), (_, s)| {
        (h + s.hits.load(Relaxed), m + s.misses.load(Relaxed))
    });
    let total = (TENANTS * PER_TENANT) as u64;
    assert_eq!(hits + misses, total);
    hits as f64 / total as f64
}

/// Prefix routing: four loopback engines, each holding the system prompts of its last
/// 12 requests, serve 32 tenants with shared system prompts. Routed by prefix,
/// a tenant's requests meet the replica that holds its prompt; spread by load, each
/// replica sees every tenant and its cache keeps little.
/// `cargo test --workspace --test external_engine -- --nocapture prefix_routing` prints
/// both hit rates.
#[tokio::test(flavor = "multi_thread")]
async fn prefix_routing_reuses_the_replicas_prompt_caches() {
    let prefix = cache_hit_rate("prefix").await;
    let least = cache_hit_rate("leastLoad").await;
    println!(
        "prompt-cache hit rate over 4 replicas caching {CACHED} prompts each, {TENANTS} tenants x {PER_TENANT} requests, 8 at a time:"
    );
    println!(
        "  prefix routing (consistent hashing, bounded load 1.25 + 4): {:.1}%",
        prefix * 100.0
    );
    println!(
        "  least load:                                                 {:.1}%",
        least * 100.0
    );
    assert!(prefix >= 0.8, "prefix routing hit rate {prefix}");
    assert!(prefix > least + 0.3, "prefix {prefix} against least load {least}");
}
