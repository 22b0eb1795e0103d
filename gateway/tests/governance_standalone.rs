//! The governance scenario (`common/scenario.rs`) against standalone mode: the real
//! binary, SQLite, the tiny model in process, the closing task in the gateway; eve is
//! suspended with `synco-gateway governance suspend`, as an administrator would.

#![expect(clippy::expect_used, reason = "tests")]

mod common;

use async_trait::async_trait;
use common::coop::{self as c};
use common::scenario::{self, Env};
use common::{Gateway, binary};

struct Standalone {
    gateway: Gateway,
    data: std::path::PathBuf,
}

#[async_trait]
impl Env for Standalone {
    fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }
    fn token(&self, who: &str) -> String {
        c::token(c::SECRET, &c::claims(who))
    }
    async fn suspend(&self, member: &str) {
        let out = std::process::Command::new(binary())
            .args(["governance", "suspend", member, "--data-dir"])
            .arg(&self.data)
            .output()
            .expect("the CLI runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    fn log(&self) -> String {
        self.gateway.log()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn members_propose_discuss_delegate_and_vote_and_the_vote_changes_a_real_429() {
    let manifests = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        manifests.path().join("coop.yaml"),
        scenario::manifests("commons", "25s", "{hub: Qwen/Qwen2.5-0.5B-Instruct}"),
    )
    .expect("the manifests are written");
    let data = tempfile::tempdir().expect("a temp dir");
    let gateway = c::standalone(manifests.path(), data.path(), None, &[]);
    let env = Standalone {
        gateway,
        data: data.path().to_owned(),
    };
    scenario::run(&env, 25).await;
}

/// A model output written by hand, for the summary the test asks for: two sentences
/// citing the discussion's real comments, one citing a comment that does not exist and
/// one citing none. Its usage says 300 prompt and 40 completion tokens.
/// While `down` is set it answers 503, as an engine that is down behind its proxy.
async fn canned_engine(down: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::net::SocketAddr {
    use axum::response::IntoResponse as _;
    use axum::routing::post;
    async fn answer(
        axum::extract::State(down): axum::extract::State<std::sync::Arc<std::sync::atomic::AtomicBool>>,
        axum::Json(body): axum::Json<serde_json::Value>,
    ) -> axum::response::Response {
        if down.load(std::sync::atomic::Ordering::Relaxed) {
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({"error": {"message": "the engine is down", "type": "server_error"}}),
                ),
            )
                .into_response();
        }
        let user = body["messages"][1]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let system = body["messages"][0]["content"].as_str().unwrap_or_default();
        if system.contains("common ground") {
            return common_ground_answer(&body, &user).into_response();
        }
        if system.starts_with("Draft the co-op proposal") {
            let draft = serde_json::json!({"kind": "FreeText", "title": "Exam weeks",
                "body": format!("Asked: {user}"), "options": [{"name": "yes"}, {"name": "after the exams"}]});
            return axum::Json(serde_json::json!({
                "id": "canned", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": draft.to_string()}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
            }))
            .into_response();
        }
        let ids: Vec<String> = user
            .match_indices("[c")
            .filter_map(|(at, _)| {
                let rest = &user[at + 2..];
                rest.find(']').map(|end| rest[..end].to_owned())
            })
            .collect();
        let (first, second) = (
            ids.first().cloned().unwrap_or_default(),
            ids.last().cloned().unwrap_or_default(),
        );
        let text = format!(
            "Ana wants the assembly on a weekday evening [c{first}]. \
             Ben prefers Saturdays for the families [c{second}]. \
             Everyone agreed on the budget [c99999]. \
             The vote is close."
        );
        axum::Json(serde_json::json!({
            "id": "canned", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340}
        }))
        .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let router = axum::Router::new()
        .route("/v1/chat/completions", post(answer))
        .with_state(down);
    tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the canned engine serves");
    });
    addr
}

