//! The chart on a real node (issue 17): the operator's and the gateway's images built
//! here (`charts/images/build.sh`) and loaded into the node's containerd, the control
//! plane's release and one co-op's gateway-only release installed with Helm, and their
//! pods run by a real kubelet with containerd and runc (the harness's real node: host
//! network, loopback only). Then, through the gateway pod:
//!
//! * the pods become Ready through their own probes;
//! * the governance scenario (`common/scenario.rs`): members propose, discuss, delegate
//!   and vote; the operator pod closes and applies the vote; ana's limit, a real 429
//!   before, moves with it;
//! * a streamed answer from the model;
//! * `helm upgrade` rolls the gateway pod while a bounded loop of requests runs, and
//!   none of them fails;
//! * `helm uninstall` of both releases leaves the CRDs and the co-op's resources.
//!
//! Needs root, containerd, runc, Debian's CNI plugins, mmdebstrap, buildah and
//! PostgreSQL (`.ci/run` installs them).

#[path = "../../e2e/tests/chart_support.rs"]
mod chart_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use async_trait::async_trait;
use chart_support::{fullname, install_chart, run_ok, uninstall_chart};
use common::coop as c;
use common::postgres::Postgres;
use common::scenario::{self, Env};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use synco_crds::{Cooperative, Member};
use synco_e2e::{REAL_NODE_LABEL, RealNodeInfo, apply_yaml, cluster_with_real_node};

const CONTROL: &str = "synco";
const CONTROL_NS: &str = "synco-system";
const COOP: &str = "riverside";

/// The gateway pod, as the scenario sees it.
struct OnNode {
    base: String,
    admin: kube::Client,
    /// The kubelet's container logs.
    pod_logs: PathBuf,
}

#[async_trait]
impl Env for OnNode {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn token(&self, who: &str) -> String {
        c::token(c::SECRET, &c::claims(who))
    }
    async fn suspend(&self, member: &str) {
        common::kube::suspend(&self.admin, COOP, member).await;
    }
    fn log(&self) -> String {
        logs_of(&self.pod_logs, COOP)
    }
}

/// Every container log the kubelet kept for pods in `ns`.
fn logs_of(pod_logs: &Path, ns: &str) -> String {
    let mut out = String::new();
    let Ok(pods) = std::fs::read_dir(pod_logs) else {
        return out;
    };
    for pod in pods.flatten() {
        if !pod.file_name().to_string_lossy().starts_with(&format!("{ns}_")) {
            continue;
        }
        for container in std::fs::read_dir(pod.path()).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(container.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(file.path()).unwrap_or_default();
                out.push_str(&format!("== {}\n{text}", file.path().display()));
            }
        }
    }
    out
}

/// Where a pod goes on the real node, and how it reaches the API server there (the
/// `kubernetes` Service's address is bookkeeping: nothing routes it).
fn on_the_node(api_port: u16, extra_env: &str) -> String {
    format!(
        "  hostNetwork: true\n  nodeSelector: {{{REAL_NODE_LABEL}: \"true\"}}\n  \
         tolerations: [{{key: {REAL_NODE_LABEL}, operator: Exists, effect: NoSchedule}}]\n  \
         extraEnv:\n    - {{name: KUBERNETES_SERVICE_HOST, value: 127.0.0.1}}\n    \
         - {{name: KUBERNETES_SERVICE_PORT, value: \"{api_port}\"}}\n{extra_env}"
    )
}

/// Builds `images` with `charts/images/build.sh` (the operator's and gateway's from this
/// build's binaries) into `out`, and loads them into the real node's containerd.
fn build_and_load(node: &RealNodeInfo, out: &Path, tag: &str, images: &[&str]) -> Result<()> {
    let gateway_bin = PathBuf::from(common::binary());
    let bin_dir = gateway_bin.parent().ok_or_else(|| anyhow!("no binary folder"))?;
    let mut build = Command::new(common::repo_root().join("charts/images/build.sh"));
    build
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(["--tag", tag, "--out"])
        .arg(out)
        .args(images);
    if let Some(engine) = std::env::var_os("SYNCO_ENGINE_BINARY") {
        build.arg("--engine-binary").arg(engine);
    }
    run_ok(build)?;
    for image in images {
        let mut import = Command::new("ctr");
        import
            .arg("--address")
            .arg(&node.containerd_socket)
            .args(["--namespace", &node.containerd_namespace, "images", "import"])
            .arg(out.join(format!("synco-{image}.tar")));
        run_ok(import)?;
    }
    Ok(())
}

