//! Cluster mode against the real API server of the e2e harness: the gateway follows
//! the co-op's resources in its namespace as they change. Engines are loopback mocks;
//! a Mistralrs model's endpoint (which the operator would publish) is set to one by
//! hand, so nothing connects to a cluster address.

#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::Gateway;
use common::coop::{self as c, CoopSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use synco_crds::{Customer, InferenceModel, ModelPhase};
use synco_e2e::{apply_crds, apply_yaml, cluster, wait_until, with_temp_ns};

async fn models(gateway: &Gateway, token: &str) -> Vec<String> {
    let body: Value = reqwest::Client::new()
        .get(gateway.url("/v1/models"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn chat(gateway: &Gateway, token: &str, model: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&c::chat(model, 4))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// What a chat request spawned with [`ask`] got back.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

/// Sends `body` to the chat endpoint as `token` on a task of its own.
fn ask(gateway: &Gateway, token: &str, body: Value) -> tokio::task::JoinHandle<Answer> {
    let (url, token) = (gateway.url("/v1/chat/completions"), token.to_owned());
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            retry_after,
            body,
            took: started.elapsed(),
        }
    })
}

/// The test co-op's manifests, in `ns`, with `open-chat` on `engine`.
fn coop_yaml(ns: &str, engine: &str) -> String {
    c::manifests_in(
        ns,
        &CoopSpec {
            open_engine: engine,
            ..CoopSpec::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_follows_the_coops_resources_in_its_namespace() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    apply_crds(admin).await?;
    let mock = synco_gateway::mock_upstream::start().await?;
    with_temp_ns(admin, "gw-cluster", |ns| async move {
        let engine = format!("{{kind: External, url: \"http://{mock}/v1\"}}");
        apply_yaml(admin, Some(&ns), &coop_yaml(&ns, &engine)).await?;
        let data = tempfile::tempdir()?;
        let db = format!("sqlite://{}?mode=rwc", data.path().join("synco.db").display());
        let kubeconfig = cluster.kubeconfig().display().to_string();
        let mut args = common::kube::cluster_args(&ns, &db);
        args.extend(["--waiting-room-seconds".to_owned(), "3".to_owned()]);
        let _operator = common::operator::start(admin.clone(), &ns);
        let gateway = Gateway::start_with_env(tempfile::tempdir()?, &args, &[("KUBECONFIG", &kubeconfig)]);
        let result = follow(admin, &ns, &gateway, mock).await;
        if result.is_err() {
            eprintln!("gateway log:\n{}", gateway.log());
        }
        result
    })
    .await
}

async fn follow(
    admin: &Client,
    ns: &str,
    gateway: &Gateway,
    mock: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let member = c::token(c::SECRET, &c::claims("bakery-sub"));
    let customer = c::token(c::SECRET, &c::claims("buyer-sub"));

    // The operator publishes the Allocation's quotas; until then every caller has none.
    wait_until("the quotas are in force", Duration::from_secs(30), || async {
        Ok(chat(gateway, &member, "open-chat").await.0 == 200)
    })
    .await?;
    // What was there at start.
    let mut listed = models(gateway, &member).await;
    listed.sort();
    assert_eq!(listed, ["members-chat", "open-chat"]);
    assert_eq!(chat(gateway, &member, "open-chat").await.0, 200);
    assert_eq!(chat(gateway, &customer, "open-chat").await.0, 200);
    assert_eq!(chat(gateway, &customer, "members-chat").await.0, 403);

    // A Mistralrs model is served once the operator publishes its endpoint.
    apply_yaml(
        admin,
        Some(ns),
        r"
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {name: pod-chat}
spec:
  source: {hub: Qwen/Qwen2.5-0.5B-Instruct}
  engine: {kind: Mistralrs}
  pool: gpus
  tokensPerSecondPerReplica: 1000
  capabilities: {chat: true}
",
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!models(gateway, &member).await.contains(&"pod-chat".to_owned()));
    // At zero replicas: a request waits in the waiting room (3 s here), then gets a 503
    // with Retry-After, not a 404, since the model is the co-op's.
    let waited = ask(gateway, &member, c::chat("pod-chat", 4)).await?;
    assert_eq!(waited.status, 503);
    assert!(waited.took >= Duration::from_secs(3), "{:?}", waited.took);
    assert_eq!(waited.retry_after.as_deref(), Some("10"));
    assert_eq!(waited.body["error"]["code"], "no_capacity_yet", "{}", waited.body);
    // A request that arrives while it scales up is served once an endpoint is ready.
    let early = ask(gateway, &member, c::chat("pod-chat", 4));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = reqwest::get(gateway.url("/metrics")).await?.text().await?;
    assert!(
        metrics.contains("synco_gateway_waiting_room_requests{model=\"pod-chat\"} 1\n"),
        "{metrics}"
    );
    let api: Api<InferenceModel> = Api::namespaced(admin.clone(), ns);
    api.patch_status(
        "pod-chat",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"endpoint": format!("http://{mock}/v1")}})),
    )
    .await?;
    let Answer { status, took, .. } = early.await?;
    assert_eq!(status, 200, "the waiting request is served");
    assert!(
        took >= Duration::from_millis(500),
        "it waited for the endpoint: {took:?}"
    );
    wait_until("pod-chat is served", Duration::from_secs(20), || async {
        Ok(models(gateway, &member).await.contains(&"pod-chat".to_owned()))
    })
    .await?;
    assert_eq!(chat(gateway, &member, "pod-chat").await.0, 200);

    // A suspended customer is turned away; a deleted model is no longer served.
    let customers: Api<Customer> = Api::namespaced(admin.clone(), ns);
    customers
        .patch(
            "buyer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspended": true}})),
        )
        .await?;
    wait_until(
        "the suspended customer is refused",
        Duration::from_secs(20),
        || async { Ok(chat(gateway, &customer, "open-chat").await.0 == 401) },
    )
    .await?;
    api.delete("pod-chat", &DeleteParams::default()).await?;
    wait_until("pod-chat is gone", Duration::from_secs(20), || async {
        Ok(!models(gateway, &member).await.contains(&"pod-chat".to_owned()))
    })
    .await?;
    assert_eq!(chat(gateway, &member, "pod-chat").await.0, 404);
    vote(admin, ns, gateway).await
}

