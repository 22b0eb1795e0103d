//! The Proposal controller: opens a proposal when it is created, closes it at its
//! deadline, tallies with `synco-policies` and applies the effect it decided.
//!
//! Every step is a function of `synco_policies::lifecycle` (through its CRD conversions in
//! `synco_policies::crd::proposal`); this controller only reads the API server and writes
//! what those functions decide:
//!
//! * **Open** (phase `Draft`): the rules and the window come from the Cooperative's
//!   bylaws for the proposal's kind, the electorate is the Members as they are now, and a
//!   random seed for the lot that settles ties is published. A proposal that does not
//!   fit the bylaws becomes `Invalid`.
//! * **Close** (phase `Open`, at `closesAt` plus a short grace so that a ballot accepted
//!   just before the deadline is in the API server): the Votes, the Delegations and who
//!   is suspended now become a `Record`, which is closed. The status gets the outcome,
//!   the counts, every ballot set aside and why, and the fingerprint.
//! * **Apply** (phase `Passed`): the effect the close decided (`status.decidedEffect`:
//!   the proposal's own, the winning option's, or a dot-voted split) is applied once.
//! * **Withdraw**: the proposer (or the gateway for it) sets the annotation
//!   `synco.coop/withdraw` to the proposer's name; with no Vote cast yet the proposal
//!   becomes `Withdrawn`.
//!
//! There is no polling: each reconcile asks to be woken at the next moment the proposal
//! changes phase, and Votes wake their proposal. Every step is recorded before the next
//! one starts, so a restart at any point picks up where the last run stopped.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;
use synco_crds::conditions::{self, APPLIED, reason};
use synco_crds::{Delegation, IgnoredVote, Member, Proposal, ProposalPhase, ProposalStatus, Vote};
use synco_policies::crd::proposal as lifecycle;
use synco_policies::lifecycle::CastBallot;

use super::{cooperative, effect, list, requeue_at};
use crate::apply;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Measure;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "proposal";
/// The condition saying whether voting is open or closed.
pub const VOTING: &str = "Voting";
/// The annotation a proposer sets to withdraw its proposal; its value is the proposer.
pub const WITHDRAW_ANNOTATION: &str = "synco.coop/withdraw";
/// How long after `closesAt` the close waits, so that a ballot accepted just before the
/// deadline has reached the API server.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Event reasons, as `kubectl describe` shows them.
pub mod event {
    pub const OPENED: &str = "VotingOpened";
    pub const INVALID: &str = "Invalid";
    pub const CLOSED: &str = "VotingClosed";
    pub const SET_ASIDE: &str = "BallotSetAside";
    pub const APPLIED: &str = "EffectApplied";
    pub const WITHDRAWN: &str = "Withdrawn";
    pub const WITHDRAW_REFUSED: &str = "WithdrawRefused";
    pub const TALLY_FAILED: &str = "TallyFailed";
}

/// Reconciles one Proposal.
pub async fn reconcile(proposal: Arc<Proposal>, ctx: Arc<Context>) -> Result<Action> {
    let measure = Measure::start(CONTROLLER, &ctx.stats);
    let result = reconcile_proposal(&proposal, &ctx).await;
    measure.done(&result);
    result
}

/// Retries after a delay that depends on the error.
pub fn error_policy(_: Arc<Proposal>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "proposal reconcile failed");
    Action::requeue(error.requeue_after())
}

async fn reconcile_proposal(proposal: &Proposal, ctx: &Context) -> Result<Action> {
    let ns = proposal.namespace().ok_or(Error::Unnamed("Proposal"))?;
    let api: Api<Proposal> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.now();
    let current = proposal.status.clone().unwrap_or_default();
    match current.phase {
        ProposalPhase::Draft => open(proposal, ctx, &api, &ns, current).await,
        ProposalPhase::Open => {
            if let Some(by) = proposal.annotations().get(WITHDRAW_ANNOTATION) {
                return withdraw(proposal, ctx, &api, &ns, current, by).await;
            }
            let closes = current
                .closes_at
                .as_ref()
                .map(|t| t.0)
                .ok_or_else(|| Error::InvalidSpec("an open proposal without closesAt".to_owned()))?;
            let deadline = closes
                .checked_add(CLOSE_GRACE)
                .map_err(|e| Error::InvalidSpec(e.to_string()))?;
            if now < deadline {
                return Ok(requeue_at(now, deadline));
            }
            let decided = close(proposal, ctx, &api, &ns, current).await?;
            if decided.phase == ProposalPhase::Passed {
                apply_effect(proposal, ctx, &api, decided).await?;
            }
            Ok(Action::await_change())
        }
        ProposalPhase::Passed => {
            apply_effect(proposal, ctx, &api, current).await?;
            Ok(Action::await_change())
        }
        ProposalPhase::Rejected | ProposalPhase::NoQuorum | ProposalPhase::Applied => {
            report_late_votes(proposal, ctx, &api, current).await?;
            Ok(Action::await_change())
        }
        ProposalPhase::Withdrawn | ProposalPhase::Invalid => Ok(Action::await_change()),
    }
}

