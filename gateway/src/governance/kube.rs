//! The API-server store (cluster mode): Proposals, Votes and Delegations are custom
//! resources in the co-op's namespace, created by the gateway's ServiceAccount on the
//! members' behalf. The operator opens and closes proposals with the same
//! `synco-policies` steps; the API server's CEL rules and admission policies enforce the
//! invariants for every client (one ballot per member, none changed or deleted, a
//! proposal's spec fixed, nobody acting in someone else's name but the gateway).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use synco_crds::{
    Allocation, ComputePool, Cooperative, Customer, Delegation, DelegationSpec, InferenceModel, Member,
    Proposal, ProposalPhase, ProposalStatus, Vote, VoteSpec,
};
use synco_policies::lifecycle::{BallotForm, CastBallot, Position};

use super::store::{GovernanceStore, StoreError, StoredBallot};
use crate::coop::CoopObjects;

/// The annotation a proposer sets to withdraw (the operator's `WITHDRAW_ANNOTATION`).
pub const WITHDRAW_ANNOTATION: &str = "synco.coop/withdraw";
/// The gateway's field manager for what it applies.
pub const FIELD_MANAGER: &str = "synco-gateway";
/// How long the gateway waits for the operator to open or withdraw a proposal.
pub const OPERATOR_WAIT: Duration = Duration::from_secs(15);

/// The co-op's resources, as the gateway's reflectors follow them.
#[derive(Clone)]
pub struct Watched {
    pub coops: Store<Cooperative>,
    pub members: Store<Member>,
    pub customers: Store<Customer>,
    pub pools: Store<ComputePool>,
    pub models: Store<InferenceModel>,
    pub allocations: Store<Allocation>,
    pub proposals: Store<Proposal>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").finish_non_exhaustive()
    }
}

impl Watched {
    /// The co-op's objects now.
    pub fn objects(&self) -> CoopObjects {
        fn all<K: Clone + kube::Resource<DynamicType = ()>>(s: &Store<K>) -> Vec<K> {
            s.state().iter().map(|o| (**o).clone()).collect()
        }
        CoopObjects {
            cooperatives: all(&self.coops),
            members: all(&self.members),
            customers: all(&self.customers),
            pools: all(&self.pools),
            models: all(&self.models),
            allocations: all(&self.allocations),
        }
    }
}

/// Governance state in the API server.
#[derive(Clone)]
pub struct KubeStore {
    pub namespace: String,
    pub client: kube::Client,
    pub watched: Arc<Watched>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// How long a write refused only because an admission policy has not yet seen its
/// params is retried.
pub const PARAMS_WAIT: Duration = Duration::from_secs(10);

/// Whether the API server refused a write because an admission policy's binding has not
/// yet seen its params (the co-op's Members, read through an informer that lags for a
/// moment after the policies or the CRDs are installed or taken over). Transient: the
/// same write is admitted once the informer has caught up.
fn params_not_seen_yet(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.message.contains("no params found")
        || s.message.contains("failed to find resource referenced by paramKind"))
}

/// Runs `write`, again (backing off) while it is refused only because an admission
/// policy has not seen its params yet, for at most `PARAMS_WAIT`; a member is not told
/// "forbidden" for the cluster's own lag.
async fn admitted<T, F, Fut>(what: &str, write: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    admitted_within(what, PARAMS_WAIT, write).await
}

