//! Closing a proposal: from the recorded ballots to the outcome, the effect to apply and
//! a fingerprint anyone can reproduce.
//!
//! A [`Record`] holds everything a result depends on: the proposal's options, its rules
//! (method, quorum, weighting, window and tie-break seed), the electorate fixed when it
//! opened, who was suspended at the close, the standing delegations at the close, and
//! every ballot recorded (late ones included). [`close`] decides from it alone, so
//! [`recount`] of a published record gives the same outcome and the same fingerprint.
//!
//! Which ballots count, in this order (the first reason found is the one recorded):
//!
//! 1. the member must be in the electorate fixed when voting opened (`NotInElectorate`);
//! 2. the ballot must be cast inside the window, `opensAt` inclusive, `closesAt`
//!    exclusive (`Early`, `Late`);
//! 3. one ballot per member: the first cast counts (`Duplicate`);
//! 4. the ballot must fit the method and name only the proposal's options (`Invalid`);
//! 5. the member must be in good standing both when voting opened and at the close
//!    (`Suspended`).
//!
//! The fingerprint is the SHA-256 of the record in canonical form: the JSON of
//! [`Record`] with the electorate sorted by member, the ballots by member and time, the
//! delegations by member and the suspended members by name. Ballots cast at or after the
//! close are left out of it: they never count, and one that arrives after the result was
//! published (a late Vote made with kubectl, say) does not change the fingerprint.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{BallotForm, Kind};
use crate::arith::apportion;
use crate::voting::{
    Ballot, Counts, Delegation, Method, Outcome, SetAsideReason, TallyError, TallyInput, TallyResult,
    VotingRules, tally,
};
use crate::weights::{Standing, Voter};
use crate::window::VotingWindow;

/// One recorded ballot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CastBallot {
    /// The member it was cast for.
    pub member: String,
    /// When it was recorded, Unix seconds.
    pub cast_at: i64,
    /// What the member filled in.
    pub ballot: BallotForm,
}

/// Everything a proposal's result depends on (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The proposal's name.
    pub proposal: String,
    /// Its kind.
    pub kind: Kind,
    /// Its options, in order (empty for yes/no questions).
    #[serde(default)]
    pub options: Vec<String>,
    /// A dot-voted allocation: the share split between the options, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_percent: Option<u32>,
    /// The rules fixed when it opened: method, quorum, weighting, window, tie-break seed.
    pub rules: VotingRules,
    /// The electorate fixed when it opened.
    pub electorate: Vec<Voter>,
    /// Members of the electorate suspended at the close.
    #[serde(default)]
    pub suspended_at_close: Vec<String>,
    /// Standing delegations at the close.
    #[serde(default)]
    pub delegations: Vec<Delegation>,
    /// Every ballot recorded.
    #[serde(default)]
    pub ballots: Vec<CastBallot>,
}

impl Record {
    /// The same record in canonical order.
    #[must_use]
    pub fn canonical(&self) -> Record {
        let mut r = self.clone();
        r.electorate.sort_by(|a, b| a.id.cmp(&b.id));
        r.ballots
            .sort_by(|a, b| (a.member.as_str(), a.cast_at).cmp(&(b.member.as_str(), b.cast_at)));
        r.delegations
            .sort_by(|a, b| (a.from.as_str(), a.to.as_str()).cmp(&(b.from.as_str(), b.to.as_str())));
        r.suspended_at_close.sort();
        r.suspended_at_close.dedup();
        r
    }
}

/// Why a ballot was not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetAsideWhy {
    /// Not a member when voting opened.
    NotInElectorate,
    /// Cast before voting opened.
    Early,
    /// Cast at or after the close.
    Late,
    /// A second ballot of the same member.
    Duplicate,
    /// Does not fit the method, or names an option not on the proposal.
    Invalid,
    /// The member was suspended when voting opened or at the close.
    Suspended,
}

/// A ballot that was not counted, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetAsideBallot {
    /// Its member.
    pub member: String,
    /// When it was cast.
    pub cast_at: i64,
    /// Why it was set aside.
    pub why: SetAsideWhy,
    /// The reason in words.
    pub detail: String,
}

