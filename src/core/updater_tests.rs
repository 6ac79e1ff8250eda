use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::core::model::{TaskStatus, VersionedSpec};
use crate::core::orchestrator::reconcile_service;
use crate::core::restart::RestartTracker;
use crate::core::scheduler::schedule_unassigned;
use crate::core::spec::ServiceSpec;
use crate::core::store::TaskStatusUpdate;
use crate::core::testkit::{node, service, Harness};

/// Store, orchestrator, updater, scheduler and workers on a manual clock. Workers move every
/// task one step per round: wanted tasks start running (or fail, for specs marked bad),
/// unwanted ones stop.
struct Sim {
    h: Harness,
    restarts: RestartTracker,
    rng: StdRng,
    now_ms: u64,
    /// Tasks of this spec version fail instead of running.
    bad_version: Option<u64>,
}

impl Sim {
    fn new(replicas: u64) -> Sim {
        let mut sim = Sim {
            h: Harness::with_nodes(vec![node("n1"), node("n2"), node("n3")]),
            restarts: RestartTracker::new(),
            rng: StdRng::seed_from_u64(7),
            now_ms: 1_000_000,
            bad_version: None,
        };
        sim.apply(Command::CreateService(service("s1", "web", replicas)));
        for _ in 0..4 {
            sim.round();
        }
        sim
    }

    fn apply(&mut self, command: Command) {
        self.h.apply_at(self.now_ms, command);
    }

    fn round(&mut self) {
        let plan = reconcile_service(
            &self.h.store,
            "s1",
            self.now_ms,
            &mut self.restarts,
            &mut self.rng,
        );
        for command in plan.into_commands() {
            self.apply(command);
        }
        let rollout = plan_rollout(&self.h.store, "s1", self.now_ms, &mut self.rng);
        for command in rollout.commands {
            self.apply(command);
        }
        for command in schedule_unassigned(&self.h.store, 1_000).into_commands() {
            self.apply(command);
        }
        self.workers();
        self.now_ms += 1_000;
    }

    fn workers(&mut self) {
        let mut reports = Vec::new();
        for task in self.h.store.tasks().values() {
            let state = task.status.state;
            let next = if task.desired_state == TaskState::Running
                && state >= TaskState::Assigned
                && state < TaskState::Running
            {
                if Some(task.spec_version) == self.bad_version {
                    TaskState::Failed
                } else {
                    TaskState::Running
                }
            } else if task.desired_state > TaskState::Running
                && state >= TaskState::Assigned
                && !state.is_terminal()
            {
                TaskState::Shutdown
            } else {
                continue;
            };
            reports.push(TaskStatusUpdate {
                task_id: task.id.clone(),
                status: TaskStatus {
                    state: next,
                    since_ms: self.now_ms,
                    ..TaskStatus::default()
                },
                runtime: None,
                runtime_id: None,
                endpoints: None,
            });
        }
        if !reports.is_empty() {
            self.apply(Command::UpdateTaskStatuses(reports));
        }
    }

    fn update(&mut self, change: impl FnOnce(&mut ServiceSpec)) -> u64 {
        let mut spec = self.service().spec.clone();
        change(&mut spec);
        self.apply(Command::UpdateService {
            service_id: "s1".into(),
            spec,
            expected_version: None,
        });
        self.service().spec_version
    }

    fn service(&self) -> &Service {
        self.h.store.service("s1").expect("service exists")
    }

    fn state(&self) -> Option<UpdateState> {
        self.service().update_status.as_ref().map(|s| s.state)
    }

    /// Per slot, the spec versions of its running tasks meant to run.
    fn running(&self) -> BTreeMap<u64, Vec<u64>> {
        let mut slots: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for task in self.h.store.tasks_of_service("s1") {
            if task.status.state == TaskState::Running {
                slots
                    .entry(task.slot.unwrap_or(0))
                    .or_default()
                    .push(task.spec_version);
            }
        }
        slots
    }

