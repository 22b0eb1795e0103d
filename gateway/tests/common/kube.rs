//! Running the gateway in cluster mode against the e2e harness's control plane.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![allow(clippy::unwrap_used, reason = "test harness")]

use std::path::{Path, PathBuf};

use super::coop as c;

/// Suspends `member` of the co-op in `ns`, as an administrator does with kubectl.
pub async fn suspend(admin: &kube::Client, ns: &str, member: &str) {
    let members: kube::Api<synco_crds::Member> = kube::Api::namespaced(admin.clone(), ns);
    members
        .patch(
            member,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"standing": "Suspended"}})),
        )
        .await
        .unwrap();
}

/// `synco-gateway cluster` on `namespace`, metering to `database_url`, accepting the
/// test co-op's HS256 tokens.
pub fn cluster_args(namespace: &str, database_url: &str) -> Vec<String> {
    [
        "cluster",
        "--namespace",
        namespace,
        "--database-url",
        database_url,
        "--jwt-hs256-secret",
        c::SECRET,
        "--jwt-issuer",
        c::ISSUER,
        "--jwt-audience",
        c::AUDIENCE,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A kubeconfig, written into the cluster's run directory as `NAME.kubeconfig`, that
/// authenticates with the ServiceAccount token in `token_file`, as a pod would.
pub fn service_account_kubeconfig(cluster: &synco_e2e::Cluster, name: &str, token_file: &Path) -> PathBuf {
    let info = cluster.info();
    let path = cluster.run_dir().join(format!("{name}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: '{}', certificate-authority: '{}'}}}}]\n\
             users: [{{name: u, user: {{tokenFile: '{}'}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
             current-context: x\n",
            info.server,
            info.ca_file.display(),
            token_file.display()
        ),
    )
    .unwrap();
    path
}
