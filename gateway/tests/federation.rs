//! Federation: three co-ops on loopback, each a real standalone gateway (the binary,
//! SQLite, its own signing key and bylaws) in front of its own mock engines.
//!
//! - riverside (A) serves `shared-chat` on a one-request engine and borrows
//!   `shared-chat`, `big-chat` and `story` from hillside, and `story` from valley;
//! - hillside (B) lends those three to riverside (half of each engine at most, tier 5,
//!   priced); it does not know valley;
//! - valley (C) lends `story` to riverside (reciprocity) and would borrow from
//!   hillside, which refuses it.
//!
//! One test walks through overflow, residency, tiering, the settlement ledgers,
//! security and faults in order, because the gateways take seconds to start.

#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::coop::{self as c};
use common::postgres::Postgres;
use common::{Gateway, binary};
use futures::StreamExt;
use serde_json::{Value, json};
use synco_gateway::federation::keys::SigningKey;
use synco_gateway::mock_upstream::{Cost, start_with_cost};

const A: &str = "riverside";
const B: &str = "hillside";
const C: &str = "valley";

/// Writes a signing key with the CLI; returns its path and public key.
fn keygen(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("federation.pem");
    let out = std::process::Command::new(binary())
        .args(["federation", "keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(public.len(), 43, "{public}");
    (path, public)
}

/// A co-op: its folders, key and port, and its gateway once started.
struct Coop {
    name: &'static str,
    port: u16,
    key: PathBuf,
    public: String,
    manifests: tempfile::TempDir,
    data: tempfile::TempDir,
    /// Postgres instead of SQLite.
    database_url: Option<String>,
    gateway: Option<Gateway>,
}

impl Coop {
    fn new(name: &'static str) -> Self {
        let manifests = tempfile::tempdir().unwrap();
        let (key, public) = keygen(manifests.path());
        Self {
            name,
            port: common::free_port(),
            key,
            public,
            manifests,
            data: tempfile::tempdir().unwrap(),
            database_url: None,
            gateway: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn gw(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    /// Writes the bylaws (`peers` and `models` are YAML fragments) and starts the gateway.
    fn start(&mut self, peers: &str, models: &str, extra: &[&str]) {
        let ns = self.name;
        let text = format!(
            r"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {{name: {ns}, namespace: {ns}}}
spec:
  displayName: {ns}
  memberClasses:
    - {{name: community, tier: 0}}
    - {{name: sensitive, tier: 1, localOnly: true}}
  peers:
{peers}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {{name: ana, namespace: {ns}}}
spec: {{displayName: Ana, class: community, identity: ana-{ns}}}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {{name: lou, namespace: {ns}}}
spec: {{displayName: Lou, class: sensitive, identity: lou-{ns}}}
{models}
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {{name: allocation-v1, namespace: {ns}}}
spec:
  version: 1
  floors:
    - {{memberClass: community, sharePercent: 60}}
    - {{memberClass: sensitive, sharePercent: 20}}
"
        );
        std::fs::write(self.manifests.path().join("coop.yaml"), text).unwrap();
        let mut args: Vec<String> = [
            "standalone",
            "--manifests",
            &self.manifests.path().display().to_string(),
            "--jwt-hs256-secret",
            c::SECRET,
            "--jwt-issuer",
            c::ISSUER,
            "--jwt-audience",
            c::AUDIENCE,
            "--admin-token-sha256",
            ADMIN_SHA256,
            "--federation-key",
            &self.key.display().to_string(),
            "--federation-exchange-ms",
            "300",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(c::db_args(self.data.path(), self.database_url.as_deref()));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        self.gateway = Some(Gateway::start_listening(
            tempfile::tempdir().unwrap(),
            &args,
            &[],
            &format!("127.0.0.1:{}", self.port),
        ));
    }

    fn token(&self, member: &str) -> String {
        c::token(c::SECRET, &c::claims(&format!("{member}-{}", self.name)))
    }

    /// The settlement ledger with `peer` this month, from the CLI.
    fn settlement(&self, peer: &str) -> Value {
        let out = std::process::Command::new(binary())
            .args(["federation", "settlement", "--peer", peer, "--month", &c::month()])
            .args(c::db_args(self.data.path(), self.database_url.as_deref()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The federated requests with `peer` this month, from the CLI.
    fn records(&self, peer: &str) -> Vec<Value> {
        let out = std::process::Command::new(binary())
            .args(["federation", "records", "--peer", peer, "--month", &c::month()])
            .args(c::db_args(self.data.path(), self.database_url.as_deref()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn kill(&mut self) {
        if let Some(mut gateway) = self.gateway.take() {
            gateway.child.kill().unwrap();
            gateway.child.wait().unwrap();
        }
    }
}

/// The admin token is "federation-admin".
const ADMIN_SHA256: &str = "3030fc8abb3e75c85b180e9085aed75f5e244ec5e381fae818a6e6b1feb2eada";

/// An InferenceModel served by the mock engine at `engine`.
fn model(ns: &str, name: &str, engine: std::net::SocketAddr) -> String {
    format!(
        r#"---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: {name}, namespace: {ns}}}
spec:
  engine: {{kind: External, url: "http://{engine}/v1"}}
  tokensPerSecondPerReplica: 1000000
  concurrentRequestsPerReplica: 1000
  capabilities: {{chat: true}}
"#
    )
}

const PRICE: &str = "{price: {currency: EUR, inputPerMillion: 100000, outputPerMillion: 200000}}";

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream,
           "messages": [{"role": "user", "content": "How should the surplus be shared?"}]})
}

/// A chat completion as `token`; returns the status, the provenance co-op and the body.
async fn ask(client: &reqwest::Client, gw: &Gateway, token: &str, model: &str) -> (u16, String, Value) {
    let response = client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&chat_body(model, false))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let coop = response
        .headers()
        .get("x-synco-coop")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, coop, response.json().await.unwrap_or(Value::Null))
}

/// A call to `gw`'s federation endpoint with a raw peer token.
async fn as_peer(client: &reqwest::Client, gw: &Gateway, token: &str, model: &str) -> (u16, Value) {
    let response = client
        .post(gw.url("/federation/v1/chat/completions"))
        .bearer_auth(token)
        .json(&chat_body(model, false))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Waits until `gw` offers `model` from `peer` in its `/v1/models`.
async fn wait_offered(client: &reqwest::Client, gw: &Gateway, token: &str, model: &str, peer: &str) {
    let started = Instant::now();
    loop {
        let list: Value = client
            .get(gw.url("/v1/models"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == model && m["owned_by"] == peer)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{model} never offered by {peer}: {list}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_coops_lend_borrow_settle_and_fail_over() {
    // Engines: riverside's serves one request at a time; hillside's and valley's more.
    let slow = |fixed_ms: u64, capacity: usize| Cost {
        fixed: Duration::from_millis(fixed_ms),
        capacity,
        ..Cost::default()
    };
    let a_engine = start_with_cost(slow(400, 1)).await.unwrap();
    let b_engine = start_with_cost(slow(250, 2)).await.unwrap();
    let b_story = start_with_cost(Cost {
        per_output_token: Duration::from_millis(700),
        ..Cost::default()
    })
    .await
    .unwrap();
    let c_story = start_with_cost(Cost::default()).await.unwrap();

    let (mut a, mut b, mut cc) = (Coop::new(A), Coop::new(B), Coop::new(C));
    let a_peers = format!(
        "    - {{name: {B}, url: '{}', publicKey: {}, borrow: [shared-chat, big-chat, story], tier: 5, terms: {PRICE}}}\n    \
         - {{name: {C}, url: '{}', jwksUrl: '{}/federation/jwks.json', borrow: [story], tier: 5, terms: {{reciprocal: {{allowanceTokens: 1000000}}}}}}",
        b.url(),
        b.public,
        cc.url(),
        cc.url()
    );
    let b_peers = format!(
        "    - {{name: {A}, url: '{}', publicKey: {}, lend: [shared-chat, big-chat, story], maxLendPercent: 50, tier: 5, terms: {PRICE}}}",
        a.url(),
        a.public
    );
    let c_peers = format!(
        "    - {{name: {A}, url: '{}', publicKey: {}, lend: [story], maxLendPercent: 100, tier: 5, terms: {{reciprocal: {{allowanceTokens: 1000000}}}}}}\n    \
         - {{name: {B}, url: '{}', publicKey: {}, borrow: [shared-chat], tier: 5, terms: {PRICE}}}",
        a.url(),
        a.public,
        b.url(),
        b.public
    );
    b.start(
        &b_peers,
        &(model(B, "shared-chat", b_engine)
            + &model(B, "big-chat", b_engine)
            + &model(B, "story", b_story)
            + &model(B, "members-only", b_engine)),
        &[],
    );
    // valley starts later (step 6): until then riverside's exchanges with it fail.
    a.start(
        &a_peers,
        &model(A, "shared-chat", a_engine),
        &["--engine-slots", "1", "--federation-overflow-after-ms", "150"],
    );
    let client = reqwest::Client::new();
    let ana = a.token("ana");
    wait_offered(&client, a.gw(), &ana, "big-chat", B).await;

    // 1. Overflow: riverside's engine takes one request at a time; of six at once, the
    //    first runs at home and the ones that wait past 150 ms go to hillside.
    let asks = (0..6).map(|_| ask(&client, a.gw(), &ana, "shared-chat"));
    let answers = futures::future::join_all(asks).await;
    let mut places: Vec<String> = answers
        .iter()
        .map(|(status, coop, body)| {
            assert_eq!(*status, 200, "{body}");
            coop.clone()
        })
        .collect();
    places.sort();
    assert!(places.contains(&A.to_owned()), "{places:?}");
    assert!(places.contains(&B.to_owned()), "{places:?}");
    // Requests hillside served for riverside, as their answers say.
    let mut lent = places.iter().filter(|p| *p == B).count() as u64;
    // A model only peers serve goes to the one that offers it.
    let (status, coop, body) = ask(&client, a.gw(), &ana, "big-chat").await;
    assert_eq!((status, coop.as_str()), (200, B), "{body}");
    lent += 1;

    // 2. Residency: lou is local only. Saturated, its requests wait at home (never at
    //    hillside); a model only peers serve is refused.
    let lou = a.token("lou");
    let asks = (0..4).map(|_| ask(&client, a.gw(), &lou, "shared-chat"));
    for (status, coop, body) in futures::future::join_all(asks).await {
        assert_eq!((status, coop.as_str()), (200, A), "{body}");
    }
    let (status, _, body) = ask(&client, a.gw(), &lou, "big-chat").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stay in this co-op"),
        "{body}"
    );

    // 3. Tiering: riverside floods big-chat at hillside while hillside's own member
    //    asks; hillside serves its member ahead of the peer's queue.
    let bea = b.token("ana");
    let flood = {
        let (client, gw_url, ana) = (client.clone(), a.gw().url("/v1/chat/completions"), ana.clone());
        tokio::spawn(async move {
            let asks = (0..12).map(|_| {
                let (client, url, ana) = (client.clone(), gw_url.clone(), ana.clone());
                async move {
                    let started = Instant::now();
                    let r = client
                        .post(url)
                        .bearer_auth(ana)
                        .json(&chat_body("big-chat", false))
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), started.elapsed())
                }
            });
            futures::future::join_all(asks).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut own = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let (status, coop, body) = ask(&client, b.gw(), &bea, "big-chat").await;
        assert_eq!((status, coop.as_str()), (200, B), "{body}");
        own.push(started.elapsed());
    }
    let flooded = flood.await.unwrap();
    let served: Vec<Duration> = flooded
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, d)| *d)
        .collect();
    let slowest_own = own.iter().max().copied().unwrap();
    let slowest_peer = served.iter().max().copied().unwrap_or_default();
    eprintln!(
        "tiering: hillside's member {own:?}; riverside's {} served (slowest {slowest_peer:?}), {} refused",
        served.len(),
        flooded.len() - served.len()
    );
    assert!(
        !served.is_empty(),
        "some of riverside's requests were served: {flooded:?}"
    );
    // A member waits at most for one running request (250 ms) plus its own, never
    // behind the peer's queue of twelve.
    assert!(slowest_own < Duration::from_millis(1500), "{own:?}");
    assert!(slowest_own < slowest_peer, "own {own:?}, peer's {served:?}");
    lent += served.len() as u64;

    // 4. The ledgers agree to the token (records are written within a second).
    let started = Instant::now();
    let (a_ledger, b_ledger) = loop {
        let (a_ledger, b_ledger) = (a.settlement(B), b.settlement(A));
        if a_ledger["borrowed"]["requests"] == lent && b_ledger["lent"]["requests"] == lent {
            break (a_ledger, b_ledger);
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "ledgers disagree:\n{a_ledger:#}\n{b_ledger:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!("settlement: {a_ledger:#}\n{b_ledger:#}");
    assert_eq!(a_ledger["borrowed"], b_ledger["lent"], "to the token");
    assert_eq!(a_ledger["borrowed"]["cost_micro"], b_ledger["lent"]["cost_micro"]);
    assert!(
        a_ledger["borrowed"]["cost_micro"].as_u64().unwrap() > 0,
        "{a_ledger}"
    );
    assert_eq!(a_ledger["currency"], "EUR");
    assert_eq!(
        a_ledger["balance_tokens"].as_i64().unwrap(),
        -b_ledger["balance_tokens"].as_i64().unwrap()
    );
    // Record by record, by the request id both sides keep.
    let ids = |records: Vec<Value>| {
        let mut v: Vec<(String, u64, u64)> = records
            .iter()
            .map(|r| {
                (
                    r["request_id"].as_str().unwrap().to_owned(),
                    r["prompt_tokens"].as_u64().unwrap(),
                    r["completion_tokens"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(a.records(B)), ids(b.records(A)));
    // Riverside can also read hillside's side over the wire, with its own token.
    let key = SigningKey::read(&a.key).unwrap();
    let theirs: Value = client
        .get(b.gw().url("/federation/settlement"))
        .bearer_auth(key.token(A, B).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, b_ledger);
    // lou's prompts never reached hillside: every record there is riverside's overflow.
    assert_eq!(
        b_ledger["lent"]["requests"].as_u64().unwrap(),
        a_ledger["borrowed"]["requests"].as_u64().unwrap()
    );

    // 5. Security at hillside's federation endpoint.
    // valley is not hillside's peer.
    let valley = SigningKey::read(&cc.key).unwrap();
    let (status, body) = as_peer(&client, b.gw(), &valley.token(C, B).unwrap(), "big-chat").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a trusted peer of hillside"),
        "{body}"
    );
    // A token claiming to be riverside, signed with another key.
    let (pem, _) = synco_gateway::federation::keys::generate().unwrap();
    let forger = SigningKey::from_pem(pem.as_bytes()).unwrap();
    let (status, body) = as_peer(&client, b.gw(), &forger.token(A, B).unwrap(), "big-chat").await;
    assert_eq!(status, 401, "{body}");
    // A real token, used twice.
    let once = key.token(A, B).unwrap();
    assert_eq!(as_peer(&client, b.gw(), &once, "big-chat").await.0, 200);
    let (status, body) = as_peer(&client, b.gw(), &once, "big-chat").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("replay"),
        "{body}"
    );
    // A token for another co-op.
    let (status, _) = as_peer(&client, b.gw(), &key.token(A, C).unwrap(), "big-chat").await;
    assert_eq!(status, 401);
    // A model hillside does not lend to riverside.
    let (status, body) = as_peer(&client, b.gw(), &key.token(A, B).unwrap(), "members-only").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not lend"),
        "{body}"
    );
    // A peer's token is no member's key.
    let response = client
        .post(b.gw().url("/v1/chat/completions"))
        .bearer_auth(key.token(A, B).unwrap())
        .json(&chat_body("big-chat", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // 6. Faults: a story streams from hillside, the only peer up that serves it;
    //    hillside is killed mid-stream.
    let response = client
        .post(a.gw().url("/v1/chat/completions"))
        .bearer_auth(&ana)
        .json(&chat_body("story", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-synco-coop"], B);
    assert_eq!(response.headers()["x-synco-model"], "story");
    assert_eq!(response.headers()["x-synco-engine"], "external");
    let mut events = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("Surplus") {
        text.push_str(&String::from_utf8_lossy(&events.next().await.unwrap().unwrap()));
    }
    b.kill();
    while let Some(chunk) = events.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.contains("\"error\""), "an error event: {text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "a clean end: {text}");
    assert!(
        !text.contains("members."),
        "the stream was not finished elsewhere: {text}"
    );
    // No other peer serves stories yet: refused, clearly.
    let (status, _, body) = ask(&client, a.gw(), &ana, "story").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no peer co-op"),
        "{body}"
    );
    // valley, which riverside trusts, comes up: new stories go there. (riverside checks
    // valley's tokens against the JWKS valley serves, when valley asks for its catalogue.)
    cc.start(&c_peers, &model(C, "story", c_story), &[]);
    wait_offered(&client, a.gw(), &ana, "story", C).await;
    let (status, coop, body) = ask(&client, a.gw(), &ana, "story").await;
    assert_eq!((status, coop.as_str()), (200, C), "{body}");
    let started = Instant::now();
    loop {
        let view: Value = client
            .get(cc.gw().url("/admin/v1/federation/peers"))
            .bearer_auth("federation-admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let up = |name: &str| {
            view.as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()["up"]
                .clone()
        };
        assert_eq!(up(B), false, "{view}");
        if up(A) == true {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "riverside never accepted valley: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // big-chat only hillside served: refused.
    let (status, _, body) = ask(&client, a.gw(), &ana, "big-chat").await;
    assert_eq!(status, 503, "{body}");
    // With valley gone too, stories are refused.
    cc.kill();
    let (status, _, body) = ask(&client, a.gw(), &ana, "story").await;
    assert!(status == 502 || status == 503, "{status} {body}");
    let (status, _, body) = ask(&client, a.gw(), &ana, "story").await;
    assert_eq!(status, 503, "{body}");
    // Riverside's own model still serves, at home.
    let (status, coop, _) = ask(&client, a.gw(), &ana, "shared-chat").await;
    assert_eq!((status, coop.as_str()), (200, A));
}

/// Two co-ops over one mock engine: hillside lends `m` to riverside (`lend_percent` of
/// it, on `terms`), riverside borrows it; hillside keeps its records in `lender_db`
/// (Postgres) when given. Returns once riverside offers `m` from hillside.
struct Pair {
    a: Coop,
    b: Coop,
    b_peers: String,
    engine: std::net::SocketAddr,
    client: reqwest::Client,
    ana: String,
}

async fn lender_and_borrower(terms: &str, lend_percent: u32, lender_db: Option<String>) -> Pair {
    let engine = start_with_cost(Cost::default()).await.unwrap();
    let (mut a, mut b) = (Coop::new(A), Coop::new(B));
    b.database_url = lender_db;
    let a_peers = format!(
        "    - {{name: {B}, url: '{}', publicKey: {}, borrow: [m], tier: 5, terms: {terms}}}",
        b.url(),
        b.public
    );
    let b_peers = format!(
        "    - {{name: {A}, url: '{}', publicKey: {}, lend: [m], maxLendPercent: {lend_percent}, tier: 5, terms: {terms}}}",
        a.url(),
        a.public
    );
    b.start(&b_peers, &model(B, "m", engine), &[]);
    a.start(&a_peers, &model(A, "local", engine), &[]);
    let client = reqwest::Client::new();
    let ana = a.token("ana");
    wait_offered(&client, a.gw(), &ana, "m", B).await;
    Pair {
        a,
        b,
        b_peers,
        engine,
        client,
        ana,
    }
}

/// The latency a federated hop adds: the same chat request, one at a time, to
/// hillside directly (as its member) and through riverside (as riverside's member, the
/// model served only at hillside), interleaved, over a mock engine that answers at
/// once. Bounded: `FEDERATION_BENCH_REQUESTS` (default 2,000) of each.
///
/// `BENCH_GATEWAY_BIN=<release synco-gateway> cargo test --workspace --test federation
/// -- --ignored --nocapture federated_hop`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: thousands of requests"]
async fn federated_hop_latency() {
    let n: usize = std::env::var("FEDERATION_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let Pair {
        a, b, client, ana, ..
    } = lender_and_borrower(PRICE, 100, None).await;
    let bea = b.token("ana");
    let body = serde_json::to_vec(&chat_body("m", false)).unwrap();
    let time = |url: String, token: String| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            let started = Instant::now();
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.bytes().await.unwrap();
            started.elapsed()
        }
    };
    let (direct_url, hop_url) = (
        b.gw().url("/v1/chat/completions"),
        a.gw().url("/v1/chat/completions"),
    );
    // Warm up both paths (connections, budget leases).
    for _ in 0..50 {
        time(direct_url.clone(), bea.clone()).await;
        time(hop_url.clone(), ana.clone()).await;
    }
    let (mut direct, mut hop) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        direct.push(time(direct_url.clone(), bea.clone()).await);
        hop.push(time(hop_url.clone(), ana.clone()).await);
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    };
    let row = |name: &str, v: &mut Vec<Duration>| {
        let (p50, p90, p99) = (pct(v, 0.5), pct(v, 0.9), pct(v, 0.99));
        println!("{name:<32} p50 {p50:7.3} ms  p90 {p90:7.3} ms  p99 {p99:7.3} ms");
        p50
    };
    println!("federated hop, {n} sequential chat requests each, mock engine answering at once:");
    let d = row("direct to hillside (its member)", &mut direct);
    let h = row("via riverside (federated)", &mut hop);
    println!("the hop adds {:.3} ms at p50 (goal: under 1 ms)", h - d);
    // Every federated request was metered on both sides.
    let started = Instant::now();
    loop {
        let (mine, theirs) = (a.settlement(B), b.settlement(A));
        if mine["borrowed"] == theirs["lent"]
            && mine["borrowed"]["requests"].as_u64() == Some((n + 50) as u64)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{mine:#}\n{theirs:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The ledgers agree when the lender keeps its records in Postgres (the borrower in
/// SQLite): whole and streamed answers, priced.
#[tokio::test(flavor = "multi_thread")]
async fn ledgers_agree_with_a_postgres_lender() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let Pair {
        a,
        b,
        b_peers,
        engine,
        client,
        ana,
    } = lender_and_borrower(PRICE, 50, Some(pg.url())).await;
    for stream in [false, true, false, true, false] {
        let response = client
            .post(a.gw().url("/v1/chat/completions"))
            .bearer_auth(&ana)
            .json(&chat_body("m", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["x-synco-coop"], B);
        let text = response.text().await.unwrap();
        assert!(text.contains("Surplus"), "{text}");
    }
    let started = Instant::now();
    loop {
        let (mine, theirs) = (a.settlement(B), b.settlement(A));
        if mine["borrowed"] == theirs["lent"] && mine["borrowed"]["requests"] == 5 {
            // 5 prompt and 4 completion tokens each, at 0.1 and 0.2 EUR per million.
            assert_eq!(mine["borrowed"]["tokens"], 45);
            assert_eq!(mine["borrowed"]["cost_micro"], 5 * (5 * 100_000 + 4 * 200_000));
            assert_eq!(mine["balance_micro"], -(5 * (5 * 100_000 + 4 * 200_000)));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{mine:#}\n{theirs:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(a.records(B).len(), 5);
    assert_eq!(
        a.records(B)
            .iter()
            .map(|r| r["request_id"].clone())
            .collect::<Vec<_>>(),
        b.records(A)
            .iter()
            .map(|r| r["request_id"].clone())
            .collect::<Vec<_>>()
    );
    // After the comparison: these direct calls are lent with no borrower's record.
    // A second replica of hillside on the same database: a token replayed to it is
    // refused as well (the ids seen are shared through Postgres).
    let mut b2 = Coop::new(B);
    b2.key.clone_from(&b.key);
    b2.public.clone_from(&b.public);
    b2.database_url = Some(pg.url());
    b2.start(&b_peers, &model(B, "m", engine), &[]);
    let key = SigningKey::read(&a.key).unwrap();
    let once = key.token(A, B).unwrap();
    assert_eq!(as_peer(&client, b.gw(), &once, "m").await.0, 200);
    let (status, body) = as_peer(&client, b2.gw(), &once, "m").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("replay"),
        "{body}"
    );
    assert_eq!(
        as_peer(&client, b2.gw(), &key.token(A, B).unwrap(), "m").await.0,
        200
    );
}

/// Under reciprocity a peer borrows at most what it lent in the month plus the
/// allowance: past it, the lender refuses with the rule's numbers, and the borrower's
/// member sees that refusal.
#[tokio::test(flavor = "multi_thread")]
async fn reciprocity_caps_what_a_peer_borrows() {
    let Pair {
        a, b, client, ana, ..
    } = lender_and_borrower("{reciprocal: {allowanceTokens: 30}}", 50, None).await;
    // Each answer is 9 tokens; lending is refused once more than 30 were lent (the
    // lender reads its ledger every two seconds, so the refusal may come a little late).
    let started = Instant::now();
    let refusal = loop {
        let (status, coop, body) = ask(&client, a.gw(), &ana, "m").await;
        if status == 429 {
            break body;
        }
        assert_eq!((status, coop.as_str()), (200, B), "{body}");
        assert!(started.elapsed() < Duration::from_secs(30), "never refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the bylaws allow 30 more than it lent"),
        "{refusal}"
    );
    assert_eq!(refusal["error"]["code"], "insufficient_quota");
    let lent = b.settlement(A)["lent"]["tokens"].as_u64().unwrap();
    assert!(lent > 30, "refused only past the allowance: {lent}");
    assert_eq!(b.settlement(A)["currency"], "");
    assert_eq!(b.settlement(A)["lent"]["cost_micro"], 0);
}
