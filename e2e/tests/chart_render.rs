//! The chart, without a cluster: `helm lint` and `helm template` with the
//! default values and the supported variations, the schema's refusals, the
//! secure pod defaults, the RBAC it grants, and the copies of generated and
//! canonical files it ships.

#[path = "chart_support.rs"]
mod support;

use anyhow::{Result, anyhow, ensure};
use serde_json::{Value, json};
use support::{chart_dir, find, helm_command, id, of_kind, policies_dir, render, run, template, text};
use synco_e2e::{crd_dir, yaml_files};

const NS: &str = "synco-system";

/// The variations the chart supports, as `helm template` arguments.
const VARIATIONS: &[(&str, &[&str])] = &[
    ("default", &[]),
    (
        "postgres",
        &[
            "--set",
            "gateway.database.type=postgres",
            "--set",
            "gateway.database.postgres.existingSecret=metering-db",
        ],
    ),
    (
        "sqlite",
        &[
            "--set",
            "gateway.database.type=sqlite",
            "--set",
            "gateway.replicas=1",
        ],
    ),
    (
        "ingress",
        &[
            "--set",
            "gateway.ingress.enabled=true",
            "--set",
            "gateway.ingress.className=nginx",
        ],
    ),
    ("hpa", &["--set", "gateway.autoscaling.enabled=true"]),
    (
        "jwks-url",
        &[
            "--set",
            "gateway.auth.mode=jwks",
            "--set",
            "gateway.auth.jwks.url=https://id.example/jwks.json",
        ],
    ),
    (
        "jwks-configmap",
        &[
            "--set",
            "gateway.auth.mode=jwks",
            "--set",
            "gateway.auth.jwks.configMap.name=jwks",
        ],
    ),
    ("namespaced-gateway", &["--set", "gateway.namespace=riverside"]),
    (
        "federation",
        &["--set", "gateway.federation.existingSecret=riverside-federation"],
    ),
    (
        "no-crds-no-admission",
        &["--set", "crds.enabled=false", "--set", "admission.enabled=false"],
    ),
    (
        "telemetry",
        &[
            "--set",
            "telemetry.otlpEndpoint=http://otel-collector:4318",
            "--set",
            "telemetry.serviceMonitor.enabled=true",
            "--api-versions",
            "monitoring.coreos.com/v1/ServiceMonitor",
        ],
    ),
];

#[test]
fn helm_lint_passes_with_default_values_and_every_variation() -> Result<()> {
    for (name, args) in VARIATIONS {
        // `helm lint` has no --api-versions, and without one the chart
        // refuses a ServiceMonitor (it checks that the cluster has the CRD).
        let args: Vec<&str> = args
            .chunks(2)
            .filter(|pair| {
                pair[0] != "--api-versions" && pair.get(1) != Some(&"telemetry.serviceMonitor.enabled=true")
            })
            .flatten()
            .copied()
            .collect();
        let mut cmd = helm_command()?;
        cmd.args([
            "lint",
            "--strict",
            "--namespace",
            NS,
            "--kube-version",
            support::KUBE_VERSION,
        ])
        .arg(chart_dir())
        .args(&args);
        let out = run(cmd)?;
        ensure!(out.status.success(), "helm lint ({name}) failed:\n{}", text(&out));
    }
    Ok(())
}

#[test]
fn helm_template_renders_every_variation() -> Result<()> {
    for (name, args) in VARIATIONS {
        let objects = render("synco", NS, args).map_err(|e| anyhow!("{name}: {e:#}"))?;
        for obj in &objects {
            ensure!(
                obj["apiVersion"].is_string() && obj["kind"].is_string(),
                "{name}: {obj}"
            );
            let meta_name = obj["metadata"]["name"].as_str().unwrap_or_default();
            ensure!(
                !meta_name.is_empty() && meta_name.len() <= 253,
                "{name}: bad name {meta_name:?}"
            );
        }
        // Every variation has both components.
        find(&objects, "Deployment", "-operator")?;
        find(&objects, "Deployment", "-gateway")?;
        find(&objects, "Service", "-gateway")?;
    }
    Ok(())
}

