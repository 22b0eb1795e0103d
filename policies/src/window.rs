//! The voting window. Time is passed in as Unix seconds; this crate never reads a clock.

use serde::{Deserialize, Serialize};

/// When a proposal accepts ballots: from `opens_at` (inclusive) to `closes_at`
/// (exclusive), both in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VotingWindow {
    /// The first second at which a ballot may be cast.
    pub opens_at: i64,
    /// The first second at which ballots are no longer accepted.
    pub closes_at: i64,
}

/// Where a window stands at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WindowPhase {
    /// Not open yet.
    NotYetOpen,
    /// Accepting ballots.
    Open,
    /// Closed: time to tally.
    Closed,
}

impl VotingWindow {
    /// A window from `opens_at` until `closes_at`.
    #[must_use]
    pub const fn new(opens_at: i64, closes_at: i64) -> VotingWindow {
        VotingWindow { opens_at, closes_at }
    }

    /// Whether a ballot cast at `at` falls inside the window.
    #[must_use]
    pub const fn contains(&self, at: i64) -> bool {
        self.opens_at <= at && at < self.closes_at
    }

    /// The phase of the window at `now`.
    #[must_use]
    pub const fn phase(&self, now: i64) -> WindowPhase {
        if now < self.opens_at {
            WindowPhase::NotYetOpen
        } else if now < self.closes_at {
            WindowPhase::Open
        } else {
            WindowPhase::Closed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_half_open() {
        let w = VotingWindow::new(100, 200);
        assert_eq!(w.phase(99), WindowPhase::NotYetOpen);
        assert_eq!(w.phase(100), WindowPhase::Open);
        assert_eq!(w.phase(199), WindowPhase::Open);
        assert_eq!(w.phase(200), WindowPhase::Closed);
        assert!(w.contains(100) && !w.contains(200) && !w.contains(99));
    }
}
