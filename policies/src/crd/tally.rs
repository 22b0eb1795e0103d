//! From a Proposal, its Cooperative, the Members and the Votes to a tally, and back to
//! the Proposal's status.
//!
//! The conversion decides which Votes count, and says why each of the others does not:
//!
//! * the electorate is the Members as of the close: a Member created after the close is
//!   not in it, a suspended one or one whose class the bylaws do not list is in it but not
//!   eligible (its weight is nothing and nothing is delegated through it);
//! * a Vote counts if it was created inside the voting window (`opensAt` inclusive,
//!   `closesAt` exclusive, by the API server's `creationTimestamp`), for a Member who was
//!   eligible at the close, with a ballot that fits the method and names only the
//!   proposal's options.
//!
//! A Vote that fails any of these is left out of the tally and listed as an
//! [`IgnoredVote`], so one bad ballot never stops a decision.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use synco_crds::{
    Cooperative, IgnoredVote, Member, OptionCount, Position, Proposal, ProposalPhase, ProposalStatus, Round,
    Tally, Vote, VotingMethod,
};

use super::{decimal, ppm_percent, unix_seconds};
use crate::{
    Ballot, Choice, ConsentPosition, Counts, Delegation, Fraction, Method, ONE_VOTE_MILLI, Outcome,
    PPM_WHOLE, Share, Standing, TallyInput, TallyResult, TieBreak, Voter, VotingRules, VotingWindow,
    WeightUnit, Weighting,
};

/// The highest score when a score vote does not say.
pub const DEFAULT_MAX_SCORE: u32 = 5;
/// The points per member when a dot vote does not say.
pub const DEFAULT_POINTS_PER_MEMBER: u32 = 10;

/// Why a Vote was not counted; each [`IgnoredVote::reason`] starts with one of these.
pub mod reason {
    /// Created before the window opened or at or after it closed.
    pub const OUTSIDE_WINDOW: &str = "OutsideWindow";
    /// No Member of that name existed at the close.
    pub const UNKNOWN_MEMBER: &str = "UnknownMember";
    /// The Member was suspended or in a class the bylaws do not list.
    pub const NOT_ELIGIBLE: &str = "NotEligible";
    /// The ballot does not fit the method or names an option not on the proposal.
    pub const INVALID_BALLOT: &str = "InvalidBallot";
    /// A second Vote for the same Member (only possible outside the API server).
    pub const DUPLICATE: &str = "Duplicate";
}

/// A proposal ready to be tallied with [`crate::tally`].
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedTally {
    /// The electorate, ballots and delegations.
    pub input: TallyInput,
    /// The rules, with the voting window of the proposal.
    pub rules: VotingRules,
    /// The Votes left out, sorted by Vote name.
    pub ignored: Vec<IgnoredVote>,
}

/// The rules a proposal is decided by: its own, else the Cooperative's default for its
/// kind, else majority with no quorum.
#[must_use]
pub fn rules_for(coop: &Cooperative, proposal: &Proposal) -> synco_crds::VotingRules {
    proposal
        .spec
        .voting
        .clone()
        .or_else(|| {
            coop.spec
                .voting_defaults
                .iter()
                .find(|d| d.kind == proposal.spec.kind)
                .map(|d| d.rules.clone())
        })
        .unwrap_or(synco_crds::VotingRules {
            method: VotingMethod::Majority,
            quorum_percent: None,
            threshold: None,
            voting_period_hours: None,
            max_score: None,
            points_per_member: None,
        })
}

/// The counting rules for `rules` under the Cooperative's weighting, with `window`.
///
/// Classes hold fixed shares of voting power when every class sets
/// `votingPowerPercent`; otherwise each member counts its own `votingWeight`. Ties
/// between options go to the option listed first; a yes/no tie keeps the status quo.
#[must_use]
pub fn voting_rules(
    coop: &Cooperative,
    rules: &synco_crds::VotingRules,
    window: Option<VotingWindow>,
) -> VotingRules {
    let fraction = |f: synco_crds::Fraction| Fraction::new(u64::from(f.numerator), u64::from(f.denominator));
    let method = match rules.method {
        VotingMethod::Majority => match rules.threshold {
            // A majority with an explicit threshold is a supermajority in all but name.
            Some(t) => Method::Supermajority {
                threshold: fraction(t),
            },
            None => Method::Majority,
        },
        VotingMethod::Supermajority => Method::Supermajority {
            threshold: rules.threshold.map_or(Fraction::TWO_THIRDS, fraction),
        },
        VotingMethod::Consent => Method::Consent { blocks_allowed: 0 },
        VotingMethod::Approval => Method::Approval,
        VotingMethod::Score => Method::Score {
            min: 0,
            max: i64::from(rules.max_score.unwrap_or(DEFAULT_MAX_SCORE)),
        },
        VotingMethod::RankedChoice => Method::InstantRunoff,
        VotingMethod::DotVoting => Method::Dot {
            points_per_member: u64::from(rules.points_per_member.unwrap_or(DEFAULT_POINTS_PER_MEMBER)),
        },
    };
    let classes = &coop.spec.member_classes;
    let weighting = if !classes.is_empty() && classes.iter().all(|c| c.voting_power_percent.is_some()) {
        Weighting::ClassShares(
            classes
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        Share::percent(c.voting_power_percent.unwrap_or(0)),
                    )
                })
                .collect(),
        )
    } else {
        Weighting::PerMember
    };
    VotingRules {
        method,
        quorum: Share::percent(rules.quorum_percent.unwrap_or(0)),
        weighting,
        tie_break: TieBreak::FirstListed,
        window,
    }
}

