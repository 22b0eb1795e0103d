//! The co-op's governance, as one service over either store.
//!
//! Members open proposals, discuss them, cast ballots, delegate and read results through
//! [`Governance`]; the HTTP routes (`crate::routes::governance`) and the admin CLI
//! ([`cli`]) both call it. Each step is a `synco_policies::lifecycle` function; the
//! service reads a [`GovernanceStore`] ([`db::DbStore`] in standalone mode,
//! [`kube::KubeStore`] in cluster mode), asks the function, and stores what it decides.
//! Comments live in the gateway's database in both modes ([`comments`]).
//!
//! Closing is the store's owner's job: the operator in cluster mode, [`closer`] in
//! standalone mode. Both call the same close.

pub mod assistant;
pub mod cli;
pub mod closer;
pub mod comments;
pub mod common_ground;
pub mod db;
pub mod eval;
pub mod export;
pub mod founding;
pub mod kube;
pub mod retrieval;
pub mod store;
pub mod views;

use std::sync::Arc;

use synco_crds::{Proposal, ProposalEffect, ProposalKind, ProposalPhase, ProposalSpec};
use synco_policies::crd::proposal as crd_lifecycle;
use synco_policies::lifecycle::{self, BallotForm, Refusal, WithdrawRefusal, receipt};

pub use store::{GovernanceStore, StoreError, StoredBallot};
pub use views::{BallotReceipt, CommentView, CoopView, DelegationView, ProposalRequest, ProposalView};

use crate::error::ApiError;

/// Where the service gets the time (Unix seconds); tests move it by hand.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| jiff::Timestamp::now().as_second())
}

/// Error codes of the governance API (the OpenAI error body's `code`).
pub mod code {
    pub const ALREADY_VOTED: &str = "already_voted";
    pub const VOTING_CLOSED: &str = "voting_closed";
    pub const VOTING_NOT_OPEN: &str = "voting_not_open";
    pub const NOT_IN_ELECTORATE: &str = "not_in_electorate";
    pub const INVALID_BALLOT: &str = "invalid_ballot";
    pub const INVALID_PROPOSAL: &str = "invalid_proposal";
    pub const PROPOSAL_EXISTS: &str = "proposal_exists";
    pub const HAS_BALLOTS: &str = "has_ballots";
    pub const NOT_DECIDED: &str = "not_decided";
    pub const WITHDRAWN: &str = "withdrawn";
    pub const ALREADY_DISTRIBUTED: &str = "already_distributed";
}

fn conflict(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::Conflict {
        message: message.into(),
        code: code.to_owned(),
    }
}

/// A store error as the API reports it.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyVoted => {
            conflict(code::ALREADY_VOTED, "You have already voted; a ballot is final.")
        }
        StoreError::Exists(name) => conflict(
            code::PROPOSAL_EXISTS,
            format!("A proposal named {name} exists already; choose another name."),
        ),
        StoreError::NotFound(name) => ApiError::NotFound(format!("no proposal named {name}")),
        StoreError::Refused(why) => ApiError::InvalidRequest {
            message: why,
            param: None,
            code: Some(code::INVALID_PROPOSAL.to_owned()),
        },
        StoreError::Timeout(why) => ApiError::Timeout(why),
        StoreError::Unavailable(why) => ApiError::Unavailable(why),
    }
}

/// A refused ballot as the API reports it.
fn refusal(r: Refusal) -> ApiError {
    let message = r.to_string();
    match r {
        Refusal::NotOpenYet { .. } => conflict(code::VOTING_NOT_OPEN, message),
        Refusal::Closed { .. } => conflict(code::VOTING_CLOSED, message),
        Refusal::NotInElectorate(_) | Refusal::NotEligible(_) => ApiError::Forbidden {
            message,
            code: code::NOT_IN_ELECTORATE.to_owned(),
        },
        Refusal::AlreadyVoted(_) => conflict(code::ALREADY_VOTED, message),
        Refusal::InvalidBallot(_) => ApiError::InvalidRequest {
            message,
            param: None,
            code: Some(code::INVALID_BALLOT.to_owned()),
        },
        _ => ApiError::invalid(message),
    }
}

