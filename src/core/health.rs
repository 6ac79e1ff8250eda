//! The health check rules (SPEC §7), as Docker applies them, without I/O or a clock: a
//! [`HealthTracker`] is fed each check's result with the time the check started and answers
//! starting / healthy / unhealthy. The process runtime runs the checks and feeds one tracker per
//! task; the Docker Engine keeps its own count for containers (see `docs/health.md`).
//!
//! The rules (moby `daemon/health.go`): a success makes the task healthy and resets the count of
//! consecutive failures; a failure adds one to it, except while the task has never been healthy
//! and the check started within the start period; at `retries` consecutive failures the task is
//! unhealthy. A later success makes it healthy again.

use super::rollout::HealthCheck;

/// How often a task that has never passed is probed in its early window (see
/// [`early_window_ms`]), so it is known healthy as soon as it is, not one interval later.
pub const STARTING_PROBE_MS: u64 = 100;

/// The early window of `check`: from the task's start, while it has never passed, for the
/// longer of one interval and the start period. Probes in it run every [`STARTING_PROBE_MS`];
/// a pass counts (the task is healthy), a failure does not, so a slow starter loses nothing
/// and a failing task is judged exactly as Docker judges it (at the regular checks, one
/// interval apart). Docker's own `start_interval` (API 1.44) is the same idea; the Docker
/// runtime sets it to match.
pub fn early_window_ms(check: &HealthCheck) -> u64 {
    check.interval_ms().max(check.start_period_ms())
}

/// Longest check output kept, in bytes (Docker keeps 4 KiB of each probe's output).
pub const HEALTH_OUTPUT_BYTES_MAX: usize = 4096;

/// What the checks say so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// No check has passed yet, and the failures have not reached the retries.
    Starting,
    /// The last check passed, or the failures since it have not reached the retries.
    Healthy,
    /// `retries` consecutive checks failed.
    Unhealthy,
}

/// Counts one task's check results into a [`HealthState`]; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    start_period_ms: u64,
    retries: u32,
    started_at_ms: u64,
    state: HealthState,
    failing_streak: u32,
    last_output: String,
}

impl HealthTracker {
    /// A tracker for `check` of a task whose container started at `started_at_ms`.
    pub fn new(check: &HealthCheck, started_at_ms: u64) -> Self {
        Self {
            start_period_ms: check.start_period_ms(),
            // validate() refuses 0; treat a stray 0 as 1 so one failure can still end a task.
            retries: check.retries().max(1),
            started_at_ms,
            state: HealthState::Starting,
            failing_streak: 0,
            last_output: String::new(),
        }
    }

    /// Count the result of a check that started at `check_started_at_ms`; `output` is what it
    /// printed (kept, truncated, for the error message). Returns the new state.
    pub fn record(&mut self, check_started_at_ms: u64, passed: bool, output: &str) -> HealthState {
        self.last_output = truncate(output.trim(), HEALTH_OUTPUT_BYTES_MAX).to_string();
        if passed {
            self.failing_streak = 0;
            self.state = HealthState::Healthy;
            return self.state;
        }
        let in_start_period = self.state == HealthState::Starting
            && check_started_at_ms.saturating_sub(self.started_at_ms) < self.start_period_ms;
        if !in_start_period {
            self.failing_streak = self.failing_streak.saturating_add(1);
            if self.failing_streak >= self.retries {
                self.state = HealthState::Unhealthy;
            }
        }
        self.state
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Consecutive failures counted so far.
    pub fn failing_streak(&self) -> u32 {
        self.failing_streak
    }

    /// What the last check printed (at most [`HEALTH_OUTPUT_BYTES_MAX`] bytes).
    pub fn last_output(&self) -> &str {
        &self.last_output
    }
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on a char boundary.
pub fn truncate(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rollout::HealthTest;

    fn check(retries: u32, start_period_ms: u64) -> HealthCheck {
        HealthCheck {
            test: HealthTest::Shell("true".into()),
            retries: Some(retries),
            start_period_ms: Some(start_period_ms),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn starting_until_the_first_success_then_healthy() {
        let mut tracker = HealthTracker::new(&check(3, 0), 1_000);
        assert_eq!(tracker.state(), HealthState::Starting);
        assert_eq!(tracker.record(1_100, false, "no"), HealthState::Starting);
        assert_eq!(tracker.failing_streak(), 1);
        assert_eq!(tracker.record(1_200, true, "ok\n"), HealthState::Healthy);
        assert_eq!(tracker.failing_streak(), 0);
        assert_eq!(tracker.last_output(), "ok");
    }

    #[test]
    fn unhealthy_after_retries_consecutive_failures_and_a_success_recovers() {
        let mut tracker = HealthTracker::new(&check(3, 0), 0);
        tracker.record(10, true, "");
        assert_eq!(tracker.record(20, false, "a"), HealthState::Healthy);
        assert_eq!(tracker.record(30, false, "b"), HealthState::Healthy);
        // A success in between resets the count: two more failures are not enough.
        assert_eq!(tracker.record(40, true, ""), HealthState::Healthy);
        assert_eq!(tracker.record(50, false, "c"), HealthState::Healthy);
        assert_eq!(tracker.record(60, false, "d"), HealthState::Healthy);
        assert_eq!(tracker.record(70, false, "e"), HealthState::Unhealthy);
        assert_eq!(tracker.failing_streak(), 3);
        assert_eq!(tracker.last_output(), "e");
        assert_eq!(tracker.record(80, true, ""), HealthState::Healthy);
        assert_eq!(tracker.failing_streak(), 0);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_it_ends() {
        let mut tracker = HealthTracker::new(&check(1, 500), 1_000);
        assert_eq!(tracker.record(1_100, false, ""), HealthState::Starting);
        assert_eq!(tracker.record(1_499, false, ""), HealthState::Starting);
        assert_eq!(tracker.failing_streak(), 0);
        assert_eq!(tracker.record(1_500, false, ""), HealthState::Unhealthy);
    }

    #[test]
    fn the_start_period_only_spares_a_task_that_was_never_healthy() {
        let mut tracker = HealthTracker::new(&check(2, 10_000), 0);
        assert_eq!(tracker.record(100, true, ""), HealthState::Healthy);
        assert_eq!(tracker.record(200, false, ""), HealthState::Healthy);
        assert_eq!(tracker.record(300, false, ""), HealthState::Unhealthy);
    }

    #[test]
    fn a_task_that_never_passes_becomes_unhealthy_without_being_healthy() {
        let mut tracker = HealthTracker::new(&check(2, 0), 0);
        assert_eq!(tracker.record(1, false, ""), HealthState::Starting);
        assert_eq!(tracker.record(2, false, ""), HealthState::Unhealthy);
    }

    #[test]
    fn output_is_bounded_on_a_char_boundary() {
        let long = "é".repeat(HEALTH_OUTPUT_BYTES_MAX);
        let mut tracker = HealthTracker::new(&check(3, 0), 0);
        tracker.record(1, false, &long);
        assert!(tracker.last_output().len() <= HEALTH_OUTPUT_BYTES_MAX);
        assert!(tracker.last_output().len() >= HEALTH_OUTPUT_BYTES_MAX - 1);
    }
}
