//! Time as the core and the actors see it: a [`Clock`] handed to them at start-up.
//!
//! Production nodes use the system clock (in `actors::environment`); the whole-cluster
//! simulation and unit tests use a [`ManualClock`] that moves only when told, so every
//! time-dependent rule replays exactly.

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of time.
pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds: what records carry (`created_at`, `since`) and every manager applies.
    fn unix_ms(&self) -> u64;
    /// Milliseconds from an arbitrary origin that never goes backwards: what timeouts and
    /// liveness are measured in (a wall clock set back must not mark nodes down).
    fn monotonic_ms(&self) -> u64;
}

/// A clock that moves only when told; unix and monotonic time are the same number.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock (tests that need time to stand still or jump).
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
