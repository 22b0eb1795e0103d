//! A small co-op for the identity, quota and billing tests: its manifests, keys,
//! tokens, and helpers to run standalone gateways against SQLite or Postgres.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![allow(clippy::unwrap_used, clippy::panic, reason = "test harness")]

use std::path::Path;
use std::process::Command;

use super::{Gateway, binary};

/// The HS256 secret the gateways accept.
pub const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";
pub const ISSUER: &str = "synco-test";
pub const AUDIENCE: &str = "synco-gateway";

/// What the co-op looks like; `engine` is an InferenceModel `engine:` block in flow style.
pub struct CoopSpec<'a> {
    pub open_engine: &'a str,
    pub prepaid_credit_minor: u64,
    pub surplus_percent: u32,
}

impl Default for CoopSpec<'_> {
    fn default() -> Self {
        Self {
            open_engine: "{kind: Embedded}",
            prepaid_credit_minor: 1000,
            surplus_percent: 50,
        }
    }
}

/// Writes the manifests into `dir`.
pub fn write_manifests(dir: &Path, spec: &CoopSpec<'_>) {
    let text = format!(
        r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {{name: testcoop, namespace: t}}
spec:
  displayName: Test Co-op
  votingDefaults:
    - {{kind: Allocation, method: Majority, quorumPercent: 50, votingPeriod: 7d}}
  memberClasses:
    - {{name: community, tier: 0}}
    - {{name: business, tier: 1}}
  surplus:
    maxSharePercent: {surplus}
    currency: EUR
    priceFloor: {{inputPerMillion: 100000, outputPerMillion: 200000}}
    rateCard:
      - {{model: open-chat, inputPerMillion: 100000, outputPerMillion: 300000}}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {{name: school, namespace: t}}
spec: {{displayName: School, organisation: School, class: community, identity: school-sub}}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {{name: bakery, namespace: t}}
spec: {{displayName: Bakery, organisation: WorkerCoop, class: community, identity: bakery-sub}}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {{name: shop, namespace: t}}
spec: {{displayName: Shop, organisation: LocalBusiness, class: business, identity: shop-sub}}
---
apiVersion: synco.coop/v1alpha1
kind: Customer
metadata: {{name: buyer, namespace: t}}
spec: {{displayName: Buyer, identity: buyer-sub, billing: Prepaid, prepaidCreditMinor: {credit}}}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: open-chat, namespace: t}}
spec:
  servedName: open-chat
  source: {{hub: Qwen/Qwen2.5-0.5B-Instruct}}
  engine: {engine}
  tokensPerSecondPerReplica: 1000000
  # The load tests run hundreds of requests at once from one caller; each caller's
  # concurrency is its part of this.
  concurrentRequestsPerReplica: 1000
  capabilities: {{chat: true}}
  access: {{customers: true}}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: members-chat, namespace: t}}
spec:
  servedName: members-chat
  engine: {{kind: External, url: "http://127.0.0.1:9/v1"}}
  tokensPerSecondPerReplica: 1000000
  concurrentRequestsPerReplica: 1000
  capabilities: {{chat: true}}
  access: {{classes: [community, business], customers: false}}
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {{name: allocation-v1, namespace: t}}
spec:
  version: 1
  floors:
    - {{memberClass: community, sharePercent: 60}}
    - {{memberClass: business, sharePercent: 10}}
  surplusCapPercent: {surplus}
"#,
        surplus = spec.surplus_percent,
        credit = spec.prepaid_credit_minor,
        engine = spec.open_engine,
    );
    std::fs::write(dir.join("coop.yaml"), text).unwrap();
}

/// The manifests as one YAML text, every object in namespace `ns`.
pub fn manifests_in(ns: &str, spec: &CoopSpec<'_>) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), spec);
    std::fs::read_to_string(dir.path().join("coop.yaml"))
        .unwrap()
        .replace("namespace: t}", &format!("namespace: {ns}}}"))
}

/// `--data-dir` and, for Postgres, `--database-url`.
pub fn db_args(data_dir: &Path, database_url: Option<&str>) -> Vec<String> {
    let mut args = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
    if let Some(url) = database_url {
        args.push("--database-url".to_owned());
        args.push(url.to_owned());
    }
    args
}

/// Starts a standalone gateway on the co-op in `manifests`.
pub fn standalone(manifests: &Path, data_dir: &Path, database_url: Option<&str>, extra: &[&str]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "standalone".to_owned(),
        "--manifests".to_owned(),
        manifests.display().to_string(),
        "--tiny-model".to_owned(),
        "--jwt-hs256-secret".to_owned(),
        SECRET.to_owned(),
        "--jwt-issuer".to_owned(),
        ISSUER.to_owned(),
        "--jwt-audience".to_owned(),
        AUDIENCE.to_owned(),
    ];
    args.extend(db_args(data_dir, database_url));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Gateway::start(dir, &args)
}

/// Runs an admin command and returns its stdout.
pub fn admin(args: &[&str], data_dir: &Path, database_url: Option<&str>) -> String {
    let output = Command::new(binary())
        .args(args)
        .args(db_args(data_dir, database_url))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Creates a key with `keys create` (`who` is `--member NAME` or `--customer NAME`).
pub fn create_key(who: &[&str], data_dir: &Path, database_url: Option<&str>) -> String {
    let mut args = vec!["keys", "create"];
    args.extend_from_slice(who);
    let key = admin(&args, data_dir, database_url).trim().to_owned();
    assert!(key.starts_with("sk-synco-"), "{key}");
    key
}

/// An HS256 token with these claims, signed with `secret`.
pub fn token(secret: &str, claims: &serde_json::Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Good claims for `sub`.
pub fn claims(sub: &str) -> serde_json::Value {
    serde_json::json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "nbf": now() - 10})
}

/// A chat request body.
pub fn chat(model: &str, max_tokens: u32) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
}

/// The current month, `YYYY-MM`.
pub fn month() -> String {
    jiff::Timestamp::now().strftime("%Y-%m").to_string()
}

/// A usage record as the metering sink writes it (model `tiny`), finished at `at`
/// (RFC 3339, UTC); customers' are in EUR.
pub fn usage_record(
    caller: &str,
    kind: &str,
    at: &str,
    prompt: i64,
    completion: i64,
    cost_micro: i64,
) -> synco_gateway::db::usage_record::ActiveModel {
    use sea_orm::ActiveValue::{NotSet, Set};
    synco_gateway::db::usage_record::ActiveModel {
        id: NotSet,
        request_id: Set(format!("req-{caller}-{at}")),
        caller: Set(caller.to_owned()),
        caller_kind: Set(kind.to_owned()),
        model: Set("tiny".to_owned()),
        endpoint: Set("chat_completions".to_owned()),
        prompt_tokens: Set(prompt),
        completion_tokens: Set(completion),
        latency_ms: Set(12),
        outcome: Set("completed".to_owned()),
        finished_at: Set(at.to_owned()),
        record_id: Set(Some(format!("rec-{caller}-{at}"))),
        cost_micro: Set(cost_micro),
        currency: Set(if kind == "customer" { "EUR" } else { "" }.to_owned()),
        peer: Set(None),
        peer_cost_micro: Set(0),
    }
}
