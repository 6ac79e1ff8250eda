//! The store's types as format version 3 encoded them (spec versions, health and rollout
//! configs; no published ports, secrets or configs yet), and their conversion to today's.
//! bincode is not self-describing, so each shape that gained fields is kept here, read-only.
//!
//! What the conversion supplies: the new spec fields are empty (no ports, secrets or
//! configs), and tasks have no endpoints, which is what a task of version 3 had.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::command::{Command, JoinSecret, NodeRefresh, NodeSpecUpdate, TaskStatusUpdate};
use super::{Revocation, RevocationList, Store};
use crate::core::model::{
    ClusterInfo, Meta, Node, NodeRole, NodeStatus, Service, Task, TaskSpec, TaskState, TaskStatus,
    VersionedSpec,
};
use crate::core::rollout::{HealthCheck, UpdateConfig, UpdateStatus};
use crate::core::spec::{
    Constraint, ResourceRequirements, RestartPolicy, ServiceMode, ServiceSpec,
};

#[derive(Deserialize)]
pub(crate) struct ServiceSpecV3 {
    name: String,
    image: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    mode: ServiceMode,
    resources: ResourceRequirements,
    constraints: Vec<Constraint>,
    restart: RestartPolicy,
    health: HealthCheck,
    stop_grace_ms: Option<u64>,
    update: UpdateConfig,
    rollback: UpdateConfig,
    force_update: u64,
}

impl From<ServiceSpecV3> for ServiceSpec {
    fn from(old: ServiceSpecV3) -> ServiceSpec {
        ServiceSpec {
            command: old.command,
            env: old.env,
            labels: old.labels,
            mode: old.mode,
            resources: old.resources,
            constraints: old.constraints,
            restart: old.restart,
            health: old.health,
            stop_grace_ms: old.stop_grace_ms,
            update: old.update,
            rollback: old.rollback,
            force_update: old.force_update,
            ..ServiceSpec::new(&old.name, &old.image)
        }
    }
}

#[derive(Deserialize)]
struct VersionedSpecV3 {
    spec: ServiceSpecV3,
    version: u64,
}

#[derive(Deserialize)]
pub(crate) struct ServiceV3 {
    id: String,
    spec: ServiceSpecV3,
    spec_version: u64,
    previous_spec: Option<VersionedSpecV3>,
    update_status: Option<UpdateStatus>,
    meta: Meta,
}

impl From<ServiceV3> for Service {
    fn from(old: ServiceV3) -> Service {
        Service {
            id: old.id,
            spec: old.spec.into(),
            spec_version: old.spec_version,
            previous_spec: old.previous_spec.map(|previous| VersionedSpec {
                spec: previous.spec.into(),
                version: previous.version,
            }),
            update_status: old.update_status,
            meta: old.meta,
        }
    }
}

#[derive(Deserialize)]
struct TaskSpecV3 {
    image: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    resources: ResourceRequirements,
    constraints: Vec<Constraint>,
    health: HealthCheck,
    stop_grace_ms: u64,
}

#[derive(Deserialize)]
pub(crate) struct TaskV3 {
    id: String,
    service_id: String,
    service_name: String,
    slot: Option<u64>,
    node_id: Option<String>,
    desired_state: TaskState,
    status: TaskStatus,
    runtime: String,
    runtime_id: Option<String>,
    assigned_at_ms: Option<u64>,
    started_at_ms: Option<u64>,
    spec: TaskSpecV3,
    spec_version: u64,
    meta: Meta,
}

