//! Applying a passed proposal's effect: a new Allocation version, a bylaw or surplus
//! change on the Cooperative, a new InferenceModel or a new Member.
//!
//! Each effect is idempotent, so applying it again after a restart changes nothing: the
//! new Allocation is found by the proposal it records, and everything else is written by
//! server-side apply.

use kube::ResourceExt as _;
use kube::api::{Api, PostParams};
use serde_json::json;
use synco_crds::{Allocation, AllocationSpec, Cooperative, InferenceModel, Member, Proposal, ProposalKind};

use super::{cooperative, list};
use crate::apply::{self, FIELD_MANAGER};
use crate::context::Context;
use crate::error::{Error, Result};

/// Applies the effect of `proposal`, which passed. Returns what it created or changed,
/// such as `Allocation/allocation-v2`, or `None` for a free-text proposal.
pub async fn apply(proposal: &Proposal, ctx: &Context) -> Result<Option<String>> {
    let ns = proposal.namespace().ok_or(Error::Unnamed("Proposal"))?;
    let effect = proposal.spec.effect.clone();
    let missing = |what: &str| Error::InvalidSpec(format!("a {what} proposal needs effect.{what}"));
    match proposal.spec.kind {
        ProposalKind::FreeText => Ok(None),
        ProposalKind::Allocation => {
            let plan = effect
                .and_then(|e| e.allocation)
                .ok_or_else(|| missing("allocation"))?;
            let name = new_allocation(proposal, ctx, &ns, plan).await?;
            Ok(Some(format!("Allocation/{name}")))
        }
        ProposalKind::Bylaw => {
            let change = effect.and_then(|e| e.bylaw).ok_or_else(|| missing("bylaw"))?;
            let mut spec = serde_json::Map::new();
            if let Some(defaults) = change.voting_defaults {
                spec.insert("votingDefaults".to_owned(), serde_json::to_value(defaults)?);
            }
            if let Some(classes) = change.member_classes {
                spec.insert("memberClasses".to_owned(), serde_json::to_value(classes)?);
            }
            let coop = change_cooperative(ctx, &ns, spec.into()).await?;
            Ok(Some(format!("Cooperative/{coop}")))
        }
        ProposalKind::SurplusPrice => {
            let surplus = effect
                .and_then(|e| e.surplus_price)
                .ok_or_else(|| missing("surplusPrice"))?;
            let coop = change_cooperative(ctx, &ns, json!({ "surplus": surplus })).await?;
            Ok(Some(format!("Cooperative/{coop}")))
        }
        ProposalKind::ModelAdoption => {
            let adoption = effect
                .and_then(|e| e.model_adoption)
                .ok_or_else(|| missing("modelAdoption"))?;
            let api: Api<InferenceModel> = Api::namespaced(ctx.client.clone(), &ns);
            apply::object(&api, &adoption.name, json!({ "spec": adoption.spec })).await?;
            Ok(Some(format!("InferenceModel/{}", adoption.name)))
        }
        ProposalKind::MemberAdmission => {
            let admission = effect
                .and_then(|e| e.member_admission)
                .ok_or_else(|| missing("memberAdmission"))?;
            let api: Api<Member> = Api::namespaced(ctx.client.clone(), &ns);
            apply::object(&api, &admission.name, json!({ "spec": admission.spec })).await?;
            Ok(Some(format!("Member/{}", admission.name)))
        }
    }
}

/// Applies `spec` (a part of the Cooperative's spec) to the namespace's Cooperative.
async fn change_cooperative(ctx: &Context, ns: &str, spec: serde_json::Value) -> Result<String> {
    let coop = cooperative(ctx, ns).await?;
    let name = coop.name_any();
    let api: Api<Cooperative> = Api::namespaced(ctx.client.clone(), ns);
    apply::object(&api, &name, json!({ "spec": spec })).await?;
    Ok(name)
}

/// The name versions of an allocation share: the in-force one's name without its
/// `-v<N>` suffix (`allocation` for `allocation-v1`), else the Cooperative's name.
#[must_use]
pub fn allocation_base(newest: Option<&str>, coop: &str) -> String {
    newest
        .map(|n| match n.rsplit_once("-v") {
            Some((base, v)) if !base.is_empty() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                base.to_owned()
            }
            _ => n.to_owned(),
        })
        .unwrap_or_else(|| format!("{coop}-allocation"))
}

/// Creates the next Allocation version for `proposal`, unless one already records it.
async fn new_allocation(
    proposal: &Proposal,
    ctx: &Context,
    ns: &str,
    plan: synco_crds::AllocationPlan,
) -> Result<String> {
    let name = proposal.name_any();
    let api: Api<Allocation> = Api::namespaced(ctx.client.clone(), ns);
    // A few tries: another writer may take the next name between the list and the create.
    for _ in 0..5 {
        let existing: Vec<Allocation> = list(ctx, ns).await?;
        if let Some(done) = existing
            .iter()
            .find(|a| a.spec.proposal.as_deref() == Some(&name))
        {
            return Ok(done.name_any());
        }
        let newest = existing
            .iter()
            .max_by_key(|a| (a.spec.version, a.metadata.name.clone()));
        let version = newest.map_or(1, |a| a.spec.version.saturating_add(1));
        let coop = cooperative(ctx, ns).await?;
        let base = allocation_base(newest.map(|a| a.name_any()).as_deref(), &coop.name_any());
        let new_name = format!("{base}-v{version}");
        let allocation = Allocation::new(
            &new_name,
            AllocationSpec {
                version,
                proposal: Some(name.clone()),
                plan: plan.clone(),
            },
        );
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match api.create(&params, &allocation).await {
            Ok(_) => {
                ctx.event(
                    proposal,
                    false,
                    "AllocationCreated",
                    "Apply",
                    format!("created Allocation {new_name} (version {version})"),
                )
                .await;
                return Ok(new_name);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::InvalidSpec(format!(
        "could not find a free name for the next Allocation of proposal {name}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_share_a_base_name() {
        assert_eq!(allocation_base(Some("allocation-v1"), "riverside"), "allocation");
        assert_eq!(allocation_base(Some("shares-v12"), "riverside"), "shares");
        assert_eq!(allocation_base(Some("founding"), "riverside"), "founding");
        assert_eq!(allocation_base(Some("a-vx"), "riverside"), "a-vx");
        assert_eq!(allocation_base(None, "riverside"), "riverside-allocation");
    }
}
