//! Progress of `service update` / `service rollback` without `-d`, as Docker shows it:
//! `overall progress: 2 out of 3 tasks` (for a rollback, a `rollback: <why>` line first and
//! `rolling back update: ` before the counts), one bar per slot, `verify: Waiting 5 seconds to
//! verify that tasks are stable...`, then `verify: Service converged`. The replicated
//! `update_status` decides the end: completed converges, paused fails with its message.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::client::progress::{Progress, CONVERGE_POLL_PERIOD};
use crate::client::{Client, ClientError};
use crate::core::model::Service;
use crate::core::rollout::UpdateState;
use crate::core::spec::ServiceMode;
use crate::net::admin::{AdminReply, AdminRequest, TaskView};

/// The CLI gives up when a rollout shows no change (no slot done, no state moved) for this
/// long; a rollout that moves on, however slowly, is followed to its end.
pub const ROLLOUT_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `task` runs the service's current spec (SPEC §7: its spec version is the
/// service's).
pub fn task_is_current(task: &TaskView, service: &Service) -> bool {
    task.spec_version == service.spec_version
}

/// What one look at the service and its tasks says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSnapshot {
    /// Slots (or nodes, for a global service) wanted.
    pub wanted: u64,
    /// Of those, the ones whose task runs the current spec.
    pub done: u64,
    /// Each slot's newest wanted task's state, by 1-based position.
    pub newest: BTreeMap<u64, String>,
}

/// Counts the slots that run the current spec. Slots of a global service are its nodes, in
/// ID order.
pub fn snapshot(service: &Service, tasks: &[TaskView]) -> RolloutSnapshot {
    let wanted_tasks: Vec<&TaskView> = tasks
        .iter()
        .filter(|t| t.desired_state == "running")
        .collect();
    let key_of = |task: &TaskView| -> Option<String> {
        match service.spec.mode {
            // Zero-padded, so string order is slot order.
            ServiceMode::Replicated { .. } => task.slot.map(|slot| format!("{slot:020}")),
            ServiceMode::Global => task.node_id.clone(),
        }
    };
    // Tasks come newest first within a slot.
    let mut newest: BTreeMap<String, &TaskView> = BTreeMap::new();
    let mut done_keys = std::collections::BTreeSet::new();
    for task in &wanted_tasks {
        let Some(key) = key_of(task) else { continue };
        if task.current_state == "running" && task_is_current(task, service) {
            done_keys.insert(key.clone());
        }
        newest.entry(key).or_insert(task);
    }
    let wanted = match service.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => newest.len() as u64,
    };
    let positions: BTreeMap<u64, String> = match service.spec.mode {
        ServiceMode::Replicated { .. } => newest
            .values()
            .filter_map(|t| t.slot.map(|slot| (slot, t.current_state.clone())))
            .collect(),
        ServiceMode::Global => newest
            .values()
            .enumerate()
            .map(|(index, t)| (index as u64 + 1, t.current_state.clone()))
            .collect(),
    };
    let done = match service.spec.mode {
        ServiceMode::Replicated { replicas } => done_keys
            .iter()
            .filter_map(|key| key.parse::<u64>().ok())
            .filter(|slot| (1..=replicas).contains(slot))
            .count() as u64,
        ServiceMode::Global => done_keys.len() as u64,
    };
    RolloutSnapshot {
        wanted,
        done,
        newest: positions,
    }
}

/// Where a followed rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Slots are still being replaced.
    Rolling,
    /// Every slot runs the current spec; the updater is still monitoring them.
    Verifying,
    /// The rollout completed.
    Converged,
    /// The rollout paused: the CLI's error message.
    Failed(String),
}

