//! Standalone mode, end to end: manifests in, the tiny model served, usage in SQLite.

mod common;

use std::time::Duration;

use common::{Gateway, repo_root};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

const MANIFESTS: &str = r#"
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
"#;

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
    ];
    Gateway::start(dir, &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_manifests_models_offline_and_meters_to_sqlite() {
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(manifests.path().join("model.yaml"), MANIFESTS).unwrap();
    let mut gateway = standalone(manifests.path());
    let client = reqwest::Client::new();

    let models: Value = client
        .get(gateway.url("/v1/models"))
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
        .json(
            &json!({"model": "assistant", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let completion = body["usage"]["completion_tokens"].as_i64().unwrap();

    assert!(gateway.terminate().success(), "{}", gateway.log());
    assert!(gateway.log().contains("in place of the configured source"));

    // The usage record and the manifests were written before exit.
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
    let stored = synco_gateway::db::manifest::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].key, "InferenceModel/assistant");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crd_examples_folder_works_as_the_manifests_folder() {
    let examples = repo_root().join("crds/examples");
    if !examples.is_dir() {
        eprintln!("skipped: {} does not exist yet", examples.display());
        return;
    }
    let gateway = standalone(&examples);
    let client = reqwest::Client::new();
    let models: Value = client
        .get(gateway.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = models["data"][0]["id"].as_str().unwrap().to_owned();
    let response = client
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": first, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success() || response.status() == 502,
        "{}",
        gateway.log()
    );
}
