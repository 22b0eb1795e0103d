//! What a passed proposal's effect changes, decided from the effect and the co-op's
//! objects alone. The operator then creates or applies the object through the API
//! server; the gateway in standalone mode writes it to its database.
//!
//! * Allocation: the next version (`<base>-v<N+1>`, named after the newest version, or
//!   `<coop>-allocation-v1`), recording the proposal; none if one already records it.
//! * Bylaw and SurplusPrice: the Cooperative's spec with the parts replaced.
//! * ModelAdoption and MemberAdmission: the new object.
//! * PatronageDistribution: the refunds to record in the books (the gateway's ledger;
//!   nothing changes in the cluster).

use synco_crds::{
    Allocation, AllocationSpec, Cooperative, CooperativeSpec, InferenceModel, Member, PatronageDistribution,
    ProposalEffect, ProposalKind,
};

/// One change to the co-op's objects.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A new Allocation version.
    Allocation(Box<Allocation>),
    /// The Cooperative's new spec.
    Cooperative(Box<CooperativeSpec>),
    /// A new InferenceModel.
    Model(Box<InferenceModel>),
    /// A new Member.
    Member(Box<Member>),
    /// Patronage refunds to record in the books.
    Refunds(Box<PatronageDistribution>),
}

impl Change {
    /// `Kind/name` of what changes, for the proposal's `appliedTo`.
    #[must_use]
    pub fn target(&self, coop: &str) -> String {
        match self {
            Change::Allocation(a) => format!("Allocation/{}", a.metadata.name.as_deref().unwrap_or_default()),
            Change::Cooperative(_) => format!("Cooperative/{coop}"),
            Change::Model(m) => format!(
                "InferenceModel/{}",
                m.metadata.name.as_deref().unwrap_or_default()
            ),
            Change::Member(m) => format!("Member/{}", m.metadata.name.as_deref().unwrap_or_default()),
            Change::Refunds(d) => format!("Ledger/{}", d.period),
        }
    }
}

/// Why an effect cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a {kind:?} proposal's effect needs `{field}`")]
pub struct MissingEffect {
    /// The proposal's kind.
    pub kind: ProposalKind,
    /// The field it lacks.
    pub field: &'static str,
}

/// The newest Allocation: the highest version, then the greatest name.
#[must_use]
pub fn newest(allocations: &[Allocation]) -> Option<&Allocation> {
    allocations
        .iter()
        .max_by(|a, b| (a.spec.version, &a.metadata.name).cmp(&(b.spec.version, &b.metadata.name)))
}

/// The name versions of an allocation share: the newest one's name without its `-v<N>`
/// suffix (`allocation` for `allocation-v1`), else `<coop>-allocation`.
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

