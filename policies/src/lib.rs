//! Pure governance and allocation decisions for Synco.
//!
//! This crate is the cooperative's rulebook in code. It has no I/O, no clock and no async
//! runtime: the operator (cluster mode) and the gateway (standalone mode) convert their
//! resources into the plain types here, call a function, and record what comes back.
//!
//! * **Voting**: [`tally`] counts one proposal's ballots under its [`VotingRules`]:
//!   majority, supermajority, consent, approval, score, instant-runoff and dot voting
//!   ([`voting`]), with quorum ([`quorum`]), voting weights and class shares
//!   ([`weights`]) and liquid delegation ([`delegation`]). The [`TallyResult`] carries
//!   everything needed to audit it.
//! * **Allocation**: [`solve`] turns capacity per model, the floors and tiers of the
//!   allocation in force, the surplus cap and current demand into [`Quotas`]: a guaranteed
//!   rate, a borrow limit and a monthly budget for every member and customer, plus the
//!   surplus for sale ([`solver`]).
//!
//! Every decision is made with exact integers (weights in milli-votes, shares in parts per
//! million, rates in tokens per second), never by comparing floats, so the same input
//! gives the same output on every platform. Bad input gives a typed error, never a panic.
//!
//! ```
//! use synco_policies::{Ballot, Choice, Method, Outcome, Share, TallyInput, Voter, VotingRules, tally};
//!
//! let input = TallyInput {
//!     electorate: vec![Voter::new("ana", "workers"), Voter::new("ben", "users"), Voter::new("caro", "users")],
//!     ballots: vec![Ballot::new("ana", Choice::Yes), Ballot::new("ben", Choice::No), Ballot::new("caro", Choice::Yes)],
//!     ..TallyInput::default()
//! };
//! let rules = VotingRules::new(Method::Majority).with_quorum(Share::percent(50));
//! let result = tally(&input, &rules)?;
//! assert_eq!(result.outcome, Outcome::Passed);
//! assert_eq!(result.audit.turnout.total_weight, 3000); // milli-votes
//! # Ok::<(), synco_policies::TallyError>(())
//! ```

mod arith;
#[cfg(feature = "crd")]
pub mod crd;
pub mod delegation;
pub mod lifecycle;
pub mod patronage;
pub mod quorum;
mod share;
pub mod solver;
pub mod voting;
pub mod weights;
mod window;

pub use share::{Fraction, PPM_WHOLE, Share};
pub use solver::{
    Caller, CallerQuota, ClassPolicy, ModelCapacity, ModelQuota, ModelSummary, QuotaHolder, Quotas, Role,
    SECONDS_PER_30_DAYS, SolveError, SolverInput, solve,
};
pub use voting::{
    Audit, Ballot, Choice, ConsentPosition, Counts, Delegation, DelegationReport, DelegationUse, IrvRound,
    Method, OptionCount, OptionShare, Outcome, SetAside, SetAsideReason, TallyError, TallyInput, TallyResult,
    Tie, TieBreak, Turnout, VotingRules, tally,
};
pub use weights::{ONE_VOTE_MILLI, Standing, Voter, Weight, WeightUnit, Weighting};
pub use window::{VotingWindow, WindowPhase};