/// What a ballot is checked against.
#[derive(Debug)]
struct Opening {
    options: Vec<String>,
    opened: lifecycle::Opened,
}

/// The governance service.
#[derive(Clone)]
pub struct Governance {
    pub store: Arc<dyn GovernanceStore>,
    pub comments: comments::Comments,
    pub db: sea_orm::DatabaseConnection,
    pub clock: Clock,
    /// Open proposals' openings, read once.
    openings: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Opening>>>>,
}

impl std::fmt::Debug for Governance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governance").field("store", &self.store).finish()
    }
}

/// Which proposals to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub phase: Option<ProposalPhase>,
}

impl Governance {
    /// A service over `store`, keeping comments in `db`.
    pub fn new(store: Arc<dyn GovernanceStore>, db: sea_orm::DatabaseConnection, clock: Clock) -> Self {
        Self {
            store,
            comments: comments::Comments::new(db.clone()),
            db,
            clock,
            openings: Arc::default(),
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    async fn view(&self, p: Proposal, ballots: Option<u64>) -> Result<ProposalView, ApiError> {
        let name = p.metadata.name.clone().unwrap_or_default();
        let ballots = match ballots {
            Some(n) => n,
            None => self.store.ballots(&name).await.map_err(store_error)?.len() as u64,
        };
        let comments = self.comments.count(&name).await?;
        Ok(ProposalView::new(p, ballots, comments))
    }

    /// The proposals, newest first.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub async fn list(&self, filter: Filter) -> Result<Vec<ProposalView>, ApiError> {
        let mut all = self.store.proposals().await.map_err(store_error)?;
        all.retain(|p| {
            filter
                .phase
                .is_none_or(|ph| p.status.as_ref().map(|s| s.phase).unwrap_or_default() == ph)
        });
        all.sort_by(|a, b| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let mut out = Vec::with_capacity(all.len());
        for p in all {
            out.push(self.view(p, None).await?);
        }
        Ok(out)
    }

    async fn find(&self, name: &str) -> Result<Proposal, ApiError> {
        self.store
            .proposal(name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::NotFound(format!("no proposal named {name}")))
    }

    /// One proposal with its result and audit.
    ///
    /// # Errors
    ///
    /// 404 when there is none.
    pub async fn get(&self, name: &str) -> Result<ProposalView, ApiError> {
        let p = self.find(name).await?;
        self.view(p, None).await
    }

    /// Opens a proposal for `caller`: the proposer is the caller; the rules, window and
    /// electorate are the bylaws' and the co-op's now.
    ///
    /// # Errors
    ///
    /// 403 for a proposal in someone else's name, 400 for one that breaks the schema or
    /// does not fit the bylaws, 409 for a name in use.
    pub async fn propose(&self, caller: &str, request: ProposalRequest) -> Result<ProposalView, ApiError> {
        if let Some(proposer) = &request.proposer
            && proposer != caller
        {
            return Err(ApiError::PermissionDenied(format!(
                "You are {caller}: you may open proposals in your own name only, not {proposer}'s."
            )));
        }
        let name = match &request.name {
            Some(name) => {
                views::check_name(name).map_err(|e| ApiError::invalid_param("name", e))?;
                name.clone()
            }
            None => views::name_for(&request.title),
        };
        let objects = self.store.objects().await.map_err(store_error)?;
        let coop = objects
            .cooperative()
            .map_err(|e| ApiError::Unavailable(format!("the co-op is not set up: {e}")))?;
        let effect = if request.kind == ProposalKind::PatronageDistribution {
            Some(
                self.distribution(coop, request.effect, request.patronage_period)
                    .await?,
            )
        } else {
            if request.patronage_period.is_some() {
                return Err(ApiError::invalid_param(
                    "patronagePeriod",
                    "only a PatronageDistribution proposal names a patronage period",
                ));
            }
            request.effect
        };
        let spec = ProposalSpec {
            kind: request.kind,
            title: request.title,
            body: request.body,
            proposer: caller.to_owned(),
            options: request.options,
            effect,
            split: request.split,
        };
        spec.check().map_err(|why| ApiError::InvalidRequest {
            message: why,
            param: None,
            code: Some(code::INVALID_PROPOSAL.to_owned()),
        })?;
        let opened = crd_lifecycle::open(coop, &objects.members, &spec, self.now(), seed()).map_err(|e| {
            ApiError::InvalidRequest {
                message: e.to_string(),
                param: None,
                code: Some(code::INVALID_PROPOSAL.to_owned()),
            }
        })?;
        let mut proposal = Proposal::new(&name, spec);
        proposal.metadata.namespace = coop.metadata.namespace.clone();
        proposal.metadata.creation_timestamp = Some(crd_lifecycle::time(self.now()));
        let created = self
            .store
            .create_proposal(proposal, opened)
            .await
            .map_err(store_error)?;
        tracing::info!(proposal = %name, proposer = %caller, "proposal opened");
        self.view(created, Some(0)).await
    }

    /// A PatronageDistribution's effect: what the books work out for the closed month
    /// named (by `period`, or by the effect given, which must be exactly that), under the
    /// bylaws' patronage rules; refused when the month's refunds were recorded before.
    async fn distribution(
        &self,
        coop: &synco_crds::Cooperative,
        effect: Option<ProposalEffect>,
        period: Option<String>,
    ) -> Result<ProposalEffect, ApiError> {
        let given = effect.and_then(|e| e.patronage_distribution);
        let Some(period) = period.or_else(|| given.as_ref().map(|d| d.period.clone())) else {
            return Err(ApiError::invalid_param(
                "patronagePeriod",
                "a PatronageDistribution names the closed month it distributes (patronagePeriod, YYYY-MM)",
            ));
        };
        let invalid = |message: String| ApiError::InvalidRequest {
            message,
            param: Some("patronagePeriod".to_owned()),
            code: Some(code::INVALID_PROPOSAL.to_owned()),
        };
        let worked = crate::books::distribution(&self.db, &period, coop)
            .await
            .map_err(|e| match e {
                crate::books::BooksError::Db(e) => {
                    ApiError::Unavailable(format!("the books cannot be read: {e}"))
                }
                other => invalid(other.to_string()),
            })?;
        if let Some(before) = crate::books::recorded(&self.db, &worked.period)
            .await
            .map_err(|e| ApiError::Unavailable(format!("the books cannot be read: {e}")))?
        {
            return Err(conflict(
                code::ALREADY_DISTRIBUTED,
                format!(
                    "the refunds for {} were recorded already (proposal {})",
                    worked.period, before.proposal
                ),
            ));
        }
        if let Some(given) = given
            && given != worked
        {
            return Err(invalid(format!(
                "the refunds given are not what the books work out for {} under the bylaws: \
                 name the month alone (patronagePeriod) to have them worked out",
                worked.period
            )));
        }
        Ok(ProposalEffect {
            allocation: None,
            bylaw: None,
            surplus_price: None,
            model_adoption: None,
            member_admission: None,
            patronage_distribution: Some(worked),
        })
    }

    /// Casts `caller`'s ballot. The answer carries the receipt.
    ///
    /// # Errors
    ///
    /// 404 no such proposal; 409 not open yet, closed, withdrawn or already voted; 403
    /// not in the electorate; 400 a ballot that does not fit the method.
    pub async fn cast(
        &self,
        caller: &str,
        name: &str,
        form: BallotForm,
        comment: Option<String>,
    ) -> Result<BallotReceipt, ApiError> {
        if comment.as_ref().is_some_and(|c| c.chars().count() > 2000) {
            return Err(ApiError::invalid_param(
                "comment",
                "a ballot's comment is at most 2000 characters",
            ));
        }
        let opening = self.opening(name).await?;
        // The store refuses a second ballot (a unique index, or the Vote's name) and a
        // ballot on a proposal that is no longer open, whoever races whom.
        lifecycle::accept_ballot(
            &opening.opened,
            &opening.options,
            caller,
            &form,
            false,
            self.now(),
        )
        .map_err(refusal)?;
        let cast = match self
            .store
            .record_ballot(name, caller, &form, comment.as_deref(), self.now())
            .await
        {
            Ok(cast) => cast,
            Err(StoreError::Refused(_)) => {
                // Closed or withdrawn meanwhile: say which.
                self.openings.lock().map(|mut o| o.remove(name)).ok();
                return Err(self.not_open(&self.find(name).await?));
            }
            Err(e) => return Err(store_error(e)),
        };
        Ok(BallotReceipt {
            proposal: name.to_owned(),
            member: caller.to_owned(),
            cast_at: cast.cast_at,
            receipt: receipt(name, &cast),
            ballot: cast.ballot,
        })
    }

    /// What a ballot is checked against: the options and the opening (rules, window,
    /// electorate), which never change once a proposal is open, so they are read once.
    async fn opening(&self, name: &str) -> Result<Arc<Opening>, ApiError> {
        if let Some(o) = self.openings.lock().ok().and_then(|o| o.get(name).cloned()) {
            return Ok(o);
        }
        let p = self.find(name).await?;
        let status = p.status.clone().unwrap_or_default();
        let opened = match (status.phase, crd_lifecycle::opened(&status)) {
            (ProposalPhase::Open, Some(opened)) => opened,
            _ => return Err(self.not_open(&p)),
        };
        let opening = Arc::new(Opening {
            options: crd_lifecycle::option_names(&p.spec),
            opened,
        });
        if let Ok(mut o) = self.openings.lock() {
            o.insert(name.to_owned(), opening.clone());
        }
        Ok(opening)
    }

    /// Why `p` takes no ballot.
    fn not_open(&self, p: &Proposal) -> ApiError {
        let name = p.metadata.name.clone().unwrap_or_default();
        let status = p.status.clone().unwrap_or_default();
        match status.phase {
            ProposalPhase::Draft | ProposalPhase::Open => conflict(
                code::VOTING_NOT_OPEN,
                format!("Voting on {name} has not opened yet."),
            ),
            ProposalPhase::Withdrawn => {
                conflict(code::WITHDRAWN, format!("{name} was withdrawn by its proposer."))
            }
            ProposalPhase::Invalid => conflict(
                code::VOTING_NOT_OPEN,
                format!("{name} does not fit the bylaws and never opened."),
            ),
            _ => {
                let closed = status
                    .closes_at
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                conflict(
                    code::VOTING_CLOSED,
                    format!("Voting on {name} closed at {closed}."),
                )
            }
        }
    }

    /// Withdraws `caller`'s proposal while nobody has voted.
    ///
    /// # Errors
    ///
    /// 403 when it is someone else's, 409 when ballots were cast or it is decided.
    pub async fn withdraw(&self, caller: &str, name: &str) -> Result<ProposalView, ApiError> {
        let p = self.find(name).await?;
        let open = p.status.as_ref().is_some_and(|s| s.phase == ProposalPhase::Open);
        let ballots = self.store.ballots(name).await.map_err(store_error)?.len() as u64;
        lifecycle::withdraw(&p.spec.proposer, caller, open, ballots).map_err(|e| match e {
            WithdrawRefusal::NotProposer { .. } => ApiError::PermissionDenied(e.to_string()),
            WithdrawRefusal::HasBallots(_) => conflict(code::HAS_BALLOTS, e.to_string()),
            _ => conflict(code::VOTING_CLOSED, e.to_string()),
        })?;
        let p = self.store.withdraw(&p, caller).await.map_err(store_error)?;
        self.view(p, Some(0)).await
    }

    /// Adds `caller`'s comment (or reply) to a proposal's discussion.
    ///
    /// # Errors
    ///
    /// 404 no such proposal or comment replied to; 400 an empty or too long comment.
    pub async fn comment(
        &self,
        caller: &str,
        name: &str,
        body: &str,
        reply_to: Option<i64>,
    ) -> Result<CommentView, ApiError> {
        self.find(name).await?;
        self.comments.add(name, caller, body, reply_to).await
    }

    /// A proposal's discussion, oldest first.
    ///
    /// # Errors
    ///
    /// 404 no such proposal.
    pub async fn discussion(&self, name: &str) -> Result<Vec<CommentView>, ApiError> {
        self.find(name).await?;
        self.comments.list(name).await
    }

    /// `caller`'s delegation and who delegates to it.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub async fn delegation(&self, caller: &str) -> Result<DelegationView, ApiError> {
        let all = self.store.delegations().await.map_err(store_error)?;
        let mut delegators: Vec<String> = all
            .iter()
            .filter(|d| d.spec.delegate == caller)
            .map(|d| d.spec.member.clone())
            .collect();
        delegators.sort();
        Ok(DelegationView {
            member: caller.to_owned(),
            delegate: all
                .iter()
                .find(|d| d.spec.member == caller)
                .map(|d| d.spec.delegate.clone()),
            delegators,
        })
    }

    /// Sets `caller`'s standing delegation to `to`, a member.
    ///
    /// # Errors
    ///
    /// 400 for itself or someone who is not a member.
    pub async fn delegate(&self, caller: &str, to: &str) -> Result<DelegationView, ApiError> {
        if caller == to {
            return Err(ApiError::invalid_param(
                "delegate",
                "a member cannot delegate to itself",
            ));
        }
        let objects = self.store.objects().await.map_err(store_error)?;
        if !objects
            .members
            .iter()
            .any(|m| m.metadata.name.as_deref() == Some(to))
        {
            return Err(ApiError::invalid_param(
                "delegate",
                format!("{to} is not a member"),
            ));
        }
        self.store.set_delegation(caller, to).await.map_err(store_error)?;
        self.delegation(caller).await
    }

    /// Revokes `caller`'s standing delegation.
    ///
    /// # Errors
    ///
    /// The store cannot be written.
    pub async fn revoke(&self, caller: &str) -> Result<DelegationView, ApiError> {
        self.store.revoke_delegation(caller).await.map_err(store_error)?;
        self.delegation(caller).await
    }

    /// The published record of a decided proposal: everything anyone needs to recount it.
    ///
    /// # Errors
    ///
    /// 409 while it is open (ballots are published at the close).
    pub async fn record(&self, name: &str) -> Result<export::PublishedRecord, ApiError> {
        let p = self.find(name).await?;
        let status = p.status.clone().unwrap_or_default();
        if status.fingerprint.is_none() {
            return Err(conflict(
                code::NOT_DECIDED,
                format!("{name} is not decided yet: its ballots are published at the close."),
            ));
        }
        let ballots = self.store.ballots(name).await.map_err(store_error)?;
        export::published(&p, ballots)
            .ok_or_else(|| ApiError::Unavailable(format!("the record of {name} is incomplete")))
    }

    /// The co-op as `caller` sees it: the allocation in force, its quota and usage this
    /// month, and the surplus sold.
    ///
    /// # Errors
    ///
    /// The store or the metering database cannot be read.
    pub async fn coop(&self, caller: &str, month: Option<&str>) -> Result<CoopView, ApiError> {
        let objects = self.store.objects().await.map_err(store_error)?;
        views::coop_view(&self.db, &objects, caller, month).await
    }

    /// The co-op's objects now (members, classes and allocations, for the pages' forms).
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub async fn objects(&self) -> Result<crate::coop::CoopObjects, ApiError> {
        self.store.objects().await.map_err(store_error)
    }

    /// The gateway's database (comments, and the web pages' sessions).
    #[must_use]
    pub fn db(&self) -> &sea_orm::DatabaseConnection {
        &self.db
    }
}

/// A fresh seed for the lot that settles ties.
fn seed() -> u64 {
    rand::random()
}