/// What applying `effect` of the passed proposal `proposal` (of `kind`) changes, given the
/// co-op's Cooperative and Allocations now. `Ok(None)`: nothing changes (a free-text
/// question, or an allocation this proposal already created).
///
/// # Errors
///
/// [`MissingEffect`] when the effect lacks the part its kind needs.
pub fn change(
    kind: ProposalKind,
    effect: &ProposalEffect,
    proposal: &str,
    coop: &Cooperative,
    allocations: &[Allocation],
) -> Result<Option<Change>, MissingEffect> {
    let missing = |field| MissingEffect { kind, field };
    Ok(Some(match kind {
        ProposalKind::FreeText => return Ok(None),
        ProposalKind::Allocation => {
            let plan = effect.allocation.clone().ok_or(missing("allocation"))?;
            if allocations
                .iter()
                .any(|a| a.spec.proposal.as_deref() == Some(proposal))
            {
                return Ok(None);
            }
            let newest = newest(allocations);
            let version = newest.map_or(1, |a| a.spec.version.saturating_add(1));
            let base = allocation_base(
                newest.and_then(|a| a.metadata.name.as_deref()),
                coop.metadata.name.as_deref().unwrap_or("coop"),
            );
            let mut allocation = Allocation::new(
                &format!("{base}-v{version}"),
                AllocationSpec {
                    version,
                    proposal: Some(proposal.to_owned()),
                    plan,
                },
            );
            allocation.metadata.namespace = coop.metadata.namespace.clone();
            Change::Allocation(Box::new(allocation))
        }
        ProposalKind::Bylaw => {
            let bylaw = effect.bylaw.clone().ok_or(missing("bylaw"))?;
            let mut spec = coop.spec.clone();
            if let Some(defaults) = bylaw.voting_defaults {
                spec.voting_defaults = defaults;
            }
            if let Some(classes) = bylaw.member_classes {
                spec.member_classes = classes;
            }
            if let Some(patronage) = bylaw.patronage {
                spec.patronage = Some(patronage);
            }
            if let Some(peers) = bylaw.peers {
                spec.peers = peers;
            }
            Change::Cooperative(Box::new(spec))
        }
        ProposalKind::SurplusPrice => {
            let surplus = effect.surplus_price.clone().ok_or(missing("surplusPrice"))?;
            let mut spec = coop.spec.clone();
            spec.surplus = Some(surplus);
            Change::Cooperative(Box::new(spec))
        }
        ProposalKind::ModelAdoption => {
            let adoption = effect.model_adoption.clone().ok_or(missing("modelAdoption"))?;
            let mut model = InferenceModel::new(&adoption.name, adoption.spec);
            model.metadata.namespace = coop.metadata.namespace.clone();
            Change::Model(Box::new(model))
        }
        ProposalKind::MemberAdmission => {
            let admission = effect
                .member_admission
                .clone()
                .ok_or(missing("memberAdmission"))?;
            let mut member = Member::new(&admission.name, admission.spec);
            member.metadata.namespace = coop.metadata.namespace.clone();
            Change::Member(Box::new(member))
        }
        ProposalKind::PatronageDistribution => {
            let d = effect
                .patronage_distribution
                .clone()
                .ok_or(missing("patronageDistribution"))?;
            Change::Refunds(Box::new(d))
        }
    }))
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

    /// Adding, changing and removing a peer co-op is a Bylaw proposal: the passed
    /// proposal's list of peers replaces the bylaws' and leaves the rest alone.
    #[test]
    fn a_bylaw_proposal_replaces_the_peers() {
        let coop: Cooperative = serde_json::from_value(serde_json::json!({
            "apiVersion": "synco.coop/v1alpha1", "kind": "Cooperative",
            "metadata": {"name": "riverside", "namespace": "riverside"},
            "spec": {
                "displayName": "Riverside",
                "memberClasses": [{"name": "community", "tier": 0}],
                "peers": [{"name": "old", "url": "https://old.example", "publicKey": "x",
                           "tier": 3, "terms": {"reciprocal": {"allowanceTokens": 0}}}]
            }
        }))
        .unwrap();
        let effect: ProposalEffect = serde_json::from_value(serde_json::json!({"bylaw": {"peers": [
            {"name": "hillside", "url": "https://gateway.hillside.example", "publicKey": "k",
             "borrow": ["qwen-coder"], "lend": ["qwen-chat"], "maxLendPercent": 25, "tier": 5,
             "terms": {"price": {"currency": "EUR", "inputPerMillion": 1, "outputPerMillion": 2}}}
        ]}}))
        .unwrap();
        let Some(Change::Cooperative(spec)) = change(ProposalKind::Bylaw, &effect, "p1", &coop, &[]).unwrap()
        else {
            panic!("a Bylaw proposal changes the Cooperative");
        };
        assert_eq!(spec.peers.len(), 1);
        assert_eq!(spec.peers[0].name, "hillside");
        assert_eq!(spec.peers[0].lend, ["qwen-chat"]);
        assert_eq!(spec.member_classes, coop.spec.member_classes);
        // A Bylaw proposal without peers keeps them.
        let effect: ProposalEffect = serde_json::from_value(
            serde_json::json!({"bylaw": {"memberClasses": [{"name": "all", "tier": 0}]}}),
        )
        .unwrap();
        let Some(Change::Cooperative(spec)) = change(ProposalKind::Bylaw, &effect, "p2", &coop, &[]).unwrap()
        else {
            panic!("a Bylaw proposal changes the Cooperative");
        };
        assert_eq!(spec.peers, coop.spec.peers);
    }
}
