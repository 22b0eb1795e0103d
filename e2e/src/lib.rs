//! Helpers for end-to-end tests against a real Kubernetes control plane
//! (kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok's
//! simulated nodes) that `e2e/cluster.sh` builds from the Kubernetes Go
//! modules and runs locally on 127.0.0.1.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use synco_e2e::{cluster, with_temp_ns};
//! let cluster = cluster()?; // started once per test binary, or attached
//! let admin = cluster.admin().await?;
//! with_temp_ns(&admin, "my-test", |ns| async move {
//!     let alice = cluster.member("alice").await?;
//!     // ... act as alice in `ns`; a failure dumps the namespace
//!     Ok::<_, anyhow::Error>(())
//! })
//! .await
//! # }
//! ```

mod apply;
mod cluster;
mod namespace;
mod nodes;
mod wait;

pub use apply::{
    FIELD_MANAGER, api_error, apply_crds, apply_examples, apply_file, apply_object, apply_yaml, crd_dir,
    crds_available, examples_dir, parse_yaml_documents, workspace_root, yaml_files,
};
pub use cluster::{
    ADMIN, Cluster, ClusterInfo, GATEWAY, GPU_PRESENT_LABEL, GPU_PRODUCT_LABEL, GPU_RESOURCE, MEMBERS,
    NodeInfo, OPERATOR, REAL_NODE_LABEL, RUN_DIR_ENV, RUNS_ENV, RealNodeInfo, UserInfo, cluster,
    cluster_with_real_node,
};
pub use namespace::{
    TEMP_NS_LABEL, create_namespace, delete_namespace, dump_namespace, temp_ns_name, with_temp_ns,
};
pub use nodes::kwok_node;
pub use wait::wait_until;