/// Reads the replicated status (a service without one has nothing left to roll out).
pub fn verdict(service: &Service, seen: &RolloutSnapshot) -> Verdict {
    let Some(status) = &service.update_status else {
        return Verdict::Converged;
    };
    match status.state {
        UpdateState::Paused => {
            Verdict::Failed(format!("service update paused: {}", status.message))
        }
        UpdateState::RollbackPaused => {
            Verdict::Failed(format!("service rollback paused: {}", status.message))
        }
        UpdateState::Completed | UpdateState::RollbackCompleted => Verdict::Converged,
        UpdateState::Updating | UpdateState::RollbackStarted if seen.done >= seen.wanted => {
            Verdict::Verifying
        }
        UpdateState::Updating | UpdateState::RollbackStarted => Verdict::Rolling,
    }
}

async fn inspect(client: &Client, service: &str) -> Result<Service, ClientError> {
    let request = AdminRequest::ServiceInspect {
        services: vec![service.to_string()],
    };
    match client.control(request).await? {
        AdminReply::ServiceDetails(services) => services
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Remote(format!("no such service: {service}"))),
        other => Err(ClientError::unexpected(other)),
    }
}

/// Follows the rollout of `service` (an update, or a rollback) until its `update_status` is
/// completed (prints `verify: Service converged`) or paused (fails with `service update
/// paused: <message>` / `service rollback paused: <message>`). Every poll is bounded by the
/// client's request timeout, and the whole by [`ROLLOUT_STALL_TIMEOUT`] without change.
pub async fn wait_rollout(client: &Client, service: &str) -> Result<(), ClientError> {
    let mut current = inspect(client, service).await?;
    let Some(status) = current.update_status.clone() else {
        return Err(ClientError::Remote(format!(
            "service {service} has no rollout to follow"
        )));
    };
    let rollback = status.state.is_rollback();
    if rollback {
        println!("rollback: {}", status.message);
    }
    let first = snapshot(&current, &[]);
    let label = if rollback {
        "rolling back update: "
    } else {
        ""
    };
    let mut progress = Progress::labelled(first.wanted, label);
    let monitor_ms = if rollback {
        current.spec.rollback.monitor_ms
    } else {
        current.spec.update.monitor_ms
    };
    let mut waiting_printed = false;
    let mut last_seen: Option<(u64, UpdateState)> = None;
    let mut last_change = Instant::now();
    loop {
        let tasks = client.service_tasks(&[current.id.clone()]).await?;
        let seen = snapshot(&current, &tasks);
        let newest: BTreeMap<u64, &str> = seen
            .newest
            .iter()
            .map(|(slot, state)| (*slot, state.as_str()))
            .collect();
        progress.show(seen.done, &newest);
        let state = current
            .update_status
            .as_ref()
            .map_or(UpdateState::Completed, |s| s.state);
        match verdict(&current, &seen) {
            Verdict::Failed(message) => return Err(ClientError::Remote(message)),
            Verdict::Converged => {
                progress.finish_bars();
                if !waiting_printed {
                    print_waiting(monitor_ms);
                }
                println!("verify: Service converged");
                return Ok(());
            }
            Verdict::Verifying if !waiting_printed => {
                print_waiting(monitor_ms);
                waiting_printed = true;
            }
            Verdict::Verifying | Verdict::Rolling => {}
        }
        if last_seen != Some((seen.done, state)) {
            last_seen = Some((seen.done, state));
            last_change = Instant::now();
        } else if last_change.elapsed() > ROLLOUT_STALL_TIMEOUT {
            return Err(ClientError::Remote(format!(
                "the rollout of service {service} made no progress within {} s ({} of {} tasks updated, state {}); see `flotilla service ps {service}` and `flotilla service inspect {service}`",
                ROLLOUT_STALL_TIMEOUT.as_secs(),
                seen.done,
                seen.wanted,
                state.as_str()
            )));
        }
        tokio::time::sleep(CONVERGE_POLL_PERIOD).await;
        current = inspect(client, &current.id).await?;
    }
}

