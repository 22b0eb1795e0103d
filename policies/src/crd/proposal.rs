//! A Proposal's life in terms of the custom resources: opening it (the status fields the
//! bylaws fix), reading its recorded ballots into a [`Record`], writing a close into its
//! status, and turning the decided effect into the change to apply.
//!
//! The operator (Proposals and Votes in the API server) and the gateway's database
//! (the same objects as rows) both go through these functions.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use synco_crds::{
    AllocationPlan, Cooperative, DelegationUsed, Elector, Floor, IgnoredVote, Member, OptionCount, Proposal,
    ProposalEffect, ProposalKind, ProposalPhase, ProposalSpec, ProposalStatus, Round, Tally, TieRecord,
    VoteSpec, VotingMethod,
};

use super::{decimal, ppm_percent};
use crate::lifecycle::{
    self, BallotForm, CastBallot, Closed, DecidedEffect, DurationError, Kind, KindRules, OpenError, Opened,
    OptionShape, ProposalShape, Record, SetAsideWhy,
};
use crate::{
    Counts, Delegation, Fraction, Method, ONE_VOTE_MILLI, Outcome, PPM_WHOLE, Share, Standing, TallyResult,
    TieBreak, Voter, VotingRules, VotingWindow, WeightUnit, Weighting,
};

/// The highest score when the bylaws do not say.
pub const DEFAULT_MAX_SCORE: u32 = 5;
/// The points per member when the bylaws do not say.
pub const DEFAULT_POINTS_PER_MEMBER: u32 = 10;
/// The voting period when the bylaws do not say: seven days.
pub const DEFAULT_VOTING_PERIOD: &str = "7d";

/// The plain kind of a Proposal.
#[must_use]
pub fn kind(kind: ProposalKind) -> Kind {
    match kind {
        ProposalKind::Allocation => Kind::Allocation,
        ProposalKind::Bylaw => Kind::Bylaw,
        ProposalKind::SurplusPrice => Kind::SurplusPrice,
        ProposalKind::ModelAdoption => Kind::ModelAdoption,
        ProposalKind::MemberAdmission => Kind::MemberAdmission,
        ProposalKind::FreeText => Kind::FreeText,
        ProposalKind::PatronageDistribution => Kind::PatronageDistribution,
    }
}

/// The bylaws' rules for `kind`: the Cooperative's default for the kind, else majority
/// with no quorum and a seven-day window.
#[must_use]
pub fn bylaw_rules(coop: &Cooperative, kind: ProposalKind) -> synco_crds::VotingRules {
    coop.spec
        .voting_defaults
        .iter()
        .find(|d| d.kind == kind)
        .map(|d| d.rules.clone())
        .unwrap_or(synco_crds::VotingRules {
            method: VotingMethod::Majority,
            quorum_percent: None,
            threshold: None,
            voting_period: None,
            max_score: None,
            points_per_member: None,
        })
}

/// The counting method of `rules`.
#[must_use]
pub fn method(rules: &synco_crds::VotingRules) -> Method {
    let fraction = |f: synco_crds::Fraction| Fraction::new(u64::from(f.numerator), u64::from(f.denominator));
    match rules.method {
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
        VotingMethod::Schulze => Method::Schulze,
        VotingMethod::DotVoting => Method::Dot {
            points_per_member: u64::from(rules.points_per_member.unwrap_or(DEFAULT_POINTS_PER_MEMBER)),
        },
    }
}

/// The classes' fixed shares of voting power, when every class sets one.
#[must_use]
pub fn class_voting_power(coop: &Cooperative) -> std::collections::BTreeMap<String, u32> {
    let classes = &coop.spec.member_classes;
    if !classes.is_empty() && classes.iter().all(|c| c.voting_power_percent.is_some()) {
        classes
            .iter()
            .map(|c| (c.name.clone(), c.voting_power_percent.unwrap_or(0)))
            .collect()
    } else {
        std::collections::BTreeMap::new()
    }
}