#[test]
fn default_install_has_every_object() -> Result<()> {
    let objects = render("synco", NS, &[])?;
    let ids: Vec<String> = objects.iter().map(id).collect();
    for expected in [
        "ServiceAccount/synco-operator",
        "ClusterRole/synco-operator",
        "ClusterRoleBinding/synco-operator",
        "Role/synco-operator-leader-election",
        "RoleBinding/synco-operator-leader-election",
        "Deployment/synco-operator",
        "Service/synco-operator-metrics",
        "ServiceAccount/synco-gateway",
        "Role/synco-gateway",
        "RoleBinding/synco-gateway",
        "Deployment/synco-gateway",
        "Service/synco-gateway",
        "PodDisruptionBudget/synco-gateway",
        "NetworkPolicy/synco-gateway-engines",
        "Role/synco-voter",
        // The canonical policy names: a release named "synco" keeps them.
        "ValidatingAdmissionPolicy/synco-vote-author",
        "ValidatingAdmissionPolicyBinding/synco-vote-author",
        "ValidatingAdmissionPolicy/synco-vote-immutable",
        "ValidatingAdmissionPolicy/synco-allocation-status-writer",
        "ValidatingAdmissionPolicy/synco-member-identity-unique",
    ] {
        ensure!(
            ids.iter().any(|i| i == expected),
            "{expected} missing from {ids:#?}"
        );
    }
    for absent in [
        "Ingress",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
        "ServiceMonitor",
    ] {
        ensure!(
            of_kind(&objects, absent).is_empty(),
            "{absent} rendered by default"
        );
    }
    ensure!(of_kind(&objects, "CustomResourceDefinition").len() == yaml_files(&crd_dir())?.len());

    let operator = find(&objects, "Deployment", "-operator")?;
    ensure!(operator["spec"]["replicas"] == 2, "two operator replicas");
    let env = container(operator)?["env"].clone();
    ensure!(
        env_value(&env, "SYNCO_NO_LEADER_ELECTION").is_none(),
        "leader election is on by default"
    );
    ensure!(env_value(&env, "SYNCO_LEASE_NAME") == Some(json!("synco-operator")));
    ensure!(env_value(&env, "SYNCO_METRICS_ADDR") == Some(json!("0.0.0.0:9090")));

    let gateway = find(&objects, "Deployment", "-gateway")?;
    let env = container(gateway)?["env"].clone();
    ensure!(env_secret(&env, "SYNCO_DATABASE_URL") == Some(("synco-database".into(), "url".into())));
    ensure!(env_secret(&env, "SYNCO_JWT_HS256_SECRET") == Some(("synco-jwt".into(), "secret".into())));
    Ok(())
}

#[test]
fn crds_are_crdgen_output_kept_on_uninstall() -> Result<()> {
    let objects = render("synco", NS, &[])?;
    for file in yaml_files(&crd_dir())? {
        let generated = support::parse_documents(&std::fs::read_to_string(&file)?)?;
        for crd in generated {
            let name = crd["metadata"]["name"].as_str().unwrap_or_default();
            let rendered = find(&objects, "CustomResourceDefinition", name)?;
            ensure!(
                rendered["spec"] == crd["spec"],
                "the chart's {name} differs from {}",
                file.display()
            );
            ensure!(
                rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep",
                "{name} is not kept on uninstall"
            );
        }
    }
    // crds.keep=false drops the annotation.
    let objects = render("synco", NS, &["--set", "crds.keep=false"])?;
    for crd in of_kind(&objects, "CustomResourceDefinition") {
        ensure!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(),
            "{}",
            id(crd)
        );
    }
    Ok(())
}

#[test]
fn the_chart_ships_exactly_the_generated_crds_and_the_canonical_policies() -> Result<()> {
    for (canonical, copy, how) in [
        (
            crd_dir(),
            chart_dir().join("files/crds"),
            "cargo run -p synco-crds --bin crdgen",
        ),
        (
            policies_dir(),
            chart_dir().join("files/admission"),
            "charts/sync-admission-policies.sh",
        ),
    ] {
        let names = |dir: &std::path::Path| -> Result<Vec<String>> {
            Ok(yaml_files(dir)?
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect())
        };
        ensure!(
            names(&canonical)? == names(&copy)?,
            "{} and {} hold different files; run {how}",
            canonical.display(),
            copy.display()
        );
        for name in names(&canonical)? {
            ensure!(
                std::fs::read(canonical.join(&name))? == std::fs::read(copy.join(&name))?,
                "{name} differs between {} and {}; run {how}",
                canonical.display(),
                copy.display()
            );
        }
    }
    Ok(())
}

