//! Governance in standalone mode, measured: the API's ballot intake on SQLite, and the
//! time from a proposal's close to the new quotas being in force, with 1,000 members.
//!
//!     cargo run --release -p synco-gateway --example governance_bench [-- MEMBERS]
//!
//! Everything runs in this process on loopback and stops by itself:
//!
//! 1. **Ballot intake.** A gateway (the real router, authentication by HS256 JWT, the
//!    database store on a fresh SQLite file) serves a co-op of MEMBERS members (default
//!    1,000); one proposal is opened and every member casts a ballot through
//!    `POST /v1/governance/proposals/{name}/votes`, 64 at a time. Printed: ballots per
//!    second and p50/p99 latency.
//! 2. **Close to quotas in force.** Twenty allocation proposals, each with a ballot from
//!    every member, are closed one by one by the closing task (tally, record, new
//!    Allocation version, quotas recomputed for every member), timed from the call to
//!    the new allocation being the one in force with every member's quota. Printed:
//!    p50, p99 and the slowest.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use synco_gateway::app::{Accounts, AppState};
use synco_gateway::auth::Auth;
use synco_gateway::auth::jwt::JwtVerifier;
use synco_gateway::coop::{Coop, CoopHandle, CoopOptions};
use synco_gateway::engine::ModelRegistry;
use synco_gateway::governance::closer::Closer;
use synco_gateway::governance::db::DbStore;
use synco_gateway::governance::store::GovernanceStore;
use synco_gateway::governance::{Clock, Governance, ProposalRequest};
use synco_policies::lifecycle::{BallotForm, Position};
use tokio::net::TcpListener;

const SECRET: &str = "a-benchmark-secret-of-at-least-32-bytes";

fn manifests(members: usize) -> anyhow::Result<Vec<synco_crds::Manifest>> {
    let mut yaml = String::from(
        r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {name: bench, namespace: bench}
spec:
  displayName: Bench
  votingDefaults:
    - {kind: Allocation, method: Majority, quorumPercent: 50, votingPeriod: 1h}
  memberClasses: [{name: community, tier: 0}, {name: business, tier: 1}]
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {name: chat, namespace: bench}
spec:
  engine: {kind: External, url: "http://127.0.0.1:9/v1"}
  tokensPerSecondPerReplica: 100000
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {name: shares-v1, namespace: bench}
spec:
  version: 1
  floors: [{memberClass: community, sharePercent: 50}, {memberClass: business, sharePercent: 10}]
"#,
    );
    for i in 0..members {
        let class = if i % 10 == 0 { "business" } else { "community" };
        yaml.push_str(&format!(
            "---\napiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {{name: m{i:05}, namespace: bench}}\n\
             spec: {{displayName: m{i}, class: {class}, identity: m{i:05}}}\n"
        ));
    }
    Ok(synco_crds::manifests::parse(&yaml, "bench")?)
}

fn token(sub: &str) -> anyhow::Result<String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let exp = jiff::Timestamp::now().as_second() + 3600;
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
fn main() -> anyhow::Result<()> {
    let members: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let db = synco_gateway::db::open(dir.path()).await?;
        let store = DbStore::new(db.clone());
        let t0 = jiff::Timestamp::now().as_second();
        store.found(&manifests(members)?, t0).await?;
        let objects = store.objects().await?;
        let coop = CoopHandle::fixed(Coop::from_objects(&objects, &CoopOptions::default())?);
        let clock = Arc::new(AtomicI64::new(t0));
        let c = clock.clone();
        let now: Clock = Arc::new(move || c.load(Ordering::SeqCst));
        let governance = Arc::new(Governance::new(Arc::new(store.clone()), db.clone(), now.clone()));
        let mut state = AppState::new(ModelRegistry::default());
        state.governance = Some(governance.clone());
        state.accounts = Some(Accounts {
            coop: coop.clone(),
            db: db.clone(),
            auth: Arc::new(Auth::new(
                coop,
                db.clone(),
                Some(JwtVerifier::hs256(SECRET.as_bytes(), None, None)),
                Duration::from_secs(5),
            )),
            admin_token_sha256: None,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(synco_gateway::server::serve(listener, state, Duration::from_secs(1)));

        println!("governance, standalone mode (SQLite), {members} members, one process on loopback");
        // 1. Ballot intake through the API.
        let effect = json!({"allocation": {"floors": [{"memberClass": "community", "sharePercent": 55}]}});
        let request: ProposalRequest =
            serde_json::from_value(json!({"name": "intake", "kind": "Allocation", "title": "t", "effect": effect}))?;
        governance.propose("m00001", request).await?;
        let client = reqwest::Client::builder().pool_max_idle_per_host(128).build()?;
        let tokens: Vec<String> = (0..members).map(|i| token(&format!("m{i:05}"))).collect::<Result<_, _>>()?;
        let started = Instant::now();
        let mut latencies: Vec<Duration> = futures::stream::iter(tokens.iter())
            .map(|t| {
                let client = client.clone();
                async move {
                    let at = Instant::now();
                    let r = client
                        .post(format!("http://{addr}/v1/governance/proposals/intake/votes"))
                        .bearer_auth(t)
                        .json(&json!({"position": "Yes"}))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status() == 201, "{}: {}", r.status(), r.text().await?);
                    Ok::<_, anyhow::Error>(at.elapsed())
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let elapsed = started.elapsed();
        latencies.sort();
        println!(
            "ballot intake: {members} ballots in {:.2} s = {:.0} ballots/s (64 at a time); latency p50 {:.1} ms, p99 {:.1} ms",
            elapsed.as_secs_f64(),
            members as f64 / elapsed.as_secs_f64(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
        );

        // 2. Close to quotas in force.
        let closer = Closer::new(store.clone(), now);
        let mut closes = Vec::new();
        for run in 0..20u32 {
            let name = format!("close-{run}");
            let share = 40 + run;
            let effect = json!({"allocation": {"floors": [{"memberClass": "community", "sharePercent": share}]}});
            let request: ProposalRequest =
                serde_json::from_value(json!({"name": name, "kind": "Allocation", "title": "t", "effect": effect}))?;
            governance.propose("m00001", request).await?;
            for i in 0..members {
                let p = if i % 3 == 0 { Position::No } else { Position::Yes };
                governance
                    .cast(&format!("m{i:05}"), &name, BallotForm::position(p), None)
                    .await?;
            }
            clock.fetch_add(3600 + 3, Ordering::SeqCst);
            let at = Instant::now();
            closer.run_once().await?;
            let objects = store.objects().await?;
            let in_force = objects.in_force().ok_or_else(|| anyhow::anyhow!("no allocation"))?;
            anyhow::ensure!(in_force.spec.proposal.as_deref() == Some(name.as_str()), "not in force");
            let quotas = in_force.status.as_ref().map_or(0, |s| s.quotas.len());
            anyhow::ensure!(quotas == members, "{quotas} quotas for {members} members");
            closes.push(at.elapsed());
        }
        closes.sort();
        println!(
            "close to quotas in force: {} closes of {members} ballots each: p50 {:.0} ms, p99 {:.0} ms, slowest {:.0} ms",
            closes.len(),
            ms(percentile(&closes, 0.5)),
            ms(percentile(&closes, 0.99)),
            ms(closes.last().copied().unwrap_or_default()),
        );
        Ok(())
    })
}