/// A copy of the tiny model in `dir` that the pods (user 65532) can read.
fn readable_tiny_model(dir: &Path) -> Result<PathBuf> {
    let model = dir.join("tiny-model");
    let mut cp = Command::new("cp");
    cp.arg("-r").arg(common::tiny_model()).arg(&model);
    run_ok(cp)?;
    let mut chmod = Command::new("chmod");
    chmod.args(["-R", "a+rX"]).arg(dir);
    run_ok(chmod)?;
    Ok(model)
}

/// Creates the co-op's namespace and the Secrets its gateway release reads.
async fn coop_namespace(admin: &kube::Client, database_url: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": COOP}}))?,
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), COOP);
    for (name, key, value) in [
        ("synco-jwt", "secret", c::SECRET),
        ("synco-database", "url", database_url),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {key: value}}))?,
            )
            .await?;
    }
    Ok(())
}

/// The values of the co-op's gateway-only release: the gateway pod on the real node,
/// serving the tiny model (mounted from `model`) in process; `rollout` changes the pod.
fn coop_values(tag: &str, api_port: u16, gateway_port: u16, model: &Path, rollout: u32) -> String {
    format!(
        "crds: {{enabled: false}}\nadmission: {{enabled: false}}\noperator: {{enabled: false}}\n\
         gateway:\n  replicas: 1\n  \
         image: {{repository: localhost/synco/synco-gateway, tag: {tag}, pullPolicy: Never}}\n  \
         listenAddress: 127.0.0.1\n  port: {gateway_port}\n  \
         auth: {{issuer: {}, audience: {}}}\n  podAnnotations: {{rollout: \"{rollout}\"}}\n  \
         extraVolumes: [{{name: tiny-model, hostPath: {{path: {}, type: Directory}}}}]\n  \
         extraVolumeMounts: [{{name: tiny-model, mountPath: /models/tiny, readOnly: true}}]\n{}",
        c::ISSUER,
        c::AUDIENCE,
        model.display(),
        on_the_node(
            api_port,
            // The books follow the operator's Applied proposals every half second.
            "    - {name: SYNCO_BOOKS_EVERY_MS, value: \"500\"}\n"
        )
    )
}