#[test]
fn a_misspelt_value_fails_with_the_schemas_message() -> Result<()> {
    for (args, key) in [
        (&["--set", "gateway.replicsa=3"][..], "replicsa"),
        (&["--set", "operator.leaderElection.enbled=false"][..], "enbled"),
        (&["--set", "crd.enabled=false"][..], "crd"),
    ] {
        let err = template("synco", NS, args)?
            .err()
            .ok_or_else(|| anyhow!("{args:?} rendered"))?;
        ensure!(
            err.contains("values don't meet the specifications of the schema"),
            "{args:?}: {err}"
        );
        ensure!(
            err.contains("additional properties") && err.contains(key),
            "{args:?}: {err}"
        );
    }
    // A wrong type or value is refused by the schema too.
    let err = template("synco", NS, &["--set", "gateway.database.type=mysql"])?
        .err()
        .ok_or_else(|| anyhow!("mysql rendered"))?;
    ensure!(err.contains("schema") && err.contains("postgres"), "{err}");
    Ok(())
}

#[test]
fn sqlite_refuses_several_replicas_and_autoscaling() -> Result<()> {
    let sqlite = ["--set", "gateway.database.type=sqlite"];
    let err = template("synco", NS, &sqlite)?
        .err()
        .ok_or_else(|| anyhow!("sqlite with 2 replicas rendered"))?;
    ensure!(
        err.contains("gateway.database.type=sqlite") && err.contains("gateway.replicas=1"),
        "{err}"
    );
    let args = [
        &sqlite[..],
        &[
            "--set",
            "gateway.replicas=1",
            "--set",
            "gateway.autoscaling.enabled=true",
        ],
    ]
    .concat();
    let err = template("synco", NS, &args)?
        .err()
        .ok_or_else(|| anyhow!("sqlite with HPA rendered"))?;
    ensure!(err.contains("cannot autoscale"), "{err}");

    // The single-replica install: a claim, a Recreate rollout, no Secret for the URL.
    let objects = render(
        "synco",
        NS,
        &[&sqlite[..], &["--set", "gateway.replicas=1"]].concat(),
    )?;
    let pvc = find(&objects, "PersistentVolumeClaim", "-gateway-data")?;
    ensure!(pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep");
    let gateway = find(&objects, "Deployment", "-gateway")?;
    ensure!(gateway["spec"]["replicas"] == 1 && gateway["spec"]["strategy"]["type"] == "Recreate");
    let env = container(gateway)?["env"].clone();
    ensure!(
        env_value(&env, "SYNCO_DATABASE_URL") == Some(json!("sqlite:///var/lib/synco/synco.db?mode=rwc"))
    );
    Ok(())
}

#[test]
fn variations_render_what_they_promise() -> Result<()> {
    let objects = render("synco", NS, &["--set", "operator.engineHostNetwork=true"])?;
    let env = container(find(&objects, "Deployment", "-operator")?)?["env"].clone();
    ensure!(
        env_value(&env, "SYNCO_ENGINE_HOST_NETWORK") == Some(json!("true")),
        "{env}"
    );
    let env = container(find(&render("synco", NS, &[])?, "Deployment", "-operator")?)?["env"].clone();
    ensure!(env_value(&env, "SYNCO_ENGINE_HOST_NETWORK").is_none(), "{env}");

    // Nodes without a pod network: both run on the node's network, bound where told,
    // sharing their ports with the next replica (a rolling update on one node).
    let defaults = render("synco", NS, &[])?;
    let objects = render(
        "synco",
        NS,
        &[
            "--set",
            "gateway.hostNetwork=true,gateway.listenAddress=127.0.0.1,gateway.port=18080",
            "--set",
            "operator.hostNetwork=true,operator.metrics.address=127.0.0.1",
            "--set",
            "operator.engineImage.repository=localhost/synco/synco-engine,operator.engineImage.tag=dev",
        ],
    )?;
    for (part, listen, reuse) in [
        ("-gateway", "SYNCO_LISTEN", "SYNCO_REUSE_PORT"),
        ("-operator", "SYNCO_METRICS_ADDR", "SYNCO_METRICS_REUSE_PORT"),
    ] {
        let on = find(&objects, "Deployment", part)?;
        let off = find(&defaults, "Deployment", part)?;
        let pod = &on["spec"]["template"]["spec"];
        ensure!(
            pod["hostNetwork"] == true && pod["dnsPolicy"] == "ClusterFirstWithHostNet",
            "{pod}"
        );
        ensure!(off["spec"]["template"]["spec"]["hostNetwork"].is_null());
        // No declared (host) port, which the scheduler would give one pod per node:
        // the probes name the number instead.
        ensure!(container(on)?["ports"].is_null(), "{}", container(on)?);
        ensure!(
            container(on)?["readinessProbe"]["httpGet"]["port"].is_u64(),
            "{}",
            container(on)?
        );
        ensure!(
            container(off)?["readinessProbe"]["httpGet"]["port"].is_string(),
            "{}",
            container(off)?
        );
        let env = container(on)?["env"].clone();
        ensure!(env_value(&env, reuse) == Some(json!("true")), "{env}");
        ensure!(
            env_value(&env, listen).is_some_and(|v| v.as_str().is_some_and(|a| a.starts_with("127.0.0.1:"))),
            "{env}"
        );
        let env = container(off)?["env"].clone();
        ensure!(env_value(&env, reuse).is_none(), "{env}");
        ensure!(
            env_value(&env, listen).is_some_and(|v| v.as_str().is_some_and(|a| a.starts_with("0.0.0.0:"))),
            "{env}"
        );
    }
    let env = container(find(&objects, "Deployment", "-operator")?)?["env"].clone();
    ensure!(
        env_value(&env, "SYNCO_MISTRALRS_IMAGE") == Some(json!("localhost/synco/synco-engine:dev")),
        "{env}"
    );
    let env = container(find(&defaults, "Deployment", "-operator")?)?["env"].clone();
    ensure!(
        env_value(&env, "SYNCO_MISTRALRS_IMAGE") == Some(json!("ghcr.io/synco-coop/synco-engine:0.8.1")),
        "{env}"
    );

    let objects = render("synco", NS, &["--set", "gateway.ingress.enabled=true"])?;
    let ingress = find(&objects, "Ingress", "-gateway")?;
    ensure!(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "synco-gateway");

    let objects = render("synco", NS, &["--set", "gateway.autoscaling.enabled=true"])?;
    let hpa = find(&objects, "HorizontalPodAutoscaler", "-gateway")?;
    ensure!(hpa["spec"]["scaleTargetRef"]["name"] == "synco-gateway");
    // The HPA owns the replica count.
    ensure!(find(&objects, "Deployment", "-gateway")?["spec"]["replicas"].is_null());

    let objects = render(
        "synco",
        NS,
        &[
            "--set",
            "gateway.auth.mode=jwks",
            "--set",
            "gateway.auth.jwks.configMap.name=jwks",
        ],
    )?;
    let gateway = find(&objects, "Deployment", "-gateway")?;
    let env = container(gateway)?["env"].clone();
    ensure!(env_value(&env, "SYNCO_JWKS_FILE") == Some(json!("/etc/synco/jwks/jwks.json")));
    ensure!(
        env_value(&env, "SYNCO_JWT_HS256_SECRET").is_none()
            && env_secret(&env, "SYNCO_JWT_HS256_SECRET").is_none()
    );
    let err = template("synco", NS, &["--set", "gateway.auth.mode=jwks"])?
        .err()
        .ok_or_else(|| anyhow!("jwks without source"))?;
    ensure!(err.contains("exactly one of gateway.auth.jwks.url"), "{err}");

    // A federation key: mounted read-only from its Secret and named to the gateway.
    let objects = render(
        "synco",
        NS,
        &["--set", "gateway.federation.existingSecret=riverside-federation"],
    )?;
    let gateway = find(&objects, "Deployment", "-gateway")?;
    let env = container(gateway)?["env"].clone();
    ensure!(
        env_value(&env, "SYNCO_FEDERATION_KEY") == Some(json!("/etc/synco/federation/federation.pem")),
        "{env}"
    );
    ensure!(env_value(&env, "SYNCO_FEDERATION_OVERFLOW_AFTER_MS") == Some(json!("2000")));
    let volumes = gateway["spec"]["template"]["spec"]["volumes"].clone();
    ensure!(
        volumes.as_array().is_some_and(|v| v
            .iter()
            .any(|v| v["secret"]["secretName"] == "riverside-federation")),
        "{volumes}"
    );
    let defaults = render("synco", NS, &[])?;
    let env = container(find(&defaults, "Deployment", "-gateway")?)?["env"].clone();
    ensure!(
        env_value(&env, "SYNCO_FEDERATION_KEY").is_none(),
        "off by default"
    );

    // The gateway reads only its co-op's namespace: the release's by default.
    for (args, served) in [
        (&[][..], NS),
        (&["--set", "gateway.namespace=riverside"][..], "riverside"),
    ] {
        let objects = render("synco", NS, args)?;
        ensure!(
            of_kind(&objects, "ClusterRole")
                .iter()
                .all(|r| !id(r).ends_with("-gateway"))
        );
        let roles: Vec<&str> = of_kind(&objects, "Role")
            .into_iter()
            .filter(|r| r["metadata"]["name"] == "synco-gateway")
            .filter_map(|r| r["metadata"]["namespace"].as_str())
            .collect();
        ensure!(roles == [served], "{roles:?}");
        let gateway = find(&objects, "Deployment", "synco-gateway")?;
        let env = container(gateway)?["env"].clone();
        ensure!(env_value(&env, "SYNCO_NAMESPACE") == Some(json!(served)), "{env}");
    }

    let err = template("synco", NS, &["--set", "telemetry.serviceMonitor.enabled=true"])?
        .err()
        .ok_or_else(|| anyhow!("ServiceMonitor without its CRD"))?;
    ensure!(err.contains("monitoring.coreos.com"), "{err}");
    Ok(())
}

#[test]
fn every_pod_runs_with_secure_defaults() -> Result<()> {
    for (name, args) in VARIATIONS {
        let objects = render("synco", NS, args)?;
        for deployment in of_kind(&objects, "Deployment") {
            let pod = &deployment["spec"]["template"]["spec"];
            let what = format!("{name}: {}", id(deployment));
            ensure!(pod["securityContext"]["runAsNonRoot"] == true, "{what}");
            ensure!(
                pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault",
                "{what}"
            );
            ensure!(
                pod["serviceAccountName"].as_str().is_some_and(|s| s != "default"),
                "{what}"
            );
            for c in pod["containers"].as_array().into_iter().flatten() {
                let sc = &c["securityContext"];
                ensure!(sc["runAsNonRoot"] == true, "{what}");
                ensure!(sc["readOnlyRootFilesystem"] == true, "{what}");
                ensure!(sc["allowPrivilegeEscalation"] == false, "{what}");
                ensure!(sc["capabilities"]["drop"] == json!(["ALL"]), "{what}");
                ensure!(sc["seccompProfile"]["type"] == "RuntimeDefault", "{what}");
                ensure!(
                    c["livenessProbe"].is_object() && c["readinessProbe"].is_object(),
                    "{what}: probes"
                );
                ensure!(c["resources"]["requests"].is_object(), "{what}: requests");
            }
        }
    }
    Ok(())
}

#[test]
fn rbac_is_least_privilege() -> Result<()> {
    let objects = render("synco", NS, &[])?;
    let operator = find(&objects, "ClusterRole", "synco-operator")?;
    let rules = operator["rules"].as_array().cloned().unwrap_or_default();
    let grants = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r["apiGroups"]
                .as_array()
                .is_some_and(|g| g.contains(&json!(group)))
                && r["resources"]
                    .as_array()
                    .is_some_and(|g| g.contains(&json!(resource)))
                && r["verbs"].as_array().is_some_and(|g| g.contains(&json!(verb)))
        })
    };
    for (g, r, v) in [
        ("synco.coop", "proposals", "watch"),
        ("synco.coop", "allocations/status", "patch"),
        ("synco.coop", "proposals/status", "patch"),
        ("synco.coop", "allocations", "create"),
        ("synco.coop", "inferencemodels", "create"),
        ("synco.coop", "members", "create"),
        ("synco.coop", "inferencemodels/finalizers", "update"),
        ("synco.coop", "allocations/status", "operate"),
        ("apps", "deployments", "create"),
        ("", "services", "patch"),
        ("", "nodes", "list"),
        ("apps", "deployments/scale", "patch"),
        ("", "pods", "list"),
        ("coordination.k8s.io", "leases", "watch"),
        ("events.k8s.io", "events", "create"),
    ] {
        ensure!(grants(g, r, v), "the operator may not {v} {g}/{r}");
    }
    for (g, r, v) in [
        ("synco.coop", "votes", "create"),
        ("synco.coop", "votes", "delete"),
        ("", "secrets", "get"),
        ("", "nodes", "patch"),
        ("apps", "deployments", "delete"),
        ("synco.coop", "votes", "cast-on-behalf"),
        // Nothing it does not call: it never writes a Vote, its status or finalizers.
        ("synco.coop", "votes", "patch"),
        ("synco.coop", "votes", "operate"),
        ("synco.coop", "votes/status", "patch"),
        ("synco.coop", "proposals/finalizers", "update"),
        ("synco.coop", "allocations/status", "update"),
    ] {
        ensure!(!grants(g, r, v), "the operator may {v} {g}/{r}");
    }
    let all_verbs = rules
        .iter()
        .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default());
    let all_resources = rules
        .iter()
        .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default());
    ensure!(all_verbs.chain(all_resources).all(|v| v != "*"), "no wildcards");

    // Leases: create, and everything else pinned to the one Lease.
    let role = find(&objects, "Role", "synco-operator-leader-election")?;
    ensure!(role["metadata"]["namespace"] == NS);
    for rule in role["rules"].as_array().into_iter().flatten() {
        ensure!(rule["resources"] == json!(["leases"]));
        if rule["verbs"] != json!(["create"]) {
            ensure!(rule["resourceNames"] == json!(["synco-operator"]), "{rule}");
        }
    }

    let gateway = find(&objects, "Role", "synco-gateway")?;
    let rules = gateway["rules"].as_array().cloned().unwrap_or_default();
    let writes: Vec<(Value, Value)> = rules
        .iter()
        .filter(|r| {
            r["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v != "get" && v != "list" && v != "watch"))
        })
        .map(|r| (r["resources"].clone(), r["verbs"].clone()))
        .collect();
    ensure!(
        writes
            == [
                (json!(["proposals"]), json!(["create", "patch"])),
                (json!(["votes"]), json!(["create"])),
                (json!(["delegations"]), json!(["create", "patch", "delete"])),
                (json!(["leases"]), json!(["create", "patch"])),
                (json!(["votes"]), json!(["cast-on-behalf"])),
                (json!(["proposals"]), json!(["propose-on-behalf"])),
                (json!(["delegations"]), json!(["delegate-on-behalf"])),
            ],
        "the gateway writes only what it does for members (proposals, ballots, delegations) and its demand Lease: {writes:?}"
    );
    Ok(())
}

