use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::core::model::NodeStatus;
use crate::core::restart::BACKOFF_INITIAL_MS;
use crate::core::scheduler::schedule_unassigned;
use crate::core::spec::RestartCondition;
use crate::core::store::NodeSpecUpdate;
use crate::core::testkit::{node, service, Harness};

/// Store, orchestrator, scheduler and obedient workers on a manual clock.
struct Sim {
    h: Harness,
    restarts: RestartTracker,
    rng: StdRng,
    now_ms: u64,
}

impl Sim {
    fn new(nodes: &[&str]) -> Sim {
        Sim {
            h: Harness::with_nodes(nodes.iter().map(|n| node(n)).collect()),
            restarts: RestartTracker::new(),
            rng: StdRng::seed_from_u64(1),
            now_ms: 1_000_000,
        }
    }

    fn apply(&mut self, command: Command) {
        self.h.apply_at(self.now_ms, command);
    }

    fn reconcile(&mut self, service_id: &str) -> OrchestratorPlan {
        let plan = reconcile_service(
            &self.h.store,
            service_id,
            self.now_ms,
            &mut self.restarts,
            &mut self.rng,
        );
        for command in plan.clone().into_commands() {
            self.apply(command);
        }
        for command in schedule_unassigned(&self.h.store, 1_000).into_commands() {
            self.apply(command);
        }
        plan
    }

    /// Workers on ready nodes start what should run and stop what should not.
    fn workers(&mut self) {
        let mut reports = Vec::new();
        for task in self.h.store.tasks().values() {
            let ready = task
                .node_id
                .as_deref()
                .and_then(|n| self.h.store.node(n))
                .is_some_and(|n| n.status == NodeStatus::Ready);
            let state = task.status.state;
            let next = if task.desired_state == TaskState::Running
                && state >= TaskState::Assigned
                && state < TaskState::Running
            {
                TaskState::Running
            } else if task.desired_state > TaskState::Running
                && state >= TaskState::Assigned
                && !state.is_terminal()
            {
                TaskState::Shutdown
            } else {
                continue;
            };
            if ready {
                reports.push(self.report(&task.id, next));
            }
        }
        self.apply(Command::UpdateTaskStatuses(reports));
    }

    fn report(&self, task_id: &str, state: TaskState) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: task_id.into(),
            status: TaskStatus {
                state,
                since_ms: self.now_ms,
                ..TaskStatus::default()
            },
            runtime: None,
            runtime_id: None,
            endpoints: None,
        }
    }

    fn converge(&mut self, service_id: &str) {
        for _ in 0..4 {
            self.reconcile(service_id);
            self.workers();
        }
    }

    /// `(slot or node, node)` of tasks running and meant to run.
    fn live(&self, service_id: &str) -> Vec<(Option<u64>, String)> {
        self.h
            .store
            .tasks_of_service(service_id)
            .into_iter()
            .filter(|t| {
                t.desired_state == TaskState::Running && t.status.state == TaskState::Running
            })
            .map(|t| (t.slot, t.node_id.clone().unwrap_or_default()))
            .collect()
    }

    fn live_task_of_slot(&self, service_id: &str, slot: u64) -> String {
        let tasks = self.h.store.tasks_of_service(service_id);
        let live = tasks
            .iter()
            .find(|t| t.slot == Some(slot) && t.desired_state == TaskState::Running);
        live.map(|t| t.id.clone()).expect("slot has a live task")
    }

    fn set_replicas(&mut self, service_id: &str, replicas: u64) {
        let mut spec = self.h.store.service(service_id).unwrap().spec.clone();
        spec.mode = ServiceMode::Replicated { replicas };
        self.apply(Command::UpdateService {
            service_id: service_id.into(),
            spec,
            expected_version: None,
        });
    }

    fn node_status(&mut self, node_id: &str, status: NodeStatus) {
        self.apply(Command::UpdateNodeStatus {
            node_id: node_id.into(),
            status,
        });
    }

    fn availability(&mut self, node_id: &str, availability: Availability) {
        let update = NodeSpecUpdate {
            node_id: node_id.into(),
            availability: Some(availability),
            ..Default::default()
        };
        self.apply(Command::UpdateNodeSpec(update));
    }
}