/// Sets the Voting condition on `status`.
fn voting_condition(
    proposal: &Proposal,
    ctx: &Context,
    status: &mut ProposalStatus,
    open: bool,
    message: &str,
) {
    let why = if open {
        reason::VOTING_OPEN
    } else {
        reason::VOTING_CLOSED
    };
    conditions::set_condition(
        &mut status.conditions,
        conditions::condition(
            VOTING,
            open,
            why,
            message,
            proposal.metadata.generation,
            ctx.now_time(),
        ),
    );
}

/// Opens the proposal under the bylaws, or marks it Invalid.
async fn open(
    proposal: &Proposal,
    ctx: &Context,
    api: &Api<Proposal>,
    ns: &str,
    current: ProposalStatus,
) -> Result<Action> {
    let coop = cooperative(ctx, ns).await?;
    // Listed fresh, not from the cache: the electorate is fixed from this list.
    let members: Vec<Member> = list(ctx, ns).await?;
    let now = ctx.now();
    let seed = rand_seed();
    match lifecycle::open(&coop, &members, &proposal.spec, now.as_second(), seed) {
        Ok(mut status) => {
            status.observed_generation = proposal.metadata.generation;
            status.conditions = current.conditions;
            let closes = status.closes_at.as_ref().map(|t| t.0).unwrap_or(now);
            voting_condition(
                proposal,
                ctx,
                &mut status,
                true,
                &format!("voting is open until {closes}"),
            );
            conditions::set_condition(
                &mut status.conditions,
                conditions::condition(
                    conditions::ACCEPTED,
                    true,
                    reason::VALID,
                    "the proposal fits the bylaws",
                    proposal.metadata.generation,
                    ctx.now_time(),
                ),
            );
            apply::status(api, proposal, proposal.status.as_ref(), &status).await?;
            let rules = status
                .rules
                .as_ref()
                .map(|r| format!("{:?}", r.method))
                .unwrap_or_default();
            ctx.event(
                proposal,
                false,
                event::OPENED,
                "Open",
                format!(
                    "voting is open until {closes} by {rules}, {} members in the electorate, tie-break seed {seed}",
                    status.electorate.len()
                ),
            )
            .await;
            let deadline = closes.checked_add(CLOSE_GRACE).unwrap_or(closes);
            Ok(requeue_at(ctx.now(), deadline))
        }
        Err(e) => {
            let mut status = current;
            status.phase = ProposalPhase::Invalid;
            status.observed_generation = proposal.metadata.generation;
            conditions::set_condition(
                &mut status.conditions,
                conditions::condition(
                    conditions::ACCEPTED,
                    false,
                    reason::INVALID_SPEC,
                    e.to_string(),
                    proposal.metadata.generation,
                    ctx.now_time(),
                ),
            );
            apply::status(api, proposal, proposal.status.as_ref(), &status).await?;
            ctx.event(proposal, true, event::INVALID, "Open", e.to_string())
                .await;
            Ok(Action::await_change())
        }
    }
}

/// A fresh seed for the lot that settles ties.
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // std's RandomState is seeded from the operating system's randomness.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The ballots recorded for `proposal`, from its Votes.
pub fn ballots(proposal: &str, votes: &[Vote]) -> Vec<CastBallot> {
    votes
        .iter()
        .filter(|v| v.spec.proposal == proposal)
        .map(|v| CastBallot {
            member: v.spec.member.clone(),
            cast_at: v
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
            ballot: lifecycle::form(&v.spec),
        })
        .collect()
}

/// Tallies at the close and records the outcome.
async fn close(
    proposal: &Proposal,
    ctx: &Context,
    api: &Api<Proposal>,
    ns: &str,
    current: ProposalStatus,
) -> Result<ProposalStatus> {
    let name = proposal.name_any();
    let members: Vec<Member> = list(ctx, ns).await?;
    let votes: Vec<Vote> = list(ctx, ns).await?;
    let delegations: Vec<Delegation> = list(ctx, ns).await?;
    let record = lifecycle::record(proposal, ballots(&name, &votes), &delegations, &members)
        .ok_or_else(|| Error::InvalidSpec("the proposal's status does not record its opening".to_owned()))?;
    let closed = match synco_policies::lifecycle::close(&record) {
        Ok(closed) => closed,
        Err(e) => {
            ctx.event(
                proposal,
                true,
                event::TALLY_FAILED,
                "Close",
                format!("cannot tally: {e}"),
            )
            .await;
            return Err(e.into());
        }
    };
    let mut status = lifecycle::closed_status(current, &record, &proposal.spec, &closed, ctx.now_time());
    status.observed_generation = proposal.metadata.generation;
    voting_condition(proposal, ctx, &mut status, false, "voting closed");
    apply::status(api, proposal, proposal.status.as_ref(), &status).await?;
    let note = format!(
        "voting closed: {:?} with turnout {}% ({} ballots counted, {} set aside), fingerprint {}",
        status.phase,
        status.turnout_percent.as_deref().unwrap_or("0"),
        status.counted_votes.unwrap_or(0),
        status.ignored_votes.len(),
        closed.fingerprint
    );
    ctx.event(proposal, false, event::CLOSED, "Close", note).await;
    for v in &status.ignored_votes {
        ctx.event(
            proposal,
            true,
            event::SET_ASIDE,
            "Tally",
            format!("ballot of {}: {}", v.member, v.reason),
        )
        .await;
    }
    Ok(status)
}

