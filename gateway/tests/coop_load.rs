//! Load behaviour: priority on a saturated engine, three replicas on one Postgres
//! budget, a database restart under load, and what a `kill -9` can lose.

#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::coop::{self as c, CoopSpec};
use common::postgres::Postgres;
use sea_orm::EntityTrait;
use serde_json::Value;
use synco_gateway::mock_upstream::Cost;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A mock engine taking `latency_ms` per request, as an InferenceModel `engine:` block.
async fn mock(latency_ms: u64) -> String {
    mock_costing(Cost {
        fixed: Duration::from_millis(latency_ms),
        ..Cost::default()
    })
    .await
}

/// A mock engine whose answers take their [`Cost`], as an `engine:` block.
async fn mock_costing(cost: Cost) -> String {
    let addr = synco_gateway::mock_upstream::start_with_cost(cost).await.unwrap();
    format!("{{kind: External, url: \"http://{addr}/v1\"}}")
}

/// The gateway's `/metrics` text.
async fn metrics_of(gateway: &common::Gateway) -> String {
    client()
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn manifests(spec: &CoopSpec<'_>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    c::write_manifests(dir.path(), spec);
    dir
}

async fn call(url: &str, key: &str) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&c::chat("open-chat", 4))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = r.bytes().await;
    (status, retry, started.elapsed())
}

async fn records(url: &str) -> Vec<synco_gateway::db::usage_record::Model> {
    let db = synco_gateway::db::connect(url).await.unwrap();
    synco_gateway::db::usage_record::Entity::find()
        .all(&db)
        .await
        .unwrap()
}

