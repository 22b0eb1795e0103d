//! The chart's gateway, for real: the chart is installed into the harness's control
//! plane, and the gateway binary runs with exactly the arguments and environment the
//! chart's Deployment gives it (Secrets resolved, a real Postgres behind the database
//! Secret), authenticated as the chart's ServiceAccount with the RBAC the chart grants.
//! Only the listen address and the model cache move to loopback and a temp folder.

#![expect(clippy::unwrap_used, reason = "tests")]

#[path = "../../e2e/tests/chart_support.rs"]
mod chart_support;
mod common;

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Result, anyhow, ensure};
use chart_support::{gateway_service_account, install_chart, release_name, scoped_admission_values};
use common::coop::{self as c, CoopSpec};
use common::postgres::Postgres;
use common::{Gateway, binary};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use synco_e2e::{apply_yaml, cluster, with_temp_ns};

/// The two tests each run an operator (one watches every namespace): one at a time.
static ONE_OPERATOR_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The environment variables `synco-gateway cluster` reads (from its `--help`), and
/// those read by libraries rather than by its flags.
fn known_env() -> Vec<String> {
    let help = Command::new(binary())
        .args(["cluster", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let mut known: Vec<String> = help
        .split("[env:")
        .skip(1)
        .filter_map(|rest| rest.trim_start().split(['=', ']']).next().map(str::to_owned))
        .collect();
    known.extend(["RUST_LOG", "OTEL_SERVICE_NAME", "HF_HOME"].map(str::to_owned));
    known
}

async fn secret(api: &Api<Secret>, name: &str, data: &[(&str, &str)]) -> Result<()> {
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))?;
    api.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// The container's env as the kubelet would give it, Secrets and fields resolved.
async fn resolve_env(secrets: &Api<Secret>, env: &[Value]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for var in env {
        let name = var["name"]
            .as_str()
            .ok_or_else(|| anyhow!("env without a name: {var}"))?;
        let value = if let Some(v) = var["value"].as_str() {
            v.to_owned()
        } else if let Some(r) = var["valueFrom"]["secretKeyRef"].as_object() {
            let s = secrets.get(r["name"].as_str().unwrap_or_default()).await?;
            let bytes = s
                .data
                .and_then(|d| d.get(r["key"].as_str().unwrap_or_default()).cloned())
                .ok_or_else(|| anyhow!("{name}: no such key in the Secret"))?;
            String::from_utf8(bytes.0)?
        } else if var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
            "synco-gateway-test-pod".to_owned()
        } else {
            return Err(anyhow!("cannot resolve {var}"));
        };
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_charts_gateway_serves_the_coop_as_its_service_account() -> Result<()> {
    let _alone = ONE_OPERATOR_AT_A_TIME.lock().await;
    let Some(pg) = Postgres::start() else {
        return Ok(());
    };
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let mock = synco_gateway::mock_upstream::start().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "chart-gw", |ns| async move {
        let inner = admin.clone();
        with_temp_ns(&inner, "chart-gw-coop", |coop| async move {
            let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
            secret(&secrets, "synco-jwt", &[("secret", c::SECRET)]).await?;
            secret(&secrets, "synco-database", &[("url", &pg.url())]).await?;
            let release = release_name("gw");
            // The admin API on, for the token whose SHA-256 the values give.
            let admin_sha = {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(b"chart-admin-token"))
            };
            let values = format!(
                "{}gateway:\n  namespace: {coop}\n  auth:\n    issuer: {}\n    audience: {}\n    adminTokenSha256: {admin_sha}\n",
                scoped_admission_values(&[&ns, &coop]),
                c::ISSUER,
                c::AUDIENCE
            );
            install_chart(cluster, &release, &ns, &values, &[])?;
            let engine = format!("{{kind: External, url: \"http://{mock}/v1\"}}");
            let spec = CoopSpec {
                open_engine: &engine,
                ..CoopSpec::default()
            };
            apply_yaml(&admin, Some(&coop), &c::manifests_in(&coop, &spec)).await?;

            // What the chart's Deployment runs.
            let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
            let name = format!("{}-gateway", chart_support::fullname(&release));
            let deployment = serde_json::to_value(deployments.get(&name).await?)?;
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            let args: Vec<String> = container["args"]
                .as_array()
                .ok_or_else(|| anyhow!("no args"))?
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            let env = resolve_env(&secrets, container["env"].as_array().ok_or_else(|| anyhow!("no env"))?).await?;
            let known = known_env();
            for (name, _) in &env {
                ensure!(known.contains(name), "the chart sets {name}, which the gateway does not read");
            }

            // Its ServiceAccount's credentials, as a pod would have them.
            chart_support::chart_gateway_client(cluster, &ns, &release).await?;
            let sa = gateway_service_account(&release);
            let token = cluster.run_dir().join("serviceaccounts").join(format!("{ns}.{sa}.token"));
            let kubeconfig = common::kube::service_account_kubeconfig(cluster, &format!("{ns}-gateway"), &token);
            let cache = tempfile::tempdir()?;
            let mut child_env: Vec<(String, String)> = env
                .into_iter()
                .map(|(k, v)| if k == "HF_HOME" { (k, cache.path().display().to_string()) } else { (k, v) })
                .collect();
            child_env.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
            let pairs: Vec<(&str, &str)> = child_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // The operator publishes the quotas the gateway enforces, as the chart's
            // operator ServiceAccount.
            let operator_client = chart_support::chart_operator_client(cluster, &ns, &release).await?;
            let _operator = common::operator::start(operator_client, &coop);
            let mut gateway = Gateway::start_with_env(tempfile::tempdir()?, &args, &pairs);

            let member = c::token(c::SECRET, &c::claims("bakery-sub"));
            // 429 (no quota yet) until the operator has published the Allocation's quotas.
            let mut answer = None;
            for _ in 0..100 {
                let response = reqwest::Client::new()
                    .post(gateway.url("/v1/chat/completions"))
                    .bearer_auth(&member)
                    .json(&c::chat("open-chat", 4))
                    .send()
                    .await?;
                let status = response.status();
                let body: Value = response.json().await?;
                if status != 429 {
                    answer = Some((status, body));
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let (status, body) = answer.ok_or_else(|| anyhow!("no quota within 20 s\n{}", gateway.log()))?;
            ensure!(status == 200, "{status}: {body}\n{}", gateway.log());
            let verify = |token: &'static str| {
                reqwest::Client::new()
                    .get(gateway.url("/admin/v1/books/verify"))
                    .bearer_auth(token)
                    .send()
            };
            ensure!(verify("chart-admin-token").await?.status() == 200, "the chart's admin token");
            ensure!(verify("another").await?.status() == 401);
            // It publishes its demand for the operator in its own Lease, as the chart's
            // RBAC lets it.
            let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(admin.clone(), &coop);
            let mut published = false;
            for _ in 0..50 {
                let listed = leases
                    .list(&kube::api::ListParams::default().labels(synco_crds::demand::DEMAND_LABEL))
                    .await?;
                if !listed.items.is_empty() {
                    published = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            ensure!(published, "no demand Lease in 10 s\n{}", gateway.log());
            ensure!(!gateway.log().contains("cannot publish the demand"), "{}", gateway.log());

            // A member votes through the gateway: the chart's RBAC and the vote-author
            // admission policy (installed by the chart, in force here) let the
            // gateway's ServiceAccount cast the ballot in the member's name.
            propose_q(&admin, &coop).await?;
            let mut cast = None;
            for _ in 0..100 {
                let response = reqwest::Client::new()
                    .post(gateway.url("/v1/governance/proposals/q/votes"))
                    .bearer_auth(&member)
                    .json(&json!({"position": "Yes"}))
                    .send()
                    .await?;
                let status = response.status();
                let body: Value = response.json().await?;
                // 404 until the gateway has seen it, 409 until the operator opened it.
                if status != 404 && status != 409 {
                    cast = Some((status, body));
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let (status, body) = cast.ok_or_else(|| anyhow!("the proposal never reached the gateway"))?;
            ensure!(status == 201, "{status}: {body}\n{}", gateway.log());
            let votes: Api<synco_crds::Vote> = Api::namespaced(admin.clone(), &coop);
            ensure!(votes.get("q-bakery").await?.spec.member == "bakery");
            // Metered into the Postgres behind the chart's database Secret.
            ensure!(gateway.terminate().success(), "{}", gateway.log());
            let url = pg.url();
            let db = synco_gateway::db::connect(&url).await?;
            use sea_orm::EntityTrait as _;
            let records = synco_gateway::db::usage_record::Entity::find().all(&db).await?;
            ensure!(records.len() == 1 && records[0].caller == "bakery", "{records:?}");
            Ok(())
        })
        .await
    })
    .await
}

/// Opens the free-text proposal `q` in `ns`, by the school.
async fn propose_q(admin: &kube::Client, ns: &str) -> Result<()> {
    apply_yaml(
        admin,
        Some(ns),
        "apiVersion: synco.coop/v1alpha1\nkind: Proposal\nmetadata: {name: q}\nspec:\n  kind: FreeText\n  \
         title: q\n  body: b\n  proposer: school\n",
    )
    .await?;
    Ok(())
}

/// Values of a co-op's gateway-only release (no CRDs, policies or operator: the
/// control plane's release has them), with SQLite and `voters` bound to the voters'
/// Role.
fn coop_release_values(voters: &[&str]) -> String {
    let users = voters
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "crds: {{enabled: false}}\nadmission: {{enabled: false}}\noperator: {{enabled: false}}\n\
         gateway:\n  replicas: 1\n  database: {{type: sqlite}}\nvoters:\n  users: [{users}]\n"
    )
}

/// A gateway process for the co-op in `ns`, as the ServiceAccount of its release
/// (with the RBAC that release grants), metering into a temp SQLite file.
async fn coop_gateway(cluster: &synco_e2e::Cluster, ns: &str, release: &str) -> Result<Gateway> {
    chart_support::chart_gateway_client(cluster, ns, release).await?;
    let sa = gateway_service_account(release);
    let token = cluster
        .run_dir()
        .join("serviceaccounts")
        .join(format!("{ns}.{sa}.token"));
    let kubeconfig = common::kube::service_account_kubeconfig(cluster, &format!("{ns}-gateway"), &token);
    let data = tempfile::tempdir()?;
    let db = format!("sqlite://{}?mode=rwc", data.path().join("synco.db").display());
    let args = common::kube::cluster_args(ns, &db);
    Ok(Gateway::start_with_env(
        data,
        &args,
        &[("KUBECONFIG", &kubeconfig.display().to_string())],
    ))
}

async fn chat_as(gateway: &Gateway, token: &str, model: &str) -> Result<u16> {
    Ok(reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&c::chat(model, 4))
        .send()
        .await?
        .status()
        .as_u16())
}

/// Issue 17's topology: one release for the control plane (CRDs, the operator watching
/// every co-op namespace, the admission policies) and a gateway-only release per co-op.
/// Two co-ops in one cluster: the co-op releases install nothing cluster-wide and
/// nothing outside their namespace; the one operator (as the control plane's
/// ServiceAccount) publishes both co-ops' quotas; neither gateway sees the other
/// co-op's members or models (nor may its ServiceAccount read them); a member votes
/// with kubectl in its own co-op through the voters' Role, and not in the other.
#[tokio::test(flavor = "multi_thread")]
async fn two_coops_share_one_control_plane() -> Result<()> {
    let _alone = ONE_OPERATOR_AT_A_TIME.lock().await;
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let mock = synco_gateway::mock_upstream::start().await?;
    let outer = admin.clone();
    with_temp_ns(&outer, "cp-sys", |sys| async move {
        let a_admin = admin.clone();
        with_temp_ns(&a_admin, "cp-a", |a| async move {
            let b_admin = admin.clone();
            with_temp_ns(&b_admin, "cp-b", |b| async move {
                let control = release_name("cp");
                let values = format!("gateway: {{enabled: false}}\n{}", scoped_admission_values(&[&a, &b]));
                install_chart(cluster, &control, &sys, &values, &[])?;
                let (ra, rb) = (release_name("coop-a"), release_name("coop-b"));
                install_chart(cluster, &ra, &a, &coop_release_values(&["alice"]), &[])?;
                install_chart(cluster, &rb, &b, &coop_release_values(&[]), &[])?;
                // A co-op's release holds only namespaced objects of its own namespace.
                for (release, ns) in [(&ra, &a), (&rb, &b)] {
                    for obj in chart_support::release_manifest(cluster, release, ns)? {
                        let kind = obj["kind"].as_str().unwrap_or_default();
                        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                        ensure!(
                            obj["metadata"]["namespace"].as_str() == Some(ns.as_str()),
                            "{release} installs {kind} {name} outside {ns}"
                        );
                        ensure!(
                            !kind.starts_with("Cluster")
                                && !kind.starts_with("ValidatingAdmission")
                                && kind != "CustomResourceDefinition"
                                && !name.ends_with("-operator"),
                            "{release} installs {kind} {name}"
                        );
                    }
                }

                // Two co-ops, each with its own members and model.
                let engine = format!("{{kind: External, url: \"http://{mock}/v1\"}}");
                let spec = CoopSpec {
                    open_engine: &engine,
                    ..CoopSpec::default()
                };
                let ana = "apiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {name: ana}\n\
                           spec: {displayName: Ana, organisation: WorkerCoop, class: community, identity: alice}\n";
                apply_yaml(&admin, Some(&a), &format!("{}---\n{ana}", c::manifests_in(&a, &spec))).await?;
                let coop_b = c::manifests_in(&b, &spec)
                    .replace("open-chat", "b-chat")
                    .replace("identity: bakery-sub", "identity: bakery-b-sub");
                apply_yaml(&admin, Some(&b), &coop_b).await?;

                // One operator, with the control plane release's ServiceAccount.
                let operator_client = chart_support::chart_operator_client(cluster, &sys, &control).await?;
                let _operator = common::operator::start_with(
                    operator_client,
                    synco_operator::Settings {
                        namespace: None,
                        ..common::operator::settings(&sys)
                    },
                );
                let gateway_a = coop_gateway(cluster, &a, &ra).await?;
                let gateway_b = coop_gateway(cluster, &b, &rb).await?;
                let bakery_a = c::token(c::SECRET, &c::claims("bakery-sub"));
                let bakery_b = c::token(c::SECRET, &c::claims("bakery-b-sub"));
                let mut served = false;
                for _ in 0..150 {
                    if chat_as(&gateway_a, &bakery_a, "open-chat").await? == 200
                        && chat_as(&gateway_b, &bakery_b, "b-chat").await? == 200
                    {
                        served = true;
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                ensure!(
                    served,
                    "both co-ops' quotas in 30 s\n{}\n{}",
                    gateway_a.log(),
                    gateway_b.log()
                );
                // Neither sees the other's members or models.
                ensure!(chat_as(&gateway_b, &bakery_a, "b-chat").await? == 401, "A's member at B");
                ensure!(chat_as(&gateway_a, &bakery_b, "open-chat").await? == 401, "B's member at A");
                ensure!(chat_as(&gateway_a, &bakery_a, "b-chat").await? == 404, "B's model at A");
                ensure!(chat_as(&gateway_b, &bakery_b, "open-chat").await? == 404, "A's model at B");
                let sa_a = chart_support::chart_gateway_client(cluster, &a, &ra).await?;
                let b_members: Api<synco_crds::Member> = Api::namespaced(sa_a.clone(), &b);
                match b_members.list(&Default::default()).await {
                    Err(kube::Error::Api(e)) if e.code == 403 => {}
                    other => anyhow::bail!("A's gateway read B's members: {other:?}"),
                }

                // A member votes with kubectl: in its own co-op, through the voters' Role.
                propose_q(&admin, &a).await?;
                let proposals: Api<synco_crds::Proposal> = Api::namespaced(admin.clone(), &a);
                synco_e2e::wait_until("the proposal opens", std::time::Duration::from_secs(30), || async {
                    Ok(proposals
                        .get("q")
                        .await?
                        .status
                        .is_some_and(|s| s.phase == synco_crds::ProposalPhase::Open))
                })
                .await?;
                let alice = cluster.member("alice").await?;
                let ballot = |member: &str| -> Result<synco_crds::Vote> {
                    Ok(serde_json::from_value(json!({
                        "apiVersion": "synco.coop/v1alpha1",
                        "kind": "Vote",
                        "metadata": {"name": format!("q-{member}")},
                        "spec": {"proposal": "q", "member": member, "position": "Yes"},
                    }))?)
                };
                let in_a: Api<synco_crds::Vote> = Api::namespaced(alice.clone(), &a);
                in_a.create(&PostParams::default(), &ballot("ana")?).await?;
                // Not for someone else (the admission policies), and not in the other co-op
                // (no Role there).
                match in_a.create(&PostParams::default(), &ballot("school")?).await {
                    Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {}
                    other => anyhow::bail!("alice voted as the school: {other:?}"),
                }
                let in_b: Api<synco_crds::Vote> = Api::namespaced(alice, &b);
                match in_b.create(&PostParams::default(), &ballot("bakery")?).await {
                    Err(kube::Error::Api(e)) if e.code == 403 => {}
                    other => anyhow::bail!("alice voted in the other co-op: {other:?}"),
                }
                for (release, ns) in [(&ra, &a), (&rb, &b), (&control, &sys)] {
                    chart_support::uninstall_chart(cluster, release, ns)?;
                }
                Ok(())
            })
            .await
        })
        .await
    })
    .await
}