/// Applies a passed proposal's decided effect, then records it as applied.
async fn apply_effect(
    proposal: &Proposal,
    ctx: &Context,
    api: &Api<Proposal>,
    mut status: ProposalStatus,
) -> Result<()> {
    let applied_to = effect::apply(proposal, status.decided_effect.as_ref(), ctx).await?;
    status.phase = ProposalPhase::Applied;
    status.applied_at = Some(ctx.now_time());
    let (why, message) = match &applied_to {
        Some(target) => (reason::EFFECT_APPLIED, format!("applied to {target}")),
        None => (reason::NOTHING_TO_APPLY, "nothing changes".to_owned()),
    };
    status.applied_to = applied_to;
    conditions::set_condition(
        &mut status.conditions,
        conditions::condition(
            APPLIED,
            true,
            why,
            message.clone(),
            proposal.metadata.generation,
            ctx.now_time(),
        ),
    );
    // Written from the status this reconcile started from, not the object it was given,
    // which may still show an earlier phase.
    let patch_base: Option<&ProposalStatus> = None;
    apply::status(api, proposal, patch_base, &status).await?;
    ctx.event(proposal, false, event::APPLIED, "Apply", message).await;
    Ok(())
}

/// Withdraws an open proposal nobody has voted on, at its proposer's request.
async fn withdraw(
    proposal: &Proposal,
    ctx: &Context,
    api: &Api<Proposal>,
    ns: &str,
    mut status: ProposalStatus,
    by: &str,
) -> Result<Action> {
    let name = proposal.name_any();
    let votes: Vec<Vote> = list(ctx, ns).await?;
    let cast = votes.iter().filter(|v| v.spec.proposal == name).count() as u64;
    match synco_policies::lifecycle::withdraw(&proposal.spec.proposer, by, true, cast) {
        Ok(()) => {
            status.phase = ProposalPhase::Withdrawn;
            status.decided_at = Some(ctx.now_time());
            voting_condition(proposal, ctx, &mut status, false, "withdrawn by its proposer");
            apply::status(api, proposal, proposal.status.as_ref(), &status).await?;
            ctx.event(
                proposal,
                false,
                event::WITHDRAWN,
                "Withdraw",
                format!("withdrawn by {by} before any ballot"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            ctx.event(proposal, true, event::WITHDRAW_REFUSED, "Withdraw", e.to_string())
                .await;
            let closes = status.closes_at.as_ref().map_or(ctx.now(), |t| t.0);
            Ok(requeue_at(
                ctx.now(),
                closes.checked_add(CLOSE_GRACE).unwrap_or(closes),
            ))
        }
    }
}

/// Lists Votes cast after the close that the status does not yet report, adds them to
/// `ignoredVotes` and publishes an Event for each.
async fn report_late_votes(
    proposal: &Proposal,
    ctx: &Context,
    api: &Api<Proposal>,
    mut status: ProposalStatus,
) -> Result<()> {
    let ns = proposal.namespace().unwrap_or_default();
    let name = proposal.name_any();
    let Some(closes) = status.closes_at.as_ref().map(|t| t.0) else {
        return Ok(());
    };
    let votes: Vec<Vote> = list(ctx, &ns).await?;
    let mut late: Vec<IgnoredVote> = votes
        .iter()
        .filter(|v| v.spec.proposal == name)
        .filter(|v| {
            v.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| t.0 >= closes)
        })
        .filter(|v| {
            !status
                .ignored_votes
                .iter()
                .any(|i| Some(&i.vote) == v.metadata.name.as_ref())
        })
        .map(|v| IgnoredVote {
            vote: v.name_any(),
            member: v.spec.member.clone(),
            reason: format!(
                "{}: cast at {}, after voting closed at {closes} and the outcome was decided",
                lifecycle::set_aside_code(synco_policies::lifecycle::SetAsideWhy::Late),
                v.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
            ),
        })
        .collect();
    if late.is_empty() {
        return Ok(());
    }
    late.sort_by(|a, b| a.vote.cmp(&b.vote));
    status.ignored_votes.extend(late.iter().cloned());
    status.observed_generation = proposal.metadata.generation;
    apply::status(api, proposal, proposal.status.as_ref(), &status).await?;
    for v in &late {
        ctx.event(
            proposal,
            true,
            event::SET_ASIDE,
            "Tally",
            format!("ballot of {}: {}", v.member, v.reason),
        )
        .await;
    }
    Ok(())
}