#[test]
fn names_fit_in_63_characters_for_a_long_release_name() -> Result<()> {
    let release = "a-long-release-name-for-the-riverside-cooperative-dc";
    let objects = render(
        release,
        NS,
        &[
            "--set",
            "gateway.database.type=sqlite",
            "--set",
            "gateway.replicas=1",
        ],
    )?;
    for obj in &objects {
        if obj["kind"] == "CustomResourceDefinition" {
            continue;
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        ensure!(name.len() <= 63, "{} is {} characters", id(obj), name.len());
    }
    // Bindings still point at their (renamed) policies.
    let policies: Vec<&str> = of_kind(&objects, "ValidatingAdmissionPolicy")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    for binding in of_kind(&objects, "ValidatingAdmissionPolicyBinding") {
        let target = binding["spec"]["policyName"].as_str().unwrap_or_default();
        ensure!(policies.contains(&target), "{} points at {target}", id(binding));
    }
    Ok(())
}

#[test]
fn every_value_is_commented_and_in_the_schema() -> Result<()> {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml"))?;
    // Keys inside these are Kubernetes objects written inline, documented by
    // their parent's comment.
    let free_form = ["resources", "podSecurityContext", "securityContext", "hosts"];
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut previous = "";
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            if !trimmed.is_empty() {
                previous = trimmed;
            }
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let inside_free_form = stack.iter().any(|(_, k)| free_form.contains(&k.as_str()));
        if let Some((key, _)) = trimmed
            .split_once(':')
            .filter(|(k, _)| !k.starts_with('-') && !k.contains(' '))
        {
            // A group key (no value of its own) is documented by its children.
            let has_value = !trimmed.trim_end().ends_with(':');
            if has_value && !inside_free_form {
                ensure!(
                    previous.starts_with('#'),
                    "values.yaml: {key} (under {stack:?}) has no comment"
                );
            }
            stack.push((indent, key.to_owned()));
        }
        previous = trimmed;
    }

    // The schema describes every property.
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart_dir().join("values.schema.json"))?)?;
    fn walk(v: &Value, path: &str) -> Result<()> {
        if let Some(obj) = v.as_object() {
            if obj.get("type") == Some(&json!("object")) && obj.contains_key("properties") {
                ensure!(
                    obj.get("additionalProperties") == Some(&json!(false)),
                    "{path}: additionalProperties is not false"
                );
            }
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    ensure!(
                        p.get("description").is_some()
                            || p.get("$ref").is_some()
                            || p.get("properties").is_some(),
                        "{path}.{k} has no description"
                    );
                    walk(p, &format!("{path}.{k}"))?;
                }
            }
            for (k, sub) in obj {
                if k != "properties" {
                    walk(sub, &format!("{path}/{k}"))?;
                }
            }
        } else if let Some(items) = v.as_array() {
            for item in items {
                walk(item, path)?;
            }
        }
        Ok(())
    }
    walk(&schema, "")
}

