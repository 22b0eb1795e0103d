//! The time of day, injectable so that tests can decide what "now" is.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;

/// Where the controllers get the current time.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to (for deterministic tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock showing `at`.
    #[must_use]
    pub fn new(at: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            millis: AtomicI64::new(at.as_millisecond()),
        })
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.millis.store(at.as_millisecond(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(self.millis.load(Ordering::SeqCst)).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_set() {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let c = ManualClock::new(t);
        assert_eq!(c.now(), t);
        let later: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        c.set(later);
        assert_eq!(c.now(), later);
    }
}
