//! The governance scenario, run against standalone mode (`governance_standalone.rs`)
//! and against the real control plane with the operator (`governance_cluster.rs`).
//!
//! A co-op of six members (ana, ben, cleo, dan, eve, fay; one class, `community`), a
//! customer, and the tiny model at 50 tokens/s. The founding allocation gives the class a
//! floor of 40% and lets nobody borrow (`borrowLimitPercent: 0`), so each member's rate
//! limit is its floor: 20 tokens/s split over six members by largest remainder in name
//! order, ana 4, ben 4, the others 3; a bucket holds a minute of it (ana 240 tokens).
//! dan delegates to ben.
//!
//! ana proposes an allocation, decided by ranked choice (the bylaws'): keep the status
//! quo, give ana a floor of 10%, or of 20%. ben comments and ana replies. At the same
//! time the co-op picks an assembly day by approval. Ballots:
//!
//! | member | allocation | assembly day |
//! |---|---|---|
//! | ana | ana-20 > ana-10 | wed |
//! | ben (carries dan) | ana-10 | mon, wed |
//! | cleo | status-quo | fri |
//! | fay | status-quo > ana-10 | wed, fri |
//! | eve | status-quo (then suspended) | |
//!
//! eve is suspended before the close: her ballot is set aside and she no longer counts
//! in the electorate: 5 eligible (ana, ben, cleo, dan, fay).
//!
//! * Allocation, round 1: status-quo 2, ana-10 2 (ben and dan), ana-20 1 of 5; nobody
//!   has more than 2.5, ana-20 goes out and ana's ballot moves to ana-10. Round 2:
//!   status-quo 2, ana-10 3: **ana-10** wins. The new allocation gives ana 10% of 50 of
//!   its own plus 4 (20 over the five members in good standing): 9 tokens/s, 540 a
//!   minute. Turnout 100%, one delegation used (dan to ben), eve's ballot set aside.
//! * Assembly day (ben's ballot carries dan): mon 2, wed 4, fri 2: **wed**.
//!
//! Before the vote ana's requests get a 429 at 240 tokens a minute; after it, not until
//! 540.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![allow(clippy::unwrap_used, clippy::panic, reason = "test harness")]

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::binary;

/// The scenario's co-op, in namespace `ns`; voting periods of `period`; the model's
/// weights from `source` (a `source:` mapping in flow style).
pub fn manifests(ns: &str, period: &str, source: &str) -> String {
    let mut yaml = format!(
        r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {{name: commons, namespace: {ns}}}
spec:
  displayName: Commons Compute
  votingDefaults:
    - {{kind: Allocation, method: RankedChoice, quorumPercent: 50, votingPeriod: {period}}}
    - {{kind: FreeText, method: Approval, quorumPercent: 50, votingPeriod: {period}}}
  memberClasses:
    - {{name: community, tier: 0}}
  surplus:
    maxSharePercent: 30
    currency: EUR
    priceFloor: {{inputPerMillion: 10, outputPerMillion: 20}}
    rateCard: [{{model: tiny, inputPerMillion: 10, outputPerMillion: 20}}]
---
apiVersion: synco.coop/v1alpha1
kind: Customer
metadata: {{name: buyer, namespace: {ns}}}
spec: {{displayName: Buyer, identity: buyer, billing: Invoiced}}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: tiny, namespace: {ns}}}
spec:
  servedName: tiny
  source: {source}
  engine: {{kind: Embedded}}
  tokensPerSecondPerReplica: 50
  access: {{customers: true}}
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {{name: shares-v1, namespace: {ns}}}
spec:
  version: 1
  floors: [{{memberClass: community, sharePercent: 40}}]
  surplusCapPercent: 30
  borrowLimitPercent: 0
---
apiVersion: synco.coop/v1alpha1
kind: Delegation
metadata: {{name: dan, namespace: {ns}}}
spec: {{member: dan, delegate: ben}}
"#
    );
    for m in MEMBERS {
        yaml.push_str(&format!(
            "---\napiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {{name: {m}, namespace: {ns}}}\n\
             spec: {{displayName: {m}, class: community, identity: {m}}}\n"
        ));
    }
    yaml
}

pub const MEMBERS: [&str; 6] = ["ana", "ben", "cleo", "dan", "eve", "fay"];