fn weighting(class_power: &std::collections::BTreeMap<String, u32>) -> Weighting {
    if class_power.is_empty() {
        Weighting::PerMember
    } else {
        Weighting::ClassShares(
            class_power
                .iter()
                .map(|(c, p)| (c.clone(), Share::percent(*p)))
                .collect(),
        )
    }
}

/// The plain rules of `rules` under `class_power`, with no window and the first-listed
/// tie-break (both are set when a proposal opens).
#[must_use]
pub fn plain_rules(
    rules: &synco_crds::VotingRules,
    class_power: &std::collections::BTreeMap<String, u32>,
) -> VotingRules {
    VotingRules {
        method: method(rules),
        quorum: Share::percent(rules.quorum_percent.unwrap_or(0)),
        weighting: weighting(class_power),
        tie_break: TieBreak::FirstListed,
        window: None,
    }
}

/// What the bylaws say for proposals of `kind`.
///
/// # Errors
///
/// The bylaws' voting period cannot be read.
pub fn kind_rules(coop: &Cooperative, kind: ProposalKind) -> Result<KindRules, DurationError> {
    let rules = bylaw_rules(coop, kind);
    let period = rules.voting_period.as_deref().unwrap_or(DEFAULT_VOTING_PERIOD);
    Ok(KindRules {
        rules: plain_rules(&rules, &class_voting_power(coop)),
        period_seconds: lifecycle::parse_duration(period)?,
    })
}

/// What opening checks of a proposal.
#[must_use]
pub fn shape(spec: &ProposalSpec) -> ProposalShape {
    ProposalShape {
        kind: kind(spec.kind),
        options: spec
            .options
            .iter()
            .map(|o| OptionShape {
                name: o.name.clone(),
                has_effect: o.effect.is_some(),
                has_floor: o.floor.is_some(),
            })
            .collect(),
        has_effect: spec.effect.is_some(),
        split_percent: spec.split.map(|s| s.share_percent),
        base_floor_percent: spec
            .effect
            .as_ref()
            .and_then(|e| e.allocation.as_ref())
            .map_or(0, |a| a.floors.iter().map(|f| f.share_percent).sum()),
    }
}