fn container(deployment: &Value) -> Result<&Value> {
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    ensure!(c.is_object(), "{} has no container", id(deployment));
    Ok(c)
}

fn env_value(env: &Value, name: &str) -> Option<Value> {
    env.as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e.get("value").cloned())
}

fn env_secret(env: &Value, name: &str) -> Option<(String, String)> {
    let e = env.as_array()?.iter().find(|e| e["name"] == name)?;
    let r = &e["valueFrom"]["secretKeyRef"];
    Some((r["name"].as_str()?.to_owned(), r["key"].as_str()?.to_owned()))
}

/// The environment the chart gives the operator: names the binary reads.
fn operator_env(objects: &[Value]) -> Result<Vec<(String, Value)>> {
    let deployment = find(objects, "Deployment", "-operator")?;
    let env = deployment
        .pointer("/spec/template/spec/containers/0/env")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the operator Deployment has no env"))?;
    Ok(env
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), e.clone()))
        .collect())
}

#[test]
fn the_operator_is_configured_only_through_flags_it_has() -> Result<()> {
    use clap::CommandFactory as _;
    let command = synco_operator::cli::Args::command();
    let mut known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    // Read by the logging filter and the OpenTelemetry SDK rather than by clap.
    known.extend(["RUST_LOG".to_owned(), "OTEL_SERVICE_NAME".to_owned()]);
    for values in [
        &[][..],
        &[
            "--set",
            "operator.leaderElection.enabled=false,operator.hostNetwork=true",
        ][..],
    ] {
        let objects = render("rel", "synco-system", values)?;
        let env = operator_env(&objects)?;
        for (name, _) in &env {
            ensure!(
                known.contains(name),
                "the chart sets {name}, which synco-operator does not read ({known:?})"
            );
        }
        let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        ensure!(
            names.contains(&"POD_NAME") && names.contains(&"POD_NAMESPACE"),
            "lease identity: {names:?}"
        );
        ensure!(
            names.contains(&"SYNCO_NO_LEADER_ELECTION") != values.is_empty(),
            "leader election switch wrong for {values:?}: {names:?}"
        );
    }
    // The Lease name the operator is told is the one its Role is pinned to.
    let objects = render("rel", "synco-system", &[])?;
    let lease = operator_env(&objects)?
        .into_iter()
        .find(|(n, _)| n == "SYNCO_LEASE_NAME")
        .and_then(|(_, e)| e["value"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("no SYNCO_LEASE_NAME"))?;
    let pinned = of_kind(&objects, "Role").into_iter().any(|role| {
        role["rules"].as_array().into_iter().flatten().any(|rule| {
            rule["resources"] == json!(["leases"])
                && rule["resourceNames"]
                    .as_array()
                    .is_some_and(|n| n.contains(&json!(lease)))
        })
    });
    ensure!(pinned, "no Role pins the Lease {lease}");
    Ok(())
}

/// Issue 17's topology: the cluster's control plane in one release, each co-op's
/// gateway in another.
#[test]
fn the_control_plane_and_each_coops_gateway_are_releases_of_their_own() -> Result<()> {
    let control = render("synco", NS, &["--set", "gateway.enabled=false"])?;
    let ids: Vec<String> = control.iter().map(id).collect();
    ensure!(ids.contains(&"Deployment/synco-operator".to_owned()), "{ids:#?}");
    ensure!(ids.iter().any(|i| i.starts_with("CustomResourceDefinition/")));
    ensure!(ids.iter().any(|i| i.starts_with("ValidatingAdmissionPolicy/")));
    ensure!(
        !ids.iter()
            .any(|i| i.contains("synco-gateway") || i.contains("voter") || i.starts_with("NetworkPolicy")),
        "no gateway in the control plane's release: {ids:#?}"
    );

    let coop = render(
        "riverside",
        "riverside",
        &[
            "--set",
            "crds.enabled=false,admission.enabled=false,operator.enabled=false",
            "--set",
            "voters.groups={riverside:members},voters.users={alice}",
        ],
    )?;
    for obj in &coop {
        let id = id(obj);
        ensure!(
            obj["metadata"]["namespace"] == "riverside",
            "{id} outside the co-op"
        );
        ensure!(
            !id.starts_with("Cluster")
                && !id.starts_with("ValidatingAdmission")
                && !id.starts_with("CustomResourceDefinition")
                && !id.contains("operator"),
            "{id} in a co-op's release"
        );
    }
    find(&coop, "Deployment", "riverside-synco-gateway")?;

    // The engines accept only this gateway's pods.
    let policy = find(&coop, "NetworkPolicy", "riverside-synco-gateway-engines")?;
    ensure!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "inference-engine"
    );
    ensure!(policy["spec"]["policyTypes"] == json!(["Ingress"]));
    let from = &policy["spec"]["ingress"][0]["from"][0];
    let gateway = find(&coop, "Deployment", "riverside-synco-gateway")?;
    ensure!(
        from["podSelector"]["matchLabels"] == gateway["spec"]["selector"]["matchLabels"],
        "{from}"
    );
    ensure!(from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "riverside");
    let off = render(
        "riverside",
        "riverside",
        &[
            "--set",
            "gateway.networkPolicy.enabled=false,voters.createRole=false",
        ],
    )?;
    ensure!(of_kind(&off, "NetworkPolicy").is_empty());
    ensure!(!off.iter().any(|o| id(o).contains("voter")));

    // Members who vote with kubectl: read the co-op, cast ballots, delegate; nothing else.
    let role = find(&coop, "Role", "riverside-synco-voter")?;
    let writes: Vec<(Value, Value)> = role["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r["resources"].clone(), r["verbs"].clone()))
        .filter(|(_, verbs)| verbs != &json!(["get", "list", "watch"]))
        .collect();
    ensure!(
        writes
            == [
                (json!(["votes"]), json!(["create"])),
                (json!(["delegations"]), json!(["create", "delete"])),
            ],
        "{writes:?}"
    );
    let binding = find(&coop, "RoleBinding", "riverside-synco-voter")?;
    ensure!(
        binding["subjects"]
            == json!([
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "riverside:members"},
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            ]),
        "{}",
        binding["subjects"]
    );
    ensure!(
        !render("riverside", "riverside", &[])?
            .iter()
            .any(|o| id(o) == "RoleBinding/riverside-synco-voter"),
        "no binding without voters"
    );

    let err = template(
        "x",
        NS,
        &[
            "--set",
            "crds.enabled=false,admission.enabled=false,operator.enabled=false,gateway.enabled=false",
        ],
    )?
    .err()
    .ok_or_else(|| anyhow!("an empty release rendered"))?;
    ensure!(err.contains("nothing to install"), "{err}");
    Ok(())
}