/// Service time 300 ms, two slots, customers may hold one (50 % surplus) and wait 1 s.
#[tokio::test(flavor = "multi_thread")]
async fn members_go_first_on_a_saturated_engine() {
    const SERVICE: Duration = Duration::from_millis(300);
    let engine = mock(300).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        prepaid_credit_minor: 1_000_000,
        ..CoopSpec::default()
    });
    let data = tempfile::tempdir().unwrap();
    let gateway = c::standalone(
        m.path(),
        data.path(),
        None,
        &["--engine-slots", "2", "--customer-wait-seconds", "1"],
    );
    let member = c::create_key(&["--member", "school"], data.path(), None);
    let customer = c::create_key(&["--customer", "buyer"], data.path(), None);
    let base = gateway.url("");

    // Idle latency.
    let _ = call(&base, &member).await;
    let mut idle = Duration::ZERO;
    for _ in 0..3 {
        idle = idle.max(call(&base, &member).await.2);
    }

    // Customers flood the engine.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood: Vec<_> = (0..12)
        .map(|_| {
            let (base, key, stop) = (base.clone(), customer.clone(), stop.clone());
            let (served, refused) = (served.clone(), refused.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (status, retry, _) = call(&base, &key).await;
                    match status {
                        200 => served.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            assert!(retry.is_some(), "a refused customer is told when to retry");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        other => panic!("customer got {other}"),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let (status, _, took) = call(&base, &member).await;
        assert_eq!(status, 200);
        worst = worst.max(took);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.await.unwrap();
    }
    let (served, refused) = (served.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    eprintln!(
        "idle {idle:?}, worst member under load {worst:?}, customers served {served}, refused {refused}"
    );
    // Slack for a loaded shared test machine.
    assert!(
        worst <= idle + SERVICE + Duration::from_millis(250),
        "member waited {worst:?} (idle {idle:?}, service {SERVICE:?})"
    );
    assert!(served > 0, "customers get the surplus");
    assert!(
        refused > 0,
        "customers beyond the surplus are refused with Retry-After"
    );
}

/// The governance assistant does not delay members (the priority test's style):
/// service 300 ms, four slots; eight tasks keep asking the assistant for summaries
/// (each a request in the members' tier, at most a quarter of the slots), while a
/// member's requests wait no longer than one service time more than when idle.
#[tokio::test(flavor = "multi_thread")]
async fn the_assistant_does_not_delay_members() {
    const SERVICE: Duration = Duration::from_millis(300);
    let engine = mock(300).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let path = m.path().join("coop.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap().replacen(
        "  displayName: Test Co-op\n",
        "  displayName: Test Co-op\n  assistant: {model: open-chat, monthlyTokens: 1000000000}\n",
        1,
    );
    std::fs::write(&path, yaml).unwrap();
    let data = tempfile::tempdir().unwrap();
    let gateway = c::standalone(m.path(), data.path(), None, &["--engine-slots", "4"]);
    let member = c::create_key(&["--member", "school"], data.path(), None);
    let base = gateway.url("");
    let made = client()
        .post(format!("{base}/v1/governance/proposals"))
        .bearer_auth(&member)
        .json(&serde_json::json!({"name": "exam-weeks", "kind": "FreeText", "title": "Exam weeks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201, "{}", made.text().await.unwrap());
    let commented = client()
        .post(format!("{base}/v1/governance/proposals/exam-weeks/comments"))
        .bearer_auth(&member)
        .json(&serde_json::json!({"body": "The school needs more in June."}))
        .send()
        .await
        .unwrap();
    assert_eq!(commented.status().as_u16(), 201);

    let measure = |label: &'static str| {
        let (base, member) = (base.clone(), member.clone());
        async move {
            let mut times = Vec::new();
            for _ in 0..8 {
                let (status, _, took) = call(&base, &member).await;
                assert_eq!(status, 200, "{label}");
                times.push(took);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            times.sort();
            times
        }
    };
    let _ = call(&base, &member).await;
    let idle = measure("idle").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (summaries, other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (base, key, stop) = (base.clone(), member.clone(), stop.clone());
            let (summaries, other) = (summaries.clone(), other.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = client()
                        .post(format!("{base}/v1/governance/proposals/exam-weeks/summary"))
                        .bearer_auth(&key)
                        .send()
                        .await
                        .unwrap();
                    if r.status().as_u16() == 201 {
                        summaries.fetch_add(1, Ordering::Relaxed);
                    } else {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let loaded = measure("with the assistant busy").await;
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.await.unwrap();
    }
    let (summaries, other) = (summaries.load(Ordering::Relaxed), other.load(Ordering::Relaxed));
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "member latency idle p50 {:.0} ms worst {:.0} ms; with the assistant busy p50 {:.0} ms worst {:.0} ms; \
         summaries written {summaries}, not written {other}",
        ms(&idle[idle.len() / 2]),
        ms(idle.last().unwrap()),
        ms(&loaded[loaded.len() / 2]),
        ms(loaded.last().unwrap()),
    );
    assert!(summaries > 0, "the assistant still works");
    let (worst_idle, worst) = (*idle.last().unwrap(), *loaded.last().unwrap());
    assert!(
        worst <= worst_idle + SERVICE + Duration::from_millis(250),
        "a member waited {worst:?} behind the assistant (idle {worst_idle:?}, service {SERVICE:?})"
    );
}

/// Three replicas, one Postgres, one budget.
#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_enforce_one_budget() {
    let Some(pg) = Postgres::start() else { return };
    const N: u64 = 1500;
    const SLICE: u64 = 200;
    let engine = mock(10).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let url = pg.url();
    let budget = format!("bakery={N}");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas: Vec<_> = dirs
        .iter()
        .map(|d| {
            c::standalone(
                m.path(),
                d.path(),
                Some(&url),
                &["--token-budget", &budget, "--budget-slice", "200"],
            )
        })
        .collect();
    let key = c::create_key(&["--member", "bakery"], dirs[0].path(), Some(&url));
    let bases: Vec<String> = replicas.iter().map(|g| g.url("")).collect();
    let tasks: Vec<_> = (0..240)
        .map(|i| {
            let (base, key) = (bases[i % 3].clone(), key.clone());
            tokio::spawn(async move { call(&base, &key).await.0 })
        })
        .collect();
    let mut served = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => served += 1,
            429 => {}
            other => panic!("unclean answer {other}"),
        }
    }
    for r in &mut replicas {
        assert!(r.terminate().success());
    }
    let records = records(&url).await;
    assert_eq!(records.len(), served);
    let charged: u64 = records
        .iter()
        .map(|r| (r.prompt_tokens + r.completion_tokens) as u64)
        .sum();
    eprintln!(
        "served {served}, charged {charged} of {N} (stated bound: overshoot 0; stranded <= 3 x {SLICE})"
    );
    assert!(charged <= N, "charged {charged} > {N}");
    assert!(
        charged + 3 * SLICE + 200 >= N,
        "too much budget stranded: {charged} of {N}"
    );
}

/// The database goes away mid-load and comes back: every served request's record arrives.
#[tokio::test(flavor = "multi_thread")]
async fn no_usage_record_is_lost_across_a_database_restart() {
    let Some(pg) = Postgres::start() else { return };
    let engine = mock(5).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let url = pg.url();
    let data = tempfile::tempdir().unwrap();
    let mut gateway = c::standalone(
        m.path(),
        data.path(),
        Some(&url),
        &["--token-budget", "bakery=100000000", "--budget-slice", "1000000"],
    );
    let key = c::create_key(&["--member", "bakery"], data.path(), Some(&url));
    let base = gateway.url("");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (base, key, stop, served) = (base.clone(), key.clone(), stop.clone(), served.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match call(&base, &key).await.0 {
                        200 => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        503 => tokio::time::sleep(Duration::from_millis(50)).await,
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    pg.kill_server();
    let at_kill = served.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let during = served.load(Ordering::Relaxed) - at_kill;
    pg.start_server();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(gateway.terminate().success(), "{}", gateway.log());
    let served = served.load(Ordering::Relaxed);
    let records = records(&url).await;
    eprintln!(
        "served {served} ({during} while the database was down), recorded {}",
        records.len()
    );
    assert!(
        during > 0,
        "requests are served from the leased slice while the database is down"
    );
    assert_eq!(records.len() as u64, served, "{}", gateway.log());
}

/// With the database down at shutdown, the gateway does not hang: it gives the usage
/// buffer `--usage-flush-seconds`, then exits with an error that says how many records
/// it could not write.
#[tokio::test(flavor = "multi_thread")]
async fn a_shutdown_with_the_database_down_gives_up_in_time_and_counts_the_lost_records() {
    let Some(pg) = Postgres::start() else { return };
    let engine = mock(1).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let url = pg.url();
    let data = tempfile::tempdir().unwrap();
    let mut gateway = c::standalone(
        m.path(),
        data.path(),
        Some(&url),
        &[
            "--token-budget",
            "bakery=100000000",
            "--budget-slice",
            "1000000",
            "--usage-flush-seconds",
            "2",
            "--grace-period-seconds",
            "2",
        ],
    );
    let key = c::create_key(&["--member", "bakery"], data.path(), Some(&url));
    let base = gateway.url("");
    assert_eq!(call(&base, &key).await.0, 200, "{}", gateway.log());
    // Its record is written (a batch lingers 100 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    pg.kill_server();
    // Served from the leased slice; their records wait in the buffer.
    let mut served = 0;
    for _ in 0..5 {
        if call(&base, &key).await.0 == 200 {
            served += 1;
        }
    }
    assert!(served > 0, "{}", gateway.log());
    let start = std::time::Instant::now();
    let status = gateway.terminate();
    let took = start.elapsed();
    assert!(
        !status.success(),
        "records were lost: the exit says so\n{}",
        gateway.log()
    );
    // The grace period, the flush limit, and the database pool's 5 s timeouts of what
    // else gives up on the way out (the leased budget slice).
    assert!(took < Duration::from_secs(20), "shutdown took {took:?}");
    let log = gateway.log();
    assert!(
        log.contains(&format!(
            "{served} usage records could not be written to the database within 2 s"
        )),
        "{log}"
    );
}

/// `kill -9` loses at most the usage buffer (`--usage-buffer`).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_at_most_the_usage_buffer() {
    const BUFFER: u64 = 16;
    let engine = mock(2).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let data = tempfile::tempdir().unwrap();
    let mut gateway = c::standalone(
        m.path(),
        data.path(),
        None,
        &["--token-budget", "bakery=100000000", "--usage-buffer", "16"],
    );
    let key = c::create_key(&["--member", "bakery"], data.path(), None);
    let base = gateway.url("");
    let served = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (base, key, served) = (base.clone(), key.clone(), served.clone());
            tokio::spawn(async move {
                loop {
                    let r = client()
                        .post(format!("{base}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&c::chat("open-chat", 4))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            if r.bytes().await.is_ok() {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gateway.child.kill().unwrap();
    gateway.wait_exit();
    for t in load {
        t.await.unwrap();
    }
    let served = served.load(Ordering::Relaxed);
    let url = synco_gateway::db::url(data.path(), None).unwrap();
    let recorded = records(&url).await.len() as u64;
    eprintln!(
        "served {served}, recorded {recorded}, lost {}",
        served.saturating_sub(recorded)
    );
    assert!(recorded <= served);
    assert!(
        served - recorded <= BUFFER,
        "lost {} > buffer {BUFFER}",
        served - recorded
    );
    let _: Value = Value::Null;
}

/// SIGTERM in the middle of streams: each stream runs to its `[DONE]`, the gateway
/// exits cleanly, and every stream's usage record is in the database.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_streams_finishes_them_and_flushes_their_usage() {
    let Some(pg) = Postgres::start() else { return };
    // Each answer takes 3 s upstream: the streams, sent a second before the signal, are
    // in flight when it comes.
    let engine = mock(3_000).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let url = pg.url();
    let data = tempfile::tempdir().unwrap();
    let mut gateway = c::standalone(
        m.path(),
        data.path(),
        Some(&url),
        &["--token-budget", "bakery=100000000", "--budget-slice", "1000000"],
    );
    let key = c::create_key(&["--member", "bakery"], data.path(), Some(&url));
    let base = gateway.url("");
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let (base, key) = (base.clone(), key.clone());
            tokio::spawn(async move {
                let mut body = c::chat("open-chat", 4);
                body["stream"] = Value::Bool(true);
                let r = client()
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap_or_default())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let status = tokio::task::block_in_place(|| gateway.terminate());
    assert!(status.success(), "{}", gateway.log());
    for s in streams {
        let (code, text) = s.await.unwrap();
        assert_eq!(code, 200, "{text}");
        assert!(
            text.trim_end().ends_with("data: [DONE]"),
            "stream cut short: {text}"
        );
    }
    let all = records(&url).await;
    assert_eq!(all.len(), 3, "{all:?}\n{}", gateway.log());
    assert!(all.iter().all(|r| r.outcome == "completed"), "{all:?}");
}

/// The CPU this whole machine spent (user + system, every process), in seconds, from
/// `/proc/stat`: the gateway's writer and the database server both count.
fn machine_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat.lines().next().unwrap();
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap())
        .collect();
    // user nice system (idle iowait) irq softirq steal
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6];
    busy / 100.0
}

fn record(n: u64) -> synco_gateway::usage::UsageRecord {
    synco_gateway::usage::UsageRecord {
        record_id: format!("bench-{n}"),
        request_id: format!("req-{n}"),
        caller_id: format!("member-{}", n % 50),
        caller_kind: synco_gateway::admission::CallerKind::Member,
        model: "open-chat".to_owned(),
        engine: "external",
        endpoint: synco_gateway::admission::Endpoint::ChatCompletions,
        usage: synco_gateway::openai::Usage::new(12, 30),
        latency: Duration::from_millis(11),
        outcome: synco_gateway::usage::Outcome::Completed,
        finished_at: jiff::Timestamp::now(),
        charge: synco_gateway::admission::Charge::default(),
        peer: None,
    }
}

/// Offers `rate` records a second for `seconds` to a sink (one producer per record, as
/// requests are) and reports what the writer kept up with: records written a second,
/// the wait for a buffer slot (what a request would feel), and the machine's CPU per
/// thousand records.
async fn offer(
    db: &sea_orm::DatabaseConnection,
    options: synco_gateway::metering::SinkOptions,
    rate: u64,
    seconds: u64,
    first: u64,
) -> String {
    use synco_gateway::usage::UsageSink;
    let sink = Arc::new(synco_gateway::metering::DbUsageSink::start(db.clone(), options));
    let total = rate * seconds;
    let cpu = machine_cpu_seconds();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut waits = Vec::with_capacity(total as usize);
    let mut tasks = tokio::task::JoinSet::new();
    for n in first..first + total {
        tick.tick().await;
        let sink = sink.clone();
        tasks.spawn(async move {
            let asked = Instant::now();
            let slot = sink.slot().await.unwrap();
            let waited = asked.elapsed();
            sink.record(record(n), slot);
            waited
        });
        while let Some(done) = tasks.try_join_next() {
            waits.push(done.unwrap());
        }
    }
    while let Some(done) = tasks.join_next().await {
        waits.push(done.unwrap());
    }
    sink.flush().await;
    let took = started.elapsed().as_secs_f64();
    let cpu = machine_cpu_seconds() - cpu;
    assert_eq!(sink.written(), total);
    waits.sort();
    let at = |q: f64| waits[((waits.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
    format!(
        "{:>7.0} rec/s  slot wait p50 {:>7.2} ms p99 {:>7.2} ms  cpu {:>5.1} ms/1k rec",
        total as f64 / took,
        at(0.5),
        at(0.99),
        cpu * 1e6 / total as f64,
    )
}

/// `cargo test --workspace --test coop_load -- --ignored --nocapture metering_writer`:
/// the usage writer alone, on SQLite and Postgres, with batches of at most 64 (the
/// writer before issue 19) against the default (the load sets the size, up to 512),
/// offered the same rates side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: a minute of writes"]
async fn metering_writer_throughput() {
    let pg = Postgres::start().unwrap();
    let sqlite = tempfile::tempdir().unwrap();
    let dbs = [
        (
            "sqlite",
            format!("sqlite://{}/bench.db?mode=rwc", sqlite.path().display()),
        ),
        ("postgres", pg.url()),
    ];
    let mut first = 0;
    for (name, url) in &dbs {
        let db = synco_gateway::db::connect(url).await.unwrap();
        for rate in [2_000, 5_000, 10_000] {
            for batch in [64, synco_gateway::metering::SinkOptions::default().batch] {
                let options = synco_gateway::metering::SinkOptions {
                    batch,
                    ..Default::default()
                };
                let line = offer(&db, options, rate, 5, first).await;
                first += rate * 5;
                eprintln!("{name:>8} offered {rate:>6}/s batch<={batch:<4} {line}");
            }
        }
    }
}

/// What one fairness run measured.
struct Fairness {
    /// Weighted tokens (prompt + 2 × completion) served to the short and the long prompts.
    service: [f64; 2],
    /// Requests served to each.
    turns: [u64; 2],
    /// The largest gap between the two cumulative services seen while both were
    /// backlogged (sampled every 50 ms, so it includes what was in flight).
    worst_gap: f64,
    /// The largest single request's weighted tokens.
    largest: f64,
    metrics: String,
}

/// How the members' requests reach the gateway replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// One gateway.
    One,
    /// Two gateways on one Postgres, each member's workers alternating between them
    /// (as behind a load balancer).
    Alternating,
    /// Two gateways, each member always on its own one (the worst case for counters
    /// kept per replica: each replica sees one tenant).
    Pinned,
}

/// Two members of one tier (equal floors) keep a saturated engine busy for `run`: six
/// requests each always waiting or running on two slots (one per gateway with two
/// gateways), one member with prompts of 10 words, the other of 100; the engine takes
/// 1 ms per prompt token (the mock counts words as tokens), so the long prompts cost
/// ten times the engine's time.
async fn fairness(run: Duration, spread: Spread) -> Fairness {
    let engine = mock_costing(Cost {
        fixed: Duration::from_millis(2),
        per_prompt_token: Duration::from_millis(1),
        capacity: 0,
        ..Cost::default()
    })
    .await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let pg = if spread == Spread::One {
        None
    } else {
        Postgres::start()
    };
    let url = pg.as_ref().map(Postgres::url);
    let replicas = if spread == Spread::One { 1 } else { 2 };
    let slots = if replicas == 1 { "2" } else { "1" };
    let dirs: Vec<_> = (0..replicas).map(|_| tempfile::tempdir().unwrap()).collect();
    let gateways: Vec<_> = dirs
        .iter()
        .map(|d| {
            c::standalone(
                m.path(),
                d.path(),
                url.as_deref(),
                &[
                    "--engine-slots",
                    slots,
                    "--token-budget",
                    "school=1000000000",
                    "--token-budget",
                    "bakery=1000000000",
                ],
            )
        })
        .collect();
    let keys = [
        c::create_key(&["--member", "school"], dirs[0].path(), url.as_deref()),
        c::create_key(&["--member", "bakery"], dirs[0].path(), url.as_deref()),
    ];
    let bases: Vec<String> = gateways.iter().map(|g| g.url("")).collect();
    let base_for = |who: usize, worker: usize| match spread {
        Spread::One => bases[0].clone(),
        Spread::Alternating => bases[worker % 2].clone(),
        Spread::Pinned => bases[who].clone(),
    };
    let served: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let turns: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let largest = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (who, words) in [(0usize, 10usize), (1, 100)] {
        for worker in 0..6 {
            let (base, key, stop) = (base_for(who, worker), keys[who].clone(), stop.clone());
            let (served, turns, largest) = (served.clone(), turns.clone(), largest.clone());
            let prompt = vec!["word"; words].join(" ");
            load.push(tokio::spawn(async move {
                let body = serde_json::json!({
                    "model": "open-chat", "max_tokens": 4,
                    "messages": [{"role": "user", "content": prompt}],
                });
                while !stop.load(Ordering::Relaxed) {
                    let r = client()
                        .post(format!("{base}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                    let usage: Value = r.json().await.unwrap();
                    let usage = &usage["usage"];
                    let weighted = usage["prompt_tokens"].as_u64().unwrap()
                        + 2 * usage["completion_tokens"].as_u64().unwrap();
                    if !stop.load(Ordering::Relaxed) {
                        served[who].fetch_add(weighted, Ordering::Relaxed);
                        turns[who].fetch_add(1, Ordering::Relaxed);
                        largest.fetch_max(weighted, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    let started = Instant::now();
    let mut worst_gap = 0f64;
    while started.elapsed() < run {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (a, b) = (
            served[0].load(Ordering::Relaxed),
            served[1].load(Ordering::Relaxed),
        );
        worst_gap = worst_gap.max(a.abs_diff(b) as f64);
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let metrics = metrics_of(&gateways[0]).await;
    Fairness {
        service: [0, 1].map(|i| served[i].load(Ordering::Relaxed) as f64),
        turns: [0, 1].map(|i| turns[i].load(Ordering::Relaxed)),
        worst_gap,
        largest: largest.load(Ordering::Relaxed) as f64,
        metrics,
    }
}

/// Issue 18: within a tier the engine is shared in tokens, not in requests. The member
/// with ten times longer prompts gets about ten times fewer requests served and the
/// same weighted tokens; `/metrics` publishes each caller's service and Jain's index.
#[tokio::test(flavor = "multi_thread")]
async fn members_share_a_saturated_engine_in_tokens_not_requests() {
    let f = fairness(Duration::from_secs(12), Spread::One).await;
    let index = synco_gateway::quota::priority::jain(&f.service).unwrap();
    eprintln!(
        "service {:?} weighted tokens, turns {:?}, Jain {index:.3}, worst gap {} (largest request {})",
        f.service, f.turns, f.worst_gap, f.largest
    );
    assert!(index >= 0.95, "Jain's index {index}: {:?}", f.service);
    // Per request, both would have had about as many turns (Jain about 0.7 in tokens).
    assert!(f.turns[0] >= 3 * f.turns[1], "{:?}", f.turns);
    for line in [
        "synco_gateway_fair_service_tokens_total{model=\"open-chat\",tier=\"0\",caller=\"school\"}",
        "synco_gateway_fair_service_tokens_total{model=\"open-chat\",tier=\"0\",caller=\"bakery\"}",
        "synco_gateway_fairness_jain_index{model=\"open-chat\",tier=\"0\"}",
    ] {
        assert!(f.metrics.contains(line), "{line} missing:\n{}", f.metrics);
    }
}

/// `cargo test --workspace --test coop_load -- --ignored --nocapture fairness_over_a_minute`:
/// the figures for the README (issue 18's goal: Jain's index >= 0.95 over 60 s, and the
/// gap never past the VTC bound of twice the largest request, plus what is in flight).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: a minute of load"]
async fn fairness_over_a_minute() {
    let f = fairness(Duration::from_secs(60), Spread::One).await;
    report("60 s, one gateway, two slots", &f);
}

/// `cargo test --workspace --test coop_load -- --ignored --nocapture fairness_across_two_replicas`:
/// the same minute with two gateway replicas on one Postgres, one slot each, the members'
/// requests alternating between them, then each member pinned to its own replica.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: two minutes of load"]
async fn fairness_across_two_replicas() {
    let f = fairness(Duration::from_secs(60), Spread::Alternating).await;
    report("60 s, two gateways (requests alternating), one slot each", &f);
    let f = fairness(Duration::from_secs(60), Spread::Pinned).await;
    report(
        "60 s, two gateways (each member pinned to one), one slot each",
        &f,
    );
}

fn report(what: &str, f: &Fairness) {
    let index = synco_gateway::quota::priority::jain(&f.service).unwrap();
    eprintln!(
        "{what}: short prompts {:.0} weighted tokens in {} requests, long prompts {:.0} in {}; \
         Jain's index {index:.4}; worst gap {:.0} weighted tokens = {:.2} x the largest request ({:.0})",
        f.service[0],
        f.turns[0],
        f.service[1],
        f.turns[1],
        f.worst_gap,
        f.worst_gap / f.largest,
        f.largest
    );
}

/// Issue 18: saturation measured, not configured. The engine works on 4 requests at
/// once and queues the rest inside itself; the gateway may give it up to 64
/// (`--engine-slots`, now a ceiling). The limit measured from the engine's time per
/// token stays far under the ceiling (customers may hold half of it, and the tolerance
/// lets the engine be given about twice what it works on), so the queue forms in the
/// gateway, where tiers apply: a member's request overtakes the customers' backlog.
#[tokio::test(flavor = "multi_thread")]
async fn the_engine_limit_is_measured_and_the_queue_forms_where_tiers_apply() {
    let engine = mock_costing(Cost {
        fixed: Duration::from_millis(100),
        per_prompt_token: Duration::ZERO,
        capacity: 4,
        ..Cost::default()
    })
    .await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        prepaid_credit_minor: 100_000_000,
        surplus_percent: 50,
    });
    let data = tempfile::tempdir().unwrap();
    let gateway = c::standalone(
        m.path(),
        data.path(),
        None,
        &["--engine-slots", "64", "--customer-wait-seconds", "30"],
    );
    let member = c::create_key(&["--member", "school"], data.path(), None);
    let customer = c::create_key(&["--customer", "buyer"], data.path(), None);
    let base = gateway.url("");
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..32)
        .map(|_| {
            let (base, key, stop) = (base.clone(), customer.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (status, _, _) = call(&base, &key).await;
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let metrics = metrics_of(&gateway).await;
    let limit: f64 = metrics
        .lines()
        .find(|l| l.starts_with("synco_gateway_engine_concurrency_limit{model=\"open-chat\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no limit in /metrics:\n{metrics}"));
    // The demand the gateway publishes for scaling: customers' requests wait.
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{model=\"open-chat\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
    };
    assert!(gauge("synco_gateway_demand_queued_requests") >= 1.0, "{metrics}");
    assert!(gauge("synco_gateway_demand_queued_tokens") >= 1.0);
    assert!(gauge("synco_gateway_demand_running_requests") >= 1.0);
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let (status, _, took) = call(&base, &member).await;
        assert_eq!(status, 200);
        worst = worst.max(took);
    }
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.await.unwrap();
    }
    eprintln!(
        "measured limit {limit:.1} (ceiling 64, engine 4 at once, 32 customers); worst member request {worst:?}"
    );
    // Customers may hold half of what the engine works on (the limit scaled by its best
    // time per token over its recent one), so they alone never reach the limit: it grows
    // while they wait, until the engine's own queue doubles its time per token, and
    // stays under the ceiling.
    assert!((3.0..64.0).contains(&limit), "limit {limit}");
    // With 32 customers' requests in the engine, a member's would wait behind them:
    // nine services of 100 ms (customers may hold half of 64 slots). With the queue in
    // the gateway, it waits behind the few the limit lets in and its own service.
    assert!(worst < Duration::from_millis(750), "member waited {worst:?}");
}

/// A streamed chat request's time to its first chunk, or its status when refused.
async fn first_token(base: &str, key: &str) -> Result<Duration, u16> {
    let started = Instant::now();
    let mut r = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(
            &serde_json::json!({"model": "open-chat", "max_tokens": 8, "stream": true,
            "messages": [{"role": "user", "content": "hello there"}]}),
        )
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return Err(r.status().as_u16());
    }
    let first = loop {
        match r.chunk().await.unwrap() {
            Some(c) if !c.is_empty() => break started.elapsed(),
            Some(_) => {}
            None => break started.elapsed(),
        }
    };
    while r.chunk().await.unwrap().is_some() {}
    Ok(first)
}

/// Members send streamed requests at a steady rate (open loop) for `run`, two members
/// ten a second each; their times to first token, sorted.
async fn member_load(base: &str, keys: &[String], run: Duration) -> Vec<Duration> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut n = 0usize;
    while started.elapsed() < run {
        tick.tick().await;
        let (base, key) = (base.to_owned(), keys[n % keys.len()].clone());
        n += 1;
        tasks.push(tokio::spawn(async move { first_token(&base, &key).await }));
    }
    let mut times = Vec::new();
    for t in tasks {
        let took = t.await.unwrap();
        assert!(took.is_ok(), "a member was refused: {took:?}");
        times.push(took.unwrap_or_default());
    }
    times.sort();
    times
}

/// Customers keep `workers` streamed requests going (closed loop) until `stop`; the
/// requests they were served.
fn customer_load(
    base: &str,
    key: &str,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..workers)
        .map(|_| {
            let (base, key, stop) = (base.to_owned(), key.to_owned(), stop.clone());
            tokio::spawn(async move {
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) {
                    match first_token(&base, &key).await {
                        Ok(_) => served += 1,
                        Err(status) => {
                            assert_eq!(status, 429, "a customer is refused only past the surplus");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                served
            })
        })
        .collect()
}

async fn served_in(base: &str, key: &str, workers: usize, run: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = customer_load(base, key, workers, &stop);
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for t in tasks {
        served += t.await.unwrap();
    }
    served as f64 / run.as_secs_f64()
}

/// `cargo test --workspace --test coop_load -- --ignored --nocapture members_are_protected`:
/// issue 18's surplus figure. The engine works on four requests at once (40 ms each,
/// streamed at 2 ms a token); the co-op sells at most half of it. Measured one after
/// the other: the engine's capacity (members alone, closed loop), what customers alone
/// get (their cap), the members' time to first token alone (open loop, 20 a second),
/// then the members again with customers saturating: the members' p99 against their
/// own run (goal: within 1.25x), and the customers' rate against what was left to them
/// (goal: at least 90%).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: about a minute of load"]
async fn members_are_protected_under_surplus_load() {
    let engine = mock_costing(Cost {
        fixed: Duration::from_millis(40),
        capacity: 4,
        per_output_token: Duration::from_millis(2),
        ..Cost::default()
    })
    .await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        prepaid_credit_minor: 1_000_000_000,
        surplus_percent: 50,
    });
    let data = tempfile::tempdir().unwrap();
    let gateway = c::standalone(
        m.path(),
        data.path(),
        None,
        &[
            "--engine-slots",
            "16",
            "--customer-wait-seconds",
            "1",
            "--token-budget",
            "school=1000000000",
            "--token-budget",
            "bakery=1000000000",
            "--token-budget",
            "buyer=1000000000",
        ],
    );
    let members = [
        c::create_key(&["--member", "school"], data.path(), None),
        c::create_key(&["--member", "bakery"], data.path(), None),
    ];
    let customer = c::create_key(&["--customer", "buyer"], data.path(), None);
    let base = gateway.url("");
    let run = Duration::from_secs(15);
    // Warm the measured engine limit up.
    let _ = served_in(&base, &members[0], 16, Duration::from_secs(3)).await;
    let capacity = served_in(&base, &members[0], 16, run).await;
    let cap = served_in(&base, &customer, 16, run).await;
    let alone = member_load(&base, &members, run).await;
    let member_rate = alone.len() as f64 / run.as_secs_f64();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = customer_load(&base, &customer, 16, &stop);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let with = member_load(&base, &members, run).await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut customers = 0;
    for t in flood {
        customers += t.await.unwrap();
    }
    // The flood ran 2 s before and a little after the members' run.
    let customer_rate = customers as f64 / (elapsed.as_secs_f64() + 2.0);
    let p99 = |t: &[Duration]| t[(t.len() * 99 / 100).min(t.len() - 1)].as_secs_f64() * 1000.0;
    let left = cap.min(capacity - member_rate);
    eprintln!(
        "engine capacity {capacity:.1} req/s; customers alone {cap:.1} req/s (their cap); members {member_rate:.1} req/s\n\
         member time to first token: alone p50 {:.1} ms p99 {:.1} ms; with customers saturating p50 {:.1} ms p99 {:.1} ms \
         ({:.2}x)\ncustomers with members: {customer_rate:.1} req/s of {left:.1} left to them ({:.0}%)",
        alone[alone.len() / 2].as_secs_f64() * 1000.0,
        p99(&alone),
        with[with.len() / 2].as_secs_f64() * 1000.0,
        p99(&with),
        p99(&with) / p99(&alone),
        100.0 * customer_rate / left,
    );
}

/// Issue 18: work within a caller's floor is reserved; work on borrowed capacity is
/// overflow, queued behind everyone's reserved work (even a lower tier's), so it is
/// the first taken back. A co-op of 200 tokens/s: the community member `bakery` (tier 0)
/// spends its floor and borrows; the business `shop` (tier 1), within its floor, is
/// served before bakery's queued borrowed requests, where tiers alone would put it
/// behind all of them.
#[tokio::test(flavor = "multi_thread")]
async fn borrowed_work_waits_behind_every_floor() {
    const SERVICE: Duration = Duration::from_millis(200);
    // It reports a prompt's words as its tokens (a microsecond each).
    let engine = mock_costing(Cost {
        fixed: SERVICE,
        per_prompt_token: Duration::from_micros(1),
        ..Cost::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    c::write_manifests(
        dir.path(),
        &CoopSpec {
            open_engine: &engine,
            ..CoopSpec::default()
        },
    );
    let path = dir.path().join("coop.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "tokensPerSecondPerReplica: 1000000",
        "tokensPerSecondPerReplica: 100",
    );
    std::fs::write(&path, text).unwrap();
    let data = tempfile::tempdir().unwrap();
    let gateway = c::standalone(dir.path(), data.path(), None, &["--engine-slots", "1"]);
    let bakery = c::create_key(&["--member", "bakery"], data.path(), None);
    let shop = c::create_key(&["--member", "shop"], data.path(), None);
    let base = gateway.url("");
    let usage = |key: String| {
        let base = base.clone();
        async move {
            client()
                .get(format!("{base}/v1/usage"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let quota = usage(bakery.clone()).await["quota"].clone();
    assert_eq!(
        (
            quota["tokens_per_second"].as_u64(),
            quota["floor_tokens_per_second"].as_u64()
        ),
        (Some(200), Some(60)),
        "60% of 200 tokens/s shared by two community members; the rest to borrow: {quota}"
    );
    let ask = |key: String, words: usize| {
        let base = base.clone();
        async move {
            let r = client()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&serde_json::json!({
                    "model": "open-chat", "max_tokens": 4,
                    "messages": [{"role": "user", "content": vec!["word"; words].join(" ")}],
                }))
                .send()
                .await
                .unwrap();
            let lane = r
                .headers()
                .get("x-synco-lane")
                .map(|v| v.to_str().unwrap().to_owned());
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_eq!(status, 200, "{body}");
            (lane.unwrap_or_default(), Instant::now())
        }
    };
    // Bakery spends its floor (a minute of 60 tokens/s): its requests go from the
    // reserved lane to the overflow lane.
    // (Long prompts first, then ones as long as those it will queue, then short ones:
    // what a reserved request does not use goes back to its floor, and the floor refills
    // while each runs, so it ends nearly empty rather than just short of one more queued
    // request, which a slow machine would refill before the six below arrive.)
    let mut spent = 0;
    for words in [600, 100, 30] {
        while ask(bakery.clone(), words).await.0 == "reserved" {
            spent += 1;
            assert!(spent < 60, "bakery never left its floor");
        }
    }
    // Six borrowed requests queue on the one-slot engine; then shop asks, within its floor.
    let flood: Vec<_> = (0..6).map(|_| tokio::spawn(ask(bakery.clone(), 100))).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (lane, shop_done) = ask(shop.clone(), 10).await;
    let took = started.elapsed();
    assert_eq!(lane, "reserved");
    let mut after = 0;
    for f in flood {
        let (lane, done) = f.await.unwrap();
        assert_eq!(lane, "overflow");
        after += usize::from(done > shop_done);
    }
    eprintln!(
        "shop (tier 1, within its floor) served in {} ms with six of bakery's borrowed requests queued; {after} of them after it",
        took.as_millis()
    );
    // Served after at most the request running and its own, ahead of the queue (by
    // tier alone it would come after all six: 1.4 s).
    assert!(took < SERVICE * 4, "{took:?}");
    assert!(
        after >= 4,
        "{after} of bakery's borrowed requests came after shop"
    );
    let metrics = metrics_of(&gateway).await;
    assert!(
        metrics.contains("tier=\"0/overflow\",caller=\"bakery\""),
        "{metrics}"
    );
}
