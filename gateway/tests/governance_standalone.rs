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
