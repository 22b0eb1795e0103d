//! The published record of a decided proposal, and its recount.
//!
//! After the close anyone can fetch a proposal's record
//! (`GET /v1/governance/proposals/{name}/record`, or `synco-gateway governance export`)
//! and recount it (`synco-gateway governance verify FILE`). The format, version
//! [`FORMAT`], is JSON:
//!
//! ```text
//! {
//!   "format": "synco.coop/proposal-record/v1",
//!   "record": {                 // everything the result depends on (synco_policies::lifecycle::Record)
//!     "proposal", "kind", "options", "splitPercent",
//!     "rules": {"method", "quorum", "weighting", "tieBreak": {"seeded": {"seed"}}, "window": {"opensAt", "closesAt"}},
//!     "electorate": [{"id", "class", "weightMilli", "standing"}],   // fixed when voting opened
//!     "suspendedAtClose": [member], "delegations": [{"from", "to"}],
//!     "ballots": [{"member", "castAt", "ballot": {"position" | "approvals" | "scores" | "ranking" | "points"}}]
//!   },
//!   "receipts": [{"member", "castAt", "receipt"}],  // SHA-256 of each ballot, as its member was given
//!   "outcome": {"phase", "winner", "fingerprint"}   // what was recorded at the close
//! }
//! ```
//!
//! The recount closes the record again with `synco_policies::lifecycle::recount` and
//! compares the outcome, the winner and the fingerprint, and checks every receipt.

use serde::{Deserialize, Serialize};
use synco_crds::{Proposal, ProposalPhase};
use synco_policies::Outcome;
use synco_policies::crd::proposal as crd_lifecycle;
use synco_policies::lifecycle::{self, Record, receipt};

use super::store::StoredBallot;

/// The format's name and version.
pub const FORMAT: &str = "synco.coop/proposal-record/v1";

/// One ballot's receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub member: String,
    pub cast_at: i64,
    pub receipt: String,
}

/// What was recorded at the close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedOutcome {
    pub phase: ProposalPhase,
    pub winner: Option<String>,
    pub fingerprint: Option<String>,
}

/// A decided proposal's published record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedRecord {
    pub format: String,
    pub record: Record,
    pub receipts: Vec<Receipt>,
    pub outcome: RecordedOutcome,
}

/// The record of `proposal`, decided, with its ballots: what the close read (the
/// electorate and rules fixed at the opening, the delegations and standing at the close,
/// every ballot). `None` before the close.
#[must_use]
pub fn published(proposal: &Proposal, ballots: Vec<StoredBallot>) -> Option<PublishedRecord> {
    let name = proposal.metadata.name.clone().unwrap_or_default();
    let casts: Vec<_> = ballots.into_iter().map(|b| b.cast).collect();
    let receipts = casts
        .iter()
        .map(|c| Receipt {
            member: c.member.clone(),
            cast_at: c.cast_at,
            receipt: receipt(&name, c),
        })
        .collect();
    let record = crd_lifecycle::recorded(proposal, casts)?;
    let status = proposal.status.clone().unwrap_or_default();
    Some(PublishedRecord {
        format: FORMAT.to_owned(),
        record: record.canonical(),
        receipts,
        outcome: RecordedOutcome {
            phase: status.phase,
            winner: status.winner,
            fingerprint: status.fingerprint,
        },
    })
}

/// What a recount found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub proposal: String,
    /// `Passed`, `Rejected` or `NoQuorum`, as recounted.
    pub outcome: Outcome,
    pub winner: Option<String>,
    pub fingerprint: String,
    /// Everything that differs from what was recorded, or from a receipt.
    pub problems: Vec<String>,
}

/// Recounts a published record.
///
/// # Errors
///
/// The record is not in this format or cannot be tallied at all.
pub fn verify(published: &PublishedRecord) -> anyhow::Result<Verification> {
    anyhow::ensure!(
        published.format == FORMAT,
        "not a proposal record in {FORMAT}: {}",
        published.format
    );
    let closed = lifecycle::recount(&published.record)?;
    let mut problems = Vec::new();
    let recorded = published.outcome.phase;
    let matches = matches!(
        (closed.result.outcome, recorded),
        (Outcome::Passed, ProposalPhase::Passed | ProposalPhase::Applied)
            | (Outcome::Rejected, ProposalPhase::Rejected)
            | (Outcome::NoQuorum, ProposalPhase::NoQuorum)
    );
    if !matches {
        problems.push(format!(
            "the recount gives {:?}; {recorded:?} was recorded",
            closed.result.outcome
        ));
    }
    if closed.result.winner != published.outcome.winner {
        problems.push(format!(
            "the recount's winner is {:?}; {:?} was recorded",
            closed.result.winner, published.outcome.winner
        ));
    }
    if published.outcome.fingerprint.as_deref() != Some(closed.fingerprint.as_str()) {
        problems.push(format!(
            "the recount's fingerprint is {}; {} was recorded",
            closed.fingerprint,
            published.outcome.fingerprint.as_deref().unwrap_or("none")
        ));
    }
    for r in &published.receipts {
        let ballot = published
            .record
            .ballots
            .iter()
            .find(|b| b.member == r.member && b.cast_at == r.cast_at);
        match ballot {
            Some(b) if receipt(&published.record.proposal, b) == r.receipt => {}
            Some(_) => problems.push(format!("the ballot of {} does not match its receipt", r.member)),
            None => problems.push(format!(
                "the ballot of {} with receipt {} is missing",
                r.member, r.receipt
            )),
        }
    }
    Ok(Verification {
        proposal: published.record.proposal.clone(),
        outcome: closed.result.outcome,
        winner: closed.result.winner,
        fingerprint: closed.fingerprint,
        problems,
    })
}