/// Gathers what [`crate::tally`] needs for `proposal`. `votes` may hold Votes of other
/// proposals; only this proposal's are looked at.
#[must_use]
pub fn prepare(coop: &Cooperative, members: &[Member], proposal: &Proposal, votes: &[Vote]) -> PreparedTally {
    let opens_at = unix_seconds(&proposal.spec.opens_at);
    let closes_at = unix_seconds(&proposal.spec.closes_at);
    let window = VotingWindow::new(opens_at, closes_at);
    let rules = voting_rules(coop, &rules_for(coop, proposal), Some(window));
    let known_classes: BTreeSet<&str> = coop.spec.member_classes.iter().map(|c| c.name.as_str()).collect();

    // The electorate as of the close, in name order so that the input is canonical.
    let mut sorted: Vec<&Member> = members
        .iter()
        .filter(|m| {
            m.metadata
                .creation_timestamp
                .as_ref()
                .is_none_or(|t| unix_seconds(t) < closes_at)
        })
        .collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    sorted.dedup_by(|a, b| a.metadata.name == b.metadata.name);
    let mut electorate = Vec::with_capacity(sorted.len());
    let mut delegations = Vec::new();
    let mut why_ineligible: HashMap<&str, String> = HashMap::new();
    for m in sorted {
        let Some(name) = m.metadata.name.as_deref() else {
            continue;
        };
        let mut standing = Standing::Active;
        if m.spec.standing == synco_crds::resources::member::Standing::Suspended {
            standing = Standing::Suspended;
            why_ineligible.insert(name, format!("member {name} is suspended"));
        } else if !known_classes.contains(m.spec.class.as_str()) {
            standing = Standing::Suspended;
            why_ineligible.insert(
                name,
                format!(
                    "member {name} is in class {:?}, which the bylaws do not list",
                    m.spec.class
                ),
            );
        }
        electorate.push(Voter {
            id: name.to_owned(),
            class: m.spec.class.clone(),
            weight_milli: i64::from(m.spec.voting_weight) * ONE_VOTE_MILLI,
            standing,
        });
        if let Some(to) = &m.spec.delegate_to {
            delegations.push(Delegation::new(name, to.clone()));
        }
    }
    let in_electorate: BTreeSet<&str> = electorate.iter().map(|v| v.id.as_str()).collect();

    let proposal_name = proposal.metadata.name.as_deref().unwrap_or_default();
    let mut mine: Vec<&Vote> = votes
        .iter()
        .filter(|v| v.spec.proposal == proposal_name)
        .collect();
    mine.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut ballots = Vec::with_capacity(mine.len());
    let mut ignored = Vec::new();
    let mut voted = BTreeSet::new();
    for v in mine {
        let member = v.spec.member.as_str();
        let ignore = |code: &str, why: String| IgnoredVote {
            vote: v.metadata.name.clone().unwrap_or_default(),
            member: member.to_owned(),
            reason: format!("{code}: {why}"),
        };
        if !in_electorate.contains(member) {
            ignored.push(ignore(
                reason::UNKNOWN_MEMBER,
                format!("no member {member} at the close"),
            ));
            continue;
        }
        if let Some(why) = why_ineligible.get(member) {
            ignored.push(ignore(reason::NOT_ELIGIBLE, why.clone()));
            continue;
        }
        let Some(cast_at) = v.metadata.creation_timestamp.as_ref() else {
            ignored.push(ignore(
                reason::OUTSIDE_WINDOW,
                "the vote has no creation time".to_owned(),
            ));
            continue;
        };
        let cast_at_s = unix_seconds(cast_at);
        if !window.contains(cast_at_s) {
            let when = if cast_at_s < opens_at {
                "before it opened"
            } else {
                "after it closed"
            };
            ignored.push(ignore(
                reason::OUTSIDE_WINDOW,
                format!(
                    "cast at {}, {when} (open from {} until {})",
                    cast_at.0, proposal.spec.opens_at.0, proposal.spec.closes_at.0
                ),
            ));
            continue;
        }
        if voted.contains(member) {
            ignored.push(ignore(
                reason::DUPLICATE,
                format!("member {member} already voted"),
            ));
            continue;
        }
        match choice(v, &rules.method, &proposal.spec.options) {
            Ok(choice) => {
                voted.insert(member);
                ballots.push(Ballot {
                    member: member.to_owned(),
                    cast_at: cast_at_s,
                    choice,
                });
            }
            Err(why) => ignored.push(ignore(reason::INVALID_BALLOT, why)),
        }
    }
    PreparedTally {
        input: TallyInput {
            options: proposal.spec.options.clone(),
            electorate,
            ballots,
            delegations,
        },
        rules,
        ignored,
    }
}