/// The canned engine's common-ground answers: candidate statements numbered in the
/// order asked (a counter), and a revision that quotes the critiques it was given.
fn common_ground_answer(body: &serde_json::Value, user: &str) -> axum::Json<serde_json::Value> {
    static ASKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let text = match user.split_once("Critiques:\n") {
        Some((_, critiques)) => format!(
            "Meet on alternate days, answering: {}",
            critiques.lines().map(str::trim).collect::<Vec<_>>().join(" / ")
        ),
        None => format!(
            "  Candidate {} on the day of the assembly.\n",
            ASKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    axum::Json(serde_json::json!({
        "id": "canned", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 200, "completion_tokens": 30, "total_tokens": 230}
    }))
}

/// The governance assistant: a member asks for a cited summary; the checker keeps the
/// two sentences that cite real comments; the summary carries its AI label and
/// provenance in the API and on the page; it is metered to the co-op and stays within
/// the co-op's governance budget; with its engine gone, no summary comes and votes go on.
#[tokio::test(flavor = "multi_thread")]
async fn the_assistant_summarises_with_citations_and_never_blocks_governance() {
    // A budget of 1,500 tokens: room for two summaries, not three.
    let Commons { gw, down, _dirs } = commons(None, 1500).await;
    let data = &_dirs.1;
    let client = reqwest::Client::new();
    let (ana, ben) = (
        c::token(c::SECRET, &c::claims("ana")),
        c::token(c::SECRET, &c::claims("ben")),
    );
    let call = |method: reqwest::Method, path: &str, who: &str, body: Option<serde_json::Value>| {
        let mut r = client.request(method, gw.url(path)).bearer_auth(who);
        if let Some(body) = body {
            r = r.json(&body);
        }
        r.send()
    };
    let made = call(
        reqwest::Method::POST,
        "/v1/governance/proposals",
        &ana,
        Some(serde_json::json!({"name": "assembly-day", "kind": "FreeText", "title": "Which day for the assembly?",
            "options": [{"name": "weekday"}, {"name": "saturday"}]})),
    )
    .await
    .expect("proposed");
    assert_eq!(
        made.status().as_u16(),
        201,
        "{}",
        made.text().await.unwrap_or_default()
    );
    let path = "/v1/governance/proposals/assembly-day";
    // Nothing to summarise yet, and no summary.
    let none = call(reqwest::Method::POST, &format!("{path}/summary"), &ana, None)
        .await
        .expect("asked");
    assert_eq!(none.status().as_u16(), 409);
    let none = call(reqwest::Method::GET, &format!("{path}/summary"), &ana, None)
        .await
        .expect("asked");
    assert_eq!(none.status().as_u16(), 404);
    let mut ids = Vec::new();
    for (who, text) in [
        (&ana, "A weekday evening suits the workers."),
        (&ben, "Saturday suits the families."),
    ] {
        let r = call(
            reqwest::Method::POST,
            &format!("{path}/comments"),
            who,
            Some(serde_json::json!({"body": text})),
        )
        .await
        .expect("commented");
        let v: serde_json::Value = r.json().await.expect("a comment");
        ids.push(v["id"].as_i64().expect("an id"));
    }
    let r = call(reqwest::Method::POST, &format!("{path}/summary"), &ben, None)
        .await
        .expect("asked");
    assert_eq!(r.status().as_u16(), 201);
    let summary: serde_json::Value = r.json().await.expect("a summary");
    assert_eq!(summary["label"], "AI-written");
    let sentences = summary["sentences"].as_array().expect("sentences");
    assert_eq!(sentences.len(), 2, "{summary:#}");
    assert_eq!(
        sentences[0]["text"],
        "Ana wants the assembly on a weekday evening."
    );
    assert_eq!(sentences[0]["cites"], serde_json::json!([ids[0]]));
    assert_eq!(sentences[1]["cites"], serde_json::json!([ids[1]]));
    assert_eq!(
        (
            summary["droppedUncited"].as_u64(),
            summary["droppedFabricated"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let p = &summary["provenance"];
    assert_eq!(
        (p["model"].as_str(), p["engine"].as_str()),
        (Some("helper"), Some("external"))
    );
    assert_eq!(p["templateVersion"], "summary-v1");
    assert_eq!(p["comments"], serde_json::json!(ids));
    assert_eq!(
        (
            p["temperature"].as_f64(),
            p["seed"].as_u64(),
            p["maxTokens"].as_u64()
        ),
        (Some(0.0), Some(0), Some(400))
    );
    let again = call(reqwest::Method::GET, &format!("{path}/summary"), &ana, None)
        .await
        .expect("read");
    assert_eq!(
        again.json::<serde_json::Value>().await.expect("a summary"),
        summary
    );

    // On the page, labelled, with its provenance and links to the comments.
    let signed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let r = signed
        .post(gw.url("/governance/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={ana}"))
        .send()
        .await
        .expect("signed in");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("a cookie")
        .split(';')
        .next()
        .expect("a pair")
        .to_owned();
    let html = signed
        .get(gw.url("/governance/proposals/assembly-day"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("the page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains(r#"<strong id="ai-label">AI-written</strong>"#),
        "{html}"
    );
    assert!(
        html.contains("by the co-op&#39;s model helper") || html.contains("by the co-op's model helper"),
        "{html}"
    );
    assert!(html.contains("prompt summary-v1"), "{html}");
    assert!(
        html.contains(&format!("<a href=\"#comment-{}\">#{}</a>", ids[0], ids[0])),
        "{html}"
    );
    assert!(
        html.contains("Left out: 1 sentences citing no comment and 1 citing a comment that does not exist"),
        "{html}"
    );
    assert!(
        !html.contains("budget [c99999]") && !html.contains("Everyone agreed"),
        "{html}"
    );

    // The engine goes away: no summary, a clear answer, and governance goes on.
    down.store(true, std::sync::atomic::Ordering::Relaxed);
    let r = call(reqwest::Method::POST, &format!("{path}/summary"), &ben, None)
        .await
        .expect("asked");
    assert_eq!(r.status().as_u16(), 503);
    let body: serde_json::Value = r.json().await.expect("an error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no summary this time"),
        "{body}"
    );
    let vote = call(
        reqwest::Method::POST,
        &format!("{path}/votes"),
        &ben,
        Some(serde_json::json!({"approvals": ["saturday"]})),
    )
    .await
    .expect("voted");
    assert!(
        vote.status().is_success(),
        "{}",
        vote.text().await.unwrap_or_default()
    );
    let page = signed
        .get(gw.url("/governance/proposals/assembly-day"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("the page");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("AI-written"), "the last summary is still shown");
    down.store(false, std::sync::atomic::Ordering::Relaxed);

    // The co-op's budget of 1,500 tokens: each summary reserves its worst case (the
    // request's bytes and 400 completion tokens, about 1,050) and uses 340; a third
    // does not fit.
    let r = call(reqwest::Method::POST, &format!("{path}/summary"), &ana, None)
        .await
        .expect("asked");
    assert_eq!(r.status().as_u16(), 201);
    let r = call(reqwest::Method::POST, &format!("{path}/summary"), &ana, None)
        .await
        .expect("asked");
    assert_eq!(r.status().as_u16(), 429, "{}", r.text().await.unwrap_or_default());
    // Metered to the co-op, not to a member (records are written within a second).
    let started = std::time::Instant::now();
    let csv = loop {
        let out = std::process::Command::new(binary())
            .args(["usage", "export", "--month", &c::month()])
            .args(c::db_args(data.path(), None))
            .output()
            .expect("the export runs");
        let csv = String::from_utf8_lossy(&out.stdout).into_owned();
        if csv.lines().any(|l| l.starts_with("coop:assistant,coop,,3,")) {
            break csv;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "{csv}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let line = csv
        .lines()
        .find(|l| l.starts_with("coop:assistant,coop,"))
        .unwrap_or_default();
    assert!(
        line.contains(",3,600,80,"),
        "two summaries and the failed try metered: {line}"
    );
    assert!(
        !csv.lines()
            .any(|l| l.starts_with("ana,") || l.starts_with("ben,")),
        "{csv}"
    );
}

/// Drafting with the test's tiny model (random weights, so its words are noise): the
/// output is constrained to the drafting schema, so each of 100 drafts parses as a
/// Proposal and passes its checks, by construction. A draft creates nothing until the
/// member sends it as a proposal.
#[tokio::test(flavor = "multi_thread")]
async fn one_hundred_drafts_from_the_tiny_model_are_valid_proposals() {
    use futures::StreamExt as _;
    let manifests = tempfile::tempdir().expect("a temp dir");
    let yaml = r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {name: commons, namespace: commons}
spec:
  displayName: Commons
  votingDefaults:
    - {kind: Allocation, method: Majority, votingPeriod: 1h}
  memberClasses:
    - {name: community, tier: 0}
    - {name: schools, tier: 0}
  assistant: {model: helper, monthlyTokens: 10000000}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {name: ana, namespace: commons}
spec: {displayName: Ana, class: community, identity: ana}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {name: school, namespace: commons}
spec: {displayName: School, class: schools, identity: school}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {name: helper, namespace: commons}
spec:
  source: {hub: Qwen/Qwen2.5-0.5B-Instruct}
  engine: {kind: Embedded}
  tokensPerSecondPerReplica: 1000
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {name: allocation-v1, namespace: commons}
spec:
  version: 1
  floors: [{memberClass: community, sharePercent: 50}]
"#;
    std::fs::write(manifests.path().join("coop.yaml"), yaml).expect("the manifests are written");
    let data = tempfile::tempdir().expect("a temp dir");
    let gw = c::standalone(manifests.path(), data.path(), None, &[]);
    let ana = c::token(c::SECRET, &c::claims("ana"));
    let client = reqwest::Client::new();
    let url = gw.url("/v1/governance/drafts");
    let drafts: Vec<serde_json::Value> = futures::stream::iter(0..100)
        .map(|n| {
            let (client, url, ana) = (client.clone(), url.clone(), ana.clone());
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(ana)
                    .json(&serde_json::json!({"request": format!("give the school {n}% during exams")}))
                    .send()
                    .await
                    .expect("drafted");
                let status = r.status().as_u16();
                let body = r.json::<serde_json::Value>().await.expect("a draft");
                assert_eq!(status, 200, "{body}");
                body
            }
        })
        // Eight at a time: the embedded engine runs constrained requests one by one
        // (mistral.rs 0.8.1 corrupts its KV cache when it batches them, which failed a
        // few drafts in a hundred here before), so all eight wait their turn and pass.
        .buffer_unordered(8)
        .collect()
        .await;
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for d in &drafts {
        assert_eq!(d["label"], "AI-written");
        assert_eq!(d["valid"], true, "{d:#}");
        assert_eq!(d["provenance"]["templateVersion"], "draft-v1");
        *kinds
            .entry(d["proposal"]["kind"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    println!("100 drafts from the tiny model, all valid; kinds: {kinds:?}");
    // Nothing was created; the member sends one as a proposal.
    let list: serde_json::Value = client
        .get(gw.url("/v1/governance/proposals"))
        .bearer_auth(&ana)
        .send()
        .await
        .expect("listed")
        .json()
        .await
        .expect("a list");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
    let mut chosen = drafts[0]["proposal"].clone();
    chosen["name"] = "drafted".into();
    let made = client
        .post(gw.url("/v1/governance/proposals"))
        .bearer_auth(&ana)
        .json(&chosen)
        .send()
        .await
        .expect("proposed");
    let status = made.status().as_u16();
    assert_eq!(status, 201, "{}", made.text().await.unwrap_or_default());
}

/// The evaluation command scores the tiny model on the discussions kept in the
/// repository: its drafts are all valid (the schema sees to that); its noise cites
/// nothing, so its summaries keep no sentence.
#[test]
fn the_evaluation_command_scores_the_tiny_model() {
    let out = std::process::Command::new(binary())
        .args(["assistant", "eval", "--model"])
        .arg(common::tiny_model())
        .arg("--discussions")
        .arg(common::repo_root().join("gateway/assistant-eval"))
        .output()
        .expect("the evaluation runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("text");
    println!("{text}");
    let score: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a JSON line")).expect("the scores as JSON");
    assert_eq!(score["discussions"], 3);
    assert_eq!(score["drafts"], 6);
    assert_eq!(score["schema_validity"], 1.0);
    let validity = score["citation_validity"].as_f64().expect("a figure");
    assert!((0.0..=1.0).contains(&validity));
    assert!(text.contains("citation validity"), "{text}");
}

/// Common ground, after the Habermas Machine: the assistant writes four candidate
/// statements from the discussion; five members rank them; the convener closes the
/// ranking and the `policies` Schulze tally picks the Condorcet winner (not the
/// plurality's); members critique it; with the engine down the revision fails and the
/// round waits; then one revision answers the critiques and becomes a new proposal's
/// body. Late, forged and malformed inputs are refused, and the assistant casts nothing.
#[tokio::test(flavor = "multi_thread")]
async fn common_ground_statements_are_ranked_by_schulze_critiqued_and_revised_into_a_proposal() {
    common_ground_round(None).await;
}

/// The same round with the gateway on Postgres (the upserts and the round's row lock).
#[tokio::test(flavor = "multi_thread")]
async fn common_ground_on_postgres() {
    let Some(pg) = common::postgres::Postgres::start() else {
        return;
    };
    common_ground_round(Some(&pg.url())).await;
}

/// A running co-op of five members (ana, ben, cleo, dan, eve) whose assistant runs on
/// the canned engine within `monthly_tokens`; `down` makes the engine answer 503.
struct Commons {
    gw: Gateway,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn commons(database_url: Option<&str>, monthly_tokens: u64) -> Commons {
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine = canned_engine(down.clone()).await;
    let manifests = tempfile::tempdir().expect("a temp dir");
    let members: String = ["ana", "ben", "cleo", "dan", "eve"]
        .iter()
        .map(|m| {
            format!(
                "---\napiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {{name: {m}, namespace: commons}}\n\
                 spec: {{displayName: {m}, class: community, identity: {m}}}\n"
            )
        })
        .collect();
    let yaml = format!(
        r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {{name: commons, namespace: commons}}
spec:
  displayName: Commons
  votingDefaults:
    - {{kind: FreeText, method: Approval, votingPeriod: 1h}}
  memberClasses:
    - {{name: community, tier: 0}}
  assistant: {{model: helper, monthlyTokens: {monthly_tokens}}}
{members}---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: helper, namespace: commons}}
spec:
  engine: {{kind: External, url: "http://{engine}/v1"}}
  tokensPerSecondPerReplica: 1000
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {{name: allocation-v1, namespace: commons}}
spec:
  version: 1
  floors: [{{memberClass: community, sharePercent: 50}}]
"#
    );
    std::fs::write(manifests.path().join("coop.yaml"), yaml).expect("the manifests are written");
    let data = tempfile::tempdir().expect("a temp dir");
    let gw = c::standalone(manifests.path(), data.path(), database_url, &[]);
    Commons {
        gw,
        down,
        _dirs: (manifests, data),
    }
}

async fn common_ground_round(database_url: Option<&str>) {
    let Commons { gw, down, _dirs } = commons(database_url, 100_000).await;
    let client = reqwest::Client::new();
    let token = |who: &str| c::token(c::SECRET, &c::claims(who));
    let call = |who: &str, method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut r = client.request(method, gw.url(path)).bearer_auth(token(who));
        if let Some(body) = body {
            r = r.json(&body);
        }
        async move {
            let r = r.send().await.expect("sent");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let post = reqwest::Method::POST;
    let (status, made) = call(
        "ana",
        post.clone(),
        "/v1/governance/proposals",
        Some(serde_json::json!({"name": "assembly-day", "kind": "FreeText", "title": "Which day for the assembly?",
            "options": [{"name": "weekday"}, {"name": "saturday"}]})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let path = "/v1/governance/proposals/assembly-day/common-ground";
    let (status, _) = call("ana", post.clone(), path, None).await;
    assert_eq!(status, 409, "no comments to find common ground in yet");
    let mut ids = Vec::new();
    for (who, text) in [
        ("ana", "A weekday evening suits the workers."),
        ("ben", "Saturday suits the families."),
    ] {
        let (_, v) = call(
            who,
            post.clone(),
            "/v1/governance/proposals/assembly-day/comments",
            Some(serde_json::json!({"body": text})),
        )
        .await;
        ids.push(v["id"].as_i64().expect("an id"));
    }

    let (status, round) = call("ana", post.clone(), path, None).await;
    assert_eq!(status, 201, "{round}");
    assert_eq!(
        (round["stage"].as_str(), round["label"].as_str()),
        (Some("Ranking"), Some("AI-written"))
    );
    let candidates = round["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 4, "{round:#}");
    assert!(
        candidates.iter().all(|c| c["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Candidate ") && t.ends_with("assembly."))),
        "trimmed statements: {round:#}"
    );
    let p = &candidates[0]["provenance"];
    assert_eq!(
        (
            p["model"].as_str(),
            p["engine"].as_str(),
            p["templateVersion"].as_str()
        ),
        (Some("helper"), Some("external"), Some("common-ground-v1"))
    );
    assert_eq!(p["comments"], serde_json::json!(ids));
    assert_eq!(
        (p["temperature"].as_f64(), p["maxTokens"].as_u64()),
        (Some(0.9), Some(200))
    );
    assert!(
        p["modelDigest"].is_null(),
        "an external engine's weights are not known here"
    );
    let (status, _) = call("ben", post.clone(), path, None).await;
    assert_eq!(status, 409, "one open round at a time");

    // Rankings: malformed ones are refused; a second ranking replaces the first.
    let rank = |who: &'static str, ranking: serde_json::Value| {
        call(
            who,
            post.clone(),
            "/v1/governance/proposals/assembly-day/common-ground/rankings",
            Some(serde_json::json!({"ranking": ranking})),
        )
    };
    for bad in [
        serde_json::json!([]),
        serde_json::json!([5]),
        serde_json::json!([1, 1]),
        serde_json::json!([0]),
    ] {
        let (status, body) = rank("ana", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["param"], "ranking");
    }
    let (status, _) = call(
        "ana",
        post.clone(),
        &format!("{path}/rankings"),
        Some(serde_json::json!({"ranking": [1], "member": "ben"})),
    )
    .await;
    assert_eq!(status, 400, "a ranking names no other member");
    let (status, _) = call(
        "ana",
        post.clone(),
        &format!("{path}/critiques"),
        Some(serde_json::json!({"body": "too early"})),
    )
    .await;
    assert_eq!(status, 409, "no critique before a statement is chosen");
    let (_, v) = rank("ben", serde_json::json!([4])).await;
    assert_eq!(v["myRanking"], serde_json::json!([4]));
    // Statement 1 and 3 lead on first choices (2 each); 2 beats both head to head.
    for (who, ranking) in [
        ("ana", serde_json::json!([1, 2, 3])),
        ("ben", serde_json::json!([1, 2, 3])),
        ("cleo", serde_json::json!([3, 2, 1])),
        ("dan", serde_json::json!([3, 2, 1])),
        ("eve", serde_json::json!([2, 3, 1])),
    ] {
        let (status, v) = rank(who, ranking.clone()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["myRanking"], ranking);
    }
    let (status, v) = call("ben", post.clone(), &format!("{path}/choice"), None).await;
    assert_eq!(status, 403, "only the convener closes the ranking: {v}");
    let (status, round) = call("ana", post.clone(), &format!("{path}/choice"), None).await;
    assert_eq!(status, 200, "{round}");
    assert_eq!(
        (
            round["stage"].as_str(),
            round["chosen"].as_u64(),
            round["rankings"].as_u64()
        ),
        (Some("Critique"), Some(2), Some(5))
    );
    assert_eq!(round["tally"]["method"], "schulze");
    assert_eq!(round["tally"]["winner"], "2");
    let (status, v) = rank("eve", serde_json::json!([1])).await;
    assert_eq!(status, 409, "a late ranking is refused: {v}");
    assert_eq!(v["error"]["code"], "wrong_stage");

    // Critiques, then the revision: first with the engine down (the round waits).
    for (who, text) in [
        ("cleo", "It forgets the night shift."),
        ("dan", "Say who minds the children."),
    ] {
        let (status, v) = call(
            who,
            post.clone(),
            &format!("{path}/critiques"),
            Some(serde_json::json!({"body": text})),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, _) = call(
        "dan",
        post.clone(),
        &format!("{path}/critiques"),
        Some(serde_json::json!({"body": "  "})),
    )
    .await;
    assert_eq!(status, 400, "an empty critique");
    let (status, _) = call("cleo", post.clone(), &format!("{path}/revision"), None).await;
    assert_eq!(status, 403, "only the convener asks for the revision");
    down.store(true, std::sync::atomic::Ordering::Relaxed);
    let (status, v) = call("ana", post.clone(), &format!("{path}/revision"), None).await;
    assert_eq!(status, 503, "{v}");
    let (_, round) = call("ben", reqwest::Method::GET, path, None).await;
    assert_eq!(round["stage"], "Critique", "the round waits for the engine");
    down.store(false, std::sync::atomic::Ordering::Relaxed);
    let (status, round) = call("ana", post.clone(), &format!("{path}/revision"), None).await;
    assert_eq!(status, 200, "{round}");
    assert_eq!(round["stage"], "Revised");
    let revision = round["revision"]["text"].as_str().expect("a revision");
    assert!(
        revision.contains("It forgets the night shift.") && revision.contains("Say who minds the children."),
        "the revision was given the critiques: {revision}"
    );
    assert_eq!(
        round["revision"]["provenance"]["comments"],
        serde_json::json!(ids)
    );
    let (status, _) = call("ana", post.clone(), &format!("{path}/revision"), None).await;
    assert_eq!(status, 409, "one revision");

    // The revision becomes a new proposal's body, once a member sends it.
    let mut draft = round["proposalDraft"].clone();
    assert_eq!(draft["body"], revision);
    assert_eq!(draft["title"], "Common ground: Which day for the assembly?");
    draft["name"] = serde_json::json!("assembly-day-common-ground");
    let (status, made) = call("cleo", post.clone(), "/v1/governance/proposals", Some(draft)).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["spec"]["body"], revision);
    assert_eq!(made["spec"]["proposer"], "cleo");

    // The assistant ranked, voted and closed nothing: no ballot on the proposal, and a
    // new round can start on it now that this one is done.
    let (_, proposal) = call(
        "ana",
        reqwest::Method::GET,
        "/v1/governance/proposals/assembly-day",
        None,
    )
    .await;
    assert_eq!(proposal["ballotsCast"].as_u64(), Some(0), "{proposal}");
    assert_eq!(proposal["status"]["phase"], "Open", "{proposal}");
    let (status, _) = call("ben", post.clone(), path, None).await;
    assert_eq!(status, 201, "a new round after a finished one");
}

/// Common ground and drafting on the members' pages, in headless Chromium: ana (page
/// scripts on) starts a round and moves it on; ben and cleo (scripts off) rank with the
/// selects and critique; Schulze's choice, the revision and its provenance show; the
/// revision opens as a proposal after review in the new-proposal form; ben drafts a
/// proposal from plain words, reviews it and opens it. The round's pages pass axe-core.
#[tokio::test(flavor = "multi_thread")]
async fn common_ground_and_drafting_on_the_pages_in_chromium() {
    use common::browser::{
        accessible, axe_source, browser, choose, html, member_tab, open, submit, text, type_in,
    };
    let Commons { gw, _dirs, .. } = commons(None, 100_000).await;
    let client = reqwest::Client::new();
    let api = |who: &str, path: &str, body: serde_json::Value| {
        client
            .post(gw.url(path))
            .bearer_auth(c::token(c::SECRET, &c::claims(who)))
            .json(&body)
            .send()
    };
    let r = api(
        "ana",
        "/v1/governance/proposals",
        serde_json::json!({"name": "assembly-day", "kind": "FreeText", "title": "Which day for the assembly?",
            "options": [{"name": "weekday"}, {"name": "saturday"}]}),
    )
    .await
    .expect("proposed");
    assert_eq!(r.status().as_u16(), 201);
    for (who, text) in [
        ("ana", "A weekday evening suits the workers."),
        ("ben", "Saturday suits the families."),
    ] {
        let r = api(
            who,
            "/v1/governance/proposals/assembly-day/comments",
            serde_json::json!({"body": text}),
        )
        .await
        .expect("commented");
        assert_eq!(r.status().as_u16(), 201);
    }
    let browser = browser();
    let axe = axe_source();
    let page = gw.url("/governance/proposals/assembly-day");
    let ana = member_tab(&browser, &gw, "ana", true);
    open(&ana, &page);
    submit(&ana, "#cg-start", "#cg-candidates");
    assert!(text(&ana, "#cg").contains("AI-written"));
    assert!(
        text(&ana, "#cg-provenance").contains("helper"),
        "{}",
        text(&ana, "#cg-provenance")
    );
    assert_eq!(html(&ana, "#cg-candidates").matches("<li").count(), 4);
    accessible(&ana, &axe, "the common-ground round");
    // Rankings: ana 1 then 2; ben and cleo put 2 first. Statement 2 wins.
    choose(&ana, "#cg-rank-1", 1);
    choose(&ana, "#cg-rank-2", 2);
    submit(
        &ana,
        "#cg-rank button[type=submit]",
        "#cg-rank-2 option[value='2'][selected]",
    );
    for who in ["ben", "cleo"] {
        let tab = member_tab(&browser, &gw, who, false);
        open(&tab, &page);
        choose(&tab, "#cg-rank-2", 1);
        submit(
            &tab,
            "#cg-rank button[type=submit]",
            "#cg-rank-2 option[value='1'][selected]",
        );
        assert!(
            !html(&tab, "#cg").contains("cg-choose"),
            "only the convener closes the ranking"
        );
        assert!(text(&tab, "#cg-count").contains("members have ranked"));
    }
    open(&ana, &page);
    assert!(
        text(&ana, "#cg-count").starts_with("3 members"),
        "{}",
        text(&ana, "#cg-count")
    );
    submit(&ana, "#cg-choose", "#cg-tally");
    assert!(
        text(&ana, "#cg-tally").contains("statement 2"),
        "{}",
        text(&ana, "#cg-tally")
    );
    assert!(html(&ana, "#cg-candidate-2").contains("chosen"));
    let cleo = member_tab(&browser, &gw, "cleo", false);
    open(&cleo, &page);
    type_in(&cleo, "#cg-critique-body", "It forgets the night shift.");
    submit(&cleo, "#cg-critique button[type=submit]", "#cg-critiques li");
    open(&ana, &page);
    submit(&ana, "#cg-revise", "#cg-revision");
    assert!(text(&ana, "#cg-revision").contains("It forgets the night shift."));
    accessible(&ana, &axe, "the revised statement");
    // The revision becomes a proposal, reviewed in the new-proposal form first.
    submit(&ana, "#cg-propose button[type=submit]", "#propose-form");
    let form = html(&ana, "#propose-form");
    assert!(
        form.contains("Common ground: Which day for the assembly?"),
        "{form}"
    );
    assert!(form.contains("It forgets the night shift."), "{form}");
    assert!(
        form.contains("keep-discussing"),
        "the bylaws decide questions between options: {form}"
    );
    submit(&ana, "#propose", "#no-common-ground");
    assert!(text(&ana, "h1").contains("Common ground"), "{}", text(&ana, "h1"));

    // Drafting from plain words, reviewed before anything is created.
    let ben = member_tab(&browser, &gw, "ben", false);
    open(&ben, &gw.url("/governance/new"));
    type_in(&ben, "#draft-request", "give the school 15% during exams");
    submit(&ben, "#draft-form button[type=submit]", "#draft-label");
    assert_eq!(text(&ben, "#draft-label"), "AI-written");
    assert!(text(&ben, "#draft-provenance").contains("draft-v1"));
    assert!(text(&ben, "#draft-body").contains("Exam weeks"));
    let before = common::browser::api_json(
        &gw,
        "/v1/governance/proposals",
        &c::token(c::SECRET, &c::claims("ben")),
    )
    .await;
    assert_eq!(
        before["data"].as_array().map(Vec::len),
        Some(2),
        "a draft creates nothing: {before}"
    );
    submit(&ben, "#draft-create button[type=submit]", "#no-common-ground");
    assert!(text(&ben, "h1").contains("Exam weeks"));
    assert!(text(&ben, "#body").contains("give the school 15% during exams"));
}

/// A new co-op's bylaws from the founders' answers: the tiny model's draft (noise,
/// constrained to the bylaws schema) is a Cooperative with the founders' names, a rule
/// for every kind of proposal, labelled AI-written; a co-op founded from it serves its
/// members. Unusable answers are refused with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_bylaws_command_drafts_a_cooperative_a_co_op_can_be_founded_from() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let answers = dir.path().join("answers.yaml");
    std::fs::write(
        &answers,
        "name: hillside\ndisplayName: Hillside Community Compute\nclasses:\n  \
         - {name: schools, who: the valley's three schools}\n  - {name: households, who: families}\n\
         decisions: most things by simple majority; bylaws by two thirds\nsurplus: up to a fifth\n",
    )
    .expect("written");
    let run = |answers: &std::path::Path| {
        std::process::Command::new(binary())
            .args(["assistant", "bylaws", "--model"])
            .arg(common::tiny_model())
            .arg("--answers")
            .arg(answers)
            .output()
            .expect("the command runs")
    };
    let out = run(&answers);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("text");
    assert!(
        text.starts_with("# AI-written: drafted by the model in"),
        "{text}"
    );
    assert!(
        text.contains("weights sha256:") && text.contains("prompt bylaws-v1"),
        "{text}"
    );
    let coop: synco_crds::Cooperative = serde_yaml_ng::from_str(&text).expect("a Cooperative");
    assert_eq!(coop.metadata.name.as_deref(), Some("hillside"));
    assert_eq!(coop.spec.display_name, "Hillside Community Compute");
    let classes: Vec<&str> = coop.spec.member_classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(classes, ["schools", "households"]);
    assert_eq!(coop.spec.voting_defaults.len(), 7, "a rule for every kind");

    // Founded, with one member, the tiny model and a first allocation.
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("a folder");
    std::fs::write(manifests.join("00-coop.yaml"), &text).expect("written");
    std::fs::write(
        manifests.join("10-rest.yaml"),
        "apiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {name: ana, namespace: hillside}\n\
         spec: {displayName: Ana, class: schools, identity: ana}\n---\n\
         apiVersion: synco.coop/v1alpha1\nkind: InferenceModel\nmetadata: {name: chat, namespace: hillside}\n\
         spec: {source: {hub: Qwen/Qwen2.5-0.5B-Instruct}, engine: {kind: Embedded}, tokensPerSecondPerReplica: 100}\n---\n\
         apiVersion: synco.coop/v1alpha1\nkind: Allocation\nmetadata: {name: allocation-v1, namespace: hillside}\n\
         spec: {version: 1, floors: [{memberClass: schools, sharePercent: 50}]}\n",
    )
    .expect("written");
    let data = tempfile::tempdir().expect("a temp dir");
    let gw = c::standalone(&manifests, data.path(), None, &[]);
    let view: serde_json::Value = reqwest::Client::new()
        .get(gw.url("/v1/governance/coop"))
        .bearer_auth(c::token(c::SECRET, &c::claims("ana")))
        .send()
        .await
        .expect("asked")
        .json()
        .await
        .expect("the co-op");
    assert_eq!(view["displayName"], "Hillside Community Compute", "{view}");
    assert_eq!(view["quota"]["class"], "schools", "{view}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: Hill Side\ndisplayName: H\nclasses: [{name: a, who: b}]\ndecisions: d\n",
    )
    .expect("written");
    let out = run(&bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lower-case letters, digits and '-'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Retrieval: with `assistant.embeddingModel` naming the co-op's in-process embedding
/// model (the tiny one the test generates), a draft is given the nearest of the bylaws
/// and the decided proposals, names them in its provenance, and the embeddings are
/// metered to the co-op; documents embedded once are not embedded again.
#[tokio::test(flavor = "multi_thread")]
async fn drafts_are_given_the_nearest_past_decisions_by_the_in_process_embedding_model() {
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine = canned_engine(down).await;
    let manifests = tempfile::tempdir().expect("a temp dir");
    let yaml = format!(
        r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {{name: commons, namespace: commons}}
spec:
  displayName: Commons
  votingDefaults:
    - {{kind: FreeText, method: Majority, votingPeriod: 2s}}
  memberClasses:
    - {{name: community, tier: 0}}
  assistant: {{model: helper, monthlyTokens: 100000, embeddingModel: embed}}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {{name: ana, namespace: commons}}
spec: {{displayName: Ana, class: community, identity: ana}}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: helper, namespace: commons}}
spec:
  engine: {{kind: External, url: "http://{engine}/v1"}}
  tokensPerSecondPerReplica: 1000
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: embed, namespace: commons}}
spec:
  source: {{hub: Qwen/Qwen3-Embedding-0.6B}}
  engine: {{kind: Embedded}}
  tokensPerSecondPerReplica: 1000
  capabilities: {{chat: false, embeddings: true}}
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {{name: allocation-v1, namespace: commons}}
spec:
  version: 1
  floors: [{{memberClass: community, sharePercent: 50}}]
"#
    );
    std::fs::write(manifests.path().join("coop.yaml"), yaml).expect("the manifests are written");
    let data = tempfile::tempdir().expect("a temp dir");
    let gw = c::standalone(manifests.path(), data.path(), None, &[]);
    let client = reqwest::Client::new();
    let ana = c::token(c::SECRET, &c::claims("ana"));
    for (name, title) in [
        ("school-exams", "More for the school in exam weeks"),
        ("bakery-ovens", "Oven hours for the bakery"),
    ] {
        let r = client
            .post(gw.url("/v1/governance/proposals"))
            .bearer_auth(&ana)
            .json(&serde_json::json!({"name": name, "kind": "FreeText", "title": title}))
            .send()
            .await
            .expect("proposed");
        assert_eq!(r.status().as_u16(), 201);
        let r = client
            .post(gw.url(&format!("/v1/governance/proposals/{name}/votes")))
            .bearer_auth(&ana)
            .json(&serde_json::json!({"position": "Yes"}))
            .send()
            .await
            .expect("voted");
        assert!(r.status().is_success());
    }
    // Both close after their two seconds.
    let started = std::time::Instant::now();
    loop {
        let list: serde_json::Value = client
            .get(gw.url("/v1/governance/proposals?phase=Open"))
            .bearer_auth(&ana)
            .send()
            .await
            .expect("listed")
            .json()
            .await
            .expect("a list");
        if list["data"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let draft = |request: &'static str| {
        let (client, url, ana) = (client.clone(), gw.url("/v1/governance/drafts"), ana.clone());
        async move {
            let r = client
                .post(url)
                .bearer_auth(ana)
                .json(&serde_json::json!({"request": request}))
                .send()
                .await
                .expect("drafted");
            assert_eq!(r.status().as_u16(), 200);
            r.json::<serde_json::Value>().await.expect("a draft")
        }
    };
    let first = draft("give the school 15% during exams").await;
    let retrieved: Vec<&str> = first["provenance"]["retrieved"]
        .as_array()
        .expect("retrieved documents")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert_eq!(retrieved.len(), 3, "the three documents, nearest first: {first}");
    for id in ["bylaws", "proposal/school-exams", "proposal/bakery-ovens"] {
        assert!(retrieved.contains(&id), "{id} in {retrieved:?}");
    }
    // The canned engine writes the prompt it was given into the draft's body.
    let body = first["proposal"]["body"].as_str().expect("a body");
    assert!(
        body.contains("[proposal/school-exams] More for the school in exam weeks")
            && body.contains("[bylaws] Bylaws of Commons"),
        "{body}"
    );
    let _second = draft("more for the bakery").await;

    // Both drafts embedded as the co-op: the first the query and three documents, the
    // second only its query.
    let started = std::time::Instant::now();
    let db = synco_gateway::db::open(data.path()).await.expect("the database");
    let embeddings: Vec<i64> = loop {
        use sea_orm::EntityTrait as _;
        let found: Vec<i64> = synco_gateway::db::usage_record::Entity::find()
            .all(&db)
            .await
            .expect("the records")
            .into_iter()
            .filter(|r| {
                r.caller == "coop:assistant" && r.endpoint == "embeddings" && r.outcome == "completed"
            })
            .map(|r| r.prompt_tokens)
            .collect();
        if found.len() == 2 {
            break found;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{found:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        embeddings[1] < embeddings[0] / 3,
        "cached documents are not embedded again: {embeddings:?}"
    );
}