fn slots(live: &[(Option<u64>, String)]) -> Vec<u64> {
    live.iter().filter_map(|(slot, _)| *slot).collect()
}

#[test]
fn scale_zero_five_two_zero() {
    let mut sim = Sim::new(&["n1", "n2", "n3"]);
    sim.apply(Command::CreateService(service("s1", "web", 0)));
    assert!(sim.reconcile("s1").is_empty());
    let steps: [(u64, &[u64]); 3] = [(5, &[1, 2, 3, 4, 5]), (2, &[1, 2]), (0, &[])];
    for (replicas, expected) in steps {
        sim.set_replicas("s1", replicas);
        sim.converge("s1");
        let live = sim.live("s1");
        assert_eq!(slots(&live), expected, "replicas {replicas}");
        // Scaled-away slots leave no tasks behind.
        assert_eq!(sim.h.store.tasks_of_service("s1").len(), expected.len());
    }
    sim.set_replicas("s1", 5);
    sim.converge("s1");
    let mut per_node = BTreeMap::new();
    for (_, node) in sim.live("s1") {
        *per_node.entry(node).or_insert(0) += 1;
    }
    assert_eq!(per_node.into_values().collect::<Vec<_>>(), [2, 2, 1]);
}

#[test]
fn failed_tasks_back_off_and_history_is_trimmed_to_five() {
    let mut sim = Sim::new(&["n1", "n2"]);
    sim.apply(Command::CreateService(service("s1", "web", 1)));
    sim.converge("s1");
    let mut delays = Vec::new();
    for _ in 0..8 {
        let task_id = sim.live_task_of_slot("s1", 1);
        let failed = sim.report(&task_id, TaskState::Failed);
        sim.apply(Command::UpdateTaskStatuses(vec![failed]));
        let plan = sim.reconcile("s1");
        match plan.wake_at_ms {
            None => {
                assert_eq!(plan.create.len(), 1, "immediate replacement");
                delays.push(0);
            }
            Some(wake_at_ms) => {
                assert!(plan.create.is_empty());
                delays.push(wake_at_ms - sim.now_ms);
                sim.now_ms = wake_at_ms;
                assert_eq!(sim.reconcile("s1").create.len(), 1);
            }
        }
        sim.workers();
        sim.reconcile("s1");
    }
    assert_eq!(
        delays,
        [0, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
    );
    let tasks = sim.h.store.tasks_of_service("s1");
    assert_eq!(tasks.len(), 1 + HISTORY_PER_SLOT);
    assert!(tasks[1..]
        .iter()
        .all(|t| t.status.state == TaskState::Failed && t.desired_state == TaskState::Shutdown));
    // A minute of running resets the backoff: the next failure is replaced at once.
    sim.now_ms += 60_000;
    let task_id = sim.live_task_of_slot("s1", 1);
    sim.apply(Command::UpdateTaskStatuses(vec![
        sim.report(&task_id, TaskState::Failed)
    ]));
    let plan = sim.reconcile("s1");
    assert_eq!((plan.create.len(), plan.wake_at_ms), (1, None));
    let _ = BACKOFF_INITIAL_MS;
}

#[test]
fn restart_condition_none_leaves_the_slot_finished() {
    let mut sim = Sim::new(&["n1"]);
    let mut s = service("s1", "job", 1);
    s.spec.restart.condition = RestartCondition::None;
    sim.apply(Command::CreateService(s));
    sim.converge("s1");
    let task_id = sim.live_task_of_slot("s1", 1);
    sim.apply(Command::UpdateTaskStatuses(vec![
        sim.report(&task_id, TaskState::Complete)
    ]));
    sim.converge("s1");
    let tasks = sim.h.store.tasks_of_service("s1");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].desired_state, TaskState::Complete);
}