async fn admitted_within<T, F, Fut>(what: &str, wait: Duration, mut write: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(100);
    loop {
        match write().await {
            Err(e) if params_not_seen_yet(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(what, error = %e, "an admission policy has not seen its params yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

fn api_error(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 409 => StoreError::Refused(s.message),
        kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422) => StoreError::Refused(s.message),
        kube::Error::Api(s) if s.code == 404 => StoreError::NotFound(s.message),
        other => StoreError::Unavailable(format!("the API server: {other}")),
    }
}

fn position(p: Position) -> synco_crds::Position {
    match p {
        Position::Yes => synco_crds::Position::Yes,
        Position::No => synco_crds::Position::No,
        Position::Abstain => synco_crds::Position::Abstain,
        Position::Block => synco_crds::Position::Block,
        Position::StandAside => synco_crds::Position::StandAside,
    }
}

impl KubeStore {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Waits until the proposal `name` satisfies `done`, reading the API server.
    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&Proposal) -> bool,
    ) -> Result<Proposal, StoreError> {
        let api: Api<Proposal> = self.api();
        let started = tokio::time::Instant::now();
        loop {
            let p = api.get(name).await.map_err(api_error)?;
            if done(&p) {
                return Ok(p);
            }
            if started.elapsed() > OPERATOR_WAIT {
                return Err(StoreError::Timeout(format!(
                    "the operator has not {what} {name} within {} s; is it running?",
                    OPERATOR_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl GovernanceStore for KubeStore {
    async fn objects(&self) -> Result<CoopObjects, StoreError> {
        Ok(self.watched.objects())
    }

    async fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        Ok(self
            .watched
            .proposals
            .state()
            .iter()
            .map(|p| (**p).clone())
            .collect())
    }

    async fn proposal(&self, name: &str) -> Result<Option<Proposal>, StoreError> {
        // Read fresh: a proposal's phase decides whether a ballot is accepted.
        match self.api::<Proposal>().get_opt(name).await {
            Ok(p) => Ok(p),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn create_proposal(
        &self,
        proposal: Proposal,
        _opened: ProposalStatus,
    ) -> Result<Proposal, StoreError> {
        let name = proposal.metadata.name.clone().unwrap_or_default();
        let mut proposal = proposal;
        proposal.status = None;
        proposal.metadata.creation_timestamp = None;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let proposals = self.api::<Proposal>();
        match admitted("proposal", || proposals.create(&params, &proposal)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Err(StoreError::Exists(name)),
            Err(e) => return Err(api_error(e)),
        }
        // The operator opens it with the same function the gateway checked it with.
        self.wait_for(&name, "opened", |p| {
            p.status.as_ref().is_some_and(|s| s.phase != ProposalPhase::Draft)
        })
        .await
    }

    async fn ballots(&self, proposal: &str) -> Result<Vec<StoredBallot>, StoreError> {
        let votes = self
            .api::<Vote>()
            .list(&ListParams::default())
            .await
            .map_err(api_error)?;
        Ok(votes
            .items
            .into_iter()
            .filter(|v| v.spec.proposal == proposal)
            .map(|v| StoredBallot {
                cast: CastBallot {
                    member: v.spec.member.clone(),
                    cast_at: v
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map_or(0, |t| t.0.as_second()),
                    ballot: synco_policies::crd::proposal::form(&v.spec),
                },
                comment: v.spec.comment,
            })
            .collect())
    }

    async fn record_ballot(
        &self,
        proposal: &str,
        member: &str,
        form: &BallotForm,
        comment: Option<&str>,
        _now: i64,
    ) -> Result<CastBallot, StoreError> {
        // The operator records the close; a ballot after it would only be set aside.
        let open = self
            .watched
            .proposals
            .get(&kube::runtime::reflector::ObjectRef::new(proposal).within(&self.namespace))
            .is_some_and(|p| p.status.as_ref().is_some_and(|s| s.phase == ProposalPhase::Open));
        if !open {
            return Err(StoreError::Refused(format!("voting on {proposal} is not open")));
        }
        let vote = Vote {
            metadata: ObjectMeta {
                name: Some(format!("{proposal}-{member}")),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: VoteSpec {
                proposal: proposal.to_owned(),
                member: member.to_owned(),
                position: form.position.map(position),
                approvals: form.approvals.clone(),
                scores: form.scores.clone(),
                ranking: form.ranking.clone(),
                points: form.points.clone(),
                comment: comment.map(ToOwned::to_owned),
            },
            status: None,
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let votes = self.api::<Vote>();
        match admitted("ballot", || votes.create(&params, &vote)).await {
            Ok(created) => Ok(CastBallot {
                member: member.to_owned(),
                cast_at: created
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(0, |t| t.0.as_second()),
                ballot: form.clone(),
            }),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(StoreError::AlreadyVoted),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn withdraw(&self, p: &Proposal, by: &str) -> Result<Proposal, StoreError> {
        let name = p.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({"metadata": {"annotations": {WITHDRAW_ANNOTATION: by}}});
        let proposals = self.api::<Proposal>();
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        admitted("withdrawal", || proposals.patch(&name, &params, &patch))
            .await
            .map_err(api_error)?;
        self.wait_for(&name, "withdrawn", |p| {
            p.status.as_ref().is_some_and(|s| s.phase != ProposalPhase::Open)
        })
        .await
    }

    async fn delegations(&self) -> Result<Vec<Delegation>, StoreError> {
        Ok(self
            .api::<Delegation>()
            .list(&ListParams::default())
            .await
            .map_err(api_error)?
            .items)
    }

    async fn set_delegation(&self, member: &str, delegate: &str) -> Result<(), StoreError> {
        let delegation = Delegation::new(
            member,
            DelegationSpec {
                member: member.to_owned(),
                delegate: delegate.to_owned(),
            },
        );
        let patch = serde_json::json!({
            "apiVersion": "synco.coop/v1alpha1",
            "kind": "Delegation",
            "metadata": {"name": member},
            "spec": delegation.spec,
        });
        let delegations = self.api::<Delegation>();
        let (params, patch) = (PatchParams::apply(FIELD_MANAGER).force(), Patch::Apply(&patch));
        admitted("delegation", || delegations.patch(member, &params, &patch))
            .await
            .map_err(api_error)?;
        Ok(())
    }

    async fn revoke_delegation(&self, member: &str) -> Result<bool, StoreError> {
        let delegations = self.api::<Delegation>();
        let params = kube::api::DeleteParams::default();
        match admitted("revocation", || delegations.delete(member, &params)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(api_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn refusal(code: u16, message: &str) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "reason": "Forbidden", "message": message,
        }))
        .unwrap_or_default();
        kube::Error::Api(Box::new(status))
    }

    const LAG: &str = "proposals.synco.coop \"refunds\" is forbidden: ValidatingAdmissionPolicy \
        'synco-proposal-author' with binding 'synco-proposal-author' denied request: failed to \
        configure binding: no params found for policy binding with `Deny` parameterNotFoundAction";

    #[tokio::test]
    async fn a_policy_that_has_not_seen_its_params_is_waited_for_and_nothing_else_is() {
        // Refused twice for the lag, then admitted: the caller sees the success.
        let calls = AtomicU32::new(0);
        let result = admitted("proposal", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(refusal(403, LAG))
            } else {
                Ok("created")
            }
        })
        .await;
        assert_eq!(result.ok(), Some("created"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // A real refusal is answered at once.
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = admitted("ballot", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(refusal(403, "a member may cast only their own ballot"))
        })
        .await;
        assert!(matches!(api_error(result.unwrap_err()), StoreError::Refused(_)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A lag that lasts gives up within the wait, with the API server's words.
        let started = tokio::time::Instant::now();
        let wait = Duration::from_millis(500);
        let result: Result<(), _> =
            admitted_within("ballot", wait, || async { Err(refusal(403, LAG)) }).await;
        assert!(started.elapsed() <= wait, "{:?}", started.elapsed());
        match api_error(result.unwrap_err()) {
            StoreError::Refused(message) => assert!(message.contains("no params found"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
