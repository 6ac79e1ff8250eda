//! Restart policy and backoff, per slot.
//!
//! The first replacement of a slot starts at once; each further failure in a row waits twice
//! as long, from 1 s up to 30 s. A task that ran for 60 s or more resets the count.
//! `--restart-delay` replaces the backoff with a fixed delay. This bookkeeping is leader-local
//! (as in swarmkit's restart supervisor): a new leader starts every slot afresh.

use std::collections::BTreeMap;

use super::model::{Task, TaskState};
use super::spec::{RestartCondition, RestartPolicy};

/// Delay before the second replacement of a slot in a row.
pub const BACKOFF_INITIAL_MS: u64 = 1_000;
/// Longest backoff.
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// A task that ran at least this long resets its slot's backoff.
pub const BACKOFF_RESET_RUNNING_MS: u64 = 60_000;

/// Which slot: a replica number, or for global services the node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlotId {
    /// Replicated slot `1..=replicas`.
    Replica(u64),
    /// Global service's node ID.
    Node(String),
}

/// A slot of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotKey {
    /// Service ID.
    pub service_id: String,
    /// Slot within it.
    pub slot: SlotId,
}

/// What to do with a finished task that was meant to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Replace it once `now_ms >= due_ms`.
    Replace {
        /// When the replacement may be created.
        due_ms: u64,
    },
    /// Leave the slot finished (restart condition or max attempts).
    Finish,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SlotRestarts {
    /// Replacements after the task's own exit, for `max_attempts`.
    attempts: u64,
    /// Failures in a row without a 60-second run, for the backoff.
    failures_in_row: u32,
    /// The last decision, so re-running reconcile does not count a task twice.
    decided: Option<(String, RestartDecision)>,
}

/// Backoff before the replacement that follows `failures_in_row` earlier quick failures:
/// 0, 1 s, 2 s, 4 s ... capped at [`BACKOFF_MAX_MS`].
pub fn backoff_ms(failures_in_row: u32) -> u64 {
    match failures_in_row {
        0 => 0,
        n => BACKOFF_INITIAL_MS
            .checked_shl(n - 1)
            .map_or(BACKOFF_MAX_MS, |d| d.min(BACKOFF_MAX_MS)),
    }
}

/// Whether the policy's condition asks for a replacement of a task that ended in `state`.
pub fn condition_allows(condition: RestartCondition, task: &Task) -> bool {
    match condition {
        RestartCondition::Any => true,
        RestartCondition::OnFailure => task.status.state != TaskState::Complete,
        RestartCondition::None => false,
    }
}

/// Per-slot restart state owned by the orchestrator and passed to every reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartTracker {
    slots: BTreeMap<SlotKey, SlotRestarts>,
}

impl RestartTracker {
    /// Empty tracker.
    pub fn new() -> RestartTracker {
        RestartTracker::default()
    }

    /// Decides, once per finished task, whether and when to replace it. `node_lost` marks a
    /// task orphaned by its node (or moved off a drained one): replaced at once whatever the
    /// policy, without counting as a failure.
    pub fn decide(
        &mut self,
        key: &SlotKey,
        task: &Task,
        policy: &RestartPolicy,
        node_lost: bool,
        now_ms: u64,
    ) -> RestartDecision {
        let slot = self.slots.entry(key.clone()).or_default();
        if let Some((task_id, decision)) = &slot.decided {
            if *task_id == task.id {
                return *decision;
            }
        }
        let decision = if node_lost {
            RestartDecision::Replace { due_ms: now_ms }
        } else if !condition_allows(policy.condition, task)
            || policy.max_attempts.is_some_and(|max| slot.attempts >= max)
        {
            RestartDecision::Finish
        } else {
            let ran_ms = task
                .started_at_ms
                .map_or(0, |started| task.status.since_ms.saturating_sub(started));
            if ran_ms >= BACKOFF_RESET_RUNNING_MS {
                slot.failures_in_row = 0;
            }
            let delay_ms = policy
                .delay_ms
                .unwrap_or_else(|| backoff_ms(slot.failures_in_row));
            slot.failures_in_row = slot.failures_in_row.saturating_add(1);
            slot.attempts += 1;
            RestartDecision::Replace {
                due_ms: now_ms.saturating_add(delay_ms),
            }
        };
        slot.decided = Some((task.id.clone(), decision));
        decision
    }