async fn post_ballot(gateway: &Gateway, token: &str, proposal: &str, ballot: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(gateway.url(&format!("/v1/governance/proposals/{proposal}/votes")))
        .bearer_auth(token)
        .json(ballot)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Members vote through the gateway; the Vote lands in the API server in their name.
async fn vote(admin: &Client, ns: &str, gateway: &Gateway) -> anyhow::Result<()> {
    // Proposed with kubectl; the operator opens it under the bylaws (FreeText: majority,
    // seven days by default).
    apply_yaml(
        admin,
        Some(ns),
        "apiVersion: synco.coop/v1alpha1\nkind: Proposal\nmetadata: {name: open-question}\nspec:\n  \
         kind: FreeText\n  title: open-question\n  body: b\n  proposer: school\n",
    )
    .await?;
    let member = c::token(c::SECRET, &c::claims("bakery-sub"));
    wait_until("the proposal is open", Duration::from_secs(20), || async {
        let body: Value = reqwest::Client::new()
            .get(gateway.url("/v1/governance/proposals?phase=Open"))
            .bearer_auth(&member)
            .send()
            .await?
            .json()
            .await?;
        Ok(body["data"].as_array().map_or(0, Vec::len) == 1)
    })
    .await?;

    let yes = json!({"position": "Yes", "comment": "good for the school"});
    let (status, body) = post_ballot(gateway, &member, "open-question", &yes).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["receipt"].as_str().map(str::len), Some(64), "{body}");
    let votes: Api<synco_crds::Vote> = Api::namespaced(admin.clone(), ns);
    let cast = votes.get("open-question-bakery").await?;
    assert_eq!(cast.spec.member, "bakery");
    assert_eq!(cast.spec.position, Some(synco_crds::Position::Yes));
    assert_eq!(cast.spec.comment.as_deref(), Some("good for the school"));

    let no = json!({"position": "No"});
    let (status, body) = post_ballot(gateway, &member, "open-question", &no).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_voted")),
        "{body}"
    );
    let (status, _) = post_ballot(gateway, &member, "no-such-question", &yes).await;
    assert_eq!(status, 404);
    let (status, body) = post_ballot(gateway, &member, "open-question", &json!({"position": "Maybe"})).await;
    assert_eq!(status, 400, "{body}");
    // A customer in good standing may not vote.
    let customers: Api<Customer> = Api::namespaced(admin.clone(), ns);
    customers
        .patch(
            "buyer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspended": false}})),
        )
        .await?;
    let buyer = c::token(c::SECRET, &c::claims("buyer-sub"));
    wait_until("the customer is back", Duration::from_secs(20), || async {
        Ok(chat(gateway, &buyer, "open-chat").await.0 == 200)
    })
    .await?;
    let (status, body) = post_ballot(gateway, &buyer, "open-question", &yes).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = post_ballot(gateway, "sk-synco-nonsense", "open-question", &yes).await;
    assert_eq!(status, 401);

    // The same through the members' page, in headless Chromium: the school signs in,
    // sees the proposals, votes No; a second click is refused with the reason.
    let school = c::token(c::SECRET, &c::claims("school-sub"));
    let page = gateway.url("/governance");
    let shown = tokio::task::spawn_blocking(move || browser_vote(&page, &school)).await??;
    assert!(shown.0.contains("is recorded"), "{shown:?}");
    assert!(shown.1.contains("already voted"), "{shown:?}");
    let cast = votes.get("open-question-school").await?;
    assert_eq!(cast.spec.position, Some(synco_crds::Position::No));
    Ok(())
}

