//! Start or attach to the local control plane that `e2e/cluster.sh` runs.
//!
//! Cargo runs each file under `tests/` as its own process. The first call to
//! [`cluster()`] in a process either attaches to the cluster named by
//! `SYNCO_E2E_RUN_DIR` (started beforehand with `e2e/cluster.sh up`, shared by
//! every test binary), or starts a private one for this process. A private
//! cluster is told to watch this process's pid and stops by itself within a
//! second of the process exiting, however it exits, so nothing is left
//! behind and no destructor has to run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize;

/// The admin: group `system:masters`.
pub const ADMIN: &str = "admin";
/// The member test users. Each is in group `synco:members` and has no rights
/// until a test grants them.
pub const MEMBERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
/// The operator's static identity: user `synco-operator`, group `synco:operators`.
pub const OPERATOR: &str = "operator";
/// The gateway's static identity: user `synco-gateway`, group `synco:gateways`.
pub const GATEWAY: &str = "gateway";
/// The label GPU nodes carry, as NVIDIA's GPU feature discovery sets it.
pub const GPU_PRESENT_LABEL: &str = "nvidia.com/gpu.present";
/// The label naming a GPU node's product.
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// The extended resource GPUs are counted in, and the key of the taint GPU
/// nodes carry (`nvidia.com/gpu=present:NoSchedule`).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Set to a run directory of `e2e/cluster.sh up` to attach to that cluster
/// instead of starting one per test binary.
pub const RUN_DIR_ENV: &str = "SYNCO_E2E_RUN_DIR";
/// Where private clusters put their run directories (default: the system temp
/// directory's `synco-e2e/`).
pub const RUNS_ENV: &str = "SYNCO_E2E_RUNS";

/// What the harness writes to `RUN_DIR/cluster.json` once the cluster is ready.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterInfo {
    pub run_dir: PathBuf,
    /// `https://127.0.0.1:PORT`
    pub server: String,
    pub ca_file: PathBuf,
    /// The admin's kubeconfig.
    pub kubeconfig: PathBuf,
    /// The API server's version, e.g. `v1.34.10`.
    pub version: String,
    pub supervisor_pid: u32,
    pub ports: BTreeMap<String, u16>,
    pub users: Vec<UserInfo>,
    pub nodes: Vec<NodeInfo>,
    /// The real node, when the cluster has one.
    #[serde(default)]
    pub real_node: Option<RealNodeInfo>,
    /// Component name to log file.
    pub logs: BTreeMap<String, PathBuf>,
}

/// A test identity with a static bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserInfo {
    /// The key used in [`Cluster::user`]: `admin`, `alice`, ..., `operator`, `gateway`.
    pub key: String,
    /// The user name the API server sees.
    pub name: String,
    pub groups: Vec<String>,
    pub token_file: PathBuf,
    pub kubeconfig: PathBuf,
}

/// A simulated node.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NodeInfo {
    pub name: String,
    /// `nvidia.com/gpu` allocatable; 0 on CPU nodes.
    pub gpus: u32,
    pub gpu_product: Option<String>,
}

/// The real node: a kubelet running pods with containerd and runc. Its pods use the
/// host network (its address is 127.0.0.1); it is tainted and labelled
/// [`REAL_NODE_LABEL`]`=true`, so only pods that tolerate and select it land there.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RealNodeInfo {
    pub name: String,
    /// The node's containerd, where images are loaded (`ctr --address ... images import`).
    pub containerd_socket: PathBuf,
    /// The containerd namespace the kubelet's pods live in.
    pub containerd_namespace: String,
    pub dir: PathBuf,
}

/// The real node's label and taint key.
pub const REAL_NODE_LABEL: &str = "synco.coop/real-node";

/// A running control plane.
#[derive(Debug)]
pub struct Cluster {
    info: ClusterInfo,
    bin_dir: PathBuf,
    /// Started by this process (and so stopped when it exits).
    owned: bool,
}

static SHARED: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();
static WITH_REAL_NODE: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();