/// The members as voters: class and weight, and active only when in good standing in a
/// class the bylaws list.
#[must_use]
pub fn electorate(coop: &Cooperative, members: &[Member]) -> Vec<Voter> {
    let classes: BTreeSet<&str> = coop.spec.member_classes.iter().map(|c| c.name.as_str()).collect();
    let mut out: Vec<Voter> = members
        .iter()
        .filter_map(|m| {
            let active =
                m.spec.standing == synco_crds::Standing::Active && classes.contains(m.spec.class.as_str());
            Some(Voter {
                id: m.metadata.name.clone()?,
                class: m.spec.class.clone(),
                weight_milli: i64::from(m.spec.voting_weight) * ONE_VOTE_MILLI,
                standing: if active {
                    Standing::Active
                } else {
                    Standing::Suspended
                },
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

/// Why a proposal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenFailure {
    /// The bylaws' voting period cannot be read.
    #[error(transparent)]
    Period(#[from] DurationError),
    /// The proposal does not fit the bylaws, or its proposer may not propose.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Opens `proposal` at `now` (Unix seconds) with the tie-break `seed`: the status of an
/// open proposal (phase, rules, window, seed, electorate).
///
/// # Errors
///
/// [`OpenFailure`] when the proposal cannot be opened.
pub fn open(
    coop: &Cooperative,
    members: &[Member],
    spec: &ProposalSpec,
    now: i64,
    seed: u64,
) -> Result<ProposalStatus, OpenFailure> {
    let bylaws = kind_rules(coop, spec.kind)?;
    let voters = electorate(coop, members);
    let opened = lifecycle::open(&shape(spec), &spec.proposer, &voters, &bylaws, now, seed)?;
    let window = opened.window();
    Ok(ProposalStatus {
        phase: ProposalPhase::Open,
        rules: Some(bylaw_rules(coop, spec.kind)),
        opens_at: Some(time(window.opens_at)),
        closes_at: Some(time(window.closes_at)),
        tie_break_seed: Some(seed.to_string()),
        electorate: opened
            .electorate
            .iter()
            .map(|v| Elector {
                member: v.id.clone(),
                class: v.class.clone(),
                voting_weight: u32::try_from(v.weight_milli / ONE_VOTE_MILLI).unwrap_or(0),
                active: v.standing == Standing::Active,
            })
            .collect(),
        class_voting_power: class_voting_power(coop),
        ..ProposalStatus::default()
    })
}

/// A Kubernetes time from Unix seconds (the epoch when out of range).
#[must_use]
pub fn time(seconds: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default())
}

/// The opened proposal as its status records it, or `None` before it opened.
#[must_use]
pub fn opened(status: &ProposalStatus) -> Option<Opened> {
    let rules = status.rules.as_ref()?;
    let window = VotingWindow::new(
        status.opens_at.as_ref()?.0.as_second(),
        status.closes_at.as_ref()?.0.as_second(),
    );
    let seed = status.tie_break_seed.as_deref()?.parse().ok()?;
    let mut plain = plain_rules(rules, &status.class_voting_power);
    plain.window = Some(window);
    plain.tie_break = TieBreak::Seeded { seed };
    Some(Opened {
        rules: plain,
        electorate: status
            .electorate
            .iter()
            .map(|e| Voter {
                id: e.member.clone(),
                class: e.class.clone(),
                weight_milli: i64::from(e.voting_weight) * ONE_VOTE_MILLI,
                standing: if e.active {
                    Standing::Active
                } else {
                    Standing::Suspended
                },
            })
            .collect(),
    })
}

/// The option names of a proposal, in order.
#[must_use]
pub fn option_names(spec: &ProposalSpec) -> Vec<String> {
    spec.options.iter().map(|o| o.name.clone()).collect()
}

/// The plain ballot of a Vote.
#[must_use]
pub fn form(spec: &VoteSpec) -> BallotForm {
    BallotForm {
        position: spec.position.map(position),
        approvals: spec.approvals.clone(),
        scores: spec.scores.clone(),
        ranking: spec.ranking.clone(),
        points: spec.points.clone(),
    }
}

/// The plain position of a Vote's position.
#[must_use]
pub fn position(p: synco_crds::Position) -> lifecycle::Position {
    match p {
        synco_crds::Position::Yes => lifecycle::Position::Yes,
        synco_crds::Position::No => lifecycle::Position::No,
        synco_crds::Position::Abstain => lifecycle::Position::Abstain,
        synco_crds::Position::Block => lifecycle::Position::Block,
        synco_crds::Position::StandAside => lifecycle::Position::StandAside,
    }
}

/// Everything the close of `proposal` depends on: its ballots (any order), the standing
/// `delegations` now, and the `members` now (a member of the electorate who is suspended
/// now, or gone, is not in good standing at the close). `None` before it opened.
#[must_use]
pub fn record(
    proposal: &Proposal,
    ballots: Vec<CastBallot>,
    delegations: &[synco_crds::Delegation],
    members: &[Member],
) -> Option<Record> {
    let status = proposal.status.as_ref()?;
    let opened = opened(status)?;
    let active_now: BTreeSet<&str> = members
        .iter()
        .filter(|m| m.spec.standing == synco_crds::Standing::Active)
        .filter_map(|m| m.metadata.name.as_deref())
        .collect();
    let suspended_at_close = opened
        .electorate
        .iter()
        .filter(|v| !active_now.contains(v.id.as_str()))
        .map(|v| v.id.clone())
        .collect();
    Some(Record {
        proposal: proposal.metadata.name.clone().unwrap_or_default(),
        kind: kind(proposal.spec.kind),
        options: option_names(&proposal.spec),
        split_percent: proposal.spec.split.map(|s| s.share_percent),
        rules: opened.rules,
        electorate: opened.electorate,
        suspended_at_close,
        delegations: delegations
            .iter()
            .map(|d| Delegation::new(d.spec.member.clone(), d.spec.delegate.clone()))
            .collect(),
        ballots,
    })
}

/// The record of a decided proposal, as its status kept it at the close (delegations and
/// standing then), with its `ballots`: what a recount starts from. `None` before the
/// close.
#[must_use]
pub fn recorded(proposal: &Proposal, ballots: Vec<CastBallot>) -> Option<Record> {
    let status = proposal.status.as_ref()?;
    status.fingerprint.as_ref()?;
    let opened = opened(status)?;
    Some(Record {
        proposal: proposal.metadata.name.clone().unwrap_or_default(),
        kind: kind(proposal.spec.kind),
        options: option_names(&proposal.spec),
        split_percent: proposal.spec.split.map(|s| s.share_percent),
        rules: opened.rules,
        electorate: opened.electorate,
        suspended_at_close: status.suspended_at_close.clone(),
        delegations: status
            .delegations_at_close
            .iter()
            .map(|d| Delegation::new(d.from.clone(), d.to.clone()))
            .collect(),
        ballots,
    })
}

/// `status` with the outcome of `closed` (the close of `record`) written in: the phase, the counts, turnout, the
/// rule and every tie, the delegations used, the ballots set aside, the fingerprint, the
/// effect decided and `decidedAt`.
#[must_use]
pub fn closed_status(
    mut status: ProposalStatus,
    record: &Record,
    spec: &ProposalSpec,
    closed: &Closed,
    now: Time,
) -> ProposalStatus {
    let proposal = record.proposal.as_str();
    let result = &closed.result;
    let unit = result.audit.unit;
    let w = |x: u128| weight(x, unit);
    let turnout = &result.audit.turnout;
    status.phase = match result.outcome {
        Outcome::Passed => ProposalPhase::Passed,
        Outcome::Rejected => ProposalPhase::Rejected,
        Outcome::NoQuorum => ProposalPhase::NoQuorum,
    };
    status.tally = Some(tally_counts(&result.counts, unit));
    status.eligible_weight = Some(w(result.audit.eligible_weight));
    status.cast_weight = Some(w(turnout.total_weight));
    status.delegated_weight = Some(w(turnout.delegated_weight));
    status.turnout_percent = Some(ppm_percent(turnout.share.ppm()));
    status.quorum_met = Some(result.audit.quorum_met);
    status.rule = Some(rule_text(result));
    status.tie_break_rule = Some(result.tie_break_rule.clone());
    status.ties = result
        .ties
        .iter()
        .map(|t| TieRecord {
            round: t.round,
            tied: t.tied.clone(),
            resolution: t.resolution.clone(),
        })
        .collect();
    status.winner = result.winner.clone();
    status.counted_votes = Some(u32::try_from(turnout.ballots).unwrap_or(u32::MAX));
    status.delegations_used = result
        .audit
        .delegation
        .used
        .iter()
        .map(|u| DelegationUsed {
            from: u.from.clone(),
            to: u.to.clone(),
        })
        .collect();
    status.ignored_votes = closed
        .set_aside
        .iter()
        .map(|s| IgnoredVote {
            vote: format!("{proposal}-{}", s.member),
            member: s.member.clone(),
            reason: format!("{}: {}", set_aside_code(s.why), s.detail),
        })
        .collect();
    let canonical = record.canonical();
    status.delegations_at_close = canonical
        .delegations
        .iter()
        .map(|d| DelegationUsed {
            from: d.from.clone(),
            to: d.to.clone(),
        })
        .collect();
    status.suspended_at_close = canonical.suspended_at_close;
    status.fingerprint = Some(closed.fingerprint.clone());
    status.decided_effect = materialize(spec, &closed.effect);
    status.decided_at = Some(now);
    status
}

/// The reason code a set-aside ballot is recorded with.
#[must_use]
pub fn set_aside_code(why: SetAsideWhy) -> &'static str {
    match why {
        SetAsideWhy::NotInElectorate => "NotInElectorate",
        SetAsideWhy::Early => "Early",
        SetAsideWhy::Late => "Late",
        SetAsideWhy::Duplicate => "Duplicate",
        SetAsideWhy::Invalid => "InvalidBallot",
        SetAsideWhy::Suspended => "Suspended",
    }
}

/// The change a close decided, as an effect of the proposal's kind: the proposal's own
/// effect, the winning option's, or (a dot-voted allocation) the floors kept plus one
/// floor per option with its part of the split. `None` when nothing changes.
#[must_use]
pub fn materialize(spec: &ProposalSpec, decided: &DecidedEffect) -> Option<ProposalEffect> {
    match decided {
        DecidedEffect::Nothing => None,
        DecidedEffect::Proposal => spec.effect.clone(),
        DecidedEffect::Option { option } => spec
            .options
            .iter()
            .find(|o| &o.name == option)
            .and_then(|o| o.effect.clone()),
        DecidedEffect::Split { parts } => {
            let base = spec.effect.as_ref().and_then(|e| e.allocation.clone());
            let mut plan = base.unwrap_or(AllocationPlan {
                floors: Vec::new(),
                surplus_cap_percent: None,
                borrow_limit_percent: None,
            });
            for part in parts.iter().filter(|p| p.share_percent > 0) {
                let target = spec
                    .options
                    .iter()
                    .find(|o| o.name == part.option)
                    .and_then(|o| o.floor.clone())?;
                plan.floors.push(Floor {
                    member_class: target.member_class,
                    member: target.member,
                    share_percent: part.share_percent,
                });
            }
            Some(ProposalEffect {
                allocation: Some(plan),
                bylaw: None,
                surplus_price: None,
                model_adoption: None,
                member_admission: None,
                patronage_distribution: None,
            })
        }
    }
}

/// The rule in words: the method's rule, quorum, tie-break, and every tie settled.
fn rule_text(result: &TallyResult) -> String {
    let audit = &result.audit;
    let mut text = format!(
        "{}; quorum {} of eligible weight ({})",
        result.rule,
        audit.quorum,
        if audit.quorum_met { "met" } else { "not met" },
    );
    if let WeightUnit::ClassScaled { .. } = audit.unit {
        text.push_str("; classes hold fixed shares of voting power, so weights are percentages of it");
    }
    for t in &result.ties {
        let _ = write!(text, "; tie between {}: {}", t.tied.join(", "), t.resolution);
    }
    if !audit.delegation.cycles.is_empty() {
        let _ = write!(
            text,
            "; delegation cycles ignored for {}",
            audit.delegation.cycles.join(", ")
        );
    }
    text
}

/// A weight as an exact decimal: votes for milli-votes, percent of all voting power for
/// class shares (to four decimals, rounded down).
#[must_use]
pub fn weight(w: u128, unit: WeightUnit) -> String {
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
            blocked_by,
            stood_aside,
        } => Tally {
            yes: w(*agree),
            no: w(*disagree),
            abstain: w(*abstain),
            block: w(*block),
            stand_aside: w(*stand_aside),
            blocked_by: blocked_by.clone(),
            stood_aside: stood_aside.clone(),
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
                    exhausted: (r.exhausted > 0).then(|| weight(r.exhausted, unit)),
                    eliminated: r.eliminated.clone(),
                    elected: r.elected.clone(),
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
#[path = "proposal_tests.rs"]
mod tests;
