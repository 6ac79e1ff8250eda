//! Commands proposed through Raft, their validation (`check`) and their deterministic
//! application (`apply`), and the events watchers receive.
//!
//! Single-object commands are all-or-nothing: `check` refuses them and nothing changes.
//! Batched task commands come from leader components racing with other changes (a task may be
//! removed between planning and commit), so they apply item by item and skip stale items
//! (unknown task, state already past); `check` refuses only a malformed batch.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{is_unassigned, Store};
use crate::core::error::CoreError;
use crate::core::model::{
    Availability, ClusterInfo, Meta, Node, NodeRole, NodeStatus, Service, Task, TaskState,
    TaskStatus,
};
use crate::core::spec::{ServiceMode, ServiceSpec};

/// `node update` / `promote` / `demote`: only the fields that are `Some` or non-empty change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeSpecUpdate {
    /// Node to change.
    pub node_id: String,
    /// New availability.
    pub availability: Option<Availability>,
    /// New role.
    pub role: Option<NodeRole>,
    /// Labels to add or overwrite.
    pub labels_add: BTreeMap<String, String>,
    /// Label keys to remove (after adding).
    pub labels_rm: Vec<String>,
    /// Refuse unless the node is still at this version.
    pub expected_version: Option<u64>,
}

/// A worker's report about one task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TaskStatusUpdate {
    /// The task.
    pub task_id: String,
    /// Its new observed status; ignored unless the state moves forward.
    pub status: TaskStatus,
    /// `docker`, `process` or `sim`, when known.
    pub runtime: Option<String>,
    /// Container or process ID, when known.
    pub runtime_id: Option<String>,
}

/// A replicated change to the cluster state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Create the cluster record (`init`).
    InitCluster(ClusterInfo),
    /// Replace one join secret (`join-token --rotate`).
    RotateJoinSecret {
        /// Which token.
        role: NodeRole,
        /// The new secret.
        secret: String,
    },
    /// Register a node or replace its record; the caller merges what it keeps. The creation
    /// time of an existing record is kept.
    UpsertNode(Node),
    /// Liveness change from the heartbeat monitor; a no-op when unchanged.
    UpdateNodeStatus {
        /// The node.
        node_id: String,
        /// Its new status.
        status: NodeStatus,
    },
    /// Availability, role and labels from `node update` / `promote` / `demote`.
    UpdateNodeSpec(NodeSpecUpdate),
    /// `node rm`: refused for a node that is not down unless forced, and for a manager.
    RemoveNode {
        /// The node.
        node_id: String,
        /// Remove even if not down.
        force: bool,
    },
    /// `service create`.
    CreateService(Service),
    /// `service scale` and other spec changes, with optimistic concurrency.
    UpdateService {
        /// The service.
        service_id: String,
        /// The full new spec.
        spec: ServiceSpec,
        /// Refuse unless the service is still at this version.
        expected_version: Option<u64>,
    },
    /// `service rm`: the service goes at once; its tasks get desired state shutdown and are
    /// removed by the orchestrator once stopped.
    RemoveService {
        /// The service.
        service_id: String,
    },
    /// Orchestrator: new tasks (duplicated IDs refuse the batch; unknown services skip).
    CreateTasks(Vec<Task>),
    /// Scheduler: `(task_id, node_id)` placements.
    AssignTasks(Vec<(String, String)>),
    /// Dispatcher: worker reports; stale ones (not strictly forward) are skipped.
    UpdateTaskStatuses(Vec<TaskStatusUpdate>),
    /// Orchestrator: `(task_id, desired state)`; desired states only move forward too.
    SetTaskDesiredStates(Vec<(String, TaskState)>),
    /// Orchestrator: drop tasks (history trimming, removed services).
    RemoveTasks(Vec<String>),
    /// Scheduler: `(task_id, reason)` for tasks that fit nowhere; they become pending.
    SetPendingReasons(Vec<(String, String)>),
}

/// A task as watchers need to route it: to its service and, if any, its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRef {
    /// Task ID.
    pub task_id: String,
    /// Service ID.
    pub service_id: String,
    /// Node ID, if placed or targeted.
    pub node_id: Option<String>,
    /// Its state after the change.
    pub state: TaskState,
    /// Its desired state after the change.
    pub desired_state: TaskState,
}

impl TaskRef {
    fn of(task: &Task) -> TaskRef {
        TaskRef {
            task_id: task.id.clone(),
            service_id: task.service_id.clone(),
            node_id: task.node_id.clone(),
            state: task.status.state,
            desired_state: task.desired_state,
        }
    }