#[test]
fn down_node_tasks_are_orphaned_replaced_and_stopped_on_return() {
    let mut sim = Sim::new(&["n1", "n2", "n3"]);
    sim.apply(Command::CreateService(service("s1", "web", 3)));
    sim.converge("s1");
    let on_n1: Vec<String> = sim
        .h
        .store
        .tasks_of_node("n1")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(on_n1.len(), 1);
    sim.node_status("n1", NodeStatus::Down);
    let plan = sim.reconcile("s1");
    assert_eq!(plan.status_updates.len(), 1);
    assert_eq!(plan.create.len(), 1);
    sim.converge("s1");
    let live = sim.live("s1");
    assert_eq!(slots(&live), [1, 2, 3]);
    assert!(live.iter().all(|(_, node)| node != "n1"));
    let old = sim.h.store.task(&on_n1[0]).unwrap();
    assert_eq!(
        (old.status.state, old.desired_state),
        (TaskState::Orphaned, TaskState::Shutdown)
    );
    // Back again: the replaced task is still meant to stay down, so the worker stops it.
    sim.node_status("n1", NodeStatus::Ready);
    sim.converge("s1");
    assert_eq!(sim.live("s1").len(), 3);
}

#[test]
fn drained_node_tasks_move_elsewhere() {
    let mut sim = Sim::new(&["n1", "n2"]);
    sim.apply(Command::CreateService(service("s1", "web", 4)));
    sim.converge("s1");
    sim.availability("n1", Availability::Drain);
    sim.converge("s1");
    let live = sim.live("s1");
    assert_eq!(slots(&live), [1, 2, 3, 4]);
    assert!(live.iter().all(|(_, node)| node == "n2"));
    assert!(sim
        .h
        .store
        .tasks_of_node("n1")
        .iter()
        .all(|t| t.status.state == TaskState::Shutdown));
}

#[test]
fn global_follows_node_changes() {
    let mut sim = Sim::new(&["n1", "n2"]);
    let mut s = service("g", "agent", 0);
    s.spec.mode = ServiceMode::Global;
    sim.apply(Command::CreateService(s));
    sim.converge("g");
    let nodes = |sim: &Sim| {
        sim.live("g")
            .into_iter()
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(nodes(&sim), ["n1", "n2"]);
    sim.apply(Command::UpsertNode(node("n3")));
    sim.converge("g");
    assert_eq!(nodes(&sim), ["n1", "n2", "n3"]);
    sim.availability("n2", Availability::Drain);
    sim.converge("g");
    assert_eq!(nodes(&sim), ["n1", "n3"]);
    sim.availability("n2", Availability::Pause);
    sim.converge("g");
    assert_eq!(nodes(&sim), ["n1", "n3"], "a paused node takes no new task");
    sim.node_status("n3", NodeStatus::Down);
    sim.apply(Command::RemoveNode {
        node_id: "n3".into(),
        force: false,
    });
    sim.converge("g");
    assert_eq!(nodes(&sim), ["n1"]);
    assert!(sim.h.store.tasks_of_node("n3").is_empty());
    sim.availability("n2", Availability::Active);
    sim.converge("g");
    assert_eq!(nodes(&sim), ["n1", "n2"]);
    assert_eq!(
        sim.h.store.desired_count(sim.h.store.service("g").unwrap()),
        2
    );
    assert!(services_affected_by_node(&sim.h.store, "n9").contains("g"));
}

#[test]
fn removed_service_tasks_stop_then_go() {
    let mut sim = Sim::new(&["n1"]);
    sim.apply(Command::CreateService(service("s1", "web", 2)));
    sim.converge("s1");
    sim.apply(Command::RemoveService {
        service_id: "s1".into(),
    });
    assert!(services_to_reconcile(&sim.h.store).contains("s1"));
    assert!(sim.reconcile("s1").remove.is_empty(), "still running");
    sim.workers();
    assert_eq!(sim.reconcile("s1").remove.len(), 2);
    assert!(sim.h.store.tasks().is_empty());
    assert!(sim.restarts.is_empty());
}
