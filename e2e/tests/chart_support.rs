//! Helpers shared by the chart and admission tests (`chart_*.rs`,
//! `admission_*.rs`), which include this file with `#[path]`. Cargo also builds
//! it alone as a test target with no tests.
//!
//! - `helm` for rendering and linting needs only the harness's binaries (no
//!   cluster): `helm_command()`.
//! - Installing into the real control plane: `install_chart()`,
//!   `uninstall_chart()`.
//! - Acting as the chart's ServiceAccounts with exactly the RBAC the chart
//!   grants: `chart_operator_client()` and `chart_gateway_client()`, which get
//!   real tokens from the TokenRequest API. The operator's full-flow test (the
//!   operator, run as that identity, reconciling the example co-op) builds on
//!   `chart_operator_client()`.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, Result, anyhow, bail};
use kube::Client;
use serde_json::Value;
use synco_e2e::{Cluster, workspace_root};

/// The chart's folder.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts").join("synco")
}

/// The canonical admission policies.
pub fn policies_dir() -> PathBuf {
    workspace_root().join("policies").join("admission")
}

/// The folder holding the harness's `helm` (and `kubectl`): `SYNCO_E2E_BIN`
/// when set, otherwise what `e2e/cluster.sh build` prints (building once, then
/// cached). No cluster is started.
pub fn harness_bin_dir() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| find_bin_dir().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("the harness's helm is not available: {e}"))
}

fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SYNCO_E2E_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let script = workspace_root().join("e2e").join("cluster.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("build")
        .stderr(Stdio::inherit())
        .output()
        .context("running e2e/cluster.sh build")?;
    if !out.status.success() {
        bail!("e2e/cluster.sh build failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or_else(|| anyhow!("e2e/cluster.sh build printed nothing"))?;
    Ok(PathBuf::from(dir))
}

/// `helm` with no cluster, its caches in a private temporary folder (for
/// `lint` and `template`).
pub fn helm_command() -> Result<Command> {
    let home = std::env::temp_dir().join(format!("synco-chart-helm-{}", std::process::id()));
    let mut cmd = Command::new(harness_bin_dir()?.join("helm"));
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        // No cluster: make sure nothing is read from the caller's kubeconfig.
        .env("KUBECONFIG", home.join("no-kubeconfig"));
    Ok(cmd)
}

/// The Kubernetes version `helm template` and `helm lint` render for: the
/// harness's minor (without a cluster, helm would assume a far older one).
pub const KUBE_VERSION: &str = "1.34.0";

/// Runs a command, returning its output whatever the exit status.
pub fn run(mut cmd: Command) -> Result<Output> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))
}

/// stdout and stderr together, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command and fails with its output unless it succeeds.
pub fn run_ok(cmd: Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = run(cmd)?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, text(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `helm template RELEASE charts/synco -n NAMESPACE ARGS...`: the rendered
/// objects, or the error output when rendering fails.
pub fn template(
    release: &str,
    namespace: &str,
    args: &[&str],
) -> Result<std::result::Result<Vec<Value>, String>> {
    let mut cmd = helm_command()?;
    cmd.args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--kube-version", KUBE_VERSION])
        .args(args);
    let out = run(cmd)?;
    if !out.status.success() {
        return Ok(Err(text(&out)));
    }
    Ok(Ok(parse_documents(&String::from_utf8_lossy(&out.stdout))?))
}

/// Like [`template`], failing when rendering fails.
pub fn render(release: &str, namespace: &str, args: &[&str]) -> Result<Vec<Value>> {
    template(release, namespace, args)?.map_err(|e| anyhow!("helm template {args:?} failed:\n{e}"))
}

/// The non-empty YAML documents of a text, as JSON values.
pub fn parse_documents(text: &str) -> Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).context("parsing rendered YAML")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// `kind/name` of an object.
pub fn id(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The objects of a kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one object of a kind whose name ends with `suffix`.
pub fn find<'a>(objects: &'a [Value], kind: &str, suffix: &str) -> Result<&'a Value> {
    let mut found = objects.iter().filter(|o| {
        o["kind"] == kind
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
    });
    let first = found.next().ok_or_else(|| anyhow!("no {kind} named *{suffix}"))?;
    if found.next().is_some() {
        bail!("several {kind} named *{suffix}");
    }
    Ok(first)
}