    /// Whether this is a worker's progress report on a task that is meant to run and has not
    /// finished (accepted, preparing, starting, running): nothing the orchestrator must act on.
    pub fn is_progress(&self) -> bool {
        self.desired_state == TaskState::Running
            && self.state >= TaskState::Accepted
            && !self.state.is_terminal()
    }
}

/// What changed in one apply, for watchers (orchestrator, scheduler, dispatcher, CLI progress).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The cluster record was created or a join secret changed.
    ClusterChanged,
    /// A node was created or changed.
    NodeChanged {
        /// The node.
        node_id: String,
    },
    /// A node was removed.
    NodeRemoved {
        /// The node.
        node_id: String,
    },
    /// A service was created.
    ServiceCreated {
        /// The service.
        service_id: String,
    },
    /// A service's spec changed.
    ServiceUpdated {
        /// The service.
        service_id: String,
    },
    /// A service was removed.
    ServiceRemoved {
        /// The service.
        service_id: String,
    },
    /// A task was created.
    TaskCreated(TaskRef),
    /// A task changed (after the change: a newly assigned task carries its node).
    TaskUpdated(TaskRef),
    /// A task was removed.
    TaskRemoved(TaskRef),
}

fn not_found(kind: &'static str, id: &str) -> CoreError {
    CoreError::NotFound {
        kind,
        query: id.to_string(),
    }
}

fn check_version(
    kind: &'static str,
    id: &str,
    meta: &Meta,
    expected: Option<u64>,
) -> Result<(), CoreError> {
    match expected {
        Some(expected) if expected != meta.version => Err(CoreError::VersionMismatch {
            kind,
            id: id.to_string(),
            expected,
            found: meta.version,
        }),
        _ => Ok(()),
    }
}

fn touch(meta: &mut Meta, index: u64, now_ms: u64) {
    meta.version = index;
    meta.updated_at_ms = now_ms;
}

fn created(index: u64, now_ms: u64) -> Meta {
    Meta {
        version: index,
        created_index: index,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    }
}

impl Store {
    /// Validates a command against the current state without changing anything; run by the
    /// leader before proposing and again by [`Store::apply`] on every replica.
    pub fn check(&self, command: &Command) -> Result<(), CoreError> {
        match command {
            Command::InitCluster(_) => match self.cluster {
                Some(_) => Err(CoreError::AlreadyInitialized),
                None => Ok(()),
            },
            Command::RotateJoinSecret { secret, .. } => {
                if self.cluster.is_none() {
                    return Err(CoreError::NotInitialized);
                }
                if secret.is_empty() {
                    return Err(CoreError::InvalidCommand("empty join secret".into()));
                }
                Ok(())
            }
            Command::UpsertNode(node) => {
                if node.id.is_empty() {
                    return Err(CoreError::InvalidCommand("node without ID".into()));
                }
                Ok(())
            }
            Command::UpdateNodeStatus { node_id, .. } => self
                .node(node_id)
                .map(|_| ())
                .ok_or_else(|| not_found("node", node_id)),
            Command::UpdateNodeSpec(update) => {
                let node = self
                    .node(&update.node_id)
                    .ok_or_else(|| not_found("node", &update.node_id))?;
                check_version("node", &node.id, &node.meta, update.expected_version)?;
                if update.labels_add.keys().any(String::is_empty) {
                    return Err(CoreError::InvalidCommand("empty label key".into()));
                }
                Ok(())
            }
            Command::RemoveNode { node_id, force } => {
                let node = self
                    .node(node_id)
                    .ok_or_else(|| not_found("node", node_id))?;
                if node.role == NodeRole::Manager {
                    return Err(CoreError::InvalidCommand(format!(
                        "node {node_id} is a cluster manager; demote it before removal"
                    )));
                }
                if !force && node.status != NodeStatus::Down {
                    return Err(CoreError::NodeNotDown(node_id.clone()));
                }
                Ok(())
            }
            Command::CreateService(service) => {
                if service.id.is_empty() {
                    return Err(CoreError::InvalidCommand("service without ID".into()));
                }
                if self.services.contains_key(&service.id) {
                    return Err(CoreError::AlreadyExists {
                        kind: "service",
                        id: service.id.clone(),
                    });
                }
                if self.index.service_by_name.contains_key(&service.spec.name) {
                    return Err(CoreError::NameInUse(service.spec.name.clone()));
                }
                service.spec.validate()
            }
            Command::UpdateService {
                service_id,
                spec,
                expected_version,
            } => {
                let service = self
                    .service(service_id)
                    .ok_or_else(|| not_found("service", service_id))?;
                check_version("service", service_id, &service.meta, *expected_version)?;
                spec.validate()?;
                let was_global = service.spec.mode == ServiceMode::Global;
                if was_global != (spec.mode == ServiceMode::Global) {
                    return Err(CoreError::InvalidCommand(
                        "a service's mode can't be changed".into(),
                    ));
                }
                match self.index.service_by_name.get(&spec.name) {
                    Some(owner) if owner != service_id => {
                        Err(CoreError::NameInUse(spec.name.clone()))
                    }
                    _ => Ok(()),
                }
            }
            Command::RemoveService { service_id } => self
                .service(service_id)
                .map(|_| ())
                .ok_or_else(|| not_found("service", service_id)),
            Command::CreateTasks(tasks) => {
                let mut seen = BTreeSet::new();
                for task in tasks {
                    if task.id.is_empty()
                        || self.tasks.contains_key(&task.id)
                        || !seen.insert(&task.id)
                    {
                        return Err(CoreError::AlreadyExists {
                            kind: "task",
                            id: task.id.clone(),
                        });
                    }
                }
                Ok(())
            }
            Command::SetTaskDesiredStates(items) => {
                match items.iter().find(|(_, state)| *state < TaskState::Running) {
                    Some((id, state)) => Err(CoreError::InvalidCommand(format!(
                        "desired state {} for task {id}",
                        state.as_str()
                    ))),
                    None => Ok(()),
                }
            }
            Command::AssignTasks(_)
            | Command::UpdateTaskStatuses(_)
            | Command::RemoveTasks(_)
            | Command::SetPendingReasons(_) => Ok(()),
        }
    }