/// The operator's rights have one source (`files/rbac/operator-rules.yaml`): the chart's
/// ClusterRole is exactly those rules, the e2e tests grant exactly those (and pass),
/// and the table in `operator/README.md` says the same, row for row.
#[test]
fn the_operators_rbac_has_one_source() -> Result<()> {
    let source = chart_dir().join("files/rbac/operator-rules.yaml");
    let rules: Vec<Value> = serde_yaml_ng::from_str(&std::fs::read_to_string(&source)?)?;
    let objects = render("synco", NS, &[])?;
    let role = find(&objects, "ClusterRole", "synco-operator")?;
    ensure!(
        role["rules"] == json!(rules),
        "the chart's ClusterRole is not the source's rules"
    );

    let expand = |rules: &[Value]| -> std::collections::BTreeSet<(String, String, String)> {
        let mut out = std::collections::BTreeSet::new();
        for rule in rules {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        out.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
        out
    };
    // The README's table: | `group` | `resources`... | `verbs`... | why |
    let readme = std::fs::read_to_string(chart_dir().join("../../operator/README.md"))?;
    let table = readme
        .split("| API group | resources | verbs | why |")
        .nth(1)
        .ok_or_else(|| anyhow!("no rules table in operator/README.md"))?;
    let mut documented = std::collections::BTreeSet::new();
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<Vec<String>> = line
            .split('|')
            .skip(1)
            .take(3)
            .map(|cell| {
                cell.split(',')
                    .map(|w| w.trim().trim_matches('`').trim_matches('"').to_owned())
                    .filter(|w| !w.is_empty() || cell.contains("\"\""))
                    .collect()
            })
            .collect();
        for group in &cells[0] {
            for resource in &cells[1] {
                for verb in &cells[2] {
                    documented.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    let granted = expand(&rules);
    ensure!(
        documented == granted,
        "operator/README.md and the rules differ: documented only {:?}; granted only {:?}",
        documented.difference(&granted).collect::<Vec<_>>(),
        granted.difference(&documented).collect::<Vec<_>>()
    );
    Ok(())
}
