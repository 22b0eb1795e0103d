//! Applying a passed proposal's decided effect. What changes is decided by
//! `synco_policies::crd::effect::change` (the same function the gateway uses in
//! standalone mode); this module only writes it: a new Allocation version is created, a
//! Cooperative, InferenceModel or Member is applied by server-side apply.
//!
//! A PatronageDistribution changes nothing in the cluster: the co-op's gateway records
//! its refunds in the books when it sees the proposal Applied.
//!
//! Each effect is idempotent, so applying it again after a restart changes nothing: the
//! new Allocation is found by the proposal it records, and everything else is written by
//! server-side apply.

use kube::ResourceExt as _;
use kube::api::{Api, PostParams};
use serde_json::json;
use synco_crds::{Allocation, Cooperative, InferenceModel, Member, Proposal, ProposalEffect};
use synco_policies::crd::effect::{Change, change};

use super::{cooperative, list};
use crate::apply::{self, FIELD_MANAGER};
use crate::context::Context;
use crate::error::{Error, Result};

/// Applies `decided`, the effect the close of `proposal` decided (the proposal's own, the
/// winning option's, or a dot-voted split). Returns what it created or changed, such as
/// `Allocation/allocation-v2`, or `None` when nothing changes (a free-text question, or
/// a winning option that carries no effect).
pub async fn apply(
    proposal: &Proposal,
    decided: Option<&ProposalEffect>,
    ctx: &Context,
) -> Result<Option<String>> {
    let ns = proposal.namespace().ok_or(Error::Unnamed("Proposal"))?;
    let Some(effect) = decided else {
        return Ok(None);
    };
    let name = proposal.name_any();
    // A few tries: another writer may take the next Allocation name between the list
    // and the create.
    for _ in 0..5 {
        let coop = cooperative(ctx, &ns).await?;
        let allocations: Vec<Allocation> = list(ctx, &ns).await?;
        let decided = change(proposal.spec.kind, effect, &name, &coop, &allocations)
            .map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let Some(decided) = decided else {
            // Nothing to change, or the Allocation this proposal created exists already.
            return Ok(allocations
                .iter()
                .find(|a| a.spec.proposal.as_deref() == Some(&name))
                .map(|a| format!("Allocation/{}", a.name_any())));
        };
        let target = decided.target(&coop.name_any());
        match decided {
            Change::Allocation(allocation) => {
                let api: Api<Allocation> = Api::namespaced(ctx.client.clone(), &ns);
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
                            format!("created {target} (version {})", allocation.spec.version),
                        )
                        .await;
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Change::Cooperative(spec) => {
                let api: Api<Cooperative> = Api::namespaced(ctx.client.clone(), &ns);
                apply::object(&api, &coop.name_any(), json!({ "spec": spec })).await?;
            }
            Change::Model(model) => {
                let api: Api<InferenceModel> = Api::namespaced(ctx.client.clone(), &ns);
                apply::object(&api, &model.name_any(), json!({ "spec": model.spec })).await?;
            }
            Change::Member(member) => {
                let api: Api<Member> = Api::namespaced(ctx.client.clone(), &ns);
                apply::object(&api, &member.name_any(), json!({ "spec": member.spec })).await?;
            }
            Change::Refunds(d) => {
                // The books live in the co-op's gateway database: the gateway records
                // the refunds once it sees this proposal Applied (exactly once, keyed by
                // the month). Nothing changes in the cluster.
                ctx.event(
                    proposal,
                    false,
                    "RefundsDecided",
                    "Apply",
                    format!(
                        "{} refunds for {} ({} {} in all) go to the books",
                        d.refunds.len(),
                        d.period,
                        d.pool_minor,
                        d.currency
                    ),
                )
                .await;
            }
        }
        return Ok(Some(target));
    }
    Err(Error::InvalidSpec(format!(
        "could not find a free name for the next Allocation of proposal {name}"
    )))
}