/// What the scenario needs of a mode.
#[async_trait]
pub trait Env: Send + Sync {
    /// The gateway's URL for `path`.
    fn url(&self, path: &str) -> String;
    /// A bearer token for the member or customer whose identity is `who`.
    fn token(&self, who: &str) -> String;
    /// Suspends a member, as an administrator does in this mode.
    async fn suspend(&self, member: &str);
    /// The gateway's log, for failures.
    fn log(&self) -> String;
}

/// One HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn call(env: &dyn Env, method: &str, path: &str, who: Option<&str>, body: Option<Value>) -> Answer {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), env.url(path));
    if let Some(who) = who {
        request = request.bearer_auth(env.token(who));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.timeout(Duration::from_secs(60)).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn floors(ana: u32) -> Value {
    let mut floors = vec![json!({"memberClass": "community", "sharePercent": 40})];
    if ana > 0 {
        floors.push(json!({"member": "ana", "sharePercent": ana}));
    }
    json!({"allocation": {"floors": floors, "surplusCapPercent": 30, "borrowLimitPercent": 0}})
}

/// Sends chats as `who` until a 429 (at most `most`); returns the tokens served before
/// it less what the bucket refilled meanwhile at `rate` tokens/s, the 429 and the limit
/// header the first answer carried.
pub async fn until_429(env: &dyn Env, who: &str, rate: u64, most: usize) -> (u64, Answer, String) {
    let started = Instant::now();
    let mut served = 0u64;
    let mut first_limit = String::new();
    for _ in 0..most {
        let a = call(
            env,
            "POST",
            "/v1/chat/completions",
            Some(who),
            Some(json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16})),
        )
        .await;
        if first_limit.is_empty() {
            first_limit = a.header("x-ratelimit-limit-tokens");
            assert!(
                !first_limit.is_empty(),
                "{who}'s first answer: {} {}\n{}",
                a.status,
                a.body,
                env.log()
            );
        }
        if a.status == 429 {
            let refilled = (started.elapsed().as_secs_f64() * rate as f64).ceil() as u64;
            return (served.saturating_sub(refilled), a, first_limit);
        }
        assert_eq!(a.status, 200, "{}\n{}", a.body, env.log());
        served += a.body["usage"]["total_tokens"].as_u64().unwrap();
    }
    panic!("no 429 after {most} requests ({served} tokens)");
}

