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
            apply_yaml(
                &admin,
                Some(&coop),
                "apiVersion: synco.coop/v1alpha1\nkind: Proposal\nmetadata: {name: q}\nspec:\n  kind: FreeText\n  \
                 title: q\n  body: b\n  proposer: school\n",
            )
            .await?;
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
