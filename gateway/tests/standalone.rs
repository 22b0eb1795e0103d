//! Standalone mode, end to end: manifests in, the tiny model served, usage in SQLite.

mod common;

use std::time::Duration;

use common::{Gateway, repo_root};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

const MANIFESTS: &str = r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {name: riverside-coop, namespace: riverside-coop}
spec:
  displayName: Riverside
  votingDefaults:
    - {kind: Allocation, method: Majority, quorumPercent: 50, votingPeriod: 7d}
  memberClasses:
    - {name: community, tier: 0}
---
apiVersion: synco.coop/v1alpha1
kind: Member
metadata: {name: bakery, namespace: riverside-coop}
spec: {displayName: Bakery, organisation: WorkerCoop, class: community, identity: bakery}
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {name: allocation-v1, namespace: riverside-coop}
spec:
  version: 1
  floors:
    - {memberClass: community, sharePercent: 60}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata:
  name: assistant
  namespace: riverside-coop
spec:
  servedName: assistant
  source:
    hub: Qwen/Qwen2.5-0.5B-Instruct
  engine:
    kind: Embedded
  tokensPerSecondPerReplica: 400
"#;

#[expect(clippy::unwrap_used, reason = "test helper: a failure fails the test")]
fn key_for(member: &str, data_dir: &std::path::Path) -> String {
    let out = std::process::Command::new(common::binary())
        .args(["keys", "create", "--member", member, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[expect(clippy::unwrap_used, reason = "test helper: a failure fails the test")]
fn standalone(manifests: &std::path::Path) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let args = vec![
        "standalone".to_owned(),
        "--manifests".to_owned(),
        manifests.display().to_string(),
        "--data-dir".to_owned(),
        dir.path().join("data").display().to_string(),
        "--tiny-model".to_owned(),
        "--max-seqs".to_owned(),
        "3".to_owned(),
    ];
    Gateway::start(dir, &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_manifests_models_offline_and_meters_to_sqlite() {
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(manifests.path().join("model.yaml"), MANIFESTS).unwrap();
    let mut gateway = standalone(manifests.path());
    let key = key_for("bakery", &gateway.dir().join("data"));
    let client = reqwest::Client::new();

    let refused = client.get(gateway.url("/v1/models")).send().await.unwrap();
    assert_eq!(refused.status(), 401, "auth is on by default");
    let models: Value = client
        .get(gateway.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "assistant", "{models}");
    assert_eq!(models["data"][0]["owned_by"], "riverside-coop");
    let ready = client.get(gateway.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(
            &json!({"model": "assistant", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let completion = body["usage"]["completion_tokens"].as_i64().unwrap();
    // The in-process engine runs 3 sequences at once (`--max-seqs`): the gateway gives
    // it no more than that (not the 32 of `--engine-slots`), so requests beyond it wait
    // in the gateway's queue, where tiers and fairness apply, not in the engine's.
    let metrics = client
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("synco_gateway_engine_concurrency_ceiling{model=\"assistant\"} 3\n"),
        "{metrics}"
    );

    assert!(gateway.terminate().success(), "{}", gateway.log());
    assert!(gateway.log().contains("in place of the configured source"));

    // The usage record was written before exit, and the manifests founded the co-op.
    let db = synco_gateway::db::open(&gateway.dir().join("data"))
        .await
        .unwrap();
    let records = synco_gateway::db::usage_record::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].model, "assistant");
    assert_eq!(records[0].completion_tokens, completion);
    assert_eq!(records[0].outcome, "completed");
    let stored = synco_gateway::db::coop_object::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 4);
    assert!(stored.iter().any(|m| m.key == "InferenceModel/assistant"));
    // The founding allocation is in force, with the quotas the solver gives.
    let allocation = stored.iter().find(|m| m.kind == "Allocation").unwrap();
    let allocation: synco_crds::Allocation = serde_json::from_str(&allocation.body).unwrap();
    let status = allocation.status.unwrap();
    assert_eq!(status.phase, synco_crds::AllocationPhase::InForce);
    assert_eq!(status.quotas.len(), 1);
    assert_eq!(status.quotas[0].guaranteed_tokens_per_second, 240, "60% of 400");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crd_examples_folder_works_as_the_manifests_folder() {
    let examples = repo_root().join("crds/examples");
    let gateway = standalone(&examples);
    // The README's way in: a key for a member of the example co-op.
    let key = key_for("bakery-coop", &gateway.dir().join("data"));
    let client = reqwest::Client::new();
    let models: Value = client
        .get(gateway.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["coop-embed", "coop-large", "tiny-chat"], "{models}");
    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(
            &json!({"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
        )
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.log());
}
