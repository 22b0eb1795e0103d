//! The Proposal controller: opens a proposal at `opensAt`, closes it at `closesAt`, tallies
//! with `synco-policies`, records the outcome and applies the effect.
//!
//! There is no polling: each reconcile asks to be woken at the next moment the proposal
//! changes phase (its opening or its close), and Votes wake their proposal. Every step
//! is idempotent and recorded in the status before the next one starts, so a restart at
//! any point picks up where the last run stopped: a passed proposal whose effect was not
//! yet applied is applied once, and a decided proposal is never tallied again.

use std::sync::Arc;

use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;
use synco_crds::conditions::{self, APPLIED, reason};
use synco_crds::{IgnoredVote, Member, Proposal, ProposalPhase, ProposalStatus, Vote};
use synco_policies::crd::tally::reason as ignored;
use synco_policies::crd::{prepare, proposal_outcome};

use super::{cooperative, effect, list, requeue_at};
use crate::apply;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Measure;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "proposal";
/// The condition saying whether voting is open or closed.
pub const VOTING: &str = "Voting";

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
    let (opens, closes) = (proposal.spec.opens_at.0, proposal.spec.closes_at.0);
    match current.phase {
        ProposalPhase::Draft | ProposalPhase::Open if now < opens => {
            let status = with_voting(
                proposal,
                ctx,
                &current,
                ProposalPhase::Draft,
                "voting has not opened yet",
            );
            apply::status(&api, proposal, proposal.status.as_ref(), &status).await?;
            Ok(requeue_at(now, opens))
        }
        ProposalPhase::Draft | ProposalPhase::Open if now < closes => {
            let status = with_voting(proposal, ctx, &current, ProposalPhase::Open, "voting is open");
            if apply::status(&api, proposal, proposal.status.as_ref(), &status).await? {
                let note = format!("voting is open until {closes}");
                ctx.event(proposal, false, "VotingOpened", "Open", note).await;
            }
            Ok(requeue_at(now, closes))
        }
        ProposalPhase::Draft | ProposalPhase::Open => {
            let decided = close(proposal, ctx, &api, &current).await?;
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
    }
}

/// `current` with `phase` and the Voting condition.
fn with_voting(
    proposal: &Proposal,
    ctx: &Context,
    current: &ProposalStatus,
    phase: ProposalPhase,
    message: &str,
) -> ProposalStatus {
    let mut status = current.clone();
    status.phase = phase;
    status.observed_generation = proposal.metadata.generation;
    let (ok, why) = match phase {
        ProposalPhase::Open => (true, reason::VOTING_OPEN),
        ProposalPhase::Draft => (false, reason::PROGRESSING),
        _ => (false, reason::VOTING_CLOSED),
    };
    conditions::set_condition(
        &mut status.conditions,
        conditions::condition(
            VOTING,
            ok,
            why,
            message,
            proposal.metadata.generation,
            ctx.now_time(),
        ),
    );
    status
}

/// Tallies at the close and records the outcome.
async fn close(
    proposal: &Proposal,
    ctx: &Context,
    api: &Api<Proposal>,
    current: &ProposalStatus,
) -> Result<ProposalStatus> {
    let ns = proposal.namespace().unwrap_or_default();
    let coop = cooperative(ctx, &ns).await?;
    let members: Vec<Member> = list(ctx, &ns).await?;
    let votes: Vec<Vote> = list(ctx, &ns).await?;
    let prepared = prepare(&coop, &members, proposal, &votes);
    let result = match synco_policies::tally(&prepared.input, &prepared.rules) {
        Ok(result) => result,
        Err(e) => {
            // The ballots were checked one by one, so this is about the proposal or the
            // bylaws themselves (say, an option method with no options): say so and wait
            // for an edit.
            let mut status = with_voting(proposal, ctx, current, current.phase, "voting closed");
            conditions::set_condition(
                &mut status.conditions,
                conditions::condition(
                    conditions::ACCEPTED,
                    false,
                    reason::INVALID_SPEC,
                    format!("cannot tally: {e}"),
                    proposal.metadata.generation,
                    ctx.now_time(),
                ),
            );
            apply::status(api, proposal, proposal.status.as_ref(), &status).await?;
            ctx.event(
                proposal,
                true,
                "TallyFailed",
                "Close",
                format!("cannot tally: {e}"),
            )
            .await;
            return Err(Error::InvalidSpec(e.to_string()));
        }
    };
    let outcome = proposal_outcome(&result, &prepared, ctx.now_time());
    let mut status = with_voting(proposal, ctx, current, outcome.phase, "voting closed");
    status.tally = outcome.tally;
    status.eligible_weight = outcome.eligible_weight;
    status.cast_weight = outcome.cast_weight;
    status.delegated_weight = outcome.delegated_weight;
    status.turnout_percent = outcome.turnout_percent;
    status.rule = outcome.rule;
    status.winner = outcome.winner;
    status.counted_votes = outcome.counted_votes;
    status.ignored_votes = outcome.ignored_votes;
    status.decided_at = outcome.decided_at;
    apply::status(api, proposal, proposal.status.as_ref(), &status).await?;
    let note = format!(
        "voting closed: {:?} with turnout {}% ({} ballots counted, {} ignored)",
        status.phase,
        status.turnout_percent.as_deref().unwrap_or("0"),
        status.counted_votes.unwrap_or(0),
        status.ignored_votes.len()
    );
    ctx.event(proposal, false, "VotingClosed", "Close", note).await;
    for v in &status.ignored_votes {
        ctx.event(
            proposal,
            true,
            "VoteIgnored",
            "Tally",
            format!("vote {} of {}: {}", v.vote, v.member, v.reason),
        )
        .await;
    }
    Ok(status)
}

/// Applies a passed proposal's effect, then records it as applied.
async fn apply_effect(
    proposal: &Proposal,
    ctx: &Context,
    api: &Api<Proposal>,
    mut status: ProposalStatus,
) -> Result<()> {
    let applied_to = effect::apply(proposal, ctx).await?;
    status.phase = ProposalPhase::Applied;
    status.applied_at = Some(ctx.now_time());
    let (why, message) = match &applied_to {
        Some(target) => (reason::EFFECT_APPLIED, format!("applied to {target}")),
        None => (
            reason::NOTHING_TO_APPLY,
            "a free-text proposal changes nothing".to_owned(),
        ),
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
    ctx.event(proposal, false, "EffectApplied", "Apply", message)
        .await;
    Ok(())
}

/// Lists Votes created after the close (or before the opening) that the status does not
/// yet report, adds them to `ignoredVotes` and publishes an Event for each.
async fn report_late_votes(
    proposal: &Proposal,
    ctx: &Context,
    api: &Api<Proposal>,
    mut status: ProposalStatus,
) -> Result<()> {
    let ns = proposal.namespace().unwrap_or_default();
    let name = proposal.name_any();
    let votes: Vec<Vote> = list(ctx, &ns).await?;
    let window = (proposal.spec.opens_at.0, proposal.spec.closes_at.0);
    let mut late: Vec<IgnoredVote> = votes
        .iter()
        .filter(|v| v.spec.proposal == name)
        .filter(|v| {
            v.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| t.0 < window.0 || t.0 >= window.1)
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
                "{}: cast at {}, after the vote closed at {} and the outcome was decided",
                ignored::OUTSIDE_WINDOW,
                v.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
                window.1
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
            "VoteIgnored",
            "Tally",
            format!("vote {} of {}: {}", v.vote, v.member, v.reason),
        )
        .await;
    }
    Ok(())
}