impl From<TaskV3> for Task {
    fn from(old: TaskV3) -> Task {
        Task {
            id: old.id,
            service_id: old.service_id,
            service_name: old.service_name,
            slot: old.slot,
            node_id: old.node_id,
            desired_state: old.desired_state,
            status: old.status,
            runtime: old.runtime,
            runtime_id: old.runtime_id,
            assigned_at_ms: old.assigned_at_ms,
            started_at_ms: old.started_at_ms,
            spec: Arc::new(TaskSpec {
                image: old.spec.image,
                command: old.spec.command,
                env: old.spec.env,
                resources: old.spec.resources,
                constraints: old.spec.constraints,
                health: old.spec.health,
                stop_grace_ms: old.spec.stop_grace_ms,
                ports: Vec::new(),
                secrets: Vec::new(),
                configs: Vec::new(),
            }),
            endpoints: Vec::new(),
            spec_version: old.spec_version,
            meta: old.meta,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct TaskStatusUpdateV3 {
    task_id: String,
    status: TaskStatus,
    runtime: Option<String>,
    runtime_id: Option<String>,
}

impl From<TaskStatusUpdateV3> for TaskStatusUpdate {
    fn from(old: TaskStatusUpdateV3) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: old.task_id,
            status: old.status,
            runtime: old.runtime,
            runtime_id: old.runtime_id,
            endpoints: None,
        }
    }
}

/// [`Command`] as format version 3 encoded it: the same variants, in the same order, up to
/// `SetUpdateStatus`.
// Decoded one entry at a time, as `Command` itself.
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
pub(crate) enum CommandV3 {
    InitCluster(ClusterInfo),
    RotateJoinSecret {
        role: NodeRole,
        secret: JoinSecret,
    },
    UpsertNode(Node),
    UpdateNodeStatus {
        node_id: String,
        status: NodeStatus,
    },
    UpdateNodeSpec(NodeSpecUpdate),
    RemoveNode {
        node_id: String,
        force: bool,
    },
    CreateService(ServiceV3),
    UpdateService {
        service_id: String,
        spec: ServiceSpecV3,
        expected_version: Option<u64>,
    },
    RemoveService {
        service_id: String,
    },
    CreateTasks(Vec<TaskV3>),
    AssignTasks(Vec<(String, String)>),
    UpdateTaskStatuses(Vec<TaskStatusUpdateV3>),
    SetTaskDesiredStates(Vec<(String, TaskState)>),
    RemoveTasks(Vec<String>),
    SetPendingReasons(Vec<(String, String)>),
    RefreshNode(NodeRefresh),
    RevokeCertificates(Revocation),
    RollbackService {
        service_id: String,
        expected_version: Option<u64>,
        message: String,
    },
    SetUpdateStatus {
        service_id: String,
        spec_version: u64,
        status: UpdateStatus,
    },
}

impl From<CommandV3> for Command {
    fn from(old: CommandV3) -> Command {
        match old {
            CommandV3::InitCluster(info) => Command::InitCluster(info),
            CommandV3::RotateJoinSecret { role, secret } => {
                Command::RotateJoinSecret { role, secret }
            }
            CommandV3::UpsertNode(node) => Command::UpsertNode(node),
            CommandV3::UpdateNodeStatus { node_id, status } => {
                Command::UpdateNodeStatus { node_id, status }
            }
            CommandV3::UpdateNodeSpec(update) => Command::UpdateNodeSpec(update),
            CommandV3::RemoveNode { node_id, force } => Command::RemoveNode { node_id, force },
            CommandV3::CreateService(service) => Command::CreateService(service.into()),
            CommandV3::UpdateService {
                service_id,
                spec,
                expected_version,
            } => Command::UpdateService {
                service_id,
                spec: spec.into(),
                expected_version,
            },
            CommandV3::RemoveService { service_id } => Command::RemoveService { service_id },
            CommandV3::CreateTasks(tasks) => {
                Command::CreateTasks(tasks.into_iter().map(Task::from).collect())
            }
            CommandV3::AssignTasks(items) => Command::AssignTasks(items),
            CommandV3::UpdateTaskStatuses(items) => {
                Command::UpdateTaskStatuses(items.into_iter().map(TaskStatusUpdate::from).collect())
            }
            CommandV3::SetTaskDesiredStates(items) => Command::SetTaskDesiredStates(items),
            CommandV3::RemoveTasks(items) => Command::RemoveTasks(items),
            CommandV3::SetPendingReasons(items) => Command::SetPendingReasons(items),
            CommandV3::RefreshNode(refresh) => Command::RefreshNode(refresh),
            CommandV3::RevokeCertificates(revocation) => Command::RevokeCertificates(revocation),
            CommandV3::RollbackService {
                service_id,
                expected_version,
                message,
            } => Command::RollbackService {
                service_id,
                expected_version,
                message,
            },
            CommandV3::SetUpdateStatus {
                service_id,
                spec_version,
                status,
            } => Command::SetUpdateStatus {
                service_id,
                spec_version,
                status,
            },
        }
    }
}

/// The store as format version 3 encoded its snapshots.
#[derive(Deserialize)]
pub(super) struct StoreV3 {
    cluster: Option<ClusterInfo>,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<String, ServiceV3>,
    tasks: BTreeMap<String, TaskV3>,
    revocations: RevocationList,
}

impl From<StoreV3> for Store {
    fn from(old: StoreV3) -> Store {
        Store {
            cluster: old.cluster,
            nodes: old.nodes,
            services: old
                .services
                .into_iter()
                .map(|(id, service)| (id, service.into()))
                .collect(),
            tasks: old
                .tasks
                .into_iter()
                .map(|(id, task)| (id, task.into()))
                .collect(),
            revocations: old.revocations,
            ..Store::default()
        }
    }
}