    /// Slots with a live task (not finished) of `version`, not yet running.
    fn starting_of(&self, version: u64) -> usize {
        self.h
            .store
            .tasks_of_service("s1")
            .into_iter()
            .filter(|t| t.spec_version == version && !t.status.state.is_terminal())
            .filter(|t| t.status.state != TaskState::Running)
            .count()
    }

    fn run_until(&mut self, state: UpdateState, rounds: usize, mut check: impl FnMut(&Sim)) {
        for _ in 0..rounds {
            if self.state() == Some(state) {
                return;
            }
            self.round();
            check(self);
        }
        panic!(
            "not {state:?} after {rounds} rounds: {:?}",
            self.service().update_status
        );
    }
}

fn with_order(order: UpdateOrder) -> impl FnOnce(&mut ServiceSpec) {
    move |spec| {
        spec.image = "busybox:2".into();
        spec.update.order = order;
        spec.update.monitor_ms = 2_000;
    }
}

#[test]
fn stop_first_rolls_one_slot_at_a_time_and_completes_after_the_monitor_period() {
    let mut sim = Sim::new(3);
    let old = sim.service().spec_version;
    let new = sim.update(with_order(UpdateOrder::StopFirst));
    assert_ne!(old, new);
    assert_eq!(sim.state(), Some(UpdateState::Updating));
    assert_eq!(
        sim.service().previous_spec.as_ref().map(|p| p.version),
        Some(old)
    );
    sim.run_until(UpdateState::Completed, 40, |sim| {
        assert!(
            sim.starting_of(new) <= 1,
            "parallelism 1: {:?}",
            sim.running()
        );
        for versions in sim.running().values() {
            assert!(
                versions.len() <= 1,
                "stop-first never runs two: {versions:?}"
            );
        }
    });
    let running = sim.running();
    assert_eq!(running.len(), 3);
    assert!(running.values().all(|v| v == &vec![new]), "{running:?}");
    let status = sim.service().update_status.clone().expect("status");
    assert_eq!(status.message, "update completed");
    assert!(status.completed_at_ms.is_some());
}

#[test]
fn start_first_keeps_every_slot_running_through_the_update() {
    let mut sim = Sim::new(4);
    let new = sim.update(with_order(UpdateOrder::StartFirst));
    sim.run_until(UpdateState::Completed, 40, |sim| {
        let running = sim.running();
        assert_eq!(
            running.len(),
            4,
            "a slot went without a running task: {running:?}"
        );
    });
    assert!(sim.running().values().all(|v| v == &vec![new]));
}

#[test]
fn parallelism_zero_updates_every_slot_at_once_and_delay_spaces_slots() {
    let mut sim = Sim::new(3);
    let new = sim.update(|spec| {
        spec.image = "busybox:2".into();
        spec.update.parallelism = 0;
        spec.update.order = UpdateOrder::StartFirst;
    });
    sim.round();
    let running = sim.running();
    assert!(
        running.len() == 3 && running.values().all(|v| v.contains(&new)),
        "all three slots at once: {running:?}"
    );

    let mut sim = Sim::new(3);
    let new = sim.update(|spec| {
        spec.image = "busybox:2".into();
        spec.update.delay_ms = 5_000;
        spec.update.monitor_ms = 0;
    });
    let mut first_run_at = BTreeMap::new();
    sim.run_until(UpdateState::Completed, 60, |sim| {
        for task in sim.h.store.tasks_of_service("s1") {
            if task.spec_version == new {
                if let Some(started) = task.started_at_ms {
                    first_run_at.entry(task.slot).or_insert(started);
                }
            }
        }
    });
    let times: Vec<u64> = first_run_at.values().copied().collect();
    assert_eq!(times.len(), 3);
    let mut sorted = times.clone();
    sorted.sort();
    for pair in sorted.windows(2) {
        assert!(pair[1] - pair[0] >= 5_000, "delay not kept: {sorted:?}");
    }
}

