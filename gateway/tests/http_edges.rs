//! Edge cases the Python client cannot send, against the real binary with the tiny
//! model: truncated JSON, a 10 MiB body, a wrong content type, a client that goes
//! away mid-stream, and 64 concurrent requests. The server must stay healthy after
//! each. Also graceful shutdown with a stream in flight.

mod common;

use std::time::Duration;

use common::{Gateway, MODEL};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Prompt tokens of `[{"role": "user", "content": PROMPT}]` with the tiny model's
/// byte-level tokenizer and template: `<|begin_of_text|><|user|>` + one token per byte
/// + `<|end|><|assistant|>`.
const PROMPT: &str = "hello co-op";
const PROMPT_TOKENS: u64 = PROMPT.len() as u64 + 4;

fn chat_body(max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

fn assert_openai_error(body: &Value, status_name: &str) {
    let error = &body["error"];
    assert!(error["message"].is_string(), "{status_name}: {body}");
    assert!(error["type"].is_string(), "{status_name}: {body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{status_name}: {body}"
    );
}

/// Checks on a fresh connection: a request the server cut short may leave the caller's
/// pooled connection closed under it, which says nothing about the server.
#[expect(clippy::unwrap_used, reason = "test helper: a failure fails the test")]
async fn assert_healthy(gateway: &Gateway) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = client.get(gateway.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .json(&chat_body(2, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
}

/// Sends a chat request's headers declaring `length` bytes, and no body; returns the
/// status and body of the answer.
#[expect(clippy::unwrap_used, reason = "test helper: a failure fails the test")]
async fn declared_length_only(gateway: &Gateway, length: usize) -> (u16, String) {
    let mut socket = tokio::net::TcpStream::connect(&gateway.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\nconnection: close\r\n\r\n",
        gateway.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_get_openai_errors_and_the_server_stays_healthy() {
    let gateway = Gateway::tiny();
    let client = reqwest::Client::new();
    let chat = gateway.url("/v1/chat/completions");

    // Truncated JSON.
    let response = client
        .post(&chat)
        .header("content-type", "application/json")
        .body(r#"{"model": "tiny", "messages": [{"role": "user", "con"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "truncated");
    assert_eq!(body["error"]["code"], "invalid_json");
    assert_healthy(&gateway).await;

    // A declared 10 MiB body (the limit is 4 MiB) is refused from its headers alone.
    // Raw TCP, so that the client does not race the early answer with its upload.
    let (status, body) = declared_length_only(&gateway, 10 * 1024 * 1024).await;
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_openai_error(&body, "too large");
    assert_eq!(body["error"]["code"], "request_too_large");
    assert_healthy(&gateway).await;

    // A body over the limit with no declared length (chunked) is cut off at the limit.
    let big = format!(
        r#"{{"model": "tiny", "messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "a".repeat(5 * 1024 * 1024)
    );
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    match client
        .post(&chat)
        .header("content-type", "application/json")
        .header("connection", "close")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
    {
        Ok(response) => {
            assert_eq!(response.status(), 413);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "request_too_large");
        }
        // The server may answer and close while the rest is still being sent; then
        // the client sees the connection end instead. Either way nothing was served.
        Err(error) => assert!(error.is_request() || error.is_body(), "{error:?}"),
    }
    assert_healthy(&gateway).await;

    // Wrong content type.
    let response = client
        .post(&chat)
        .header("content-type", "text/plain")
        .body(chat_body(2, false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_openai_error(&response.json().await.unwrap(), "content type");
    assert_healthy(&gateway).await;

    // A message role OpenAI does not know is a 400, not passed to the model.
    let mut wizard = chat_body(2, false);
    wizard["messages"][0]["role"] = json!("wizard");
    let response = client.post(&chat).json(&wizard).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "messages[0].role", "{body}");
    assert_healthy(&gateway).await;

    // Unknown model and unknown route.
    let mut unknown = chat_body(2, false);
    unknown["model"] = json!("nope");
    let response = client.post(&chat).json(&unknown).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    let response = client.get(gateway.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_openai_error(&response.json().await.unwrap(), "route");

    // Metrics saw it all.
    let metrics = client
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("synco_gateway_http_requests_total"), "{metrics}");
    assert!(metrics.contains(r#"status="413""#), "{metrics}");
    // Labelled by route pattern: an unknown path is "other", not itself.
    assert!(metrics.contains(r#"path="/v1/chat/completions""#), "{metrics}");
    assert!(!metrics.contains("/v2/nothing"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_stream_is_metered_and_harmless() {
    let gateway = Gateway::tiny();
    let body = chat_body(400, true).to_string();
    let mut socket = tokio::net::TcpStream::connect(&gateway.addr).await.unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-request-id: walk-away\r\ncontent-length: {}\r\n\r\n{body}",
        gateway.addr,
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("chat.completion.chunk") {
        let n = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    drop(socket);

    assert_healthy(&gateway).await;
    // The abandoned request is metered as cancelled.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = gateway.log();
        if log
            .lines()
            .any(|l| l.contains("walk-away") && l.contains("usage") && l.contains("cancelled"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cancelled usage record:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_concurrent_chats_complete_with_correct_usage() {
    let gateway = Gateway::tiny();
    let client = reqwest::Client::new();
    let max_tokens = 8;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            let url = gateway.url("/v1/chat/completions");
            tokio::spawn(async move {
                let stream = i % 2 == 1;
                let response = client
                    .post(url)
                    .json(&chat_body(max_tokens, stream))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                if !stream {
                    let body: Value = response.json().await.unwrap();
                    let finish = body["choices"][0]["finish_reason"].as_str().unwrap().to_owned();
                    (body["usage"].clone(), finish)
                } else {
                    let text = response.text().await.unwrap();
                    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
                    let events: Vec<Value> = text
                        .split("\n\n")
                        .filter_map(|e| e.strip_prefix("data: "))
                        .filter(|d| *d != "[DONE]")
                        .map(|d| serde_json::from_str(d).unwrap())
                        .collect();
                    let finish = events
                        .iter()
                        .find_map(|e| e["choices"][0]["finish_reason"].as_str())
                        .unwrap()
                        .to_owned();
                    (events.last().unwrap()["usage"].clone(), finish)
                }
            })
        })
        .collect();
    for task in tasks {
        let (usage, finish) = task.await.unwrap();
        let prompt = usage["prompt_tokens"].as_u64().unwrap();
        let completion = usage["completion_tokens"].as_u64().unwrap();
        assert_eq!(prompt, PROMPT_TOKENS, "{usage}");
        assert!(completion >= 1 && completion <= u64::from(max_tokens), "{usage}");
        if finish == "length" {
            assert_eq!(completion, u64::from(max_tokens), "{usage}");
        }
        assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
    }
    assert_healthy(&gateway).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_in_flight_stream_finish() {
    let mut gateway = Gateway::tiny();
    let client = reqwest::Client::new();
    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .json(&chat_body(300, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let status = tokio::task::spawn_blocking({
        let pid = gateway.child.id();
        move || {
            std::thread::sleep(Duration::from_millis(100));
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(status.success());
    let text = response.text().await.unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream cut short: {text}"
    );
    let exit = gateway.wait_exit();
    assert!(exit.success(), "{}", gateway.log());
    assert!(gateway.log().contains("gateway stopped"));
}
