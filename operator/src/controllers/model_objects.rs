//! The Deployment and Service that serve an InferenceModel with the mistral.rs server.
//! Pure builders, so that what is deployed can be checked without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::json;
use synco_crds::{ComputePool, InferenceModel};

use crate::context::Settings;
use crate::error::{Error, Result};

/// Where a volume source is mounted in the engine container.
pub const MODEL_MOUNT: &str = "/models";
/// The label that ties engine pods to their model.
pub const MODEL_LABEL: &str = "synco.coop/model";

/// The name of the Deployment and the Service of a model.
#[must_use]
pub fn engine_name(model: &str) -> String {
    // Kubernetes names are at most 253 characters and Services' at most 63: keep room.
    let mut name: String = model.chars().take(54).collect();
    name = name.trim_end_matches('-').to_owned();
    format!("{name}-engine")
}

/// The base URL the gateway uses to reach a model's engine.
#[must_use]
pub fn endpoint(model: &str, namespace: &str, port: u16) -> String {
    format!("http://{}.{namespace}.svc:{port}/v1", engine_name(model))
}

/// The base URLs of the ready replicas among `pods` (each pod's address and the
/// engine's port), sorted, once each: pods on the host network share their node's.
#[must_use]
pub fn replica_endpoints(pods: &[Pod], port: u16) -> Vec<String> {
    let mut urls: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let ready = status
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let ip: std::net::IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
            ready.then(|| format!("http://{}/v1", std::net::SocketAddr::new(ip, port)))
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// Labels of every object and pod of a model's engine.
#[must_use]
pub fn labels(model: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "mistralrs".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), model.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "inference-engine".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "synco-operator".to_owned(),
        ),
        (MODEL_LABEL.to_owned(), model.to_owned()),
    ])
}

/// The pod selector of a model's engine.
#[must_use]
pub fn selector(model: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(MODEL_LABEL.to_owned(), model.to_owned())])
}

/// The controller owner reference to `model` (for garbage collection).
fn owner(model: &InferenceModel) -> Result<serde_json::Value> {
    Ok(json!([{
        "apiVersion": "synco.coop/v1alpha1",
        "kind": "InferenceModel",
        "name": model.metadata.name.clone().ok_or(Error::Unnamed("InferenceModel"))?,
        "uid": model.metadata.uid.clone().ok_or(Error::Unnamed("InferenceModel"))?,
        "controller": true,
        "blockOwnerDeletion": true,
    }]))
}

/// The mistral.rs server's arguments: `serve --port P -m SOURCE`, then the model's own.
pub fn engine_args(model: &InferenceModel, port: u16) -> Result<Vec<String>> {
    let source = model
        .spec
        .source
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("a mistralrs model needs a source".to_owned()))?;
    let from = if let Some(hub) = &source.hub {
        hub.clone()
    } else if let Some(path) = &source.path {
        path.clone()
    } else if let Some(volume) = &source.volume {
        match &volume.sub_path {
            Some(sub) => format!("{MODEL_MOUNT}/{}", sub.trim_start_matches('/')),
            None => MODEL_MOUNT.to_owned(),
        }
    } else {
        return Err(Error::InvalidSpec(
            "the model's source sets none of hub, path or volume".to_owned(),
        ));
    };
    let mut args = vec![
        "serve".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        "-m".to_owned(),
        from,
    ];
    args.extend(model.spec.engine.args.iter().cloned());
    Ok(args)
}