/// Signs in on the members' pages with `token`, votes No on `open-question`, then
/// tries again; returns the two pages' messages (the receipt, then the refusal).
fn browser_vote(page: &str, token: &str) -> anyhow::Result<(String, String)> {
    use headless_chrome::{Browser, LaunchOptions};
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(common::chromium()?))
            .sandbox(false)
            .headless(true)
            .idle_browser_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    let tab = browser.new_tab()?;
    tab.navigate_to(page)?.wait_until_navigated()?;
    tab.wait_for_element("#key")?.click()?;
    // Pasted in one go (typing key by key costs a round trip per character).
    tab.send_character(token)?;
    tab.wait_for_element("#sign-in")?.click()?;
    tab.wait_for_element("#row-open-question")?;
    let proposal = format!("{page}/proposals/open-question");
    let vote_no = |tab: &headless_chrome::Tab, then: &str| -> anyhow::Result<String> {
        tab.navigate_to(&proposal)?.wait_until_navigated()?;
        tab.wait_for_element("input[name=position][value=No]")?.click()?;
        tab.wait_for_element("#cast")?.click()?;
        tab.wait_for_element(then)?.get_inner_text()
    };
    let first = vote_no(&tab, "#receipt")?;
    let second = vote_no(&tab, "#message")?;
    Ok((first, second))
}

/// A kwok node for `ns`'s engine pods: labelled and tainted for it alone, with the
/// loopback address, so that engine pods on its host network have 127.0.0.1 as their
/// address (where the test's loopback engine listens).
async fn loopback_node(admin: &Client, name: &str, ns: &str) -> anyhow::Result<()> {
    let capacity = json!({"cpu": "16", "memory": "64Gi", "pods": "110"});
    let labels = json!({"synco.coop/e2e-pool": ns});
    synco_e2e::kwok_node(
        admin,
        name,
        labels,
        ("synco.coop/e2e-pool", ns),
        capacity,
        Some("127.0.0.1"),
    )
    .await
}

/// Whether a ScaledUp Event was published for `model` (to `action`'s target, if given).
async fn scaled_up(admin: &Client, ns: &str, model: &str, action: Option<&str>) -> anyhow::Result<bool> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), ns);
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("ScaledUp")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(model)
                && action.is_none_or(|a| e.action.as_deref() == Some(a))
        }))
}

/// The replicas the Deployment of `model` asks for.
async fn scale_of(admin: &Client, ns: &str, model: &str) -> anyhow::Result<Option<i32>> {
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    Ok(deployments
        .get_opt(&format!("{model}-engine"))
        .await?
        .and_then(|d| d.spec?.replicas))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_scales_from_zero_with_demand_and_back() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    apply_crds(admin).await?;
    // The engine every replica is: a loopback process on the operator's engine port,
    // taking 5 ms a prompt word (a few for the short prompts; 1.5 s for a long one).
    let engine = synco_gateway::mock_upstream::start_with_cost(synco_gateway::mock_upstream::Cost {
        per_prompt_token: Duration::from_millis(5),
        ..synco_gateway::mock_upstream::Cost::default()
    })
    .await?;
    with_temp_ns(admin, "gw-scale", |ns| async move {
        // Two nodes: replicas on the host network take the engine's port, one a node.
        let node_names = [format!("{ns}-loopback-0"), format!("{ns}-loopback-1")];
        for node in &node_names {
            loopback_node(admin, node, &ns).await?;
        }
        let result = scale_from_zero(cluster, admin, &ns, engine).await;
        let nodes: Api<Node> = Api::all(admin.clone());
        for node in &node_names {
            nodes.delete(node, &DeleteParams::default()).await?;
        }
        let name = format!("scale-operator-{ns}");
        let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(admin.clone())
            .delete(&name, &DeleteParams::default())
            .await;
        let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(admin.clone())
            .delete(&name, &DeleteParams::default())
            .await;
        result
    })
    .await
}