/// One option's part of a dot-voted split, in whole percent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitPart {
    /// The option.
    pub option: String,
    /// Its part of the capacity, in percent (the parts add up to the split exactly).
    pub share_percent: u32,
}

/// What the close decided should change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DecidedEffect {
    /// Nothing: rejected, no quorum, a tie (the status quo stays) or a free-text question.
    Nothing,
    /// The proposal's own effect (a yes/no or consent question that passed).
    Proposal,
    /// The winning option's effect.
    Option {
        /// The winner.
        option: String,
    },
    /// A dot-voted allocation: each option's floor gets its part of the split.
    Split {
        /// The parts, in option order.
        parts: Vec<SplitPart>,
    },
}

/// The result of a close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Closed {
    /// The tally, with its audit.
    pub result: TallyResult,
    /// Ballots not counted, by member.
    pub set_aside: Vec<SetAsideBallot>,
    /// What changes.
    pub effect: DecidedEffect,
    /// The SHA-256 of the canonical record, in hex.
    pub fingerprint: String,
}

/// Decides a proposal from its record.
///
/// # Errors
///
/// A [`TallyError`] when the record itself is inconsistent (no window, rules that do not
/// validate, an electorate listing a member twice). Bad ballots are never an error: they
/// are set aside with the reason.
pub fn close(record: &Record) -> Result<Closed, TallyError> {
    let record = record.canonical();
    let window = record.rules.window.ok_or(TallyError::InvalidWindow {
        opens_at: 0,
        closes_at: 0,
    })?;
    let suspended: BTreeSet<&str> = record.suspended_at_close.iter().map(String::as_str).collect();
    let electorate: Vec<Voter> = record
        .electorate
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if suspended.contains(v.id.as_str()) {
                v.standing = Standing::Suspended;
            }
            v
        })
        .collect();
    let in_electorate: BTreeSet<&str> = electorate.iter().map(|v| v.id.as_str()).collect();
    let suspended_at_open: BTreeSet<&str> = record
        .electorate
        .iter()
        .filter(|v| v.standing != Standing::Active)
        .map(|v| v.id.as_str())
        .collect();

    let mut set_aside = Vec::new();
    let mut counted = Vec::with_capacity(record.ballots.len());
    let mut voted: BTreeSet<&str> = BTreeSet::new();
    for b in &record.ballots {
        let aside = |why: SetAsideWhy, detail: String| SetAsideBallot {
            member: b.member.clone(),
            cast_at: b.cast_at,
            why,
            detail,
        };
        if !in_electorate.contains(b.member.as_str()) {
            set_aside.push(aside(
                SetAsideWhy::NotInElectorate,
                format!("{} was not a member when voting opened", b.member),
            ));
            continue;
        }
        if !window.contains(b.cast_at) {
            let (why, when) = if b.cast_at < window.opens_at {
                (SetAsideWhy::Early, "before voting opened")
            } else {
                (SetAsideWhy::Late, "after voting closed")
            };
            set_aside.push(aside(
                why,
                format!(
                    "cast at {}, {when} (open from {} until {})",
                    b.cast_at, window.opens_at, window.closes_at
                ),
            ));
            continue;
        }
        if voted.contains(b.member.as_str()) {
            set_aside.push(aside(
                SetAsideWhy::Duplicate,
                format!("{} had already voted; the first ballot counts", b.member),
            ));
            continue;
        }
        match b.ballot.choice(&record.rules.method, &record.options) {
            Ok(choice) => {
                voted.insert(b.member.as_str());
                counted.push(Ballot {
                    member: b.member.clone(),
                    cast_at: b.cast_at,
                    choice,
                });
            }
            Err(why) => set_aside.push(aside(SetAsideWhy::Invalid, why)),
        }
    }
    let known: BTreeSet<&str> = in_electorate.clone();
    let delegations: Vec<Delegation> = record
        .delegations
        .iter()
        .filter(|d| known.contains(d.from.as_str()))
        .cloned()
        .collect();
    let input = TallyInput {
        options: record.options.clone(),
        electorate,
        ballots: counted,
        delegations,
    };
    let result = tally(&input, &record.rules)?;
    for s in &result.audit.set_aside {
        let SetAsideReason::Suspended = s.reason;
        let cast_at = input
            .ballots
            .iter()
            .find(|b| b.member == s.member)
            .map_or(0, |b| b.cast_at);
        let when = if suspended_at_open.contains(s.member.as_str()) {
            "when voting opened"
        } else {
            "at the close"
        };
        set_aside.push(SetAsideBallot {
            member: s.member.clone(),
            cast_at,
            why: SetAsideWhy::Suspended,
            detail: format!("{} was suspended {when}", s.member),
        });
    }
    set_aside.sort_by(|a, b| (a.member.as_str(), a.cast_at).cmp(&(b.member.as_str(), b.cast_at)));
    let effect = decide_effect(&record, &result)?;
    Ok(Closed {
        fingerprint: fingerprint(&record),
        result,
        set_aside,
        effect,
    })
}