fn print_waiting(monitor_ms: u64) {
    println!(
        "verify: Waiting {} seconds to verify that tasks are stable...",
        monitor_ms.div_ceil(1000)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rollout::UpdateStatus;
    use crate::core::spec::ServiceSpec;

    fn task(slot: u64, current: &str, desired: &str, created_at_ms: u64) -> TaskView {
        TaskView {
            id: format!("t{slot}{current}{created_at_ms}"),
            name: format!("web.{slot}"),
            service_id: "s".into(),
            service_name: "web".into(),
            image: "busybox".into(),
            slot: Some(slot),
            node_id: Some(format!("n{slot}")),
            node_hostname: None,
            desired_state: desired.into(),
            current_state: current.into(),
            state_since: String::new(),
            error: None,
            runtime: String::new(),
            runtime_id: None,
            exit_code: None,
            state_since_ms: 0,
            created_at_ms,
            assigned_at_ms: None,
            started_at_ms: None,
            // Tasks created after the rollout started (at 100) run its spec, version 2.
            spec_version: if created_at_ms >= 100 { 2 } else { 1 },
            ports: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    fn updating(replicas: u64) -> Service {
        let mut spec = ServiceSpec::new("web", "busybox");
        spec.mode = ServiceMode::Replicated { replicas };
        let mut service = Service::new("s".into(), spec);
        service.spec_version = 2;
        service.update_status = Some(UpdateStatus {
            state: UpdateState::Updating,
            message: "update in progress".into(),
            started_at_ms: 100,
            completed_at_ms: None,
        });
        service
    }

    #[test]
    fn only_running_tasks_of_the_current_spec_count() {
        let service = updating(3);
        let tasks = [
            task(1, "running", "running", 150),
            task(1, "shutdown", "shutdown", 10),
            task(2, "running", "running", 10),
            task(3, "starting", "running", 160),
            task(3, "shutdown", "shutdown", 10),
        ];
        let seen = snapshot(&service, &tasks);
        assert_eq!((seen.done, seen.wanted), (1, 3));
        assert_eq!(seen.newest.get(&3).map(String::as_str), Some("starting"));
        assert_eq!(seen.newest.get(&2).map(String::as_str), Some("running"));
        // Rolled back to version 1: the tasks that never left it are the current ones.
        let mut rolled_back = service.clone();
        rolled_back.spec_version = 1;
        assert_eq!(snapshot(&rolled_back, &tasks).done, 1);
    }

    #[test]
    fn the_status_decides_the_end_and_a_pause_fails_with_its_message() {
        let mut service = updating(2);
        let half = RolloutSnapshot {
            wanted: 2,
            done: 1,
            newest: BTreeMap::new(),
        };
        let all = RolloutSnapshot {
            done: 2,
            ..half.clone()
        };
        assert_eq!(verdict(&service, &half), Verdict::Rolling);
        assert_eq!(verdict(&service, &all), Verdict::Verifying);
        let set = |service: &mut Service, state: UpdateState, message: &str| {
            if let Some(status) = service.update_status.as_mut() {
                status.state = state;
                status.message = message.to_string();
            }
        };
        set(&mut service, UpdateState::Paused, "task t1 failed");
        assert_eq!(
            verdict(&service, &half),
            Verdict::Failed("service update paused: task t1 failed".into())
        );
        set(&mut service, UpdateState::RollbackPaused, "task t2 failed");
        assert_eq!(
            verdict(&service, &half),
            Verdict::Failed("service rollback paused: task t2 failed".into())
        );
        set(
            &mut service,
            UpdateState::RollbackStarted,
            "manually requested rollback",
        );
        assert_eq!(verdict(&service, &half), Verdict::Rolling);
        set(&mut service, UpdateState::Completed, "update completed");
        assert_eq!(verdict(&service, &half), Verdict::Converged);
        set(
            &mut service,
            UpdateState::RollbackCompleted,
            "rollback completed",
        );
        assert_eq!(verdict(&service, &half), Verdict::Converged);
    }

    #[test]
    fn a_global_service_counts_its_nodes() {
        let mut service = updating(0);
        service.spec.mode = ServiceMode::Global;
        let tasks = [
            task(1, "running", "running", 150),
            task(2, "running", "running", 50),
        ];
        let seen = snapshot(&service, &tasks);
        assert_eq!((seen.done, seen.wanted), (1, 2));
    }
}
