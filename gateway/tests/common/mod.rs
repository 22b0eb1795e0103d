//! Starting the real `synco-gateway` binary on a random loopback port.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a failure here should fail the test loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const MODEL: &str = "tiny";

/// The gateway binary: this build's, or `$BENCH_GATEWAY_BIN` (a release build, for the
/// benchmarks).
pub fn binary() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("BENCH_GATEWAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_synco-gateway").to_owned())
    })
}

/// A tiny model folder, written once per test binary by the binary's own subcommand.
pub fn tiny_model() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new(binary())
            .args(["tiny-model", "--out"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "tiny-model failed");
        dir
    })
    .path()
}

/// A running gateway; killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// `serve --config` with the tiny model as `tiny`.
    pub fn tiny() -> Self {
        let config = format!(
            "models:\n  - name: {MODEL}\n    engine: {{kind: embedded, path: '{}'}}\n",
            tiny_model().display()
        );
        Self::serve(&config, &[])
    }

    pub fn serve(config: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config).unwrap();
        let mut args: Vec<String> = vec!["serve".into(), "--config".into()];
        args.push(config_path.display().to_string());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Self::start(dir, &args)
    }

    pub fn start(dir: tempfile::TempDir, args: &[String]) -> Self {
        Self::start_with_env(dir, args, &[])
    }

    /// Like [`Gateway::start`], with these environment variables set for the child.
    pub fn start_with_env(dir: tempfile::TempDir, args: &[String], env: &[(&str, &str)]) -> Self {
        Self::start_listening(dir, args, env, "127.0.0.1:0")
    }

    /// Like [`Gateway::start_with_env`], listening on `listen` (a port chosen before
    /// the gateway starts, for peers that must know it in advance).
    pub fn start_listening(
        dir: tempfile::TempDir,
        args: &[String],
        env: &[(&str, &str)],
        listen: &str,
    ) -> Self {
        let port_file = dir.path().join("addr");
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let child = Command::new(binary())
            .args(args)
            .envs(env.iter().copied())
            .args(["--listen", listen, "--port-file"])
            .arg(&port_file)
            .env("RUST_LOG", "info,synco_gateway=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut gateway = Self {
            child,
            addr: String::new(),
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(&port_file) {
                gateway.addr = addr;
                break;
            }
            if let Some(status) = gateway.child.try_wait().unwrap() {
                panic!("gateway exited early ({status}):\n{}", gateway.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "gateway did not start:\n{}",
                gateway.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn base_url(&self) -> String {
        self.url("/v1")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit()
    }

    /// Waits (up to a minute) for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "gateway did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository root (the workspace).
/// A free loopback port, for a server that must be told its port before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}
pub mod browser;
pub mod coop;
pub mod kube;
pub mod operator;
pub mod patronage;
pub mod postgres;
pub mod scenario;

/// Chromium from Debian's `chromium` package (or `$SYNCO_CHROMIUM`).
pub fn chromium() -> anyhow::Result<PathBuf> {
    [
        std::env::var("SYNCO_CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".to_owned(),
        "/usr/bin/chromium-browser".to_owned(),
    ]
    .iter()
    .filter(|p| !p.is_empty())
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .ok_or_else(|| {
        anyhow::anyhow!("Chromium is not installed: apt-get install chromium (or set SYNCO_CHROMIUM)")
    })
}
