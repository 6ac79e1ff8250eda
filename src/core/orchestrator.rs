//! Reconcile one service: compare its tasks with its spec and the nodes, and return the
//! [`OrchestratorPlan`] that closes the gap. Pure: the store is read-only, IDs come from the
//! passed-in generator, time from `now_ms`, restart bookkeeping from a [`RestartTracker`].
//!
//! - Replicated: one live task per slot `1..=replicas`; slots above are shut down and their
//!   tasks removed once finished (scale-down drops the highest slots).
//! - Global: one live task per node that is ready, active and satisfies the constraints;
//!   paused nodes keep theirs; drained, down or no longer matching nodes lose theirs.
//! - Tasks on a node that is down or gone are marked orphaned (nobody else will report them)
//!   and replaced at once; tasks on a drained node get desired shutdown and are replaced.
//! - A task that finished while meant to run is replaced per restart policy and backoff; a
//!   delayed replacement sets `wake_at_ms`, when the caller must reconcile again.
//! - Each slot keeps its 5 newest finished tasks as history; older ones are removed.
//! - A removed service's tasks are removed once stopped (or unreachable).

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

use super::ids::new_id;
use super::model::{Availability, Node, NodeStatus, Service, Task, TaskState, TaskStatus};
use super::restart::{RestartDecision, RestartTracker, SlotId, SlotKey};
use super::spec::ServiceMode;
use super::store::{newest_first, Command, Store, TaskStatusUpdate};

/// Finished tasks kept per slot.
pub const HISTORY_PER_SLOT: usize = 5;

/// What the orchestrator wants committed for one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrchestratorPlan {
    /// Tasks to mark orphaned (their node is down or gone).
    pub status_updates: Vec<TaskStatusUpdate>,
    /// `(task_id, desired state)`: shutdown for replaced or surplus tasks, complete for slots
    /// their restart policy leaves finished.
    pub desired: Vec<(String, TaskState)>,
    /// New tasks.
    pub create: Vec<Task>,
    /// Tasks to remove (history beyond [`HISTORY_PER_SLOT`], removed slots, services, nodes).
    pub remove: Vec<String>,
    /// Reconcile again at this time (a delayed restart is due).
    pub wake_at_ms: Option<u64>,
}

impl OrchestratorPlan {
    /// Whether there is nothing to commit (a wake time alone commits nothing).
    pub fn is_empty(&self) -> bool {
        self.status_updates.is_empty()
            && self.desired.is_empty()
            && self.create.is_empty()
            && self.remove.is_empty()
    }

    /// The commands to propose, in order: orphan marks, desired states, creations, removals.
    pub fn into_commands(self) -> Vec<Command> {
        let mut commands = Vec::new();
        if !self.status_updates.is_empty() {
            commands.push(Command::UpdateTaskStatuses(self.status_updates));
        }
        if !self.desired.is_empty() {
            commands.push(Command::SetTaskDesiredStates(self.desired));
        }
        if !self.create.is_empty() {
            commands.push(Command::CreateTasks(self.create));
        }
        if !self.remove.is_empty() {
            commands.push(Command::RemoveTasks(self.remove));
        }
        commands
    }

    fn wake_at(&mut self, due_ms: u64) {
        self.wake_at_ms = Some(self.wake_at_ms.map_or(due_ms, |w| w.min(due_ms)));
    }
}

/// A task as this reconcile sees it, after the changes it has already decided.
struct View<'a> {
    task: &'a Task,
    state: TaskState,
    desired: TaskState,
    node_lost: bool,
}

struct Reconcile<'s, 'r, R: Rng + ?Sized> {
    store: &'s Store,
    now_ms: u64,
    restarts: &'r mut RestartTracker,
    rng: &'r mut R,
    plan: OrchestratorPlan,
}

/// Reconciles one service (or, if it was removed, cleans up its tasks).
pub fn reconcile_service<R: Rng + ?Sized>(
    store: &Store,
    service_id: &str,
    now_ms: u64,
    restarts: &mut RestartTracker,
    rng: &mut R,
) -> OrchestratorPlan {
    let mut run = Reconcile {
        store,
        now_ms,
        restarts,
        rng,
        plan: OrchestratorPlan::default(),
    };
    let views = run.views(service_id);
    match store.service(service_id) {
        None => run.removed_service(service_id, &views),
        Some(service) => match service.spec.mode {
            ServiceMode::Replicated { replicas } => run.replicated(service, replicas, &views),
            ServiceMode::Global => run.global(service, &views),
        },
    }
    run.plan
}

/// Services to reconcile when a node changes: those with tasks on it, and every global one.
pub fn services_affected_by_node(store: &Store, node_id: &str) -> BTreeSet<String> {
    let mut affected: BTreeSet<String> = store
        .tasks_of_node(node_id)
        .into_iter()
        .map(|t| t.service_id.clone())
        .collect();
    for service in store.services().values() {
        if service.spec.mode == ServiceMode::Global {
            affected.insert(service.id.clone());
        }
    }
    affected
}