#[test]
fn a_failing_update_pauses_and_names_the_task() {
    let mut sim = Sim::new(3);
    let old = sim.service().spec_version;
    let new = sim.update(with_order(UpdateOrder::StartFirst));
    sim.bad_version = Some(new);
    sim.run_until(UpdateState::Paused, 20, |_| {});
    let status = sim.service().update_status.clone().expect("status");
    assert!(
        status
            .message
            .starts_with("update paused due to failure or early termination of task "),
        "{}",
        status.message
    );
    // Start-first: the old tasks never stopped.
    let running = sim.running();
    assert_eq!(running.len(), 3);
    assert!(running.values().all(|v| v == &vec![old]), "{running:?}");
    // Paused stays paused: nothing more is rolled out.
    for _ in 0..5 {
        sim.round();
    }
    assert_eq!(sim.state(), Some(UpdateState::Paused));
}

#[test]
fn failure_action_rollback_restores_the_previous_spec_everywhere() {
    let mut sim = Sim::new(3);
    let old = sim.service().spec_version;
    let new = sim.update(|spec| {
        spec.image = "busybox:broken".into();
        spec.update.failure_action = FailureAction::Rollback;
        spec.update.monitor_ms = 1_000;
    });
    sim.bad_version = Some(new);
    sim.run_until(UpdateState::RollbackCompleted, 40, |_| {});
    assert_eq!(sim.service().spec_version, old);
    assert_eq!(sim.service().spec.image, "busybox");
    let running = sim.running();
    assert_eq!(running.len(), 3);
    assert!(running.values().all(|v| v == &vec![old]), "{running:?}");
    assert_eq!(
        sim.service().previous_spec,
        Some(VersionedSpec {
            spec: {
                let mut spec = sim.service().spec.clone();
                spec.image = "busybox:broken".into();
                spec.update.failure_action = FailureAction::Rollback;
                spec.update.monitor_ms = 1_000;
                spec
            },
            version: new,
        })
    );
}

#[test]
fn a_manual_rollback_mid_update_keeps_the_slots_already_on_the_old_spec() {
    let mut sim = Sim::new(3);
    let old = sim.service().spec_version;
    sim.update(|spec| {
        spec.image = "busybox:2".into();
        spec.update.monitor_ms = 0;
    });
    sim.round();
    sim.round();
    sim.apply(Command::RollbackService {
        service_id: "s1".into(),
        expected_version: None,
        message: "manually requested rollback".into(),
    });
    assert_eq!(sim.state(), Some(UpdateState::RollbackStarted));
    sim.run_until(UpdateState::RollbackCompleted, 40, |_| {});
    assert!(sim.running().values().all(|v| v == &vec![old]));
}

#[test]
fn a_new_leader_continues_from_the_store_alone() {
    let mut sim = Sim::new(4);
    let new = sim.update(with_order(UpdateOrder::StopFirst));
    sim.round();
    sim.round();
    // Leadership moves: the new leader's components start with no memory of the rollout.
    sim.restarts = RestartTracker::new();
    sim.rng = StdRng::seed_from_u64(99);
    sim.run_until(UpdateState::Completed, 40, |_| {});
    let running = sim.running();
    assert_eq!(running.len(), 4);
    assert!(running.values().all(|v| v == &vec![new]), "{running:?}");
}

#[test]
fn scaling_alone_starts_no_rollout() {
    let mut sim = Sim::new(2);
    let version = sim.service().spec_version;
    sim.update(|spec| spec.mode = ServiceMode::Replicated { replicas: 5 });
    assert_eq!(sim.service().spec_version, version);
    assert_eq!(sim.state(), None);
    assert!(sim.service().previous_spec.is_none());
    for _ in 0..4 {
        sim.round();
    }
    assert_eq!(sim.running().len(), 5);
}
