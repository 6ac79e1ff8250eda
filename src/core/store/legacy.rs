//! The store's types as releases before spec versions (format version 2 and older) encoded
//! them, and their conversion to today's (version 3's shapes are in `legacy_v3`). bincode is not self-describing: a struct that
//! gained fields cannot decode its older bytes, so the older shapes are kept here, read-only.
//!
//! What the conversion supplies: a service's `spec_version` is its creation index (the index
//! `CreateService` would have given it), its new spec fields take their defaults, and a
//! task's `spec_version` is its service's (0 in a log entry, which `CreateTasks` resolves to
//! the service's at apply): every task of an older release counts as up to date.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::command::{Command, JoinSecret, NodeRefresh, NodeSpecUpdate, TaskStatusUpdate};
use super::legacy_v3::TaskStatusUpdateV3;
use super::{Revocation, RevocationList, Store};
use crate::core::model::{
    ClusterInfo, Meta, Node, NodeRole, NodeStatus, Service, Task, TaskSpec, TaskState, TaskStatus,
};
use crate::core::rollout::STOP_GRACE_MS_DEFAULT;
use crate::core::spec::{
    Constraint, ResourceRequirements, RestartPolicy, ServiceMode, ServiceSpec,
};

#[derive(Deserialize)]
pub(crate) struct ServiceSpecV2 {
    name: String,
    image: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    mode: ServiceMode,
    resources: ResourceRequirements,
    constraints: Vec<Constraint>,
    restart: RestartPolicy,
}

impl From<ServiceSpecV2> for ServiceSpec {
    fn from(old: ServiceSpecV2) -> ServiceSpec {
        ServiceSpec {
            command: old.command,
            env: old.env,
            labels: old.labels,
            mode: old.mode,
            resources: old.resources,
            constraints: old.constraints,
            restart: old.restart,
            ..ServiceSpec::new(&old.name, &old.image)
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ServiceV2 {
    id: String,
    spec: ServiceSpecV2,
    meta: Meta,
}

impl From<ServiceV2> for Service {
    fn from(old: ServiceV2) -> Service {
        let mut service = Service::new(old.id, old.spec.into());
        service.spec_version = old.meta.created_index;
        service.meta = old.meta;
        service
    }
}

#[derive(Deserialize)]
struct TaskSpecV2 {
    image: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    resources: ResourceRequirements,
    constraints: Vec<Constraint>,
}

#[derive(Deserialize)]
pub(crate) struct TaskV2 {
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
    spec: TaskSpecV2,
    meta: Meta,
}

impl From<TaskV2> for Task {
    fn from(old: TaskV2) -> Task {
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
                health: Default::default(),
                stop_grace_ms: STOP_GRACE_MS_DEFAULT,
                ports: Vec::new(),
                secrets: Vec::new(),
                configs: Vec::new(),
            }),
            endpoints: Vec::new(),
            spec_version: 0,
            meta: old.meta,
        }
    }
}

/// [`Command`] as format versions 1 and 2 encoded it: the same variants, in the same order,
/// up to `RevokeCertificates`.
#[derive(Deserialize)]
pub(crate) enum CommandV2 {
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
    CreateService(ServiceV2),
    UpdateService {
        service_id: String,
        spec: ServiceSpecV2,
        expected_version: Option<u64>,
    },
    RemoveService {
        service_id: String,
    },
    CreateTasks(Vec<TaskV2>),
    AssignTasks(Vec<(String, String)>),
    UpdateTaskStatuses(Vec<TaskStatusUpdateV3>),
    SetTaskDesiredStates(Vec<(String, TaskState)>),
    RemoveTasks(Vec<String>),
    SetPendingReasons(Vec<(String, String)>),
    RefreshNode(NodeRefresh),
    RevokeCertificates(Revocation),
}

impl From<CommandV2> for Command {
    fn from(old: CommandV2) -> Command {
        match old {
            CommandV2::InitCluster(info) => Command::InitCluster(info),
            CommandV2::RotateJoinSecret { role, secret } => {
                Command::RotateJoinSecret { role, secret }
            }
            CommandV2::UpsertNode(node) => Command::UpsertNode(node),
            CommandV2::UpdateNodeStatus { node_id, status } => {
                Command::UpdateNodeStatus { node_id, status }
            }
            CommandV2::UpdateNodeSpec(update) => Command::UpdateNodeSpec(update),
            CommandV2::RemoveNode { node_id, force } => Command::RemoveNode { node_id, force },
            CommandV2::CreateService(service) => Command::CreateService(service.into()),
            CommandV2::UpdateService {
                service_id,
                spec,
                expected_version,
            } => Command::UpdateService {
                service_id,
                spec: spec.into(),
                expected_version,
            },
            CommandV2::RemoveService { service_id } => Command::RemoveService { service_id },
            CommandV2::CreateTasks(tasks) => {
                Command::CreateTasks(tasks.into_iter().map(Task::from).collect())
            }
            CommandV2::AssignTasks(items) => Command::AssignTasks(items),
            CommandV2::UpdateTaskStatuses(items) => {
                Command::UpdateTaskStatuses(items.into_iter().map(TaskStatusUpdate::from).collect())
            }
            CommandV2::SetTaskDesiredStates(items) => Command::SetTaskDesiredStates(items),
            CommandV2::RemoveTasks(items) => Command::RemoveTasks(items),
            CommandV2::SetPendingReasons(items) => Command::SetPendingReasons(items),
            CommandV2::RefreshNode(refresh) => Command::RefreshNode(refresh),
            CommandV2::RevokeCertificates(revocation) => Command::RevokeCertificates(revocation),
        }
    }
}

/// The store as format version 1 encoded its snapshots (no revocations yet).
#[derive(Deserialize)]
pub(super) struct StoreV1 {
    cluster: Option<ClusterInfo>,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<String, ServiceV2>,
    tasks: BTreeMap<String, TaskV2>,
}

/// The store as format version 2 encoded its snapshots.
#[derive(Deserialize)]
pub(super) struct StoreV2 {
    cluster: Option<ClusterInfo>,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<String, ServiceV2>,
    tasks: BTreeMap<String, TaskV2>,
    revocations: RevocationList,
}

impl From<StoreV1> for StoreV2 {
    fn from(old: StoreV1) -> StoreV2 {
        StoreV2 {
            cluster: old.cluster,
            nodes: old.nodes,
            services: old.services,
            tasks: old.tasks,
            revocations: RevocationList::default(),
        }
    }
}

impl From<StoreV2> for Store {
    fn from(old: StoreV2) -> Store {
        let services: BTreeMap<String, Service> = old
            .services
            .into_iter()
            .map(|(id, service)| (id, service.into()))
            .collect();
        let tasks = old
            .tasks
            .into_iter()
            .map(|(id, task)| {
                let mut task = Task::from(task);
                task.spec_version = services
                    .get(&task.service_id)
                    .map_or(0, |service| service.spec_version);
                (id, task)
            })
            .collect();
        Store {
            cluster: old.cluster,
            nodes: old.nodes,
            services,
            tasks,
            revocations: old.revocations,
            ..Store::default()
        }
    }
}
