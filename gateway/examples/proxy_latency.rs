//! How much latency the gateway adds when proxying an OpenAI-compatible upstream.
//!
//! Starts a fast mock upstream and a gateway whose `peer` model is that upstream
//! (external engine), both on loopback in this process, then sends non-streamed chat
//! completions at fixed rates (open loop) directly to the upstream and through the
//! gateway, and prints p50 and p99 of each side by side.
//!
//!     cargo run --release -p synco-gateway --example proxy_latency [-- SECONDS_PER_RATE]
//!
//! Bounded: 3 rates × 2 targets × a few seconds each (default 3), loopback only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use synco_gateway::app::AppState;
use synco_gateway::engine::ModelRegistry;
use synco_gateway::engine::external::{ExternalEngine, ExternalOptions};
use tokio::net::TcpListener;

const RATES: [u32; 3] = [50, 200, 500];

#[expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let upstream = synco_gateway::mock_upstream::start().await?;
        let mut models = ModelRegistry::default();
        models.insert(
            "peer",
            "bench",
            Arc::new(ExternalEngine::new(ExternalOptions::new(format!(
                "http://{upstream}/v1"
            )))?),
        );
        let state = AppState::new(models);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let gateway = listener.local_addr()?;
        tokio::spawn(synco_gateway::server::serve(
            listener,
            state,
            Duration::from_secs(1),
        ));

        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        let body = json!({"model": "peer", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
        // Warm both paths (connections, allocator).
        for target in [upstream, gateway] {
            for _ in 0..50 {
                client
                    .post(format!("http://{target}/v1/chat/completions"))
                    .json(&body)
                    .send()
                    .await?
                    .bytes()
                    .await?;
            }
        }
        println!("proxy latency, non-streamed chat, {seconds}s per rate, loopback, one process");
        println!(
            "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "req/s", "direct p50", "direct p99", "gw p50", "gw p99", "added p50", "added p99"
        );
        for rate in RATES {
            let direct = run(
                &client,
                &format!("http://{upstream}/v1/chat/completions"),
                &body,
                rate,
                seconds,
            )
            .await?;
            let via = run(
                &client,
                &format!("http://{gateway}/v1/chat/completions"),
                &body,
                rate,
                seconds,
            )
            .await?;
            let (d50, d99) = (percentile(&direct, 0.50), percentile(&direct, 0.99));
            let (g50, g99) = (percentile(&via, 0.50), percentile(&via, 0.99));
            println!(
                "{rate:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                fmt(d50),
                fmt(d99),
                fmt(g50),
                fmt(g99),
                fmt(g50.saturating_sub(d50)),
                fmt(g99.saturating_sub(d99))
            );
        }
        anyhow::Ok(())
    })
}

/// Sends `rate` requests per second for `seconds`, each on its own task (open loop),
/// and returns every latency.
async fn run(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<Vec<Duration>> {
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = u64::from(rate) * seconds;
    let mut tasks = Vec::with_capacity(usize::try_from(total)?);
    for _ in 0..total {
        ticker.tick().await;
        let client = client.clone();
        let url = url.to_owned();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = client.post(url).json(&body).send().await?;
            anyhow::ensure!(response.status().is_success(), "status {}", response.status());
            response.bytes().await?;
            anyhow::Ok(started.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await??);
    }
    latencies.sort();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn fmt(d: Duration) -> String {
    format!("{:.0}µs", d.as_secs_f64() * 1e6)
}
