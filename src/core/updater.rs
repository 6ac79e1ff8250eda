//! The rolling update (SPEC §7): given a service whose `update_status` says a rollout is
//! moving, decide the next step from the store alone. Everything the rollout needs to know is
//! derived from the tasks (which spec version each runs, since when) and the replicated
//! status, so a new leader continues an update where the old one left it.
//!
//! Per slot (replica number, or node for global services) the newest task decides:
//! - **done**: it runs the current spec version and is running, and no older task of
//!   another version still runs beside it;
//! - **in progress**: it is of the current version but not running yet (starting, or failed
//!   and waiting for its replacement), an old task is stopping, or the slot is empty (the
//!   orchestrator fills it with the current version);
//! - **stale**: it is of an older version and meant to run.
//!
//! At most `parallelism` slots are in progress (0: all); a stale slot starts only once the
//! last slot finished `delay` ago. Stop-first shuts the old task down (the orchestrator
//! creates the new one once it stopped); start-first creates the new task beside it (the
//! orchestrator stops the old one once the new one runs, and healthy tasks only report
//! running). A task of the current version created since the rollout started that fails
//! before it ran for `monitor` counts as a failure; more than `max_failure_ratio` of the
//! slots triggers the failure action. Once every slot is done and the newest task ran for
//! `monitor`, the rollout is completed.

use std::collections::BTreeMap;

use rand::Rng;

use super::ids::new_id;
use super::model::{Service, Task, TaskState};
use super::rollout::{
    FailureAction, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus, RATIO_SCALE,
};
use super::spec::ServiceMode;
use super::store::{newest_first, Command, Store};

/// What the updater wants committed for one service, and when to look again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutPlan {
    /// Commands to propose, in order.
    pub commands: Vec<Command>,
    /// Decide again at this time (a delay or a monitor period ends).
    pub wake_at_ms: Option<u64>,
}

impl RolloutPlan {
    fn wake_at(&mut self, due_ms: u64) {
        self.wake_at_ms = Some(self.wake_at_ms.map_or(due_ms, |w| w.min(due_ms)));
    }
}

/// Where one slot is in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Done,
    InProgress,
    Stale,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SlotKey {
    Replica(u64),
    Node(String),
}

fn is_live(task: &Task) -> bool {
    !task.status.state.is_terminal()
}

fn runs(task: &Task) -> bool {
    task.status.state == TaskState::Running && task.desired_state == TaskState::Running
}