/// The ballot of one Vote under `method`, or why it does not fit.
fn choice(vote: &Vote, method: &Method, options: &[String]) -> Result<Choice, String> {
    let spec = &vote.spec;
    let listed = |o: &String| {
        if options.contains(o) {
            Ok(())
        } else {
            Err(format!("{o:?} is not one of the proposal's options"))
        }
    };
    let each_once = |list: &[String]| -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for o in list {
            listed(o)?;
            if !seen.insert(o) {
                return Err(format!("{o:?} is named twice"));
            }
        }
        Ok(())
    };
    let wrong = |given: &str| Err(format!("a {given} ballot does not fit a {} vote", method.name()));
    if let Some(p) = spec.position {
        return match (p, method) {
            (Position::Abstain, _) => Ok(Choice::Abstain),
            (Position::Yes, Method::Majority | Method::Supermajority { .. }) => Ok(Choice::Yes),
            (Position::No, Method::Majority | Method::Supermajority { .. }) => Ok(Choice::No),
            (Position::Yes, Method::Consent { .. }) => Ok(Choice::Consent(ConsentPosition::Agree)),
            (Position::No, Method::Consent { .. }) => Ok(Choice::Consent(ConsentPosition::Disagree)),
            (Position::Block, Method::Consent { .. }) => Ok(Choice::Consent(ConsentPosition::Block)),
            (Position::StandAside, Method::Consent { .. }) => {
                Ok(Choice::Consent(ConsentPosition::StandAside))
            }
            (p, _) => wrong(&format!("{p:?} position")),
        };
    }
    if let Some(approvals) = &spec.approvals {
        if !matches!(method, Method::Approval) {
            return wrong("approval");
        }
        each_once(approvals)?;
        return Ok(Choice::Approve(approvals.clone()));
    }
    if let Some(ranking) = &spec.ranking {
        if !matches!(method, Method::InstantRunoff) {
            return wrong("ranking");
        }
        each_once(ranking)?;
        return Ok(Choice::Rank(ranking.clone()));
    }
    if let Some(scores) = &spec.scores {
        let Method::Score { max, .. } = method else {
            return wrong("score");
        };
        let mut out = BTreeMap::new();
        for (o, s) in scores {
            listed(o)?;
            let s = i64::from(*s);
            if s > *max {
                return Err(format!("score {s} for {o:?} is above the highest score, {max}"));
            }
            out.insert(o.clone(), s);
        }
        return Ok(Choice::Score(out));
    }
    if let Some(points) = &spec.points {
        let Method::Dot { points_per_member } = method else {
            return wrong("points");
        };
        let mut out = BTreeMap::new();
        let mut total = 0u64;
        for (o, p) in points {
            listed(o)?;
            total += u64::from(*p);
            out.insert(o.clone(), i64::from(*p));
        }
        if total > *points_per_member {
            return Err(format!(
                "{total} points given, more than the {points_per_member} each member has"
            ));
        }
        return Ok(Choice::Dots(out));
    }
    Err("the ballot is empty".to_owned())
}

