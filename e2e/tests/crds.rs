//! The API contract against a real API server: every generated CRD and every
//! example manifest is accepted, and the CEL rules in the CRDs refuse what the
//! design forbids, with the rule's own message.

use kube::ResourceExt as _;
use synco_e2e::{api_error, apply_crds, apply_examples, apply_yaml, cluster, crds_available, with_temp_ns};

/// Skips (passing) while crds/yaml is not generated yet.
fn skip_without_crds() -> bool {
    if crds_available() {
        return false;
    }
    eprintln!("skipped: crds/yaml/*.yaml does not exist yet");
    true
}

#[tokio::test]
async fn all_crds_and_all_examples_are_accepted() -> anyhow::Result<()> {
    if skip_without_crds() {
        return Ok(());
    }
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    let crds = apply_crds(&admin).await?;
    assert!(crds.iter().all(|name| name.ends_with(".synco.coop")), "{crds:?}");
    for kind in [
        "cooperatives",
        "members",
        "proposals",
        "votes",
        "allocations",
        "computepools",
        "inferencemodels",
    ] {
        assert!(
            crds.contains(&format!("{kind}.synco.coop")),
            "no {kind} CRD in {crds:?}"
        );
    }
    with_temp_ns(&admin.clone(), "crd-examples", |ns| async move {
        let applied = apply_examples(&admin, &ns).await?;
        assert!(!applied.is_empty(), "no examples in crds/examples");
        for obj in &applied {
            assert_eq!(
                obj.namespace().as_deref(),
                Some(ns.as_str()),
                "{}",
                obj.name_any()
            );
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
}

const PROPOSAL: &str = r#"
apiVersion: synco.coop/v1alpha1
kind: Proposal
metadata: {name: school-floor}
spec:
  kind: Allocation
  title: Guarantee the school 15%
  proposer: riverside-school
  effect:
    allocation:
      floors:
      - {member: riverside-school, sharePercent: 15}
"#;

fn vote(position: &str) -> String {
    format!(
        "apiVersion: synco.coop/v1alpha1\nkind: Vote\nmetadata: {{name: school-floor-bakery-coop}}\n\
         spec: {{proposal: school-floor, member: bakery-coop, position: \"{position}\"}}\n"
    )
}

#[tokio::test]
async fn a_cast_vote_cannot_be_changed() -> anyhow::Result<()> {
    if skip_without_crds() {
        return Ok(());
    }
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    apply_crds(&admin).await?;
    with_temp_ns(&admin.clone(), "crd-vote", |ns| async move {
        apply_yaml(&admin, Some(&ns), PROPOSAL).await?;
        apply_yaml(&admin, Some(&ns), &vote("Yes")).await?;
        // Applying the same ballot again is no change, and is accepted.
        apply_yaml(&admin, Some(&ns), &vote("Yes")).await?;
        let err = apply_yaml(&admin, Some(&ns), &vote("No"))
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a changed vote was accepted"))?;
        let (code, message) = api_error(&err).unwrap_or_default();
        assert_eq!(code, 422, "{err:#}");
        assert!(
            message.contains("a vote cannot be changed once cast"),
            "{message}"
        );
        Ok::<_, anyhow::Error>(())
    })
    .await
}

#[tokio::test]
async fn a_proposals_spec_cannot_change_and_its_effect_must_fit_its_kind() -> anyhow::Result<()> {
    if skip_without_crds() {
        return Ok(());
    }
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    apply_crds(&admin).await?;
    with_temp_ns(&admin.clone(), "crd-proposal", |ns| async move {
        apply_yaml(&admin, Some(&ns), PROPOSAL).await?;
        let edited = PROPOSAL.replace("Guarantee the school 15%", "Guarantee the school 50%");
        let err = apply_yaml(&admin, Some(&ns), &edited)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("an edited proposal was accepted"))?;
        let (code, message) = api_error(&err).unwrap_or_default();
        assert_eq!(code, 422, "{err:#}");
        assert!(
            message.contains("a proposal cannot change once created"),
            "{message}"
        );
        let mismatched = PROPOSAL
            .replace("name: school-floor", "name: bylaw-with-floors")
            .replace("kind: Allocation", "kind: Bylaw");
        let err = apply_yaml(&admin, Some(&ns), &mismatched)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a bylaw with an allocation effect was accepted"))?;
        let (_, message) = api_error(&err).unwrap_or_default();
        assert!(
            message.contains("the one the proposal's kind calls for"),
            "{message}"
        );
        Ok::<_, anyhow::Error>(())
    })
    .await
}

const PEERED: &str = r"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {name: riverside}
spec:
  displayName: Riverside
  memberClasses:
  - {name: community, tier: 0}
  - {name: business, tier: 2, localOnly: true}
  peers:
  - name: hillside
    url: https://gateway.hillside.example
    publicKey: 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo
    borrow: [qwen-coder]
    lend: [qwen-chat]
    maxLendPercent: 25
    tier: 5
    terms: {price: {currency: EUR, inputPerMillion: 100, outputPerMillion: 200}}
";

/// Applying `yaml` in `ns` is refused as invalid (422), with a message containing `rule`.
async fn refused(admin: &kube::Client, ns: &str, yaml: &str, rule: &str) -> anyhow::Result<()> {
    let err = apply_yaml(admin, Some(ns), yaml)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("accepted: {yaml}"))?;
    let (code, message) = api_error(&err).unwrap_or_default();
    assert_eq!(code, 422, "{err:#}");
    assert!(message.contains(rule), "{message}");
    Ok(())
}

/// A peer proves who it is one way, pays one way, and comes after every member class.
#[tokio::test]
async fn a_peer_has_one_key_one_kind_of_terms_and_a_tier_after_the_members() -> anyhow::Result<()> {
    if skip_without_crds() {
        return Ok(());
    }
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    apply_crds(&admin).await?;
    with_temp_ns(&admin.clone(), "crd-peers", |ns| async move {
        apply_yaml(&admin, Some(&ns), PEERED).await?;
        for (broken, rule) in [
            (
                PEERED.replace(
                    "    publicKey: 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\n",
                    "    publicKey: 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\n    jwksUrl: https://hillside.example/jwks.json\n",
                ),
                "exactly one of publicKey and jwksUrl",
            ),
            (
                PEERED.replace(
                    "inputPerMillion: 100, outputPerMillion: 200}}",
                    "inputPerMillion: 100, outputPerMillion: 200}, reciprocal: {allowanceTokens: 5}}",
                ),
                "exactly one of price and reciprocal",
            ),
            (PEERED.replace("    tier: 5\n", "    tier: 1\n"), "after every member class"),
        ] {
            refused(&admin, &ns, &broken.replace("name: riverside", "name: broken"), rule).await?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
}

const SCALING: &str = "
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {name: scaling}
spec:
  source: {hub: Qwen/Qwen2.5-0.5B-Instruct}
  engine: {kind: Mistralrs}
  pool: gpus
  minReplicas: 0
  maxReplicas: 3
";

/// Only pod models scale, and between bounds that make sense.
#[tokio::test]
async fn a_model_scales_between_sound_bounds() -> anyhow::Result<()> {
    if skip_without_crds() {
        return Ok(());
    }
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    apply_crds(&admin).await?;
    with_temp_ns(&admin.clone(), "crd-scaling", |ns| async move {
        apply_yaml(&admin, Some(&ns), SCALING).await?;
        for (broken, rule) in [
            (
                SCALING.replace("minReplicas: 0", "minReplicas: 4"),
                "must not exceed maxReplicas",
            ),
            (
                SCALING.replace("  maxReplicas: 3\n", ""),
                "minReplicas needs maxReplicas",
            ),
            (
                SCALING
                    .replace(
                        "{kind: Mistralrs}",
                        "{kind: External, url: \"https://peer.example/v1\"}",
                    )
                    .replace("  pool: gpus\n", ""),
                "only a model served by mistralrs pods scales",
            ),
            (
                SCALING.replace("maxReplicas: 3", "maxReplicas: 5000"),
                "maxReplicas",
            ),
        ] {
            refused(
                &admin,
                &ns,
                &broken.replace("name: scaling", "name: broken"),
                rule,
            )
            .await?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
}