/// The one step of a moving rollout of `service_id` (nothing if none moves).
pub fn plan_rollout<R: Rng + ?Sized>(
    store: &Store,
    service_id: &str,
    now_ms: u64,
    rng: &mut R,
) -> RolloutPlan {
    let mut plan = RolloutPlan::default();
    let Some(service) = store.service(service_id) else {
        return plan;
    };
    let Some(status) = service
        .update_status
        .as_ref()
        .filter(|s| s.state.is_active())
    else {
        return plan;
    };
    let rolling_back = status.state.is_rollback();
    let config = if rolling_back {
        &service.spec.rollback
    } else {
        &service.spec.update
    };
    let current = service.spec_version;
    let slots = slots_of(store, service);

    // Failures: tasks of this rollout that did not make it through the monitor period.
    let failed: Vec<&Task> = slots
        .values()
        .flatten()
        .filter(|t| is_failure(t, current, status, config))
        .copied()
        .collect();
    if let Some(first) = failed.first() {
        let total = slots.len().max(1) as u128;
        let tolerated = u128::from(config.max_failure_ratio_ppm) * total;
        if (failed.len() as u128) * u128::from(RATIO_SCALE) > tolerated {
            if let Some(command) = on_failure(service, status, config, &first.id, now_ms) {
                plan.commands.push(command);
                return plan;
            }
        }
    }

    let mut states = BTreeMap::new();
    let mut shut_down = Vec::new();
    let mut last_done_ms: Option<u64> = None;
    for (key, tasks) in &slots {
        let state = slot_state(tasks, current);
        if state == SlotState::Done {
            // Older tasks of another version that a rollback made current again may stand
            // beside a newer one: the running current one stays, the rest stop.
            for task in tasks {
                if task.spec_version != current
                    && is_live(task)
                    && task.desired_state <= TaskState::Running
                {
                    shut_down.push(task.id.clone());
                }
            }
            let ran_since = tasks
                .iter()
                .filter(|t| t.spec_version == current && runs(t))
                .filter(|t| t.meta.created_at_ms >= status.started_at_ms)
                .filter_map(|t| t.started_at_ms)
                .max();
            if let Some(since) = ran_since {
                last_done_ms = Some(last_done_ms.map_or(since, |l| l.max(since)));
            }
        }
        states.insert(key.clone(), state);
    }

    let in_progress = states
        .values()
        .filter(|s| **s == SlotState::InProgress)
        .count() as u64;
    let stale: Vec<&SlotKey> = states
        .iter()
        .filter(|(_, s)| **s == SlotState::Stale)
        .map(|(k, _)| k)
        .collect();
    let window = match config.parallelism {
        0 => u64::MAX,
        n => n.saturating_sub(in_progress),
    };
    let delay_over_at = last_done_ms.map(|l| l.saturating_add(config.delay_ms));
    let may_start = match delay_over_at {
        Some(at) if config.delay_ms > 0 && at > now_ms => {
            plan.wake_at(at);
            false
        }
        _ => true,
    };
    let mut create = Vec::new();
    if may_start {
        for key in stale
            .iter()
            .take(usize::try_from(window).unwrap_or(usize::MAX))
        {
            let tasks = &slots[*key];
            match config.order {
                UpdateOrder::StopFirst => {
                    for task in tasks
                        .iter()
                        .filter(|t| is_live(t) && t.desired_state <= TaskState::Running)
                    {
                        shut_down.push(task.id.clone());
                    }
                }
                UpdateOrder::StartFirst => {
                    let id = new_id(rng);
                    create.push(match key {
                        SlotKey::Replica(slot) => Task::new(id, service, Some(*slot), None),
                        SlotKey::Node(node) => Task::new(id, service, None, Some(node.clone())),
                    });
                }
            }
        }
    }

    if stale.is_empty() && in_progress == 0 {
        // Every slot runs the new spec: done once the newest has been stable for `monitor`.
        let stable_at = last_done_ms.map_or(now_ms, |l| l.saturating_add(config.monitor_ms));
        if stable_at <= now_ms {
            let (state, message) = if rolling_back {
                (UpdateState::RollbackCompleted, "rollback completed")
            } else {
                (UpdateState::Completed, "update completed")
            };
            plan.commands
                .push(set_status(service, status, state, message, now_ms));
        } else {
            plan.wake_at(stable_at);
        }
    }
    shut_down.sort();
    shut_down.dedup();
    if !shut_down.is_empty() {
        plan.commands.push(Command::SetTaskDesiredStates(
            shut_down
                .into_iter()
                .map(|id| (id, TaskState::Shutdown))
                .collect(),
        ));
    }
    if !create.is_empty() {
        plan.commands.push(Command::CreateTasks(create));
    }
    plan
}

/// Whether a task of `service_id` that starts running may move its rollout on (the rollout is
/// moving or paused: a start-first slot is done once its new task runs, and its old task then
/// stops). Watchers that skip workers' progress reports still pass these on.
pub fn waits_for_running(store: &Store, service_id: &str) -> bool {
    store
        .service(service_id)
        .and_then(|service| service.update_status.as_ref())
        .is_some_and(|status| {
            !matches!(
                status.state,
                UpdateState::Completed | UpdateState::RollbackCompleted
            )
        })
}

