//! Standalone mode's closing task: at each proposal's deadline it tallies and records the
//! outcome, and applies a passed proposal's effect, with the same `synco-policies` steps
//! the operator runs in a cluster.
//!
//! Nothing closes a proposal early. The close waits [`CLOSE_GRACE_SECONDS`] past the
//! deadline, so that a ballot accepted just before it is in the database. Each step is
//! written only if the proposal is still where it was (Open, then Passed), so of several
//! replicas sharing one Postgres exactly one closes and exactly one applies.

use std::time::Duration;

use synco_crds::{Proposal, ProposalPhase};
use synco_policies::crd::effect;
use synco_policies::crd::proposal as crd_lifecycle;
use synco_policies::lifecycle;
use tokio_util::sync::CancellationToken;

use super::Clock;
use super::db::DbStore;
use super::store::GovernanceStore;

/// Seconds past a deadline before the close.
pub const CLOSE_GRACE_SECONDS: i64 = 1;

/// Closes proposals in the database.
#[derive(Clone)]
pub struct Closer {
    pub store: DbStore,
    pub clock: Clock,
}

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer").finish_non_exhaustive()
    }
}

impl Closer {
    pub fn new(store: DbStore, clock: Clock) -> Self {
        Self { store, clock }
    }

    /// Closes every proposal whose deadline has passed and applies every passed effect.
    /// Returns the proposals this call decided.
    ///
    /// # Errors
    ///
    /// The database cannot be read or written.
    pub async fn run_once(&self) -> anyhow::Result<Vec<String>> {
        let now = (self.clock)();
        let mut decided = Vec::new();
        for p in self.store.due(now, CLOSE_GRACE_SECONDS).await? {
            let name = p.metadata.name.clone().unwrap_or_default();
            match self.close(&p, now).await {
                Ok(true) => decided.push(name),
                Ok(false) => {}
                Err(e) => tracing::error!(proposal = %name, error = %e, "cannot close"),
            }
        }
        for p in self.store.passed().await? {
            let name = p.metadata.name.clone().unwrap_or_default();
            if let Err(e) = self.apply(&p, now).await {
                tracing::error!(proposal = %name, error = %e, "cannot apply the effect");
            }
        }
        Ok(decided)
    }

    /// Tallies `p` and records the outcome; whether this call did it.
    async fn close(&self, p: &Proposal, now: i64) -> anyhow::Result<bool> {
        let name = p.metadata.name.clone().unwrap_or_default();
        let ballots = self
            .store
            .ballots(&name)
            .await?
            .into_iter()
            .map(|b| b.cast)
            .collect();
        let delegations = self.store.delegations().await?;
        let objects = self.store.objects().await?;
        let record = crd_lifecycle::record(p, ballots, &delegations, &objects.members)
            .ok_or_else(|| anyhow::anyhow!("{name} does not record its opening"))?;
        let closed = lifecycle::close(&record)?;
        let status = crd_lifecycle::closed_status(
            p.status.clone().unwrap_or_default(),
            &record,
            &p.spec,
            &closed,
            crd_lifecycle::time(now),
        );
        let phase = status.phase;
        let wrote = DbStore::advance(&self.store.db, p, ProposalPhase::Open, status).await?;
        if wrote {
            tracing::info!(
                proposal = %name,
                outcome = ?phase,
                winner = ?closed.result.winner,
                set_aside = closed.set_aside.len(),
                fingerprint = %closed.fingerprint,
                "voting closed"
            );
        }
        Ok(wrote)
    }

    /// Applies a passed proposal's decided effect and marks it Applied.
    async fn apply(&self, p: &Proposal, now: i64) -> anyhow::Result<()> {
        let name = p.metadata.name.clone().unwrap_or_default();
        let objects = self.store.objects().await?;
        let coop = objects.cooperative()?;
        let mut status = p.status.clone().unwrap_or_default();
        let change = match &status.decided_effect {
            Some(decided) => effect::change(p.spec.kind, decided, &name, coop, &objects.allocations)?,
            None => None,
        };
        status.phase = ProposalPhase::Applied;
        status.applied_at = Some(crd_lifecycle::time(now));
        status.applied_to = match &change {
            Some(c) => Some(c.target(coop.metadata.name.as_deref().unwrap_or_default())),
            None => objects
                .allocations
                .iter()
                .find(|a| a.spec.proposal.as_deref() == Some(&name))
                .map(|a| format!("Allocation/{}", a.metadata.name.as_deref().unwrap_or_default())),
        };
        let target = status.applied_to.clone();
        if self.store.apply(p, change, status).await? {
            tracing::info!(proposal = %name, applied_to = ?target, "effect applied");
        }
        Ok(())
    }

    /// Runs until `stop`: wakes at the next deadline, and at least every `poll` to see
    /// proposals made by other processes sharing the database.
    pub async fn run(self, poll: Duration, stop: CancellationToken) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "closing proposals failed; retrying");
            }
            let now = (self.clock)();
            let wait = match self.store.next_deadline().await {
                Ok(Some(at)) => {
                    let secs = (at + CLOSE_GRACE_SECONDS - now).max(0);
                    Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(poll)
                }
                _ => poll,
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait.max(Duration::from_millis(100))) => {}
            }
        }
    }
}