/// The status fields a tally decides: phase, tally, weights, turnout, rule, winner,
/// counted and ignored votes, and `decidedAt = now`. Conditions and the effect are the
/// caller's to add.
#[must_use]
pub fn proposal_outcome(result: &TallyResult, prepared: &PreparedTally, now: Time) -> ProposalStatus {
    let unit = result.audit.unit;
    let w = |x: u128| weight(x, unit);
    let mut ignored = prepared.ignored.clone();
    for s in &result.audit.set_aside {
        ignored.push(IgnoredVote {
            vote: String::new(),
            member: s.member.clone(),
            reason: format!("{}: {:?}", reason::NOT_ELIGIBLE, s.reason),
        });
    }
    let turnout = &result.audit.turnout;
    ProposalStatus {
        phase: match result.outcome {
            Outcome::Passed => ProposalPhase::Passed,
            Outcome::Rejected => ProposalPhase::Rejected,
            Outcome::NoQuorum => ProposalPhase::NoQuorum,
        },
        tally: Some(tally_counts(&result.counts, unit)),
        eligible_weight: Some(w(result.audit.eligible_weight)),
        cast_weight: Some(w(turnout.total_weight)),
        delegated_weight: Some(w(turnout.delegated_weight)),
        turnout_percent: Some(ppm_percent(turnout.share.ppm())),
        rule: Some(rule_text(result)),
        winner: result.winner.clone(),
        counted_votes: Some(u32::try_from(turnout.ballots).unwrap_or(u32::MAX)),
        ignored_votes: ignored,
        decided_at: Some(now),
        ..ProposalStatus::default()
    }
}

/// The rule in words: the method's rule, quorum, tie-break, and every tie settled.
fn rule_text(result: &TallyResult) -> String {
    let audit = &result.audit;
    let mut text = format!(
        "{}; quorum {} of eligible weight ({}); {}",
        result.rule,
        audit.quorum,
        if audit.quorum_met { "met" } else { "not met" },
        result.tie_break_rule
    );
    if let WeightUnit::ClassScaled { .. } = audit.unit {
        text.push_str("; classes hold fixed shares of voting power, so weights are percentages of it");
    }
    for t in &result.ties {
        text.push_str(&format!("; tie between {}: {}", t.tied.join(", "), t.resolution));
    }
    if !audit.delegation.cycles.is_empty() {
        text.push_str(&format!(
            "; delegation cycles ignored for {}",
            audit.delegation.cycles.join(", ")
        ));
    }
    text
}

/// A weight as an exact decimal: votes for milli-votes, percent of all voting power for
/// class shares (to four decimals, rounded down).
fn weight(w: u128, unit: WeightUnit) -> String {
    match unit {
        WeightUnit::MilliVotes => decimal(w, 3),
        WeightUnit::ClassScaled { per_whole } if per_whole > 0 => {
            let ppm = w.saturating_mul(u128::from(PPM_WHOLE)) / per_whole;
            format!("{}%", decimal(ppm, 4))
        }
        WeightUnit::ClassScaled { .. } => "0".to_owned(),
    }
}

fn tally_counts(counts: &Counts, unit: WeightUnit) -> Tally {
    let w = |x: u128| Some(weight(x, unit));
    let option = |option: &str, count: u128| OptionCount {
        option: option.to_owned(),
        count: weight(count, unit),
        share_percent: None,
    };
    match counts {
        Counts::YesNo { yes, no, abstain } => Tally {
            yes: w(*yes),
            no: w(*no),
            abstain: w(*abstain),
            ..Tally::default()
        },
        Counts::Consent {
            agree,
            stand_aside,
            disagree,
            block,
            abstain,
            ..
        } => Tally {
            yes: w(*agree),
            no: w(*disagree),
            abstain: w(*abstain),
            block: w(*block),
            stand_aside: w(*stand_aside),
            ..Tally::default()
        },
        Counts::Totals { per_option, abstain } => Tally {
            abstain: w(*abstain),
            options: per_option.iter().map(|o| option(&o.option, o.weight)).collect(),
            ..Tally::default()
        },
        Counts::Rounds { rounds, abstain } => Tally {
            abstain: w(*abstain),
            options: rounds
                .last()
                .map(|r| r.counts.iter().map(|o| option(&o.option, o.weight)).collect())
                .unwrap_or_default(),
            rounds: rounds
                .iter()
                .map(|r| Round {
                    counts: r.counts.iter().map(|o| option(&o.option, o.weight)).collect(),
                    eliminated: r.eliminated.clone(),
                })
                .collect(),
            ..Tally::default()
        },
        Counts::Split { per_option, abstain } => Tally {
            abstain: w(*abstain),
            options: per_option
                .iter()
                .map(|o| OptionCount {
                    option: o.option.clone(),
                    count: weight(o.points, unit),
                    share_percent: Some(ppm_percent(o.share.ppm())),
                })
                .collect(),
            ..Tally::default()
        },
    }
}

#[cfg(test)]
#[path = "tally_tests.rs"]
mod tests;