/// The service's slots and their tasks, newest first: replicas `1..=replicas`, or the nodes
/// that hold a task of a global service.
fn slots_of<'s>(store: &'s Store, service: &Service) -> BTreeMap<SlotKey, Vec<&'s Task>> {
    let mut slots: BTreeMap<SlotKey, Vec<&Task>> = BTreeMap::new();
    match service.spec.mode {
        ServiceMode::Replicated { replicas } => {
            for slot in 1..=replicas {
                slots.insert(SlotKey::Replica(slot), Vec::new());
            }
            for task in store.service_task_iter(&service.id) {
                if let Some(tasks) = task.slot.and_then(|s| slots.get_mut(&SlotKey::Replica(s))) {
                    tasks.push(task);
                }
            }
        }
        ServiceMode::Global => {
            for task in store.service_task_iter(&service.id) {
                if let Some(node) = &task.node_id {
                    if store.node(node).is_some() {
                        slots
                            .entry(SlotKey::Node(node.clone()))
                            .or_default()
                            .push(task);
                    }
                }
            }
            // A node whose every task finished long ago is no slot of this rollout.
            slots.retain(|_, tasks| tasks.iter().any(|t| is_live(t)));
        }
    }
    for tasks in slots.values_mut() {
        tasks.sort_by(|a, b| newest_first(a, b));
    }
    slots
}

fn slot_state(tasks: &[&Task], current: u64) -> SlotState {
    let Some(newest) = tasks
        .iter()
        .find(|t| t.desired_state <= TaskState::Running || is_live(t))
    else {
        return SlotState::InProgress; // empty: the orchestrator creates the current version
    };
    let current_runs = tasks.iter().any(|t| t.spec_version == current && runs(t));
    let old_runs = tasks
        .iter()
        .any(|t| t.spec_version != current && is_live(t) && t.desired_state <= TaskState::Running);
    if newest.spec_version == current {
        return if runs(newest) && !old_runs {
            SlotState::Done
        } else {
            SlotState::InProgress
        };
    }
    if current_runs {
        // A rollback made an older task current again: it serves; the newer one goes.
        return SlotState::Done;
    }
    if is_live(newest) && newest.desired_state <= TaskState::Running {
        SlotState::Stale
    } else {
        // Stopping (stop-first) or finished: the orchestrator fills the slot.
        SlotState::InProgress
    }
}

/// A task of this rollout that failed, or exited within its monitor period.
fn is_failure(task: &Task, current: u64, status: &UpdateStatus, config: &UpdateConfig) -> bool {
    if task.spec_version != current || task.meta.created_at_ms < status.started_at_ms {
        return false;
    }
    if !matches!(task.status.state, TaskState::Failed | TaskState::Rejected) {
        return false;
    }
    match task.started_at_ms {
        None => true,
        Some(started) => task.status.since_ms.saturating_sub(started) < config.monitor_ms,
    }
}

fn on_failure(
    service: &Service,
    status: &UpdateStatus,
    config: &UpdateConfig,
    task_id: &str,
    now_ms: u64,
) -> Option<Command> {
    let rolling_back = status.state.is_rollback();
    let what = if rolling_back { "rollback" } else { "update" };
    match config.failure_action {
        FailureAction::Continue => None,
        FailureAction::Rollback if !rolling_back && service.previous_spec.is_some() => {
            Some(Command::RollbackService {
                service_id: service.id.clone(),
                expected_version: Some(service.meta.version),
                message: format!(
                    "update rolled back due to failure or early termination of task {task_id}"
                ),
            })
        }
        _ => {
            let state = if rolling_back {
                UpdateState::RollbackPaused
            } else {
                UpdateState::Paused
            };
            let message =
                format!("{what} paused due to failure or early termination of task {task_id}");
            Some(set_status(service, status, state, &message, now_ms))
        }
    }
}

fn set_status(
    service: &Service,
    status: &UpdateStatus,
    state: UpdateState,
    message: &str,
    now_ms: u64,
) -> Command {
    Command::SetUpdateStatus {
        service_id: service.id.clone(),
        spec_version: service.spec_version,
        status: UpdateStatus {
            state,
            message: message.to_string(),
            started_at_ms: status.started_at_ms,
            completed_at_ms: Some(now_ms),
        },
    }
}

#[cfg(test)]
#[path = "updater_tests.rs"]
mod tests;
