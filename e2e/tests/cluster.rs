//! The control plane itself: it starts, has the simulated nodes, knows the
//! test users, and a second one can run beside it and stop cleanly.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, PostParams};
use synco_e2e::{Cluster, GPU_PRESENT_LABEL, GPU_RESOURCE, MEMBERS, cluster};

async fn whoami(client: kube::Client) -> anyhow::Result<(String, Vec<String>)> {
    let api: Api<SelfSubjectReview> = Api::all(client);
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    Ok((user.username.unwrap_or_default(), user.groups.unwrap_or_default()))
}

#[tokio::test]
async fn control_plane_serves_kubernetes_1_34_on_loopback_with_ready_nodes() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let info = cluster.info();
    assert!(
        info.server.starts_with("https://127.0.0.1:"),
        "server {}",
        info.server
    );
    assert!(info.version.starts_with("v1.34."), "version {}", info.version);

    let nodes: Api<Node> = Api::all(cluster.admin().await?);
    let list = nodes.list(&ListParams::default()).await?;
    assert_eq!(list.items.len(), info.nodes.len());
    for expected in &info.nodes {
        let node = nodes.get(&expected.name).await?;
        let status = node.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "node {} is not Ready", expected.name);
        let gpus = status
            .allocatable
            .unwrap_or_default()
            .get(GPU_RESOURCE)
            .map(|q| q.0.clone());
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let taints = node.spec.clone().unwrap_or_default().taints.unwrap_or_default();
        if expected.gpus > 0 {
            assert_eq!(gpus, Some(expected.gpus.to_string()), "{}", expected.name);
            assert_eq!(labels.get(GPU_PRESENT_LABEL).map(String::as_str), Some("true"));
            assert!(
                taints
                    .iter()
                    .any(|t| t.key == GPU_RESOURCE && t.effect == "NoSchedule")
            );
        } else {
            assert_eq!(gpus, None, "{}", expected.name);
            assert!(taints.is_empty(), "{}: {taints:?}", expected.name);
        }
    }
    assert!(cluster.gpu_nodes().count() >= 2);
    Ok(())
}

#[tokio::test]
async fn static_tokens_authenticate_each_test_identity() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let (admin, groups) = whoami(cluster.admin().await?).await?;
    assert_eq!(admin, "synco-e2e-admin");
    assert!(groups.iter().any(|g| g == "system:masters"), "{groups:?}");
    for member in MEMBERS {
        let (name, groups) = whoami(cluster.member(member).await?).await?;
        assert_eq!(name, member);
        assert!(groups.iter().any(|g| g == "synco:members"), "{groups:?}");
    }
    let (operator, _) = whoami(cluster.operator().await?).await?;
    assert_eq!(operator, "synco-operator");
    let (gateway, _) = whoami(cluster.user("gateway").await?).await?;
    assert_eq!(gateway, "synco-gateway");
    Ok(())
}

#[tokio::test]
async fn kubectl_and_helm_are_at_hand() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let out = cluster.kubectl().args(["get", "nodes", "-o", "name"]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        cluster.info().nodes.len()
    );
    let out = cluster.helm().args(["version", "--short"]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("v4."),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = cluster.helm().args(["list", "--all-namespaces"]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Processes whose process group is `pgid`, read from /proc.
fn processes_in_group(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn a_second_cluster_runs_beside_the_first_and_stops_leaving_no_process() -> anyhow::Result<()> {
    let first = cluster()?;
    let dir = first
        .run_dir()
        .with_file_name(format!("second-{}", std::process::id()));
    let second = tokio::task::spawn_blocking(move || Cluster::start(&dir)).await??;
    assert_ne!(first.info().server, second.info().server);

    let nodes: Api<Node> = Api::all(second.admin().await?);
    assert_eq!(
        nodes.list(&ListParams::default()).await?.items.len(),
        second.info().nodes.len()
    );

    let pgid = second.info().supervisor_pid;
    assert!(
        processes_in_group(pgid).len() >= 6,
        "supervisor and five components"
    );
    let run_dir = second.run_dir().to_path_buf();
    tokio::task::spawn_blocking(move || second.stop()).await??;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(processes_in_group(pgid), Vec::<u32>::new());
    let _ = std::fs::remove_dir_all(run_dir);

    // The first is unaffected.
    let nodes: Api<Node> = Api::all(first.admin().await?);
    assert!(!nodes.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}
