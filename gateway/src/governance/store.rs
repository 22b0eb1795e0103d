//! Where governance state lives: the [`GovernanceStore`] trait and its errors.
//!
//! Two stores implement it: [`super::db::DbStore`] (standalone mode: SQLite by default,
//! Postgres too) and [`super::kube::KubeStore`] (cluster mode: the API server's
//! Proposals, Votes and Delegations, which the operator closes). The service in
//! [`super`] runs the same `synco_policies::lifecycle` steps over either.

use std::fmt::Debug;

use async_trait::async_trait;
use synco_crds::{Proposal, ProposalStatus};
use synco_policies::lifecycle::{BallotForm, CastBallot};

use crate::coop::CoopObjects;

/// A recorded ballot, with the comment its member gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBallot {
    /// The ballot as the tally reads it.
    pub cast: CastBallot,
    /// Why the member voted so, if it said.
    pub comment: Option<String>,
}

/// Why a store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The member has a ballot on this proposal already.
    #[error("already voted")]
    AlreadyVoted,
    /// A proposal of that name exists.
    #[error("a proposal named {0} exists already")]
    Exists(String),
    /// No such proposal.
    #[error("no proposal named {0}")]
    NotFound(String),
    /// The store's own rules refused it (the API server's CEL rules and admission
    /// policies, or the database's constraints), with their message.
    #[error("{0}")]
    Refused(String),
    /// It did not happen in time (say, the operator did not open a proposal).
    #[error("{0}")]
    Timeout(String),
    /// The store cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}

impl From<sea_orm::DbErr> for StoreError {
    fn from(e: sea_orm::DbErr) -> Self {
        StoreError::Unavailable(format!("the database: {e}"))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Unavailable(format!("a stored object cannot be read: {e}"))
    }
}

/// Governance state, wherever it is kept.
#[async_trait]
pub trait GovernanceStore: Send + Sync + Debug {
    /// The co-op's objects now.
    async fn objects(&self) -> Result<CoopObjects, StoreError>;

    /// Every proposal, spec and status.
    async fn proposals(&self) -> Result<Vec<Proposal>, StoreError>;

    /// One proposal.
    async fn proposal(&self, name: &str) -> Result<Option<Proposal>, StoreError>;

    /// Records a new proposal. `opened` is its status as `synco_policies` opens it now;
    /// the database stores it as it is, the API server's store creates the Proposal and
    /// returns it once the operator has opened it (by the same function).
    async fn create_proposal(
        &self,
        proposal: Proposal,
        opened: ProposalStatus,
    ) -> Result<Proposal, StoreError>;

    /// The ballots recorded on a proposal.
    async fn ballots(&self, proposal: &str) -> Result<Vec<StoredBallot>, StoreError>;

    /// Records `member`'s ballot at `now` (Unix seconds; the API server stamps its own
    /// time). A second ballot is [`StoreError::AlreadyVoted`], whoever races whom; a
    /// ballot on a proposal that is not open is [`StoreError::Refused`].
    async fn record_ballot(
        &self,
        proposal: &str,
        member: &str,
        form: &BallotForm,
        comment: Option<&str>,
        now: i64,
    ) -> Result<CastBallot, StoreError>;

    /// Withdraws `proposal` for `by`, its proposer (already checked by the lifecycle).
    async fn withdraw(&self, proposal: &Proposal, by: &str) -> Result<Proposal, StoreError>;

    /// The standing delegations.
    async fn delegations(&self) -> Result<Vec<synco_crds::Delegation>, StoreError>;

    /// Sets `member`'s delegation to `delegate`, replacing any.
    async fn set_delegation(&self, member: &str, delegate: &str) -> Result<(), StoreError>;

    /// Revokes `member`'s delegation; whether there was one.
    async fn revoke_delegation(&self, member: &str) -> Result<bool, StoreError>;
}