    /// Drops one slot (scaled away).
    pub fn forget_slot(&mut self, key: &SlotKey) {
        self.slots.remove(key);
    }

    /// Drops every slot of a removed service.
    pub fn forget_service(&mut self, service_id: &str) {
        self.slots.retain(|key, _| key.service_id != service_id);
    }

    /// Slots tracked (bounded by the slots of live services).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is tracked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testkit::service;

    fn failed(id: &str, started_at_ms: Option<u64>, ended_ms: u64) -> Task {
        let mut task = Task::new(id.into(), &service("s1", "web", 1), Some(1), None);
        task.started_at_ms = started_at_ms;
        task.status.state = TaskState::Failed;
        task.status.since_ms = ended_ms;
        task
    }

    #[test]
    fn backoff_sequence_caps_and_resets_after_a_minute_running() {
        let key = SlotKey {
            service_id: "s1".into(),
            slot: SlotId::Replica(1),
        };
        let policy = RestartPolicy::default();
        let mut tracker = RestartTracker::new();
        let mut delays = Vec::new();
        let mut now = 0;
        for i in 0..9 {
            let task = failed(&format!("t{i}"), Some(now), now + 10);
            let RestartDecision::Replace { due_ms } =
                tracker.decide(&key, &task, &policy, false, now + 10)
            else {
                panic!("policy any must replace");
            };
            // Deciding again for the same task changes nothing.
            assert_eq!(
                tracker.decide(&key, &task, &policy, false, now + 20),
                RestartDecision::Replace { due_ms }
            );
            delays.push(due_ms - (now + 10));
            now = due_ms;
        }
        assert_eq!(
            delays,
            [0, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        let long_run = failed("long", Some(now), now + BACKOFF_RESET_RUNNING_MS);
        let decision = tracker.decide(
            &key,
            &long_run,
            &policy,
            false,
            now + BACKOFF_RESET_RUNNING_MS,
        );
        assert_eq!(
            decision,
            RestartDecision::Replace {
                due_ms: now + BACKOFF_RESET_RUNNING_MS
            }
        );
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
    }

    #[test]
    fn fixed_delay_conditions_and_max_attempts() {
        let key = SlotKey {
            service_id: "s1".into(),
            slot: SlotId::Replica(1),
        };
        let mut tracker = RestartTracker::new();
        let fixed = RestartPolicy {
            delay_ms: Some(5_000),
            max_attempts: Some(2),
            ..Default::default()
        };
        let decide = |tracker: &mut RestartTracker, id: &str, policy: &RestartPolicy| {
            tracker.decide(&key, &failed(id, None, 100), policy, false, 100)
        };
        assert_eq!(
            decide(&mut tracker, "a", &fixed),
            RestartDecision::Replace { due_ms: 5_100 }
        );
        assert_eq!(
            decide(&mut tracker, "b", &fixed),
            RestartDecision::Replace { due_ms: 5_100 }
        );
        assert_eq!(decide(&mut tracker, "c", &fixed), RestartDecision::Finish);
        // A lost node replaces at once even past max attempts.
        let lost = tracker.decide(&key, &failed("d", None, 100), &fixed, true, 100);
        assert_eq!(lost, RestartDecision::Replace { due_ms: 100 });
        let none = RestartPolicy {
            condition: RestartCondition::None,
            ..Default::default()
        };
        assert_eq!(
            decide(&mut RestartTracker::new(), "e", &none),
            RestartDecision::Finish
        );
        let on_failure = RestartPolicy {
            condition: RestartCondition::OnFailure,
            ..Default::default()
        };
        let mut complete = failed("f", None, 100);
        complete.status.state = TaskState::Complete;
        assert_eq!(
            RestartTracker::new().decide(&key, &complete, &on_failure, false, 100),
            RestartDecision::Finish
        );
        assert!(matches!(
            decide(&mut RestartTracker::new(), "g", &on_failure),
            RestartDecision::Replace { .. }
        ));
        tracker.forget_service("s1");
        assert!(tracker.is_empty());
    }
}
