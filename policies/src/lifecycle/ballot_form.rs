//! A ballot as a member fills it in: one of a position, approvals, scores, a ranking or
//! points. The gateway's API, the Vote resource and the published ballots all use this
//! form; [`BallotForm::choice`] reads it under the proposal's method.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::voting::{Choice, ConsentPosition, Method};

/// A position on a yes/no or consent question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Position {
    /// For (consent: agree).
    Yes,
    /// Against (consent: disagree, without blocking).
    No,
    /// Takes part without taking a side; counts for turnout only.
    Abstain,
    /// Consent: a principled objection that stops the proposal.
    Block,
    /// Consent: disagrees but lets it pass; recorded by name.
    StandAside,
}

/// One ballot, exactly one field set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BallotForm {
    /// Majority, supermajority and consent; `Abstain` fits every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Approval: the options approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<Vec<String>>,
    /// Score: a score per option (options left out get 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<BTreeMap<String, u32>>,
    /// Ranked choice: options from most to least preferred (need not rank all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking: Option<Vec<String>>,
    /// Dot voting: points per option, at most the points each member has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<BTreeMap<String, u32>>,
}

impl BallotForm {
    /// A ballot with just a position.
    #[must_use]
    pub fn position(p: Position) -> BallotForm {
        BallotForm {
            position: Some(p),
            ..BallotForm::default()
        }
    }

    /// The ballot under `method`, for a proposal with `options`.
    ///
    /// # Errors
    ///
    /// Says, in words a member can act on, why the ballot does not fit: not exactly one
    /// field set, a field the method does not use, an option not on the proposal or named
    /// twice, a score above the highest, more points than a member has.
    pub fn choice(&self, method: &Method, options: &[String]) -> Result<Choice, String> {
        let set = [
            self.position.is_some(),
            self.approvals.is_some(),
            self.scores.is_some(),
            self.ranking.is_some(),
            self.points.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            return Err(
                "a ballot sets exactly one of position, approvals, scores, ranking or points".to_owned(),
            );
        }
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
        let wrong = |given: &str| {
            Err(format!(
                "this proposal is decided by {}: a {given} ballot does not fit (send {})",
                method.name(),
                expected(method)
            ))
        };
        if let Some(p) = self.position {
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
        if let Some(approvals) = &self.approvals {
            if !matches!(method, Method::Approval) {
                return wrong("approval");
            }
            each_once(approvals)?;
            return Ok(Choice::Approve(approvals.clone()));
        }
        if let Some(ranking) = &self.ranking {
            if !matches!(method, Method::InstantRunoff | Method::Schulze) {
                return wrong("ranking");
            }
            if ranking.is_empty() {
                return Err("a ranking names at least one option".to_owned());
            }
            each_once(ranking)?;
            return Ok(Choice::Rank(ranking.clone()));
        }
        if let Some(scores) = &self.scores {
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
        if let Some(points) = &self.points {
            let Method::Dot { points_per_member } = method else {
                return wrong("points");
            };
            let mut out = BTreeMap::new();
            let mut total = 0u64;
            for (o, p) in points {
                listed(o)?;
                total = total.saturating_add(u64::from(*p));
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
}

/// What a ballot under `method` sets, in words.
fn expected(method: &Method) -> &'static str {
    match method {
        Method::Majority | Method::Supermajority { .. } => "position Yes, No or Abstain",
        Method::Consent { .. } => "position Yes, No, Abstain, StandAside or Block",
        Method::Approval => "approvals",
        Method::Score { .. } => "scores",
        Method::InstantRunoff | Method::Schulze => "ranking",
        Method::Dot { .. } => "points",
    }
}