/// Recounts a published record: the same as [`close`], named for what a checker does.
///
/// # Errors
///
/// As [`close`].
pub fn recount(record: &Record) -> Result<Closed, TallyError> {
    close(record)
}

fn decide_effect(record: &Record, result: &TallyResult) -> Result<DecidedEffect, TallyError> {
    if result.outcome != Outcome::Passed {
        return Ok(DecidedEffect::Nothing);
    }
    Ok(match &record.rules.method {
        Method::Majority | Method::Supermajority { .. } | Method::Consent { .. } => {
            if record.kind == Kind::FreeText {
                DecidedEffect::Nothing
            } else {
                DecidedEffect::Proposal
            }
        }
        Method::Approval | Method::Score { .. } | Method::InstantRunoff | Method::Schulze => {
            match &result.winner {
                Some(option) => DecidedEffect::Option {
                    option: option.clone(),
                },
                None => DecidedEffect::Nothing,
            }
        }
        Method::Dot { .. } => {
            let (Some(split), Counts::Split { per_option, .. }) = (record.split_percent, &result.counts)
            else {
                return Ok(DecidedEffect::Nothing);
            };
            let points: Vec<u128> = per_option.iter().map(|o| o.points).collect();
            let priority = record.rules.tie_break.priority(&record.options);
            let parts = apportion(u128::from(split), &points, &priority).ok_or(TallyError::WeightOverflow)?;
            DecidedEffect::Split {
                parts: per_option
                    .iter()
                    .zip(parts)
                    .map(|(o, p)| SplitPart {
                        option: o.option.clone(),
                        // A part of a u32 total fits in a u32.
                        share_percent: u32::try_from(p).unwrap_or(split),
                    })
                    .collect(),
            }
        }
    })
}

/// The SHA-256 of `record` in canonical form, in lower-case hex.
#[must_use]
pub fn fingerprint(record: &Record) -> String {
    let mut canonical = record.canonical();
    if let Some(w) = canonical.rules.window {
        canonical.ballots.retain(|b| b.cast_at < w.closes_at);
    }
    sha256_json(&canonical)
}

/// A ballot's receipt: the SHA-256, in hex, of the canonical JSON of the proposal's
/// name, the member, the time it was recorded and the ballot. The member keeps it and
/// finds it again beside its ballot in the published record.
#[must_use]
pub fn receipt(proposal: &str, ballot: &CastBallot) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Receipted<'a> {
        proposal: &'a str,
        member: &'a str,
        cast_at: i64,
        ballot: &'a BallotForm,
    }
    sha256_json(&Receipted {
        proposal,
        member: &ballot.member,
        cast_at: ballot.cast_at,
        ballot: &ballot.ballot,
    })
}

fn sha256_json<T: Serialize>(value: &T) -> String {
    // Serialising plain structs, vectors, strings and integers cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The window of a record, for callers that show it.
#[must_use]
pub fn window(record: &Record) -> Option<VotingWindow> {
    record.rules.window
}
