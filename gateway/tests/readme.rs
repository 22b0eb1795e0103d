//! The README's governance demo, run as written: the main job's command starts the
//! gateway, then the block between `<!-- governance-demo -->` and
//! `<!-- /governance-demo -->` runs in bash from a folder that looks like the repository
//! root (`crds` linked in). The one change: `cargo run -q --release -p synco-gateway --`
//! is this test's build of the same binary, so the test needs no release build.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, repo_root};
use serde_json::Value;

const CARGO_RUN: &str = "cargo run -q --release -p synco-gateway --";

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).unwrap()
}

/// The main job's command, from the README's "The two commands".
fn main_job() -> String {
    let text = readme();
    text.lines()
        .find(|l| l.starts_with("cargo run --release -p synco-gateway -- standalone"))
        .expect("the README gives the main job's command")
        .to_owned()
}

/// The demo's shell lines.
fn demo() -> String {
    let text = readme();
    let start = text
        .find("<!-- governance-demo -->")
        .expect("the demo's start marker");
    let end = text
        .find("<!-- /governance-demo -->")
        .expect("the demo's end marker");
    let block = &text[start..end];
    let code = block
        .split("```sh\n")
        .nth(1)
        .expect("a sh block")
        .split("```")
        .next()
        .unwrap();
    assert!(
        code.contains(CARGO_RUN),
        "the demo runs the gateway's binary with cargo"
    );
    code.to_owned()
}

#[test]
fn the_readmes_governance_demo_runs_as_written() {
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo_root().join("crds"), root.path().join("crds")).unwrap();
    let main_job = main_job().replace("cargo run --release -p synco-gateway --", binary());
    let mut gateway = Command::new("bash")
        .args(["-c", &format!("exec {main_job}")])
        .current_dir(root.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.path().join("gateway.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect("127.0.0.1:8080").is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the gateway did not start: {}",
            std::fs::read_to_string(root.path().join("gateway.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = demo().replace(CARGO_RUN, binary());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(root.path())
        .output()
        .unwrap();
    let _ = gateway.kill();
    let _ = gateway.wait();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(root.path().join("gateway.log")).unwrap_or_default()
    );
    // What the README says comes out: a JSON document per curl and the recount.
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("every answer is JSON");
    let proposal = docs
        .iter()
        .rev()
        .find(|d| d["name"] == "exam-season" && d["status"]["decidedAt"].is_string())
        .expect("the result");
    let status = &proposal["status"];
    assert_eq!(status["phase"], "Applied", "{proposal}");
    assert_eq!(status["tally"]["yes"], "3");
    assert_eq!(status["tally"]["no"], "1");
    assert_eq!(status["turnoutPercent"], "80");
    assert_eq!(status["appliedTo"], "Allocation/allocation-v2");
    let coop = docs
        .iter()
        .find(|d| d["cooperative"] == "riverside")
        .expect("the co-op");
    assert_eq!(coop["quota"]["guaranteedTokensPerSecond"], 1548, "{coop}");
    assert_eq!(coop["history"], serde_json::json!(["allocation-v1"]));
    let recount = docs.last().unwrap();
    assert_eq!(recount["outcome"], "Passed");
    assert_eq!(recount["problems"], serde_json::json!([]));
    assert_eq!(recount["fingerprint"], status["fingerprint"]);
}
