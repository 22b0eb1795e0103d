//! Authorization is real: RBAC decides what each test identity may do.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use synco_e2e::{apply_yaml, cluster, wait_until, with_temp_ns};

/// The API server's status code for a refused request; `None` if it went
/// through. Other errors (connection, decoding) are passed on.
fn status_code<T>(result: Result<T, kube::Error>) -> Result<Option<u16>, kube::Error> {
    match result {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) => Ok(Some(s.code)),
        Err(e) => Err(e),
    }
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn a_member_without_a_role_binding_is_refused_and_one_with_it_is_not() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    with_temp_ns(&admin.clone(), "rbac-member", |ns| async move {
        let alice: Api<ConfigMap> = Api::namespaced(cluster.member("alice").await?, &ns);
        let bob: Api<ConfigMap> = Api::namespaced(cluster.member("bob").await?, &ns);
        assert_eq!(status_code(alice.list(&ListParams::default()).await)?, Some(403));
        assert_eq!(
            status_code(alice.create(&PostParams::default(), &config_map("a")).await)?,
            Some(403)
        );

        apply_yaml(
            &admin,
            Some(&ns),
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: configmap-editor}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-edits-configmaps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-editor}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
"#,
        )
        .await?;
        // The authorizer reads RBAC objects from an informer cache.
        wait_until(
            "alice's RoleBinding to take effect",
            Duration::from_secs(10),
            || {
                let alice = alice.clone();
                async move { Ok(alice.list(&ListParams::default()).await.is_ok()) }
            },
        )
        .await?;
        alice
            .create(&PostParams::default(), &config_map("by-alice"))
            .await?;
        // The binding names alice only.
        assert_eq!(status_code(bob.list(&ListParams::default()).await)?, Some(403));
        assert_eq!(
            status_code(bob.create(&PostParams::default(), &config_map("b")).await)?,
            Some(403)
        );
        Ok::<_, anyhow::Error>(())
    })
    .await
}

#[tokio::test]
async fn service_account_tokens_and_impersonation_are_subject_to_rbac() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    with_temp_ns(&admin.clone(), "rbac-sa", |ns| async move {
        // A real, signed token from the TokenRequest API.
        let sa = cluster.service_account(&ns, "synco-operator").await?;
        let review = Api::<SelfSubjectReview>::all(sa.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await?;
        let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
        assert_eq!(
            user.username.as_deref(),
            Some(format!("system:serviceaccount:{ns}:synco-operator").as_str())
        );
        let as_sa: Api<ConfigMap> = Api::namespaced(sa, &ns);
        assert_eq!(status_code(as_sa.list(&ListParams::default()).await)?, Some(403));

        let impersonated = cluster.impersonate("erin", &["synco:members"]).await?;
        let as_erin: Api<ConfigMap> = Api::namespaced(impersonated, &ns);
        assert_eq!(
            status_code(as_erin.list(&ListParams::default()).await)?,
            Some(403)
        );

        let operator: Api<ConfigMap> = Api::namespaced(cluster.operator().await?, &ns);
        assert_eq!(
            status_code(operator.list(&ListParams::default()).await)?,
            Some(403)
        );
        Ok::<_, anyhow::Error>(())
    })
    .await
}
