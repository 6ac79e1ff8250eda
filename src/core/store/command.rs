//! Commands proposed through Raft, their validation (`check`) and their deterministic
//! application (`apply`), and the events watchers receive.
//!
//! Single-object commands are all-or-nothing: `check` refuses them and nothing changes.
//! Batched task commands come from leader components racing with other changes (a task may be
//! removed between planning and commit), so they apply item by item and skip stale items
//! (unknown task, state already past); `check` refuses only a malformed batch.
//!
//! This file holds the types; `check` and `apply` are in the files of those names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::model::{
    Availability, ClusterInfo, Node, NodeDescription, NodeRole, NodeStatus, Service, Task,
    TaskState, TaskStatus,
};
use crate::core::ports::TaskEndpoint;
use crate::core::rollout::UpdateStatus;
use crate::core::secrets::{Sealed, SecretKind, SecretObject, SecretVersion};
use crate::core::spec::ServiceSpec;
use crate::core::store::Revocation;

mod apply;
mod check;

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
    /// Where its published ports are reached, when the runtime bound them (with `running`).
    pub endpoints: Option<Vec<TaskEndpoint>>,
}

/// What a node reports about itself in a heartbeat ([`Command::RefreshNode`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeRefresh {
    /// The node (from its certificate).
    pub node_id: String,
    /// What it reported.
    pub description: NodeDescription,
}

/// The secret part of a join token. Its `Debug` prints nothing of it (commands are logged);
/// on the wire and in the log it is the bare string (a newtype encodes as its field).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct JoinSecret(pub String);

impl std::fmt::Debug for JoinSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinSecret(<redacted>)")
    }
}

/// A replicated change to the cluster state.
// Specs are large and other variants small; values are built and moved one at a time,
// never held in bulk, so boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Create the cluster record (`init`).
    InitCluster(ClusterInfo),
    /// Replace one join secret (`join-token --rotate`).
    RotateJoinSecret {
        /// Which token.
        role: NodeRole,
        /// The new secret.
        secret: JoinSecret,
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
    /// A heartbeat's report of what a node is (hostname, address, engine, resources, join
    /// labels) and that it is ready. Applies only to an existing record and only to the fields
    /// the node owns: the operator's availability, role and labels, written meanwhile, are
    /// never overwritten, and a removed node is never brought back (a whole-record upsert did
    /// both; found by the whole-cluster simulation).
    RefreshNode(NodeRefresh),
    /// `node rm` / `node demote`: revoke the node's certificates (see `RevocationList`).
    /// Older variants keep their tags, so old logs still decode.
    RevokeCertificates(Revocation),
    /// `service rollback` / `service update --rollback`, or an update whose failure action
    /// is `rollback`: swap spec and previous spec and roll the previous one back out.
    RollbackService {
        /// The service.
        service_id: String,
        /// Refuse unless the service is still at this version.
        expected_version: Option<u64>,
        /// Why (`manually requested rollback`, or the failure that triggered it).
        message: String,
    },
    /// The updater: a rollout moved on (paused, completed ...). Applies only while the
    /// service still runs `spec_version`, so a decision about an older spec never lands on
    /// a newer one.
    SetUpdateStatus {
        /// The service.
        service_id: String,
        /// The spec version the decision was about.
        spec_version: u64,
        /// The new status.
        status: UpdateStatus,
    },
    /// `secret create` / `config create`: the object with its first version, a secret's data
    /// already sealed by the manager that accepted it (format 5 on; older variants keep
    /// their tags).
    CreateSecret(SecretObject),
    /// `secret rm` / `config rm`: refused while a service's spec uses the object.
    RemoveSecret {
        /// Secret or config.
        kind: SecretKind,
        /// The object.
        id: String,
    },
    /// `secret rotate`: a new version, and every service whose spec uses the object moves
    /// to it (a rollout under its update config, as `service update` starts).
    RotateSecret {
        /// Secret or config.
        kind: SecretKind,
        /// The object.
        id: String,
        /// The new version: one more than the newest.
        version: SecretVersion,
    },
    /// `swarm update --autolock` and `swarm unlock-key --rotate`: the unlock key, sealed with
    /// the data key, that every manager wraps its data key with from now on; `None` turns
    /// autolock off (managers go back to their key files).
    SetAutolock(Option<Sealed>),
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
    /// Certificates of a node were revoked: connections must be checked again.
    CertificatesRevoked {
        /// The node.
        node_id: String,
    },
    /// A secret or config was created or got a new version.
    SecretChanged {
        /// Secret or config.
        kind: SecretKind,
        /// The object.
        id: String,
    },
    /// A secret or config was removed.
    SecretRemoved {
        /// Secret or config.
        kind: SecretKind,
        /// The object.
        id: String,
    },
    /// Autolock was turned on or off, or its unlock key replaced.
    AutolockChanged,
}