async fn scale_from_zero(
    cluster: &synco_e2e::Cluster,
    admin: &Client,
    ns: &str,
    engine: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let open = format!("{{kind: External, url: \"http://{engine}/v1\"}}");
    apply_yaml(admin, Some(ns), &coop_yaml(ns, &open)).await?;
    apply_yaml(
        admin,
        Some(ns),
        &format!(
            r#"
apiVersion: synco.coop/v1alpha1
kind: ComputePool
metadata: {{name: loopback}}
spec:
  nodeSelector: {{"synco.coop/e2e-pool": "{ns}"}}
  tolerations: [{{key: "synco.coop/e2e-pool", operator: Exists, effect: NoSchedule}}]
---
apiVersion: synco.coop/v1alpha1
kind: ComputePool
metadata: {{name: nowhere}}
spec:
  nodeSelector: {{"synco.coop/e2e-pool": "{ns}-none"}}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: scaling-chat}}
spec:
  source: {{hub: Qwen/Qwen2.5-0.5B-Instruct}}
  engine: {{kind: Mistralrs}}
  pool: loopback
  minReplicas: 0
  maxReplicas: 2
  scaleDownDelaySeconds: 6
  concurrentRequestsPerReplica: 1
  tokensPerSecondPerReplica: 1000
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: stuck-chat}}
spec:
  source: {{hub: Qwen/Qwen2.5-0.5B-Instruct}}
  engine: {{kind: Mistralrs}}
  pool: nowhere
  minReplicas: 0
  maxReplicas: 1
  scaleDownDelaySeconds: 6
  tokensPerSecondPerReplica: 1000
"#
        ),
    )
    .await?;
    let data = tempfile::tempdir()?;
    let db = format!("sqlite://{}?mode=rwc", data.path().join("synco.db").display());
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let mut args = common::kube::cluster_args(ns, &db);
    args.extend(["--waiting-room-seconds".to_owned(), "10".to_owned()]);
    // The operator runs engine pods on the node's network at the loopback engine's port,
    // as a ServiceAccount with exactly the chart's rules (the one source), so that the
    // rights scaling needs (Leases, Pods, the scale subresource) are proven there.
    let rules = std::fs::read_to_string(
        synco_e2e::workspace_root().join("charts/synco/files/rbac/operator-rules.yaml"),
    )?;
    apply_yaml(
        admin,
        Some(ns),
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: scale-operator-{ns}}}\nrules:\n{rules}\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: scale-operator-{ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: scale-operator-{ns}}}\n\
             subjects: [{{kind: ServiceAccount, name: synco-operator, namespace: {ns}}}]\n"
        ),
    )
    .await?;
    let operator_client = cluster.service_account(ns, "synco-operator").await?;
    let _operator = common::operator::start_with(
        operator_client,
        synco_operator::Settings {
            mistralrs_port: engine.port(),
            engine_host_network: true,
            ..common::operator::settings(ns)
        },
    );
    let gateway = Gateway::start_with_env(tempfile::tempdir()?, &args, &[("KUBECONFIG", &kubeconfig)]);
    let result = scale_with(admin, ns, &gateway, engine).await;
    if result.is_err() {
        eprintln!("gateway log:\n{}", gateway.log());
    }
    result
}