/// Waits until proposal `name` is in `phase`.
pub async fn wait_phase(env: &dyn Env, name: &str, phase: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let a = call(
            env,
            "GET",
            &format!("/v1/governance/proposals/{name}"),
            Some("cleo"),
            None,
        )
        .await;
        if a.body["status"]["phase"] == phase {
            return a.body;
        }
        assert!(
            started.elapsed() < within,
            "{name} is {} after {within:?}, not {phase}\n{}",
            a.body["status"]["phase"],
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Recounts a decided proposal's published record with `synco-gateway governance
/// verify`; then changes one ballot and checks the recount no longer matches. Returns
/// the fingerprint.
pub fn verify(record: &Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("record.json");
    std::fs::write(&file, serde_json::to_vec(record).unwrap()).unwrap();
    let out = std::process::Command::new(binary())
        .args(["governance", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fingerprint = found["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(record["outcome"]["fingerprint"], fingerprint.as_str());

    let mut forged = record.clone();
    let ballots = forged["record"]["ballots"].as_array_mut().unwrap();
    let first = &mut ballots[0]["ballot"];
    *first = if first.get("ranking").is_some() {
        json!({"ranking": ["status-quo"]})
    } else {
        json!({"approvals": ["mon"]})
    };
    std::fs::write(&file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = std::process::Command::new(binary())
        .args(["governance", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a changed ballot still verifies");
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(found["fingerprint"], fingerprint.as_str());
    fingerprint
}

/// The whole scenario. `period_seconds` is the bylaws' voting period.
pub async fn run(env: &dyn Env, period_seconds: u64) {
    // Before the vote: the founding allocation's limits are the ones enforced (in a
    // cluster, once the operator has published them).
    let started = Instant::now();
    let coop = loop {
        let coop = call(env, "GET", "/v1/governance/coop", Some("ana"), None).await;
        if coop.status == 200
            && coop.body["quota"]["guaranteedTokensPerSecond"]
                .as_u64()
                .is_some_and(|g| g > 0)
        {
            break coop;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}\n{}",
            coop.body,
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        coop.body["quota"]["guaranteedTokensPerSecond"], 4,
        "{}",
        coop.body
    );
    assert_eq!(coop.body["quota"]["borrowLimitTokensPerSecond"], 0);
    // The gateway's limits follow what the store publishes within its reload interval.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (served, refused, limit) = until_429(env, "cleo", 3, 60).await;
    assert_eq!(limit, "180", "cleo: 3 tokens/s, a minute of them");
    assert!(
        served <= 180,
        "cleo was served {served} tokens (less refills) on a limit of 180"
    );
    assert_eq!(refused.code(), "rate_limit_exceeded");
    assert_eq!(refused.header("x-ratelimit-limit-tokens"), "180");
    assert!(refused.header("retry-after").parse::<u64>().unwrap() >= 1);
    let hello = call(
        env,
        "POST",
        "/v1/chat/completions",
        Some("ana"),
        Some(json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})),
    )
    .await;
    assert_eq!(hello.status, 200, "{}", hello.body);
    assert_eq!(hello.header("x-ratelimit-limit-tokens"), "240", "ana: 4 tokens/s");

    // Refusals that need no proposal.
    let someone_else = call(
        env,
        "POST",
        "/v1/governance/proposals",
        Some("ana"),
        Some(json!({"kind": "FreeText", "title": "x", "proposer": "ben"})),
    )
    .await;
    assert_eq!(someone_else.status, 403, "{}", someone_else.body);
    let rules = call(
        env,
        "POST",
        "/v1/governance/proposals",
        Some("ana"),
        Some(json!({"kind": "FreeText", "title": "x", "voting": {"method": "Majority"}})),
    )
    .await;
    assert_eq!(
        rules.status, 400,
        "the proposer cannot set the rules: {}",
        rules.body
    );
    let customer = call(env, "GET", "/v1/governance/proposals", Some("buyer"), None).await;
    assert_eq!(customer.status, 403);
    let anonymous = call(env, "GET", "/v1/governance/proposals", None, None).await;
    assert_eq!(anonymous.status, 401);

    // ana proposes; the rules and window are the bylaws'.
    let options = json!([
        {"name": "status-quo"},
        {"name": "ana-10", "effect": floors(10)},
        {"name": "ana-20", "effect": floors(20)},
    ]);
    let opened = call(
        env,
        "POST",
        "/v1/governance/proposals",
        Some("ana"),
        Some(
            json!({"name": "ana-floor", "kind": "Allocation", "title": "A floor for ana",
            "body": "ana runs the tutoring service.", "options": options}),
        ),
    )
    .await;
    assert_eq!(opened.status, 201, "{}\n{}", opened.body, env.log());
    assert_eq!(opened.body["spec"]["proposer"], "ana");
    assert_eq!(opened.body["status"]["phase"], "Open");
    assert_eq!(opened.body["status"]["rules"]["method"], "RankedChoice");
    assert_eq!(opened.body["status"]["electorate"].as_array().unwrap().len(), 6);
    assert!(opened.body["status"]["tieBreakSeed"].is_string());
    let day = call(
        env,
        "POST",
        "/v1/governance/proposals",
        Some("fay"),
        Some(
            json!({"name": "assembly-day", "kind": "FreeText", "title": "Which day for the assembly?",
            "options": [{"name": "mon"}, {"name": "wed"}, {"name": "fri"}]}),
        ),
    )
    .await;
    assert_eq!(day.status, 201, "{}", day.body);

    // Discussion.
    let comment = call(
        env,
        "POST",
        "/v1/governance/proposals/ana-floor/comments",
        Some("ben"),
        Some(json!({"body": "Exams need it."})),
    )
    .await;
    assert_eq!(comment.status, 201, "{}", comment.body);
    let reply = call(
        env,
        "POST",
        "/v1/governance/proposals/ana-floor/comments",
        Some("ana"),
        Some(json!({"body": "Thank you, ben.", "replyTo": comment.body["id"]})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let thread = call(
        env,
        "GET",
        "/v1/governance/proposals/ana-floor/comments",
        Some("cleo"),
        None,
    )
    .await;
    assert_eq!(thread.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(thread.body["data"][1]["replyTo"], comment.body["id"]);

    // Delegation as the members see it.
    let ben = call(env, "GET", "/v1/governance/delegation", Some("ben"), None).await;
    assert_eq!(ben.body["delegators"], json!(["dan"]), "{}", ben.body);

    // Ballots.
    for (who, ranking) in [
        ("ana", json!(["ana-20", "ana-10"])),
        ("ben", json!(["ana-10"])),
        ("cleo", json!(["status-quo"])),
        ("fay", json!(["status-quo", "ana-10"])),
        ("eve", json!(["status-quo"])),
    ] {
        let a = call(
            env,
            "POST",
            "/v1/governance/proposals/ana-floor/votes",
            Some(who),
            Some(json!({"ranking": ranking})),
        )
        .await;
        assert_eq!(a.status, 201, "{who}: {}\n{}", a.body, env.log());
        assert_eq!(a.body["receipt"].as_str().unwrap().len(), 64);
    }
    for (who, approvals) in [
        ("ana", json!(["wed"])),
        ("ben", json!(["mon", "wed"])),
        ("cleo", json!(["fri"])),
        ("fay", json!(["wed", "fri"])),
    ] {
        let a = call(
            env,
            "POST",
            "/v1/governance/proposals/assembly-day/votes",
            Some(who),
            Some(json!({"approvals": approvals})),
        )
        .await;
        assert_eq!(a.status, 201, "{who}: {}", a.body);
    }

    // The refusals.
    let vote = |who: &'static str, body: Value| async move {
        call(
            env,
            "POST",
            "/v1/governance/proposals/ana-floor/votes",
            Some(who),
            Some(body),
        )
        .await
    };
    let again = vote("ben", json!({"ranking": ["status-quo"]})).await;
    assert_eq!(
        (again.status, again.code()),
        (409, "already_voted"),
        "{}",
        again.body
    );
    let for_dan = vote("ana", json!({"member": "dan", "ranking": ["ana-20"]})).await;
    assert_eq!(for_dan.status, 403, "{}", for_dan.body);
    let customer = vote("buyer", json!({"ranking": ["ana-20"]})).await;
    assert_eq!(customer.status, 403, "{}", customer.body);
    let wrong = vote("dan", json!({"position": "Yes"})).await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (400, "invalid_ballot"),
        "{}",
        wrong.body
    );
    let edit = call(
        env,
        "PATCH",
        "/v1/governance/proposals/ana-floor",
        Some("ana"),
        Some(json!({"title": "changed"})),
    )
    .await;
    assert_eq!(edit.status, 405, "a proposal cannot be edited: {}", edit.body);
    let delete = call(
        env,
        "DELETE",
        "/v1/governance/proposals/ana-floor/votes",
        Some("ben"),
        None,
    )
    .await;
    assert_eq!(delete.status, 405, "a ballot cannot be deleted");
    let withdraw = call(
        env,
        "DELETE",
        "/v1/governance/proposals/ana-floor",
        Some("ana"),
        None,
    )
    .await;
    assert_eq!(
        (withdraw.status, withdraw.code()),
        (409, "has_ballots"),
        "{}",
        withdraw.body
    );

    // eve is suspended before the close.
    env.suspend("eve").await;

    let decided = wait_phase(
        env,
        "ana-floor",
        "Applied",
        Duration::from_secs(period_seconds + 60),
    )
    .await;
    let s = &decided["status"];
    assert_eq!(s["winner"], "ana-10", "{decided}");
    let rounds = s["tally"]["rounds"].as_array().unwrap();
    let counts = |r: &Value| -> Vec<(String, String)> {
        r["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["option"].as_str().unwrap().to_owned(),
                    c["count"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        counts(&rounds[0]),
        [
            ("status-quo".into(), "2".into()),
            ("ana-10".into(), "2".into()),
            ("ana-20".into(), "1".into())
        ]
    );
    assert_eq!(rounds[0]["eliminated"], "ana-20");
    assert_eq!(
        counts(&rounds[1]),
        [("status-quo".into(), "2".into()), ("ana-10".into(), "3".into())]
    );
    assert_eq!(rounds[1]["elected"], "ana-10");
    assert_eq!(s["eligibleWeight"], "5");
    assert_eq!(s["turnoutPercent"], "100");
    assert_eq!(s["countedVotes"], 4);
    assert_eq!(s["delegationsUsed"], json!([{"from": "dan", "to": "ben"}]));
    let aside = s["ignoredVotes"].as_array().unwrap();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(aside[0]["member"], "eve");
    assert!(
        aside[0]["reason"].as_str().unwrap().starts_with("Suspended"),
        "{aside:?}"
    );
    assert!(s["appliedTo"].as_str().unwrap().starts_with("Allocation/"));

    let day = wait_phase(env, "assembly-day", "Applied", Duration::from_secs(30)).await;
    assert_eq!(day["status"]["winner"], "wed");
    let totals: Vec<String> = day["status"]["tally"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(totals, ["2", "4", "2"]);

    // A late ballot.
    let late = vote("dan", json!({"ranking": ["ana-20"]})).await;
    assert_eq!(
        (late.status, late.code()),
        (409, "voting_closed"),
        "{}",
        late.body
    );

    // Anyone can recount from the published ballots.
    for name in ["ana-floor", "assembly-day"] {
        let record = call(
            env,
            "GET",
            &format!("/v1/governance/proposals/{name}/record"),
            Some("cleo"),
            None,
        )
        .await;
        assert_eq!(record.status, 200, "{}", record.body);
        let fingerprint = verify(&record.body);
        let p = call(
            env,
            "GET",
            &format!("/v1/governance/proposals/{name}"),
            Some("cleo"),
            None,
        )
        .await;
        assert_eq!(p.body["status"]["fingerprint"], fingerprint.as_str());
    }

    // Delegation: ana delegates to ben, then revokes it.
    let set = call(
        env,
        "PUT",
        "/v1/governance/delegation",
        Some("ana"),
        Some(json!({"delegate": "ben"})),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["delegate"], "ben");
    let ben = call(env, "GET", "/v1/governance/delegation", Some("ben"), None).await;
    assert_eq!(ben.body["delegators"], json!(["ana", "dan"]), "{}", ben.body);
    let itself = call(
        env,
        "PUT",
        "/v1/governance/delegation",
        Some("ana"),
        Some(json!({"delegate": "ana"})),
    )
    .await;
    assert_eq!(itself.status, 400);
    let revoked = call(env, "DELETE", "/v1/governance/delegation", Some("ana"), None).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.body["delegate"], Value::Null);

    // A proposal withdrawn before anyone voted takes no ballot.
    let second = call(
        env,
        "POST",
        "/v1/governance/proposals",
        Some("fay"),
        Some(
            json!({"name": "never-mind", "kind": "FreeText", "title": "Never mind",
            "options": [{"name": "a"}, {"name": "b"}]}),
        ),
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.body);
    let not_hers = call(
        env,
        "DELETE",
        "/v1/governance/proposals/never-mind",
        Some("ana"),
        None,
    )
    .await;
    assert_eq!(not_hers.status, 403, "{}", not_hers.body);
    let withdrawn = call(
        env,
        "DELETE",
        "/v1/governance/proposals/never-mind",
        Some("fay"),
        None,
    )
    .await;
    assert_eq!(withdrawn.status, 200, "{}\n{}", withdrawn.body, env.log());
    assert_eq!(withdrawn.body["status"]["phase"], "Withdrawn");
    let after = call(
        env,
        "POST",
        "/v1/governance/proposals/never-mind/votes",
        Some("ana"),
        Some(json!({"approvals": ["a"]})),
    )
    .await;
    assert_eq!((after.status, after.code()), (409, "withdrawn"), "{}", after.body);

    // The new allocation is in force, and ana's limit is its quota: 9 tokens/s.
    let started = Instant::now();
    loop {
        let coop = call(env, "GET", "/v1/governance/coop", Some("ana"), None).await;
        if coop.body["quota"]["guaranteedTokensPerSecond"] == 9 {
            assert_eq!(coop.body["allocation"]["spec"]["proposal"], "ana-floor");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{}", coop.body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Limits reach the gateway within its reload interval.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (served, refused, limit) = until_429(env, "ana", 9, 120).await;
    assert_eq!(limit, "540", "ana's limit after the vote");
    assert!(
        served > 240,
        "ana was refused after {served} tokens: the old limit (240), not the new one (540)"
    );
    assert!(
        served <= 540,
        "ana was served {served} tokens (less refills) on a limit of 540"
    );
    assert_eq!(refused.code(), "rate_limit_exceeded");
    assert_eq!(refused.header("x-ratelimit-limit-tokens"), "540");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("9 tokens per second")
    );
}
