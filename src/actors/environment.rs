//! What every actor of a node is given at start-up instead of reaching for it: the clock and
//! the seed its random generators derive from.
//!
//! Production nodes run on [`SystemClock`] with a seed from the operating system (or
//! `FLOTILLA_SEED`, read by the composition root); tests and the simulation pass a
//! `core::clock::ManualClock` and a fixed seed. Randomness for secrets (join secrets, keys)
//! never comes from here: it needs the operating system's generator.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::core::clock::Clock;

/// The operating system's clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A system clock whose monotonic time counts from now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn monotonic_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// Unix milliseconds from the system clock, for the few places that run before a node's
/// environment exists (bootstrapping a cluster record, the worker's own status stamps).
pub fn system_now_ms() -> u64 {
    SystemClock::new().unix_ms()
}

/// The clock and seed of one node, cheap to clone.
#[derive(Clone)]
pub struct NodeEnvironment {
    clock: Arc<dyn Clock>,
    seed: u64,
}

impl std::fmt::Debug for NodeEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEnvironment")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl NodeEnvironment {
    /// An environment over `clock`, with generators derived from `seed`.
    pub fn new(clock: Arc<dyn Clock>, seed: u64) -> Self {
        Self { clock, seed }
    }

    /// The system clock, with `seed` or else one from the operating system.
    pub fn system(seed: Option<u64>) -> Self {
        Self::new(
            Arc::new(SystemClock::new()),
            seed.unwrap_or_else(rand::random),
        )
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Unix milliseconds now.
    pub fn unix_ms(&self) -> u64 {
        self.clock.unix_ms()
    }

    /// Monotonic milliseconds now.
    pub fn monotonic_ms(&self) -> u64 {
        self.clock.monotonic_ms()
    }

    /// The node's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A generator of its own for `purpose` (e.g. `service/<id>`), derived from the seed, so
    /// that components do not share one stream and a component's draws do not depend on
    /// another's.
    pub fn rng(&self, purpose: &str) -> StdRng {
        let digest = ring::digest::digest(&ring::digest::SHA256, purpose.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest.as_ref()[..8]);
        StdRng::seed_from_u64(self.seed ^ u64::from_be_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::core::clock::ManualClock;

    #[test]
    fn generators_replay_per_seed_and_differ_per_purpose() {
        let clock = Arc::new(ManualClock::new(5));
        let a = NodeEnvironment::new(clock.clone(), 42);
        let b = NodeEnvironment::new(clock, 42);
        let draw = |env: &NodeEnvironment, purpose: &str| env.rng(purpose).random::<u64>();
        assert_eq!(draw(&a, "service/x"), draw(&b, "service/x"));
        assert_ne!(draw(&a, "service/x"), draw(&a, "service/y"));
        assert_eq!(a.unix_ms(), 5);
    }
}
