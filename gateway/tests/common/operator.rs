//! The real operator, in-process, for the cluster-mode tests: it opens and closes
//! proposals and publishes the Allocation's quotas the gateway enforces.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::sync::Arc;

use synco_operator::{Operator, RunOptions, Settings, SystemClock};
use tokio_util::sync::CancellationToken;

/// A running operator; stopped when dropped.
pub struct Running {
    stop: CancellationToken,
    _task: tokio::task::JoinHandle<Result<(), synco_operator::RunError>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the operator on namespace `ns`, acting as `client`.
pub fn start(client: kube::Client, ns: &str) -> Running {
    start_with(client, settings(ns))
}

/// The test settings for namespace `ns`.
pub fn settings(ns: &str) -> Settings {
    Settings {
        namespace: Some(ns.to_owned()),
        mistralrs_image: "registry.invalid/synco/mistralrs:e2e".to_owned(),
        ..Settings::default()
    }
}

/// Starts the operator with `settings`, acting as `client`.
pub fn start_with(client: kube::Client, settings: Settings) -> Running {
    let options = RunOptions {
        lease: None,
        metrics_addr: None,
        metrics_reuse_port: false,
    };
    let operator = Operator::new(client, Arc::new(SystemClock), settings, options, "gateway-test");
    let stop = CancellationToken::new();
    let task = tokio::spawn(operator.run(stop.clone()));
    Running { stop, _task: task }
}
