//! Why quotas could not be worked out.

use thiserror::Error;

/// Bad input to [`solve`](crate::solve).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SolveError {
    /// A model is listed twice.
    #[error("model {0:?} is listed twice")]
    DuplicateModel(String),
    /// A class is listed twice.
    #[error("class {0:?} is listed twice")]
    DuplicateClass(String),
    /// Two callers share an id.
    #[error("caller {0:?} is listed twice")]
    DuplicateCaller(String),
    /// A member names a class that is not listed.
    #[error("member {member:?} is in class {class:?}, which is not listed")]
    UnknownClass {
        /// The member.
        member: String,
        /// The class it names.
        class: String,
    },
    /// A caller has demand for a model that is not listed.
    #[error("caller {caller:?} has demand for model {model:?}, which is not listed")]
    UnknownModel {
        /// The caller.
        caller: String,
        /// The model it names.
        model: String,
    },
    /// One share (a floor or the surplus cap) is over 100%.
    #[error("{what} is {ppm} ppm, over 100%")]
    ShareOverWhole {
        /// Which share.
        what: String,
        /// Its value in parts per million.
        ppm: u32,
    },
    /// The floors of all classes and members add up to more than 100%.
    #[error("floors add up to {total_ppm} ppm, over 100% of capacity")]
    FloorsOverWhole {
        /// Their sum in parts per million.
        total_ppm: u64,
    },
    /// A caller has a fair-share weight of zero.
    #[error("caller {0:?} has a fair-share weight of zero")]
    ZeroWeight(String),
    /// A budget does not fit in 64 bits.
    #[error("a monthly budget is too large to represent")]
    Overflow,
}
