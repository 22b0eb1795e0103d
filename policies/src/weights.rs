//! Voting weight: who may vote, and how much each vote counts.
//!
//! # Units
//!
//! Weights are integers ([`Weight`], a `u128`), never floats, so that every tally can be
//! reproduced exactly from the recorded ballots.
//!
//! * With [`Weighting::PerMember`] (the default) a member's weight is its own
//!   `weight_milli`, in milli-votes: one member, one vote is 1000 each.
//! * With [`Weighting::ClassShares`] each class holds a fixed share of all voting power,
//!   whatever its head count, split inside the class in proportion to the members'
//!   `weight_milli`. Member weights are then scaled to a common denominator so that they
//!   stay exact integers. Say workers hold 50% with 3 members and users 50% with 7: each
//!   worker gets 7 units and each user 3, so the workers together hold 21 units, exactly
//!   as much as the users. [`WeightUnit::ClassScaled`] records how many units make up all
//!   of the voting power, so a reader can turn any count back into a share.
//!
//! Suspended members are not eligible: they weigh nothing, their ballots are set aside
//! (and listed in the result), and nothing can be delegated through them.

use std::collections::BTreeMap;

use foldhash::HashMap;

use serde::{Deserialize, Serialize};

use crate::arith::{gcd, lcm};
use crate::share::{PPM_WHOLE, Share};
use crate::voting::TallyError;

/// An exact amount of voting weight; see the module documentation for its unit.
pub type Weight = u128;

/// One milli-vote per unit: the weight of one member, one vote.
pub const ONE_VOTE_MILLI: i64 = 1000;

/// Whether a member may vote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Standing {
    /// Votes and is served.
    #[default]
    Active,
    /// Neither votes nor can be delegated through until reinstated.
    Suspended,
}

/// A member as the tally sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Voter {
    /// The member's name (unique in the electorate).
    pub id: String,
    /// The member's class.
    pub class: String,
    /// Voting weight in milli-votes ([`ONE_VOTE_MILLI`] for one vote). With class shares,
    /// the weight within the class. Negative weights are refused.
    pub weight_milli: i64,
    /// Active or suspended.
    pub standing: Standing,
}

impl Voter {
    /// An active member with one vote.
    #[must_use]
    pub fn new(id: impl Into<String>, class: impl Into<String>) -> Voter {
        Voter {
            id: id.into(),
            class: class.into(),
            weight_milli: ONE_VOTE_MILLI,
            standing: Standing::Active,
        }
    }

    /// The same member with another weight, in milli-votes.
    #[must_use]
    pub fn with_weight_milli(mut self, weight_milli: i64) -> Voter {
        self.weight_milli = weight_milli;
        self
    }

    /// The same member, suspended.
    #[must_use]
    pub fn suspended(mut self) -> Voter {
        self.standing = Standing::Suspended;
        self
    }
}

/// How voting power is spread over the members.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Weighting {
    /// Each member counts its own `weight_milli` (one member, one vote by default).
    #[default]
    PerMember,
    /// Each class holds a fixed share of all voting power (multi-stakeholder co-ops).
    /// Every class of an eligible member must be listed; the shares may add up to at
    /// most 100% (if they add up to less, the tally is simply relative to what is held).
    ClassShares(BTreeMap<String, Share>),
}

/// What one unit of [`Weight`] means in a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WeightUnit {
    /// One unit is one milli-vote.
    MilliVotes,
    /// Class shares: `per_whole` units are 100% of voting power.
    ClassScaled {
        /// Units that make up all of the voting power.
        per_whole: Weight,
    },
}

/// The electorate with its weights worked out, indexed by position.
#[derive(Debug)]
pub(crate) struct WeightTable<'a> {
    pub index: HashMap<&'a str, usize>,
    pub voters: &'a [Voter],
    /// Weight of each voter; zero for suspended ones.
    pub weight: Vec<Weight>,
    pub eligible_total: Weight,
    pub unit: WeightUnit,
}

