//! The clock the runner and the triggers read time from. Production uses [`SystemClock`];
//! tests use [`TestClock`], which stands still until moved, so time-dependent decisions
//! (backoff, deadlines, delays, rate windows) can be tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }
}

/// A clock shared by the parts of one engine.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct TestClock {
    ms: AtomicI64,
}

impl TestClock {
    pub fn at(ms: i64) -> Arc<TestClock> {
        Arc::new(TestClock {
            ms: AtomicI64::new(ms),
        })
    }

    pub fn set(&self, ms: i64) {
        self.ms.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_only_when_told() {
        let clock = TestClock::at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(500);
        assert_eq!(clock.now_ms(), 1_500);
        clock.set(10);
        assert_eq!(clock.now().timestamp_millis(), 10);
    }

    #[test]
    fn the_system_clock_follows_the_wall_clock() {
        let before = Utc::now().timestamp_millis();
        let now = SystemClock.now_ms();
        assert!(now >= before && now - before < 60_000);
    }
}