async fn scale_with(
    admin: &Client,
    ns: &str,
    gateway: &Gateway,
    engine: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let member = c::token(c::SECRET, &c::claims("bakery-sub"));
    let models: Api<InferenceModel> = Api::namespaced(admin.clone(), ns);
    // At zero: a Deployment asking for no replica, and no endpoint.
    wait_until("the model is idle at zero", Duration::from_secs(30), || async {
        let m = models.get("scaling-chat").await?;
        let idle = m.status.as_ref().is_some_and(|s| s.phase == ModelPhase::Idle);
        Ok(idle && scale_of(admin, ns, "scaling-chat").await? == Some(0))
    })
    .await?;
    let status = models.get("scaling-chat").await?.status.unwrap();
    assert_eq!((status.ready_replicas, status.endpoint.as_deref()), (0, None));
    assert!(status.endpoints.is_empty());
    wait_until("the quotas are in force", Duration::from_secs(30), || async {
        Ok(chat(gateway, &member, "open-chat").await.0 == 200)
    })
    .await?;

    // The first request waits; the operator scales the model up from the demand the
    // gateway publishes; it is served once the replica is ready.
    let started = std::time::Instant::now();
    let (status, body) = chat(gateway, &member, "scaling-chat").await;
    let took = started.elapsed();
    let ended = std::time::Instant::now();
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_secs(10),
        "served within the waiting room: {took:?}"
    );
    eprintln!("served from zero in {} ms", took.as_millis());
    let model = models.get("scaling-chat").await?;
    let status = model.status.unwrap();
    assert_eq!(status.replicas, 1);
    assert_eq!(status.phase, ModelPhase::Ready);
    assert_eq!(
        status.endpoints,
        [format!("http://127.0.0.1:{}/v1", engine.port())]
    );
    assert_eq!(scale_of(admin, ns, "scaling-chat").await?, Some(1));
    assert!(
        scaled_up(admin, ns, "scaling-chat", None).await?,
        "a ScaledUp Event"
    );
    // The scale was set through the scale subresource, by its own field manager.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    let managers: Vec<String> = deployments
        .get("scaling-chat-engine")
        .await?
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.subresource.as_deref() == Some("scale"))
        .filter_map(|f| f.manager)
        .collect();
    assert_eq!(managers, ["synco-operator-scale"]);

    // A model whose replica never becomes ready: the request waits out the waiting
    // room, then 503 with Retry-After (and the operator did ask for a replica).
    let stuck = ask(gateway, &member, c::chat("stuck-chat", 4));

    // No demand: the replica stays through the scale-down delay (6 s), then goes.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(ended.elapsed())).await;
    assert_eq!(
        scale_of(admin, ns, "scaling-chat").await?,
        Some(1),
        "kept through the delay"
    );
    wait_until("scaled back to zero", Duration::from_secs(30), || async {
        Ok(scale_of(admin, ns, "scaling-chat").await? == Some(0))
    })
    .await?;
    let down = ended.elapsed();
    assert!(down >= Duration::from_secs(4), "not before the delay: {down:?}");
    wait_until("the endpoints are withdrawn", Duration::from_secs(30), || async {
        let s = models.get("scaling-chat").await?.status.unwrap_or_default();
        Ok(s.endpoints.is_empty() && s.endpoint.is_none() && s.phase == ModelPhase::Idle)
    })
    .await?;
    eprintln!(
        "scaled back to zero {} ms after the last request",
        down.as_millis()
    );

    let Answer {
        status,
        retry_after: retry,
        body,
        took: waited,
    } = stuck.await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "no_capacity_yet", "{body}");
    assert_eq!(retry.as_deref(), Some("10"));
    assert!(waited >= Duration::from_secs(10), "{waited:?}");
    assert!(
        scaled_up(admin, ns, "stuck-chat", None).await?,
        "the operator asked for a replica of the stuck model"
    );

    // Three long requests at once at zero, a replica taking one at a time: up to two
    // replicas (its maximum) while they wait or run, and all three served.
    let long = vec!["word"; 300].join(" ");
    let body = json!({"model": "scaling-chat", "max_tokens": 4,
                      "messages": [{"role": "user", "content": long}]});
    let asks: Vec<_> = (0..3).map(|_| ask(gateway, &member, body.clone())).collect();
    let mut most = 0;
    while !asks.iter().all(tokio::task::JoinHandle::is_finished) {
        most = most.max(scale_of(admin, ns, "scaling-chat").await?.unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for answer in asks {
        assert_eq!(answer.await?.status, 200);
    }
    assert_eq!(most, 2, "scaled to its maximum for three requests");
    assert!(
        scaled_up(admin, ns, "scaling-chat", Some("ScaleTo2")).await?,
        "a ScaledUp Event for two replicas"
    );
    // Back to zero at once with no delay, and its pods gone (without their 30 s of
    // grace: nothing runs in them) while their nodes are there to see them off.
    models
        .patch(
            "scaling-chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scaleDownDelaySeconds": 0}})),
        )
        .await?;
    wait_until(
        "scaled to zero with no delay",
        Duration::from_secs(30),
        || async { Ok(scale_of(admin, ns, "scaling-chat").await? == Some(0)) },
    )
    .await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(admin.clone(), ns);
    wait_until("the engine pods are gone", Duration::from_secs(30), || async {
        pods.delete_collection(&DeleteParams::default().grace_period(0), &Default::default())
            .await?;
        Ok(pods.list(&Default::default()).await?.items.is_empty())
    })
    .await?;
    Ok(())
}
