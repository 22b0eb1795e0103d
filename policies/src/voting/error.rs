//! Why a tally could not be made.

use thiserror::Error;

/// Bad input to [`tally`](crate::tally). Every variant names what was wrong and, where
/// there is one, the member whose ballot or record was at fault, so the operator can put
/// it in a condition message as it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TallyError {
    /// The method needs options to choose between and the proposal lists none.
    #[error("the {method} method needs at least one option")]
    NoOptions {
        /// The method.
        method: &'static str,
    },
    /// The same option is listed twice in the proposal.
    #[error("option {0:?} is listed twice")]
    DuplicateOption(String),
    /// A threshold is zero, above one, or has a zero denominator.
    #[error("threshold {numerator}/{denominator} must be above 0 and at most 1")]
    InvalidThreshold {
        /// The top of the fraction.
        numerator: u64,
        /// The bottom of the fraction.
        denominator: u64,
    },
    /// The score range is empty.
    #[error("score range {min}..={max} is empty")]
    InvalidScoreRange {
        /// The lowest score.
        min: i64,
        /// The highest score.
        max: i64,
    },
    /// Dot voting needs a positive number of points per member.
    #[error("dot voting needs at least one point per member")]
    NoPoints,
    /// A share (quorum or a class's voting power) is above 100%.
    #[error("{what} is {ppm} ppm, over 100%")]
    ShareOverWhole {
        /// Which share.
        what: String,
        /// Its value in parts per million.
        ppm: u32,
    },
    /// The class shares of voting power add up to more than 100%.
    #[error("class shares of voting power add up to {total_ppm} ppm, over 100%")]
    ClassSharesOverWhole {
        /// The sum in parts per million.
        total_ppm: u64,
    },
    /// A member belongs to a class that has no share of voting power.
    #[error("member {member:?} is in class {class:?}, which has no share of voting power")]
    UnknownClass {
        /// The member.
        member: String,
        /// Its class.
        class: String,
    },
    /// The voting window closes before it opens.
    #[error("the voting window closes ({closes_at}) before it opens ({opens_at})")]
    InvalidWindow {
        /// Opening time, Unix seconds.
        opens_at: i64,
        /// Closing time, Unix seconds.
        closes_at: i64,
    },
    /// The electorate lists the same member twice.
    #[error("member {0:?} is listed twice in the electorate")]
    DuplicateMember(String),
    /// A member's voting weight is negative.
    #[error("member {member:?} has a negative voting weight ({weight_milli} milli-votes)")]
    NegativeWeight {
        /// The member.
        member: String,
        /// The weight given, in milli-votes.
        weight_milli: i64,
    },
    /// A ballot or a delegation names someone who is not in the electorate.
    #[error("{0:?} is not a member of the electorate")]
    UnknownMember(String),
    /// One member cast two ballots.
    #[error("member {0:?} cast more than one ballot")]
    DuplicateBallot(String),
    /// A ballot was cast outside the voting window.
    #[error("member {member:?} cast a ballot at {cast_at}, outside the voting window")]
    CastOutsideWindow {
        /// The member.
        member: String,
        /// When it was cast, Unix seconds.
        cast_at: i64,
    },
    /// A ballot's kind does not fit the method (a ranking in a majority vote, say).
    #[error("member {member:?} cast a ballot that does not fit the {method} method")]
    WrongBallotKind {
        /// The member.
        member: String,
        /// The method in force.
        method: &'static str,
    },
    /// A ballot names an option the proposal does not list.
    #[error("member {member:?} chose {option:?}, which is not an option")]
    UnknownOption {
        /// The member.
        member: String,
        /// The option named.
        option: String,
    },
    /// A ballot names the same option twice (in a ranking or an approval list).
    #[error("member {member:?} named option {option:?} twice")]
    DuplicateChoice {
        /// The member.
        member: String,
        /// The repeated option.
        option: String,
    },
    /// A score is outside the allowed range.
    #[error("member {member:?} gave {option:?} a score of {score}, outside {min}..={max}")]
    ScoreOutOfRange {
        /// The member.
        member: String,
        /// The option scored.
        option: String,
        /// The score given.
        score: i64,
        /// The lowest allowed score.
        min: i64,
        /// The highest allowed score.
        max: i64,
    },
    /// A dot-voting ballot puts a negative number of points on an option.
    #[error("member {member:?} put {points} points on {option:?}; points cannot be negative")]
    NegativePoints {
        /// The member.
        member: String,
        /// The option.
        option: String,
        /// The points given.
        points: i64,
    },
    /// A dot-voting ballot spends more points than each member has.
    #[error("member {member:?} spent {spent} points of {budget}")]
    TooManyPoints {
        /// The member.
        member: String,
        /// Points spent.
        spent: u128,
        /// Points each member has.
        budget: u64,
    },
    /// A member delegates twice.
    #[error("member {0:?} delegates more than once")]
    DuplicateDelegation(String),
    /// Weights or counts are too large to add up exactly.
    #[error("voting weights are too large to count exactly")]
    WeightOverflow,
}
