//! The official `openai` Python package against the real binary with the tiny model.
//!
//! The interpreter is `$SYNCO_TEST_PYTHON` when set, else `.venv/bin/python` at the
//! repository root, created (with `pip install openai`) when missing.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Gateway, MODEL, repo_root};
use sea_orm::EntityTrait;

#[expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test setup fails the test loudly"
)]
fn python() -> PathBuf {
    if let Ok(python) = std::env::var("SYNCO_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = repo_root().join(".venv");
    let python = venv.join("bin/python");
    let has_openai = python.is_file()
        && Command::new(&python)
            .args(["-c", "import openai"])
            .status()
            .is_ok_and(|s| s.success());
    if !has_openai {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for this test");
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "openai"])
            .status()
            .unwrap();
        assert!(status.success(), "pip install openai failed");
    }
    python
}

#[test]
fn openai_python_client_against_the_tiny_model() {
    let gateway = Gateway::tiny();
    run_checks(&gateway, "openai_client.py", &[MODEL]);
}

/// Runs `tests/python/<script>` with the gateway's base URL and `args`; fails the test
/// unless every check passed. Returns what it printed.
#[expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "test helper: a failure fails the test, and the checks' lines show in its output"
)]
fn run_checks(gateway: &Gateway, script: &str, args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let output = Command::new(python())
        .arg(&script)
        .arg(gateway.base_url())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "python checks failed:\n{stdout}\n{stderr}\n--- gateway log ---\n{}",
        gateway.log()
    );
    assert!(stdout.contains("all checks passed"));
    stdout
}

/// `/v1/embeddings` from the in-process embedding model: the example co-op's
/// `coop-embed`, served in standalone mode by a tiny generated Qwen3-Embedding model,
/// called with a member's key through the official client; every embedding request is
/// metered to the member with the tokens the answers reported.
#[tokio::test(flavor = "multi_thread")]
async fn openai_python_client_embeds_with_the_in_process_embedding_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args: Vec<String> = [
        "standalone",
        "--manifests",
        &repo_root().join("crds/examples").display().to_string(),
        "--data-dir",
        &data.display().to_string(),
        "--tiny-model",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut gateway = Gateway::start(dir, &args);
    let key = common::coop::create_key(&["--member", "riverside-school"], &data, None);
    let stdout = run_checks(
        &gateway,
        "embeddings_client.py",
        &[&key, "coop-embed", "tiny-chat"],
    );
    let reported: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOKENS "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(gateway.terminate().success(), "{}", gateway.log());

    let db = synco_gateway::db::open(&data).await.unwrap();
    let records: Vec<_> = synco_gateway::db::usage_record::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.model == "coop-embed")
        .collect();
    let completed: Vec<_> = records.iter().filter(|r| r.outcome == "completed").collect();
    assert_eq!(completed.len(), 5, "five embedding requests served: {records:?}");
    assert!(
        completed
            .iter()
            .all(|r| r.caller == "riverside-school" && r.endpoint == "embeddings")
    );
    assert_eq!(
        completed.iter().map(|r| r.prompt_tokens).sum::<i64>(),
        reported,
        "the metered tokens are the ones the answers reported"
    );
    assert!(completed.iter().all(|r| r.completion_tokens == 0));
    assert!(
        records
            .iter()
            .filter(|r| r.outcome != "completed")
            .all(|r| r.prompt_tokens == 0 && r.completion_tokens == 0),
        "refused requests cost nothing: {records:?}"
    );
}
