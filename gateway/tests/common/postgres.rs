//! A throwaway PostgreSQL cluster per test: `initdb` into a temporary folder, started
//! with `pg_ctl` on a free loopback port, its socket in the folder, stopped (`-m
//! immediate`) when dropped. As root, the server runs as the `postgres` user.
//!
//! Without PostgreSQL installed the tests that need it fail with a clear message,
//! unless `SYNCO_SKIP_POSTGRES=1`.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![expect(clippy::unwrap_used, clippy::panic, reason = "test harness")]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    run_as: Option<&'static str>,
}

fn find_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").is_file() && dir.join("initdb").is_file() {
                return Some(dir);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// A fresh cluster, or `None` when `SYNCO_SKIP_POSTGRES=1`.
    pub fn start() -> Option<Self> {
        if std::env::var("SYNCO_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("skipped: SYNCO_SKIP_POSTGRES=1");
            return None;
        }
        let Some(bin) = find_bin() else {
            panic!(
                "PostgreSQL is not installed (no pg_ctl/initdb on PATH or in /usr/lib/postgresql/*/bin): \
                 install the `postgresql` package, or set SYNCO_SKIP_POSTGRES=1 to skip these tests"
            );
        };
        let dir = tempfile::tempdir().unwrap();
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "cannot hand {} to {user}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Self {
            dir,
            bin,
            port,
            run_as,
        };
        let data = pg.data();
        let out = pg
            .command("initdb")
            .args([
                "-D",
                &data,
                "-U",
                "synco",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_server();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, tool: &str) -> Command {
        let tool = self.bin.join(tool);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(tool);
                c
            }
            None => Command::new(tool),
        }
    }

    /// Starts (or restarts) the server on the same port.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let out = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-o", &options, "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn kill_server(&self) {
        let out = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://synco@127.0.0.1:{}/postgres", self.port)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}
