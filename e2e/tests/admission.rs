//! The admission machinery the chart and the CRDs rely on is live: a
//! ValidatingAdmissionPolicy and a CRD's CEL rules refuse bad objects with
//! their own message. (The Synco CRDs themselves are tested in crds.rs.)

use std::time::Duration;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject};
use synco_e2e::{api_error, apply_yaml, cluster, wait_until, with_temp_ns};

const VAP_MESSAGE: &str = "e2e: configmaps here may not carry a key named forbidden";

async fn delete_cluster_scoped(
    client: &Client,
    api_version: &str,
    kind: &str,
    name: &str,
) -> anyhow::Result<()> {
    let gvk = kube::api::GroupVersionKind::try_from(&kube::api::TypeMeta {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let _ = api.delete(name, &DeleteParams::default()).await;
    Ok(())
}

#[tokio::test]
async fn a_validating_admission_policy_refuses_with_its_message() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    with_temp_ns(&admin.clone(), "vap", |ns| async move {
        let name = format!("e2e-no-forbidden-{ns}");
        apply_yaml(
            &admin,
            None,
            &format!(
                r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [configmaps]
  validations:
  - expression: "!has(object.data) || !('forbidden' in object.data)"
    message: "{VAP_MESSAGE}"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {ns}}}
"#
            ),
        )
        .await?;
        let bad =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {forbidden: 'yes'}\n".to_owned();
        // Policies reach the admission plugin through an informer.
        let result = wait_until(
            "the policy to refuse a bad ConfigMap",
            Duration::from_secs(20),
            || {
                let (admin, ns, bad) = (admin.clone(), ns.clone(), bad.clone());
                async move {
                    match apply_yaml(&admin, Some(&ns), &bad).await {
                        Ok(_) => {
                            let cms: Api<DynamicObject> = Api::namespaced_with(
                                admin,
                                &ns,
                                &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
                            );
                            let _ = cms.delete("bad", &DeleteParams::default()).await;
                            Ok(false)
                        }
                        Err(e) => {
                            let (code, message) = api_error(&e).unwrap_or_default();
                            assert_eq!(code, 422, "{e:#}");
                            assert!(message.contains(VAP_MESSAGE), "{message}");
                            Ok(true)
                        }
                    }
                }
            },
        )
        .await;
        apply_yaml(
            &admin,
            Some(&ns),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {fine: 'yes'}\n",
        )
        .await?;
        delete_cluster_scoped(
            &admin,
            "admissionregistration.k8s.io/v1",
            "ValidatingAdmissionPolicyBinding",
            &name,
        )
        .await?;
        delete_cluster_scoped(
            &admin,
            "admissionregistration.k8s.io/v1",
            "ValidatingAdmissionPolicy",
            &name,
        )
        .await?;
        result
    })
    .await
}

const BALLOT_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: ballots.e2e.synco.coop}
spec:
  group: e2e.synco.coop
  scope: Namespaced
  names: {plural: ballots, singular: ballot, kind: Ballot}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [choice, opens, closes]
            properties:
              choice: {type: string}
              opens: {type: string, format: date-time}
              closes: {type: string, format: date-time}
            x-kubernetes-validations:
            - rule: self == oldSelf
              message: a ballot cannot be changed once cast
            - rule: self.closes > self.opens
              message: the window must close after it opens
"#;

#[tokio::test]
async fn crd_cel_rules_refuse_with_their_messages() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    apply_yaml(&admin, None, BALLOT_CRD).await?;
    let ballot = |choice: &str, opens: &str, closes: &str| {
        format!(
            "apiVersion: e2e.synco.coop/v1\nkind: Ballot\nmetadata: {{name: b}}\n\
             spec: {{choice: {choice}, opens: '{opens}', closes: '{closes}'}}\n"
        )
    };
    with_temp_ns(&admin.clone(), "cel", |ns| async move {
        // The CRD is served once established; retry the first apply until then.
        let (a, n, first) = (
            &admin,
            ns.as_str(),
            ballot("yes", "2030-01-01T00:00:00Z", "2030-01-08T00:00:00Z"),
        );
        wait_until("Ballot to be served", Duration::from_secs(30), || {
            let first = first.clone();
            async move { Ok(apply_yaml(a, Some(n), &first).await.is_ok()) }
        })
        .await?;

        let changed = apply_yaml(
            &admin,
            Some(&ns),
            &ballot("no", "2030-01-01T00:00:00Z", "2030-01-08T00:00:00Z"),
        )
        .await;
        let err = changed
            .err()
            .ok_or_else(|| anyhow::anyhow!("a changed ballot was accepted"))?;
        let (code, message) = api_error(&err).unwrap_or_default();
        assert_eq!(code, 422, "{err:#}");
        assert!(
            message.contains("a ballot cannot be changed once cast"),
            "{message}"
        );

        let backwards =
            ballot("yes", "2030-01-08T00:00:00Z", "2030-01-01T00:00:00Z").replace("name: b", "name: c");
        let err = apply_yaml(&admin, Some(&ns), &backwards)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a window closing before it opens was accepted"))?;
        let (code, message) = api_error(&err).unwrap_or_default();
        assert_eq!(code, 422, "{err:#}");
        assert!(
            message.contains("the window must close after it opens"),
            "{message}"
        );
        Ok::<_, anyhow::Error>(())
    })
    .await
}
