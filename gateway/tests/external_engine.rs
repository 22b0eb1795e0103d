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