/// A release name unique in the cluster (and short, so names stay readable).
pub fn release_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The chart's `<release>-synco` prefix (for release names without "synco").
pub fn fullname(release: &str) -> String {
    if release.contains("synco") {
        release.to_owned()
    } else {
        format!("{release}-synco")
    }
}

/// Values for a test install: the admission policies apply only in the given
/// namespaces, so that tests sharing a cluster do not police each other.
pub fn scoped_admission_values(namespaces: &[&str]) -> String {
    let list = namespaces
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "admission:\n  namespaceSelector:\n    matchExpressions:\n      - {{key: kubernetes.io/metadata.name, operator: In, values: [{list}]}}\n"
    )
}

/// `helm install` (or `upgrade --install`) into the real control plane.
/// `values` is a YAML text written to the run directory and passed with `-f`.
/// `--take-ownership` lets a release adopt CRDs another test applied first
/// (tests share a cluster; the CRDs are the same).
pub fn install_chart(
    cluster: &Cluster,
    release: &str,
    namespace: &str,
    values: &str,
    extra: &[&str],
) -> Result<String> {
    let dir = cluster.run_dir().join("chart-values");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{release}-{}.yaml", std::process::id()));
    std::fs::write(&file, values)?;
    let mut cmd = cluster.helm();
    cmd.args(["upgrade", "--install", release])
        .arg(chart_dir())
        .args([
            "--namespace",
            namespace,
            "--create-namespace",
            "--take-ownership",
            "-f",
        ])
        .arg(&file)
        .args(extra);
    run_ok(cmd)
}

pub fn uninstall_chart(cluster: &Cluster, release: &str, namespace: &str) -> Result<String> {
    let mut cmd = cluster.helm();
    cmd.args(["uninstall", release, "--namespace", namespace]);
    run_ok(cmd)
}

/// The objects a release installed, as helm recorded them.
pub fn release_manifest(cluster: &Cluster, release: &str, namespace: &str) -> Result<Vec<Value>> {
    let mut cmd = cluster.helm();
    cmd.args(["get", "manifest", release, "--namespace", namespace]);
    parse_documents(&run_ok(cmd)?)
}

/// The name of the operator's ServiceAccount in a default install.
pub fn operator_service_account(release: &str) -> String {
    format!("{}-operator", fullname(release))
}

/// The name of the gateway's ServiceAccount in a default install.
pub fn gateway_service_account(release: &str) -> String {
    format!("{}-gateway", fullname(release))
}

/// A client authenticated as the chart's operator ServiceAccount, with a real
/// token from the TokenRequest API: it has exactly the RBAC the chart grants.
/// (This is how the operator's pods authenticate; use it to run the operator
/// in-process as that identity.)
pub async fn chart_operator_client(cluster: &Cluster, namespace: &str, release: &str) -> Result<Client> {
    cluster
        .service_account(namespace, &operator_service_account(release))
        .await
}

/// A client authenticated as the chart's gateway ServiceAccount.
pub async fn chart_gateway_client(cluster: &Cluster, namespace: &str, release: &str) -> Result<Client> {
    cluster
        .service_account(namespace, &gateway_service_account(release))
        .await
}

/// The manifests of a folder, as text, with every `metadata.namespace`
/// removed so that they can be applied to another namespace.
pub fn manifests_without_namespace(dir: &Path) -> Result<String> {
    let mut out = String::new();
    for file in synco_e2e::yaml_files(dir)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for mut doc in parse_documents(&text)? {
            if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("namespace");
            }
            out.push_str("---\n");
            out.push_str(&serde_yaml_ng::to_string(&doc)?);
        }
    }
    Ok(out)
}
