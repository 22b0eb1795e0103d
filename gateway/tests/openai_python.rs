//! The official `openai` Python package against the real binary with the tiny model.
//!
//! The interpreter is `$SYNCO_TEST_PYTHON` when set, else `.venv/bin/python` at the
//! repository root, created (with `pip install openai`) when missing.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Gateway, MODEL, repo_root};

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
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(gateway.base_url())
        .arg(MODEL)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "python checks failed:\n{stdout}\n{stderr}\n--- gateway log ---\n{}",
        gateway.log()
    );
    assert!(stdout.contains("all checks passed"));
}