    /// Applies a committed command at Raft `index`, with the leader's `now_ms` carried in the
    /// entry so every replica computes the same result. Re-runs [`Store::check`]; on `Err`
    /// the store is unchanged. Changed objects get `meta.version = index`.
    pub fn apply(
        &mut self,
        index: u64,
        now_ms: u64,
        command: Command,
    ) -> Result<Vec<Event>, CoreError> {
        self.check(&command)?;
        let mut events = Vec::new();
        match command {
            Command::InitCluster(info) => {
                self.cluster = Some(info);
                events.push(Event::ClusterChanged);
            }
            Command::RotateJoinSecret { role, secret } => {
                if let Some(cluster) = self.cluster.as_mut() {
                    match role {
                        NodeRole::Worker => cluster.worker_join_secret = secret,
                        NodeRole::Manager => cluster.manager_join_secret = secret,
                    }
                    events.push(Event::ClusterChanged);
                }
            }
            Command::UpsertNode(mut node) => {
                let mut meta = created(index, now_ms);
                if let Some(old) = self.nodes.get(&node.id) {
                    meta.created_index = old.meta.created_index;
                    meta.created_at_ms = old.meta.created_at_ms;
                }
                node.meta = meta;
                events.push(Event::NodeChanged {
                    node_id: node.id.clone(),
                });
                self.nodes.insert(node.id.clone(), node);
            }
            Command::UpdateNodeStatus { node_id, status } => {
                if let Some(node) = self.nodes.get_mut(&node_id) {
                    if node.status != status {
                        node.status = status;
                        touch(&mut node.meta, index, now_ms);
                        events.push(Event::NodeChanged { node_id });
                    }
                }
            }
            Command::UpdateNodeSpec(update) => {
                if let Some(node) = self.nodes.get_mut(&update.node_id) {
                    if let Some(availability) = update.availability {
                        node.availability = availability;
                    }
                    if let Some(role) = update.role {
                        node.role = role;
                    }
                    node.labels.extend(update.labels_add);
                    for key in &update.labels_rm {
                        node.labels.remove(key);
                    }
                    touch(&mut node.meta, index, now_ms);
                    events.push(Event::NodeChanged {
                        node_id: update.node_id,
                    });
                }
            }
            Command::RemoveNode { node_id, .. } => {
                self.nodes.remove(&node_id);
                events.push(Event::NodeRemoved { node_id });
            }
            Command::CreateService(mut service) => {
                service.meta = created(index, now_ms);
                self.index
                    .service_by_name
                    .insert(service.spec.name.clone(), service.id.clone());
                events.push(Event::ServiceCreated {
                    service_id: service.id.clone(),
                });
                self.services.insert(service.id.clone(), service);
            }
            Command::UpdateService {
                service_id, spec, ..
            } => {
                if let Some(service) = self.services.get_mut(&service_id) {
                    self.index.service_by_name.remove(&service.spec.name);
                    self.index
                        .service_by_name
                        .insert(spec.name.clone(), service_id.clone());
                    service.spec = spec;
                    touch(&mut service.meta, index, now_ms);
                    events.push(Event::ServiceUpdated { service_id });
                }
            }
            Command::RemoveService { service_id } => {
                if let Some(service) = self.services.remove(&service_id) {
                    self.index.service_by_name.remove(&service.spec.name);
                    events.push(Event::ServiceRemoved {
                        service_id: service_id.clone(),
                    });
                    let task_ids: Vec<String> = self
                        .service_task_iter(&service_id)
                        .filter(|t| t.desired_state < TaskState::Shutdown)
                        .map(|t| t.id.clone())
                        .collect();
                    for task_id in task_ids {
                        self.set_desired(index, now_ms, &task_id, TaskState::Shutdown, &mut events);
                    }
                }
            }
            Command::CreateTasks(tasks) => {
                for mut task in tasks {
                    if !self.services.contains_key(&task.service_id) {
                        continue;
                    }
                    task.meta = created(index, now_ms);
                    task.status.since_ms = now_ms;
                    events.push(Event::TaskCreated(TaskRef::of(&task)));
                    self.put_task(task);
                }
            }
            Command::AssignTasks(assignments) => {
                for (task_id, node_id) in assignments {
                    let Some(task) = self.tasks.get(&task_id) else {
                        continue;
                    };
                    let targets_other = task.node_id.as_ref().is_some_and(|n| *n != node_id);
                    if !is_unassigned(task) || targets_other || !self.nodes.contains_key(&node_id) {
                        continue;
                    }
                    let mut task = task.clone();
                    task.node_id = Some(node_id);
                    task.assigned_at_ms = Some(now_ms);
                    task.status = TaskStatus {
                        state: TaskState::Assigned,
                        since_ms: now_ms,
                        message: "scheduler assigned task to node".into(),
                        ..TaskStatus::default()
                    };
                    touch(&mut task.meta, index, now_ms);
                    events.push(Event::TaskUpdated(TaskRef::of(&task)));
                    self.put_task(task);
                }
            }
            Command::UpdateTaskStatuses(updates) => {
                for update in updates {
                    let Some(task) = self.tasks.get(&update.task_id) else {
                        continue;
                    };
                    if !task.status.state.can_advance_to(update.status.state) {
                        continue;
                    }
                    let mut task = task.clone();
                    if update.status.state == TaskState::Running {
                        task.started_at_ms = Some(update.status.since_ms);
                    }
                    task.status = update.status;
                    if let Some(runtime) = update.runtime {
                        task.runtime = runtime;
                    }
                    if update.runtime_id.is_some() {
                        task.runtime_id = update.runtime_id;
                    }
                    touch(&mut task.meta, index, now_ms);
                    events.push(Event::TaskUpdated(TaskRef::of(&task)));
                    self.put_task(task);
                }
            }
            Command::SetTaskDesiredStates(items) => {
                for (task_id, state) in items {
                    self.set_desired(index, now_ms, &task_id, state, &mut events);
                }
            }
            Command::RemoveTasks(task_ids) => {
                for task_id in task_ids {
                    if let Some(task) = self.take_task(&task_id) {
                        events.push(Event::TaskRemoved(TaskRef::of(&task)));
                    }
                }
            }
            Command::SetPendingReasons(items) => {
                for (task_id, reason) in items {
                    let Some(task) = self.tasks.get(&task_id) else {
                        continue;
                    };
                    if !is_unassigned(task) {
                        continue;
                    }
                    let mut task = task.clone();
                    if task.status.state < TaskState::Pending {
                        task.status.state = TaskState::Pending;
                        task.status.since_ms = now_ms;
                    }
                    task.status.error = Some(reason);
                    touch(&mut task.meta, index, now_ms);
                    events.push(Event::TaskUpdated(TaskRef::of(&task)));
                    self.put_task(task);
                }
            }
        }
        Ok(events)
    }

    /// Moves a task's desired state forward. A task no worker has seen yet (not assigned)
    /// is also marked shutdown at once: nobody else would ever report it stopped.
    fn set_desired(
        &mut self,
        index: u64,
        now_ms: u64,
        task_id: &str,
        state: TaskState,
        events: &mut Vec<Event>,
    ) {
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        if state <= task.desired_state {
            return;
        }
        let mut task = task.clone();
        task.desired_state = state;
        if state > TaskState::Running && task.status.state < TaskState::Assigned {
            task.status = TaskStatus {
                state: TaskState::Shutdown,
                since_ms: now_ms,
                message: "shut down before assignment".into(),
                ..TaskStatus::default()
            };
        }
        touch(&mut task.meta, index, now_ms);
        events.push(Event::TaskUpdated(TaskRef::of(&task)));
        self.put_task(task);
    }
}