impl WeightTable<'_> {
    pub fn is_eligible(&self, voter: usize) -> bool {
        self.voters
            .get(voter)
            .is_some_and(|v| v.standing == Standing::Active)
    }
}

/// Checks the electorate and works out each member's weight.
pub(crate) fn weigh<'a>(voters: &'a [Voter], weighting: &Weighting) -> Result<WeightTable<'a>, TallyError> {
    let mut index = HashMap::with_capacity_and_hasher(voters.len(), Default::default());
    for (i, v) in voters.iter().enumerate() {
        if v.weight_milli < 0 {
            return Err(TallyError::NegativeWeight {
                member: v.id.clone(),
                weight_milli: v.weight_milli,
            });
        }
        if index.insert(v.id.as_str(), i).is_some() {
            return Err(TallyError::DuplicateMember(v.id.clone()));
        }
    }
    let own = |v: &Voter| -> Weight {
        match v.standing {
            // Checked non-negative above.
            Standing::Active => Weight::from(v.weight_milli.unsigned_abs()),
            Standing::Suspended => 0,
        }
    };
    match weighting {
        Weighting::PerMember => {
            let weight: Vec<Weight> = voters.iter().map(own).collect();
            let eligible_total = sum(&weight)?;
            Ok(WeightTable {
                index,
                voters,
                weight,
                eligible_total,
                unit: WeightUnit::MilliVotes,
            })
        }
        Weighting::ClassShares(shares) => {
            let weight = class_weights(voters, shares, own)?;
            let eligible_total = sum(&weight.0)?;
            Ok(WeightTable {
                index,
                voters,
                weight: weight.0,
                eligible_total,
                unit: weight.1,
            })
        }
    }
}

fn sum(weights: &[Weight]) -> Result<Weight, TallyError> {
    weights
        .iter()
        .try_fold(0u128, |acc, w| acc.checked_add(*w))
        .ok_or(TallyError::WeightOverflow)
}