/// The Deployment running `model` on `pool`, as a server-side apply body, asking for
/// `replicas` (`None` leaves them to the scale subresource: a model that scales).
pub fn deployment(
    model: &InferenceModel,
    pool: &ComputePool,
    settings: &Settings,
    replicas: Option<u32>,
) -> Result<serde_json::Value> {
    let name = model
        .metadata
        .name
        .clone()
        .ok_or(Error::Unnamed("InferenceModel"))?;
    let port = settings.mistralrs_port;
    let image = model
        .spec
        .engine
        .image
        .clone()
        .unwrap_or_else(|| settings.mistralrs_image.clone());
    let gpus = model.spec.gpus_per_replica.to_string();
    let mut resources = json!({ "requests": { "cpu": "1", "memory": "4Gi" } });
    if model.spec.gpus_per_replica > 0 {
        resources["limits"] = json!({ pool.spec.gpu_resource.clone(): gpus.clone() });
        resources["requests"][pool.spec.gpu_resource.clone()] = json!(gpus);
    }
    let env: Vec<serde_json::Value> = model
        .spec
        .engine
        .env
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    let mut container = json!({
        "name": "mistralrs",
        "image": image,
        "command": ["mistralrs"],
        "args": engine_args(model, port)?,
        "env": env,
        "ports": [{ "name": "http", "containerPort": port, "protocol": "TCP" }],
        "resources": resources,
        "readinessProbe": { "tcpSocket": { "port": "http" }, "periodSeconds": 10 },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
        },
    });
    let mut volumes = Vec::new();
    if let Some(volume) = model.spec.source.as_ref().and_then(|s| s.volume.as_ref()) {
        container["volumeMounts"] =
            json!([{ "name": "weights", "mountPath": MODEL_MOUNT, "readOnly": true }]);
        volumes.push(json!({
            "name": "weights",
            "persistentVolumeClaim": { "claimName": volume.claim_name, "readOnly": true },
        }));
    }
    let mut body = json!({
        "metadata": { "labels": labels(&name), "ownerReferences": owner(model)? },
        "spec": {
            "selector": { "matchLabels": selector(&name) },
            "template": {
                "metadata": { "labels": labels(&name) },
                "spec": {
                    "nodeSelector": pool.spec.node_selector,
                    "tolerations": pool.spec.tolerations,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    });
    if let Some(replicas) = replicas {
        body["spec"]["replicas"] = json!(replicas);
    }
    if settings.engine_host_network {
        body["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        body["spec"]["template"]["spec"]["dnsPolicy"] = json!("ClusterFirstWithHostNet");
    }
    Ok(body)
}

/// The Service in front of `model`'s engine pods, as a server-side apply body.
pub fn service(model: &InferenceModel, settings: &Settings) -> Result<serde_json::Value> {
    let name = model
        .metadata
        .name
        .clone()
        .ok_or(Error::Unnamed("InferenceModel"))?;
    Ok(json!({
        "metadata": { "labels": labels(&name), "ownerReferences": owner(model)? },
        "spec": {
            "selector": selector(&name),
            "ports": [{ "name": "http", "port": settings.mistralrs_port, "targetPort": "http", "protocol": "TCP" }],
        },
    }))
}

/// Checks that the Deployment body deserialises as a Deployment (and the Service's as a
/// Service), so that a builder mistake is an error here rather than at the API server.
pub fn check(deployment: &serde_json::Value, service: &serde_json::Value) -> Result<()> {
    serde_json::from_value::<Deployment>(deployment.clone())?;
    serde_json::from_value::<Service>(service.clone())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> InferenceModel {
        let mut m: InferenceModel = serde_json::from_value(json!({
            "apiVersion": "synco.coop/v1alpha1",
            "kind": "InferenceModel",
            "metadata": { "name": "coop-large", "namespace": "riverside", "uid": "u-1" },
            "spec": {
                "source": { "hub": "mistralai/Mistral-7B-Instruct-v0.3" },
                "engine": { "kind": "Mistralrs", "args": ["--max-seqs", "16"] },
                "pool": "gpus", "replicas": 2, "gpusPerReplica": 1, "tokensPerSecondPerReplica": 1500,
            },
        }))
        .unwrap();
        m.metadata.uid = Some("u-1".to_owned());
        m
    }

    fn pool() -> ComputePool {
        serde_json::from_value(json!({
            "apiVersion": "synco.coop/v1alpha1",
            "kind": "ComputePool",
            "metadata": { "name": "gpus", "namespace": "riverside" },
            "spec": {
                "nodeSelector": { "nvidia.com/gpu.present": "true" },
                "tolerations": [{ "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" }],
            },
        }))
        .unwrap()
    }

    #[test]
    fn deployment_runs_the_server_on_the_pool_with_gpus() {
        let settings = Settings::default();
        let d = deployment(&model(), &pool(), &settings, Some(2)).unwrap();
        let s = service(&model(), &settings).unwrap();
        check(&d, &s).unwrap();
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.present"], "true");
        assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], settings.mistralrs_image);
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(
            c["args"],
            json!([
                "serve",
                "--port",
                "8080",
                "-m",
                "mistralai/Mistral-7B-Instruct-v0.3",
                "--max-seqs",
                "16"
            ])
        );
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            endpoint("coop-large", "riverside", 8080),
            "http://coop-large-engine.riverside.svc:8080/v1"
        );
        assert!(pod.get("hostNetwork").is_none());
    }

    #[test]
    fn a_scaling_model_leaves_replicas_to_the_scale_and_may_use_the_host_network() {
        let settings = Settings {
            engine_host_network: true,
            ..Settings::default()
        };
        let d = deployment(&model(), &pool(), &settings, None).unwrap();
        check(&d, &service(&model(), &settings).unwrap()).unwrap();
        assert!(d["spec"].get("replicas").is_none());
        assert_eq!(d["spec"]["template"]["spec"]["hostNetwork"], true);
        assert_eq!(
            d["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirstWithHostNet"
        );
    }

    #[test]
    fn replica_endpoints_are_ready_pods_addresses() {
        let pod = |ip: &str, ready: &str, deleting: bool| -> Pod {
            let mut p: Pod = serde_json::from_value(json!({
                "metadata": { "name": format!("p-{ip}") },
                "status": { "podIP": ip, "conditions": [{ "type": "Ready", "status": ready }] },
            }))
            .unwrap();
            if deleting {
                p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
            }
            p
        };
        let pods = [
            pod("10.0.0.2", "True", false),
            pod("10.0.0.1", "True", false),
            pod("10.0.0.3", "False", false),
            pod("10.0.0.4", "True", true),
            pod("fd00::5", "True", false),
            pod("10.0.0.1", "True", false),
        ];
        assert_eq!(
            replica_endpoints(&pods, 8080),
            [
                "http://10.0.0.1:8080/v1",
                "http://10.0.0.2:8080/v1",
                "http://[fd00::5]:8080/v1"
            ]
        );
    }
}