/// A control plane of this test process with a real node beside the kwok nodes
/// (see [`RealNodeInfo`]): always private to the process, started on first use.
/// Needs root, containerd, runc and Debian's CNI plugins.
pub fn cluster_with_real_node() -> Result<&'static Cluster> {
    WITH_REAL_NODE
        .get_or_init(|| Cluster::start_private_with(true).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// The control plane of this test process: attached or started on first use.
///
/// Blocks while a cluster starts (seconds once the binaries are built; the
/// first build ever takes many minutes). Every test in the process shares it,
/// so tests isolate themselves with [`crate::with_temp_ns`].
pub fn cluster() -> Result<&'static Cluster> {
    SHARED
        .get_or_init(|| {
            let attached = std::env::var_os(RUN_DIR_ENV)
                .filter(|d| !d.is_empty())
                .map(|d| Cluster::attach(Path::new(&d)));
            attached
                .unwrap_or_else(Cluster::start_private)
                .map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("the e2e control plane is not available: {e}"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster.sh")
}

fn parse_env(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

impl Cluster {
    /// Attaches to a cluster that `e2e/cluster.sh up --run-dir DIR` started.
    pub fn attach(run_dir: &Path) -> Result<Self> {
        if !run_dir.join("ready").exists() {
            bail!(
                "no ready cluster in {} (run: e2e/cluster.sh up --run-dir {0})",
                run_dir.display()
            );
        }
        let out = Command::new("bash")
            .arg(script())
            .args(["env", "--run-dir"])
            .arg(run_dir)
            .stderr(Stdio::inherit())
            .output()
            .context("running e2e/cluster.sh env")?;
        if !out.status.success() {
            bail!("e2e/cluster.sh env failed ({})", out.status);
        }
        Self::from_env_output(&String::from_utf8_lossy(&out.stdout), false)
    }

    /// Starts a new cluster in `run_dir` that stops when this process exits
    /// (or at [`Cluster::stop`]). Builds the binaries first if needed.
    pub fn start(run_dir: &Path) -> Result<Self> {
        Self::start_with(run_dir, false)
    }

    /// Starts a cluster in `run_dir`, with a real node (a kubelet with containerd and
    /// runc; needs root) when `real_node`.
    pub fn start_with(run_dir: &Path, real_node: bool) -> Result<Self> {
        let mut up = Command::new("bash");
        up.arg(script()).args(["up", "--run-dir"]).arg(run_dir);
        if real_node {
            up.arg("--real-node");
        }
        let out = up
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .context("running e2e/cluster.sh up")?;
        if !out.status.success() {
            bail!(
                "e2e/cluster.sh up failed ({}); logs are in {}/logs",
                out.status,
                run_dir.display()
            );
        }
        Self::from_env_output(&String::from_utf8_lossy(&out.stdout), true)
    }

    fn start_private() -> Result<Self> {
        Self::start_private_with(false)
    }

    fn start_private_with(real_node: bool) -> Result<Self> {
        let runs = std::env::var_os(RUNS_ENV)
            .filter(|d| !d.is_empty())
            .map_or_else(|| std::env::temp_dir().join("synco-e2e"), PathBuf::from);
        std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
        prune_stale_runs(&runs);
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "test".to_owned());
        Self::start_with(&runs.join(format!("{exe}-{}", std::process::id())), real_node)
    }

    fn from_env_output(stdout: &str, owned: bool) -> Result<Self> {
        let env = parse_env(stdout);
        let run_dir = env
            .get("SYNCO_E2E_RUN_DIR")
            .ok_or_else(|| anyhow!("cluster.sh printed no SYNCO_E2E_RUN_DIR: {stdout}"))?;
        let bin_dir = env
            .get("SYNCO_E2E_BIN")
            .ok_or_else(|| anyhow!("cluster.sh printed no SYNCO_E2E_BIN: {stdout}"))?;
        let path = Path::new(run_dir).join("cluster.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let info: ClusterInfo =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Self {
            info,
            bin_dir: PathBuf::from(bin_dir),
            owned,
        })
    }

    /// Stops a cluster this process started, leaving no process behind.
    /// Attached clusters belong to whoever started them and are left alone.
    pub fn stop(&self) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        let status = Command::new("bash")
            .arg(script())
            .args(["down", "--run-dir"])
            .arg(&self.info.run_dir)
            .stdout(Stdio::null())
            .status()
            .context("running e2e/cluster.sh down")?;
        if !status.success() {
            bail!("e2e/cluster.sh down failed ({status})");
        }
        Ok(())
    }

    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    pub fn run_dir(&self) -> &Path {
        &self.info.run_dir
    }

    /// The admin's kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.info.kubeconfig
    }

    /// The folder holding `synco-cluster` and its `kubectl` and `helm` links.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The simulated nodes that have GPUs.
    pub fn gpu_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.info.nodes.iter().filter(|n| n.gpus > 0)
    }

    pub fn user_info(&self, key: &str) -> Result<&UserInfo> {
        self.info.users.iter().find(|u| u.key == key).ok_or_else(|| {
            let known: Vec<&str> = self.info.users.iter().map(|u| u.key.as_str()).collect();
            anyhow!("no test user {key:?}; known: {known:?}")
        })
    }

    /// A client acting as the admin (`system:masters`).
    pub async fn admin(&self) -> Result<Client> {
        client_from_kubeconfig(&self.info.kubeconfig).await
    }

    /// A client authenticating with `key`'s own static token: `admin`, a member
    /// (`alice` ... `erin`), `operator` or `gateway`.
    pub async fn user(&self, key: &str) -> Result<Client> {
        client_from_kubeconfig(&self.user_info(key)?.kubeconfig).await
    }

    /// A client acting as the member `name` (one of [`MEMBERS`]).
    pub async fn member(&self, name: &str) -> Result<Client> {
        if !MEMBERS.contains(&name) {
            bail!("{name:?} is not a member test user; members are {MEMBERS:?}");
        }
        self.user(name).await
    }

    /// A client acting as the operator's static identity (`synco-operator`).
    pub async fn operator(&self) -> Result<Client> {
        self.user(OPERATOR).await
    }

    /// A client that authenticates as the admin and impersonates `user` in
    /// `groups`: any identity, without a token of its own.
    pub async fn impersonate(&self, user: &str, groups: &[&str]) -> Result<Client> {
        let mut cfg = config_from_kubeconfig(&self.info.kubeconfig).await?;
        cfg.auth_info.impersonate = Some(user.to_owned());
        cfg.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
        install_crypto_provider();
        Client::try_from(cfg).context("building an impersonating client")
    }

    /// A client acting as the ServiceAccount `namespace/name` with a real
    /// token from the TokenRequest API, signed by the cluster's service-account
    /// key, exactly as a pod of that account would authenticate. The account
    /// is created if missing. This is how a test acts as the operator's or the
    /// gateway's ServiceAccount with the RBAC the chart grants it.
    pub async fn service_account(&self, namespace: &str, name: &str) -> Result<Client> {
        let admin = self.admin().await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        if accounts.get_opt(name).await?.is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            match accounts.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e).context("creating the ServiceAccount"),
            }
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for {namespace}/{name}"))?;
        let token = issued
            .status
            .map(|s| s.token)
            .ok_or_else(|| anyhow!("TokenRequest returned no token"))?;
        // kube's AuthInfo keeps tokens as secrets; a token file avoids taking a
        // dependency on that type and leaves the token inspectable on failure.
        let dir = self.info.run_dir.join("serviceaccounts");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{namespace}.{name}.token"));
        std::fs::write(&file, token)?;
        let mut cfg = config_from_kubeconfig(&self.info.kubeconfig).await?;
        cfg.auth_info = AuthInfo {
            token_file: Some(file.to_string_lossy().into_owned()),
            ..AuthInfo::default()
        };
        install_crypto_provider();
        Client::try_from(cfg).context("building a service-account client")
    }

    /// `kubectl` as the admin of this cluster.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.env("KUBECONFIG", &self.info.kubeconfig);
        cmd
    }

    /// `helm` (v4) as the admin of this cluster, with its caches in the run
    /// directory.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("helm"));
        let home = self.info.run_dir.join("helm");
        cmd.env("KUBECONFIG", &self.info.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        cmd
    }
}

async fn config_from_kubeconfig(path: &Path) -> Result<Config> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))
}

/// Chooses ring as rustls's process-wide crypto provider. A workspace build enables
/// both ring and aws-lc-rs (through reqwest and sqlx), and then rustls will not pick
/// one by itself. Installing twice is harmless.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    install_crypto_provider();
    let cfg = config_from_kubeconfig(path).await?;
    Client::try_from(cfg).with_context(|| format!("building a client from {}", path.display()))
}

/// Removes run directories of private clusters whose supervisor is gone (the
/// logs of a failed run stay until the next run, for a look).
fn prune_stale_runs(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.join(".synco-e2e-run").exists() {
            continue;
        }
        let alive = std::fs::read_to_string(dir.join("supervisor.pid"))
            .ok()
            .and_then(|pid| std::fs::read(format!("/proc/{}/cmdline", pid.trim())).ok())
            .is_some_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("supervise"));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if !alive && old {
            // Through the script, which first unmounts what a real node left mounted.
            let _ = Command::new("bash")
                .arg(script())
                .args(["down", "--clean", "--run-dir"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