/// Waits until `deployment` in `ns` has `replicas` pods, all updated and Ready, and
/// no others; returns their names.
async fn rolled_out(admin: &kube::Client, ns: &str, deployment: &str, replicas: i32) -> Result<Vec<String>> {
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let started = Instant::now();
    loop {
        // The operator makes an engine's Deployment a moment after its model appears.
        let Some(d) = deployments.get_opt(deployment).await? else {
            ensure!(
                started.elapsed() < Duration::from_secs(180),
                "no Deployment {ns}/{deployment} in 180 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let status = d.status.clone().unwrap_or_default();
        let settled = d.metadata.generation == status.observed_generation
            && status.updated_replicas == Some(replicas)
            && status.ready_replicas == Some(replicas)
            && status.replicas == Some(replicas);
        let selector = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let listed = pods.list(&ListParams::default().labels(&selector)).await?;
        if settled && listed.items.len() == usize::try_from(replicas)? {
            for pod in &listed.items {
                let spec = pod.spec.as_ref().ok_or_else(|| anyhow!("a pod without a spec"))?;
                ensure!(
                    spec.node_name.as_deref() == Some("real-0"),
                    "{:?}",
                    spec.node_name
                );
            }
            return Ok(listed
                .items
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "{ns}/{deployment} not rolled out in 180 s: {status:?}\n{}",
            serde_json::to_string(&listed.items.iter().map(|p| &p.status).collect::<Vec<_>>())?
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What both tests start from: Postgres, the cluster with its real node, the admin, and
/// the API server's port (which the pods are told).
struct Setting {
    pg: Postgres,
    cluster: &'static synco_e2e::Cluster,
    node: RealNodeInfo,
    admin: kube::Client,
    api_port: u16,
}

async fn setting() -> Result<Setting> {
    let pg = Postgres::start().ok_or_else(|| anyhow!("PostgreSQL is needed (.ci/run installs it)"))?;
    let cluster = cluster_with_real_node()?;
    let node = cluster
        .info()
        .real_node
        .clone()
        .ok_or_else(|| anyhow!("the cluster has no real node"))?;
    let admin = cluster.admin().await?;
    let api_port = *cluster
        .info()
        .ports
        .get("apiserver")
        .ok_or_else(|| anyhow!("no API server port"))?;
    Ok(Setting {
        pg,
        cluster,
        node,
        admin,
        api_port,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_runs_on_a_real_node_from_images_built_here() -> Result<()> {
    let Setting {
        pg,
        cluster,
        node,
        admin,
        api_port,
    } = setting().await?;

    // The images, built here and loaded into the node's containerd.
    let work = tempfile::tempdir()?;
    let tag = format!("node-{}", std::process::id());
    let started = Instant::now();
    build_and_load(&node, work.path(), &tag, &["operator", "gateway"])?;
    println!(
        "images built and loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The model the gateway pod serves in process, on a read-only hostPath volume.
    let model = readable_tiny_model(work.path())?;

    // The control plane's release: CRDs, admission policies and the operator, whose two
    // replicas share the node's network.
    let operator_port = common::free_port();
    let control_values = format!(
        "gateway: {{enabled: false}}\noperator:\n  replicas: 2\n  \
         image: {{repository: localhost/synco/synco-operator, tag: {tag}, pullPolicy: Never}}\n  \
         metrics: {{address: 127.0.0.1, port: {operator_port}}}\n{}",
        on_the_node(api_port, "")
    );
    install_chart(cluster, CONTROL, CONTROL_NS, &control_values, &[])?;

    // The co-op: its namespace, Secrets and resources, then its gateway-only release.
    coop_namespace(&admin, &pg.url()).await?;
    apply_yaml(
        &admin,
        Some(COOP),
        &scenario::manifests(COOP, "20s", "{path: /models/tiny}"),
    )
    .await?;
    let gateway_port = common::free_port();
    let coop_values = |rollout| coop_values(&tag, api_port, gateway_port, &model, rollout);
    install_chart(cluster, COOP, COOP, &coop_values(1), &[])?;

    // Ready through their own probes, on the real node.
    let operator_deployment = format!("{}-operator", fullname(CONTROL));
    let gateway_deployment = format!("{}-gateway", fullname(COOP));
    let operators = rolled_out(&admin, CONTROL_NS, &operator_deployment, 2).await?;
    let first = rolled_out(&admin, COOP, &gateway_deployment, 1).await?;
    println!(
        "operator pods {operators:?} and gateway pod {first:?} Ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pod_logs = node.dir.join("pod-logs");
    let env = OnNode {
        base: format!("http://127.0.0.1:{gateway_port}"),
        admin: admin.clone(),
        pod_logs: pod_logs.clone(),
    };

    // The governance scenario through the gateway pod; the operator pod decides.
    scenario::run(&env, 20).await;

    // A streamed answer from the model.
    let streamed = reqwest::Client::new()
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(env.token("fay"))
        .json(&json!({"model": "tiny", "stream": true, "max_tokens": 4,
            "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await?;
    ensure!(streamed.status() == 200, "{}", streamed.text().await?);
    ensure!(
        streamed
            .headers()
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"))
    );
    let text = streamed.text().await?;
    ensure!(
        text.matches("data: {").count() >= 2 && text.trim_end().ends_with("data: [DONE]"),
        "{text}"
    );

    // helm upgrade rolls the gateway pod under a bounded loop of requests, each on a
    // new connection (as a client's would be after the old pod closes its own).
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let url = env.url("/v1/models");
        let token = env.token("cleo");
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let (mut ok, mut failed) = (0u32, Vec::new());
            let until = Instant::now() + Duration::from_secs(240);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                match client.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(format!("{}", r.status())),
                    Err(e) => failed.push(format!("{e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    install_chart(cluster, COOP, COOP, &coop_values(2), &[])?;
    let second = rolled_out(&admin, COOP, &gateway_deployment, 1).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await?;
    println!(
        "during the upgrade: {ok} requests answered, {} failed",
        failed.len()
    );
    ensure!(second != first, "the upgrade did not roll the pod: {first:?}");
    ensure!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    ensure!(ok >= 50, "only {ok} requests during the upgrade");

    // helm uninstall leaves the CRDs and the co-op's resources.
    uninstall_chart(cluster, COOP, COOP)?;
    uninstall_chart(cluster, CONTROL, CONTROL_NS)?;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    ensure!(crds.get_opt("cooperatives.synco.coop").await?.is_some());
    ensure!(crds.get_opt("votes.synco.coop").await?.is_some());
    let coops: Api<Cooperative> = Api::namespaced(admin.clone(), COOP);
    ensure!(coops.get_opt("commons").await?.is_some());
    let members: Api<Member> = Api::namespaced(admin.clone(), COOP);
    ensure!(members.list(&ListParams::default()).await?.items.len() == scenario::MEMBERS.len());
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), COOP);
    ensure!(deployments.get_opt(&gateway_deployment).await?.is_none());
    Ok(())
}

/// The engine pod: an InferenceModel with the mistral.rs engine, which the operator pod
/// deploys on the real node from the engine image (`operator/engine.Dockerfile`, the
/// `mistralrs` server of mistralrs-cli), the tiny model on a PersistentVolume; a streamed
/// answer through the gateway pod, which routes to the endpoint the operator publishes.
///
/// Ignored by default: the engine image needs mistralrs-cli compiled in release (about
/// 20 minutes on two cores; cached by `charts/images/build.sh` in
/// `~/.cache/synco-images`, or given as `SYNCO_ENGINE_BINARY`). Run it with
/// `cargo test --workspace --test real_node -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "builds mistralrs-cli in release (about 20 minutes) unless cached"]
async fn the_operator_runs_the_engine_pod_on_the_real_node() -> Result<()> {
    let Setting {
        pg,
        cluster,
        node,
        admin,
        api_port,
    } = setting().await?;
    let work = tempfile::tempdir()?;
    let tag = format!("engine-{}", std::process::id());
    let started = Instant::now();
    build_and_load(&node, work.path(), &tag, &["operator", "gateway", "engine"])?;
    println!(
        "images built and loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let model = readable_tiny_model(work.path())?;

    // The operator deploys engines from the image built here, on the node's network, on
    // a port of the test's choosing, bound to loopback (the engine's own --host).
    let engine_port = common::free_port();
    let control_values = format!(
        "gateway: {{enabled: false}}\noperator:\n  replicas: 1\n  \
         image: {{repository: localhost/synco/synco-operator, tag: {tag}, pullPolicy: Never}}\n  \
         engineImage: {{repository: localhost/synco/synco-engine, tag: {tag}}}\n  \
         engineHostNetwork: true\n  \
         metrics: {{address: 127.0.0.1, port: {}}}\n{}",
        common::free_port(),
        on_the_node(
            api_port,
            &format!("    - {{name: SYNCO_MISTRALRS_PORT, value: \"{engine_port}\"}}\n")
        )
    );
    install_chart(cluster, CONTROL, CONTROL_NS, &control_values, &[])?;
    coop_namespace(&admin, &pg.url()).await?;
    let engine_model = format!(
        r#"
apiVersion: synco.coop/v1alpha1
kind: ComputePool
metadata: {{name: node, namespace: {COOP}}}
spec:
  nodeSelector: {{{REAL_NODE_LABEL}: "true"}}
  tolerations: [{{key: {REAL_NODE_LABEL}, operator: Exists, effect: NoSchedule}}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {COOP}-tiny-model}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  persistentVolumeReclaimPolicy: Retain
  hostPath: {{path: {model}, type: Directory}}
  claimRef: {{namespace: {COOP}, name: tiny-model}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: tiny-model, namespace: {COOP}}}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: {COOP}-tiny-model
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: engine-chat, namespace: {COOP}}}
spec:
  servedName: engine-chat
  source: {{volume: {{claimName: tiny-model}}}}
  engine: {{kind: Mistralrs, args: ["--host", "127.0.0.1"]}}
  pool: node
  replicas: 1
  tokensPerSecondPerReplica: 50
"#,
        model = model.display()
    );
    apply_yaml(
        &admin,
        Some(COOP),
        &scenario::manifests(COOP, "20s", "{path: /models/tiny}"),
    )
    .await?;
    apply_yaml(&admin, None, &engine_model).await?;
    let gateway_port = common::free_port();
    install_chart(
        cluster,
        COOP,
        COOP,
        &coop_values(&tag, api_port, gateway_port, &model, 1),
        &[],
    )?;
    rolled_out(&admin, COOP, &format!("{}-gateway", fullname(COOP)), 1).await?;
    // The operator names the Deployment after the model.
    let engines = rolled_out(&admin, COOP, "engine-chat-engine", 1).await?;
    println!(
        "engine pod {engines:?} Ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let env = OnNode {
        base: format!("http://127.0.0.1:{gateway_port}"),
        admin: admin.clone(),
        pod_logs: node.dir.join("pod-logs"),
    };
    // Through the gateway pod to the engine pod, once the operator has published the
    // endpoint and the quotas.
    let until = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let answer = reqwest::Client::new()
            .post(env.url("/v1/chat/completions"))
            .bearer_auth(env.token("ana"))
            .json(&json!({"model": "engine-chat", "stream": true, "max_tokens": 4,
                "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await?;
        let status = answer.status();
        let text = answer.text().await?;
        if status == 200 {
            break text;
        }
        ensure!(
            Instant::now() < until,
            "{status}: {text}\n{}",
            logs_of(&env.pod_logs, COOP)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(
        text.matches("data: {").count() >= 2 && text.trim_end().ends_with("data: [DONE]"),
        "{text}"
    );
    // The engine knows its model as "default"; the caller is answered in the served name.
    ensure!(
        text.contains("\"model\":\"engine-chat\"") && !text.contains("\"model\":\"default\""),
        "{text}"
    );
    println!(
        "streamed from the engine pod after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    uninstall_chart(cluster, COOP, COOP)?;
    uninstall_chart(cluster, CONTROL, CONTROL_NS)?;
    Ok(())
}