/// Every service a full reconcile (on gaining leadership) must visit, removed ones included.
pub fn services_to_reconcile(store: &Store) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = store.services().keys().cloned().collect();
    all.extend(store.service_ids_with_tasks().map(str::to_string));
    all
}

fn group_newest_first<'v, 'a, K: Ord>(
    views: &'v [View<'a>],
    key: impl Fn(&Task) -> K,
) -> BTreeMap<K, Vec<&'v View<'a>>> {
    let mut groups: BTreeMap<K, Vec<&View<'a>>> = BTreeMap::new();
    for view in views {
        groups.entry(key(view.task)).or_default().push(view);
    }
    for tasks in groups.values_mut() {
        tasks.sort_by(|a, b| newest_first(a.task, b.task));
    }
    groups
}

impl<'s, R: Rng + ?Sized> Reconcile<'s, '_, R> {
    /// Reads the service's tasks, marking those on lost nodes orphaned first.
    fn views(&mut self, service_id: &str) -> Vec<View<'s>> {
        let store = self.store;
        let mut views = Vec::new();
        for task in store.service_task_iter(service_id) {
            let placed =
                task.status.state >= TaskState::Assigned && !task.status.state.is_terminal();
            let node = task.node_id.as_deref().and_then(|n| store.node(n));
            let node_lost = placed && node.is_none_or(|n| n.status == NodeStatus::Down);
            let mut view = View {
                task,
                state: task.status.state,
                desired: task.desired_state,
                node_lost,
            };
            if node_lost {
                self.plan.status_updates.push(TaskStatusUpdate {
                    task_id: task.id.clone(),
                    status: TaskStatus {
                        state: TaskState::Orphaned,
                        since_ms: self.now_ms,
                        message: "node is down".into(),
                        error: Some("node is down".into()),
                        exit_code: None,
                    },
                    runtime: None,
                    runtime_id: None,
                    endpoints: None,
                });
                view.state = TaskState::Orphaned;
            }
            views.push(view);
        }
        views
    }

    fn shut_down(&mut self, view: &View<'_>) {
        if view.desired < TaskState::Shutdown {
            self.plan
                .desired
                .push((view.task.id.clone(), TaskState::Shutdown));
        }
    }

    fn replicated(&mut self, service: &Service, replicas: u64, views: &[View<'_>]) {
        let slots = group_newest_first(views, |t| t.slot);
        for (slot, tasks) in &slots {
            let key = SlotKey {
                service_id: service.id.clone(),
                slot: SlotId::Replica(slot.unwrap_or(0)),
            };
            match slot {
                Some(slot) if (1..=replicas).contains(slot) => {
                    // Tasks on a drained node stop and are replaced like lost ones.
                    let drained: Vec<View<'_>> = tasks
                        .iter()
                        .map(|v| {
                            let on_drained = v.desired == TaskState::Running
                                && !v.state.is_terminal()
                                && v.state >= TaskState::Assigned
                                && self
                                    .node_of(v.task)
                                    .is_some_and(|n| n.availability == Availability::Drain);
                            View {
                                task: v.task,
                                state: v.state,
                                desired: if on_drained {
                                    TaskState::Shutdown
                                } else {
                                    v.desired
                                },
                                node_lost: v.node_lost,
                            }
                        })
                        .collect();
                    for (before, after) in tasks.iter().zip(&drained) {
                        if after.desired != before.desired {
                            self.plan
                                .desired
                                .push((after.task.id.clone(), after.desired));
                        }
                    }
                    let slot = *slot;
                    let refs: Vec<&View<'_>> = drained.iter().collect();
                    self.slot(service, &key, &refs, true, |id| {
                        Task::new(id, service, Some(slot), None)
                    });
                }
                _ => {
                    // Scaled away: stop, then remove once finished.
                    self.restarts.forget_slot(&key);
                    self.remove_when_stopped(tasks);
                }
            }
        }
        for slot in 1..=replicas {
            if !slots.contains_key(&Some(slot)) {
                let key = SlotKey {
                    service_id: service.id.clone(),
                    slot: SlotId::Replica(slot),
                };
                self.slot(service, &key, &[], true, |id| {
                    Task::new(id, service, Some(slot), None)
                });
            }
        }
    }

    fn global(&mut self, service: &Service, views: &[View<'_>]) {
        let by_node = group_newest_first(views, |t| t.node_id.clone());
        let constraints = &service.spec.constraints;
        for node in self.store.nodes().values() {
            let matches = constraints.iter().all(|c| c.matches(node));
            let keep = matches
                && node.status != NodeStatus::Down
                && node.availability != Availability::Drain;
            let can_create = keep
                && node.status == NodeStatus::Ready
                && node.availability == Availability::Active;
            let key = SlotKey {
                service_id: service.id.clone(),
                slot: SlotId::Node(node.id.clone()),
            };
            let tasks = by_node
                .get(&Some(node.id.clone()))
                .cloned()
                .unwrap_or_default();
            if keep {
                let node_id = node.id.clone();
                self.slot(service, &key, &tasks, can_create, |id| {
                    Task::new(id, service, None, Some(node_id))
                });
            } else {
                self.restarts.forget_slot(&key);
                for view in &tasks {
                    self.shut_down(view);
                }
                self.trim_history(&tasks, None);
            }
        }
        // Tasks whose node left the cluster (or that never had one): no history to keep.
        for (node_id, tasks) in &by_node {
            let gone = node_id
                .as_deref()
                .is_none_or(|n| self.store.node(n).is_none());
            if gone {
                if let Some(node_id) = node_id {
                    self.restarts.forget_slot(&SlotKey {
                        service_id: service.id.clone(),
                        slot: SlotId::Node(node_id.clone()),
                    });
                }
                self.remove_when_stopped(tasks);
            }
        }
    }

    fn removed_service(&mut self, service_id: &str, views: &[View<'_>]) {
        self.restarts.forget_service(service_id);
        let all: Vec<&View<'_>> = views.iter().collect();
        self.remove_when_stopped(&all);
    }

    /// Asks tasks to stop and removes those that are finished or that no worker holds.
    fn remove_when_stopped(&mut self, tasks: &[&View<'_>]) {
        for view in tasks {
            self.shut_down(view);
            if view.state.is_terminal() || view.state < TaskState::Assigned {
                self.plan.remove.push(view.task.id.clone());
            }
        }
    }

    fn node_of(&self, task: &Task) -> Option<&Node> {
        task.node_id.as_deref().and_then(|n| self.store.node(n))
    }

    /// One slot (replica number or global node), its tasks newest first.
    fn slot(
        &mut self,
        service: &Service,
        key: &SlotKey,
        tasks: &[&View<'_>],
        can_create: bool,
        make: impl FnOnce(String) -> Task,
    ) {
        let current = tasks.iter().position(|v| v.desired <= TaskState::Complete);
        for (i, view) in tasks.iter().enumerate() {
            if Some(i) != current
                && view.desired <= TaskState::Complete
                && !serves_until_replaced(view, current.map(|c| tasks[c]))
            {
                self.shut_down(view); // a duplicate: keep only the newest
            }
        }
        let create = match current.map(|i| tasks[i]) {
            // Stop-first rollout: the old task stops before the new one is created.
            None => !tasks
                .iter()
                .any(|v| stopping_for_rollout(v, service.spec_version)),
            Some(view) if view.desired == TaskState::Complete || !view.state.is_terminal() => false,
            Some(view) => {
                let policy = &service.spec.restart;
                match self
                    .restarts
                    .decide(key, view.task, policy, view.node_lost, self.now_ms)
                {
                    RestartDecision::Finish => {
                        self.plan
                            .desired
                            .push((view.task.id.clone(), TaskState::Complete));
                        false
                    }
                    RestartDecision::Replace { due_ms } if due_ms <= self.now_ms => {
                        if can_create {
                            self.shut_down(view);
                        }
                        true
                    }
                    RestartDecision::Replace { due_ms } => {
                        self.plan.wake_at(due_ms);
                        false
                    }
                }
            }
        };
        if create && can_create {
            self.plan.create.push(make(new_id(self.rng)));
        }
        self.trim_history(tasks, current);
    }

    /// Removes finished tasks beyond the newest [`HISTORY_PER_SLOT`] (the live one aside).
    fn trim_history(&mut self, tasks: &[&View<'_>], current: Option<usize>) {
        let finished = tasks
            .iter()
            .enumerate()
            .filter(|(i, v)| Some(*i) != current && v.state.is_terminal());
        for (_, view) in finished.skip(HISTORY_PER_SLOT) {
            self.plan.remove.push(view.task.id.clone());
        }
    }
}

/// Start-first rollout: an older task of another spec version keeps running beside the
/// slot's newest task until that one runs (healthy tasks only report running), so the slot
/// never goes without a running task; then it is the duplicate that stops.
fn serves_until_replaced(view: &View<'_>, newest: Option<&View<'_>>) -> bool {
    newest.is_some_and(|newest| {
        view.state == TaskState::Running
            && view.desired == TaskState::Running
            && view.task.spec_version != newest.task.spec_version
            && newest.state != TaskState::Running
    })
}

/// A task the updater asked to stop (stop-first) that has not stopped yet: its slot gets its
/// new task once it has.
fn stopping_for_rollout(view: &View<'_>, spec_version: u64) -> bool {
    view.desired == TaskState::Shutdown
        && view.state >= TaskState::Assigned
        && !view.state.is_terminal()
        && !view.node_lost
        && view.task.spec_version != spec_version
}

#[cfg(test)]
#[path = "orchestrator_tests.rs"]
mod tests;