fn class_weights(
    voters: &[Voter],
    shares: &BTreeMap<String, Share>,
    own: impl Fn(&Voter) -> Weight,
) -> Result<(Vec<Weight>, WeightUnit), TallyError> {
    let mut total_ppm: u64 = 0;
    for (class, share) in shares {
        if !share.is_valid() {
            return Err(TallyError::ShareOverWhole {
                what: format!("voting power of class {class:?}"),
                ppm: share.ppm(),
            });
        }
        total_ppm += u64::from(share.ppm());
    }
    if total_ppm > u64::from(PPM_WHOLE) {
        return Err(TallyError::ClassSharesOverWhole { total_ppm });
    }
    // Weight held inside each class by its eligible members.
    let mut class_total: BTreeMap<&str, Weight> = BTreeMap::new();
    for v in voters {
        if !shares.contains_key(&v.class) {
            return Err(TallyError::UnknownClass {
                member: v.id.clone(),
                class: v.class.clone(),
            });
        }
        let slot = class_total.entry(v.class.as_str()).or_insert(0);
        *slot = slot.checked_add(own(v)).ok_or(TallyError::WeightOverflow)?;
    }
    // Member weight = share_c × w / W_c. Pick D so that share_c × D / W_c is an integer
    // for every class: D = lcm over classes of W_c / gcd(W_c, share_c).
    let mut denominator: u128 = 1;
    for (class, w_c) in &class_total {
        let share = shares.get(*class).map_or(0, |s| u128::from(s.ppm()));
        if *w_c == 0 || share == 0 {
            continue;
        }
        denominator = lcm(denominator, w_c / gcd(*w_c, share)).ok_or(TallyError::WeightOverflow)?;
    }
    let mut per_class_factor: BTreeMap<&str, Weight> = BTreeMap::new();
    for (class, w_c) in &class_total {
        let share = shares.get(*class).map_or(0, |s| u128::from(s.ppm()));
        let factor = if *w_c == 0 || share == 0 {
            0
        } else {
            let g = gcd(*w_c, share);
            (share / g)
                .checked_mul(denominator / (w_c / g))
                .ok_or(TallyError::WeightOverflow)?
        };
        per_class_factor.insert(class, factor);
    }
    let weight = voters
        .iter()
        .map(|v| {
            let factor = per_class_factor.get(v.class.as_str()).copied().unwrap_or(0);
            factor.checked_mul(own(v)).ok_or(TallyError::WeightOverflow)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let per_whole = denominator
        .checked_mul(u128::from(PPM_WHOLE))
        .ok_or(TallyError::WeightOverflow)?;
    // Divide out the common factor so the audit shows small numbers (7 and 3, not
    // 3 500 000 and 1 500 000). Ratios, and so every decision, are unchanged.
    let common = weight.iter().fold(per_whole, |g, w| gcd(g, *w)).max(1);
    let weight = weight.into_iter().map(|w| w / common).collect();
    Ok((
        weight,
        WeightUnit::ClassScaled {
            per_whole: per_whole / common,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coop() -> Vec<Voter> {
        let mut voters: Vec<Voter> = (0..3).map(|i| Voter::new(format!("w{i}"), "workers")).collect();
        voters.extend((0..7).map(|i| Voter::new(format!("u{i}"), "users")));
        voters
    }

    #[test]
    fn one_member_one_vote_by_default() {
        let voters = coop();
        let table = weigh(&voters, &Weighting::PerMember).unwrap();
        assert!(table.weight.iter().all(|w| *w == 1000));
        assert_eq!(table.eligible_total, 10_000);
    }

    #[test]
    fn class_shares_hold_whatever_the_head_count() {
        let voters = coop();
        let shares = BTreeMap::from([
            ("workers".into(), Share::percent(50)),
            ("users".into(), Share::percent(50)),
        ]);
        let table = weigh(&voters, &Weighting::ClassShares(shares)).unwrap();
        let workers: u128 = table.weight[..3].iter().sum();
        let users: u128 = table.weight[3..].iter().sum();
        assert_eq!(workers, users, "each class holds exactly half");
        assert_eq!(table.weight[0], 7);
        assert_eq!(table.weight[3], 3);
        assert_eq!(table.unit, WeightUnit::ClassScaled { per_whole: 42 });
        assert_eq!(table.eligible_total, 42);
    }

    #[test]
    fn suspended_members_weigh_nothing_and_shift_their_class() {
        let mut voters = coop();
        voters[0] = voters[0].clone().suspended();
        let shares = BTreeMap::from([
            ("workers".into(), Share::percent(60)),
            ("users".into(), Share::percent(40)),
        ]);
        let table = weigh(&voters, &Weighting::ClassShares(shares)).unwrap();
        assert_eq!(table.weight[0], 0);
        let workers: u128 = table.weight[..3].iter().sum();
        let users: u128 = table.weight[3..].iter().sum();
        assert_eq!(workers * 40, users * 60);
    }

    #[test]
    fn bad_electorates_are_refused() {
        let mut voters = coop();
        voters[1].weight_milli = -5;
        assert!(matches!(
            weigh(&voters, &Weighting::PerMember),
            Err(TallyError::NegativeWeight { .. })
        ));
        let mut voters = coop();
        voters[1].id = "w0".into();
        assert_eq!(
            weigh(&voters, &Weighting::PerMember).unwrap_err(),
            TallyError::DuplicateMember("w0".into())
        );
        let voters = coop();
        let shares = BTreeMap::from([
            ("workers".into(), Share::percent(60)),
            ("users".into(), Share::percent(50)),
        ]);
        assert_eq!(
            weigh(&voters, &Weighting::ClassShares(shares)).unwrap_err(),
            TallyError::ClassSharesOverWhole { total_ppm: 1_100_000 }
        );
        let shares = BTreeMap::from([("workers".into(), Share::percent(50))]);
        assert!(matches!(
            weigh(&voters, &Weighting::ClassShares(shares)),
            Err(TallyError::UnknownClass { .. })
        ));
    }
}
