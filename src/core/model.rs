//! The objects of the replicated store: cluster, nodes, services and tasks.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::mounts::{ConfigReference, SecretReference};
use super::ports::{PortConfig, TaskEndpoint};
use super::rollout::{HealthCheck, UpdateStatus, STOP_GRACE_MS_DEFAULT};
pub use super::spec::Resources;
use super::spec::{
    Constraint, ConstraintKey, ConstraintOp, ResourceRequirements, ServiceMode, ServiceSpec,
};

/// Container label (and, upper-cased with `FLOTILLA_`, env var) carrying the service ID.
pub const LABEL_SERVICE_ID: &str = "com.flotilla.service.id";
/// Container label carrying the service name.
pub const LABEL_SERVICE_NAME: &str = "com.flotilla.service.name";
/// Container label carrying the task ID.
pub const LABEL_TASK_ID: &str = "com.flotilla.task.id";
/// Container label carrying the slot (empty for global tasks).
pub const LABEL_TASK_SLOT: &str = "com.flotilla.task.slot";
/// Container label carrying the node ID; a node only touches containers with its own.
pub const LABEL_NODE_ID: &str = "com.flotilla.node.id";

/// Bookkeeping every stored object carries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    /// Raft index of the last change; the expected version for optimistic updates.
    pub version: u64,
    /// Raft index of the creation; orders objects created at the same millisecond.
    pub created_index: u64,
    /// Unix milliseconds of the creation (the leader's clock at proposal).
    pub created_at_ms: u64,
    /// Unix milliseconds of the last change.
    pub updated_at_ms: u64,
}

/// Manager or worker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Member of the Raft group; may also run tasks.
    Manager,
    /// Runs tasks only.
    Worker,
}

/// Liveness as judged by the managers from heartbeats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Heartbeating.
    Ready,
    /// Missed its heartbeats; its tasks are replaced elsewhere.
    Down,
    /// Not heard of since this leader took over.
    Unknown,
}

/// Whether the scheduler may use the node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// Takes new tasks.
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Takes none and its tasks move elsewhere.
    Drain,
}

/// A member of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Node ID, also named in its certificate.
    pub id: String,
    /// Host name it reported.
    pub hostname: String,
    /// Manager or worker.
    pub role: NodeRole,
    /// Liveness.
    pub status: NodeStatus,
    /// Scheduling availability.
    pub availability: Availability,
    /// Node labels, for constraints.
    pub labels: BTreeMap<String, String>,
    /// Advertised address (`host:port`).
    pub addr: String,
    /// Runtime and version, e.g. `docker 27.1.1` or `process`.
    pub engine_version: String,
    /// Capacity the scheduler may reserve.
    pub resources: Resources,
    /// Versions and times.
    pub meta: Meta,
}

/// A declared service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Service ID.
    pub id: String,
    /// What the user declared.
    pub spec: ServiceSpec,
    /// The Raft index at which `spec` was set (SPEC §7): a task runs the spec of its
    /// `spec_version` and is up to date when that is this. A scale keeps it.
    pub spec_version: u64,
    /// The spec before the last update, for `service rollback` (one level, as Swarm).
    pub previous_spec: Option<VersionedSpec>,
    /// The last rollout, if any.
    pub update_status: Option<UpdateStatus>,
    /// Versions and times (`created_at_ms`, `updated_at_ms`).
    pub meta: Meta,
}

impl Service {
    /// A new service record (its versions and times are set when the store applies it).
    pub fn new(id: String, spec: ServiceSpec) -> Service {
        Service {
            id,
            spec,
            spec_version: 0,
            previous_spec: None,
            update_status: None,
            meta: Meta::default(),
        }
    }
}

/// A spec with the version it had.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VersionedSpec {
    /// The spec.
    pub spec: ServiceSpec,
    /// Its `spec_version`.
    pub version: u64,
}

/// A task's lifecycle, in the order of SPEC §3. Observed states only move forward; the last
/// five are terminal. The same enum expresses the desired state (`Running`, then `Complete`
/// for a slot left finished by its restart policy, or `Shutdown`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Created by the orchestrator.
    #[default]
    New,
    /// Waiting for a node.
    Pending,
    /// Placed on a node by the scheduler.
    Assigned,
    /// The worker took it.
    Accepted,
    /// The worker prepares it (pulls the image ...).
    Preparing,
    /// The runtime is starting it.
    Starting,
    /// It runs.
    Running,
    /// Exited with code 0.
    Complete,
    /// Exited otherwise or could not start.
    Failed,
    /// Stopped because it was asked to.
    Shutdown,
    /// The worker refused it.
    Rejected,
    /// Its node was lost; the cluster no longer knows what became of it.
    Orphaned,
}

impl TaskState {
    /// Complete, failed, shutdown, rejected or orphaned.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }

    /// Whether an observed state may move from `self` to `next`: strictly forward and never
    /// out of a terminal state.
    pub fn can_advance_to(self, next: TaskState) -> bool {
        !self.is_terminal() && next > self
    }

    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Failed => "failed",
            TaskState::Shutdown => "shutdown",
            TaskState::Rejected => "rejected",
            TaskState::Orphaned => "orphaned",
        }
    }
}

/// The observed state of a task and what came with it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TaskStatus {
    /// Observed state.
    pub state: TaskState,
    /// Unix milliseconds since which the task is in `state`.
    pub since_ms: u64,
    /// Human-readable progress message.
    pub message: String,
    /// Why it failed, or why it is still pending (the scheduler's reason).
    pub error: Option<String>,
    /// Exit code once it exited.
    pub exit_code: Option<i64>,
}

/// What a worker needs to run a task, copied from the service at creation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// Image reference.
    pub image: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Reservations (scheduler) and limits (runtime).
    pub resources: ResourceRequirements,
    /// Placement constraints.
    pub constraints: Vec<Constraint>,
    /// Health check.
    pub health: HealthCheck,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace_ms: u64,
    /// Published ports: the runtime binds (or hands the process) a host port per target.
    /// (The `default`s let a worker read the JSON assignment set the previous release saved;
    /// bincode, which reads every field, is versioned by `core::store::legacy_v3`.)
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// Secrets to mount.
    #[serde(default)]
    pub secrets: Vec<SecretReference>,
    /// Configs to mount.
    #[serde(default)]
    pub configs: Vec<ConfigReference>,
}

impl TaskSpec {
    /// The part of a service spec a task carries.
    pub fn from_service(spec: &ServiceSpec) -> TaskSpec {
        TaskSpec {
            image: spec.image.clone(),
            command: spec.command.clone(),
            env: spec.env.clone(),
            resources: spec.resources.clone(),
            constraints: spec.constraints.clone(),
            health: spec.health.clone(),
            stop_grace_ms: spec.stop_grace_ms.unwrap_or(STOP_GRACE_MS_DEFAULT),
            ports: spec.ports.clone(),
            secrets: spec.secrets.clone(),
            configs: spec.configs.clone(),
        }
    }
}

/// One replica's one attempt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Task ID.
    pub id: String,
    /// Owning service.
    pub service_id: String,
    /// Owning service's name at creation.
    pub service_name: String,
    /// Slot `1..=replicas` for replicated services; `None` for global ones.
    pub slot: Option<u64>,
    /// Assigned node; for global tasks the target node from creation on.
    pub node_id: Option<String>,
    /// What the managers want (`Running`, `Complete` or `Shutdown`).
    pub desired_state: TaskState,
    /// What the worker reported.
    pub status: TaskStatus,
    /// `docker`, `process` or `sim`; empty until a worker reports it.
    pub runtime: String,
    /// Container ID or OS process ID.
    pub runtime_id: Option<String>,
    /// Unix milliseconds at which the scheduler placed it (the leader's clock).
    pub assigned_at_ms: Option<u64>,
    /// Unix milliseconds at which it was first reported running (restart backoff reset).
    pub started_at_ms: Option<u64>,
    /// What to run. Shared: the store keeps one copy per service spec version and every task
    /// of that version points at it (`Store::put_task`), so a million tasks of one service hold
    /// one spec, not a million.
    pub spec: Arc<TaskSpec>,
    /// Where its published target ports are reached (reported by its worker once running).
    #[serde(default)]
    pub endpoints: Vec<TaskEndpoint>,
    /// The service's `spec_version` this task was created from (SPEC §7): it is up to date
    /// while that is the service's. 0 only in commands of an older release, resolved when
    /// the store applies them.
    pub spec_version: u64,
    /// Versions and times.
    pub meta: Meta,
}

impl Task {
    /// A fresh pending task of `service` (meta is filled in when the store applies it).
    pub fn new(id: String, service: &Service, slot: Option<u64>, node_id: Option<String>) -> Task {
        Task {
            id,
            service_id: service.id.clone(),
            service_name: service.spec.name.clone(),
            slot,
            node_id,
            desired_state: TaskState::Running,
            status: TaskStatus {
                state: TaskState::New,
                ..TaskStatus::default()
            },
            runtime: String::new(),
            runtime_id: None,
            assigned_at_ms: None,
            started_at_ms: None,
            spec: Arc::new(TaskSpec::from_service(&service.spec)),
            endpoints: Vec::new(),
            spec_version: service.spec_version,
            meta: Meta::default(),
        }
    }

    /// `service.slot`, or `service.node-id` for global tasks: the NAME column of `service ps`.
    pub fn display_name(&self) -> String {
        match (self.slot, &self.node_id) {
            (Some(slot), _) => format!("{}.{}", self.service_name, slot),
            (None, Some(node)) => format!("{}.{}", self.service_name, node),
            (None, None) => self.service_name.clone(),
        }
    }

    /// `<service>.<slot>.<task-id>` (global: `<service>.<node-id>.<task-id>`).
    pub fn container_name(&self) -> String {
        format!("{}.{}", self.display_name(), self.id)
    }

    /// The `com.flotilla.*` labels every container of this task carries.
    pub fn container_labels(&self) -> BTreeMap<String, String> {
        let slot = self.slot.map(|s| s.to_string()).unwrap_or_default();
        [
            (LABEL_SERVICE_ID, self.service_id.clone()),
            (LABEL_SERVICE_NAME, self.service_name.clone()),
            (LABEL_TASK_ID, self.id.clone()),
            (LABEL_TASK_SLOT, slot),
            (LABEL_NODE_ID, self.node_id.clone().unwrap_or_default()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The same labels as `FLOTILLA_SERVICE_ID`-style env vars, for the process runtime.
    pub fn flotilla_env(&self) -> BTreeMap<String, String> {
        self.container_labels()
            .into_iter()
            .map(|(key, value)| {
                let name = key
                    .trim_start_matches("com.flotilla.")
                    .replace('.', "_")
                    .to_ascii_uppercase();
                (format!("FLOTILLA_{name}"), value)
            })
            .collect()
    }

    /// Whether the task holds resources on its node (placed and not finished).
    pub fn holds_resources(&self) -> bool {
        self.node_id.is_some()
            && self.status.state >= TaskState::Assigned
            && !self.status.state.is_terminal()
    }
}

/// The cluster record created by `init`. Its `Debug` leaves out the CA key and the join
/// secrets (SPEC §4: no `Debug` of key material).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster ID.
    pub id: String,
    /// Root CA certificate (PEM).
    pub ca_cert_pem: String,
    /// Root CA key (PEM); managers sign join certificates with it.
    pub ca_key_pem: String,
    /// Secret part of the worker join token.
    pub worker_join_secret: String,
    /// Secret part of the manager join token.
    pub manager_join_secret: String,
    /// Unix milliseconds of `init`.
    pub created_at_ms: u64,
}

impl std::fmt::Debug for ClusterInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterInfo")
            .field("id", &self.id)
            .field("created_at_ms", &self.created_at_ms)
            .finish_non_exhaustive()
    }
}

/// Whether a service is replicated, with its replica count.
pub fn replicas_of(service: &Service) -> Option<u64> {
    match service.spec.mode {
        ServiceMode::Replicated { replicas } => Some(replicas),
        ServiceMode::Global => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_and_only_move_forward() {
        assert!(TaskState::New < TaskState::Pending && TaskState::Running < TaskState::Complete);
        assert!(!TaskState::Running.is_terminal() && TaskState::Orphaned.is_terminal());
        assert!(TaskState::Assigned.can_advance_to(TaskState::Running));
        assert!(!TaskState::Running.can_advance_to(TaskState::Starting));
        assert!(!TaskState::Running.can_advance_to(TaskState::Running));
        assert!(!TaskState::Failed.can_advance_to(TaskState::Shutdown));
        let json = serde_json::to_string(&TaskState::Orphaned).unwrap();
        assert_eq!(json, "\"orphaned\"");
    }

    #[test]
    fn naming_and_labels() {
        let service = Service::new("svc1".into(), ServiceSpec::new("web", "nginx"));
        let task = Task::new("t1".into(), &service, Some(3), Some("n1".into()));
        assert_eq!(task.container_name(), "web.3.t1");
        let global = Task::new("t2".into(), &service, None, Some("n1".into()));
        assert_eq!(global.container_name(), "web.n1.t2");
        assert_eq!(task.container_labels()[LABEL_TASK_SLOT], "3");
        assert_eq!(task.flotilla_env()["FLOTILLA_SERVICE_NAME"], "web");
        assert_eq!(task.flotilla_env()["FLOTILLA_NODE_ID"], "n1");
    }
}

/// The facts a node reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    /// Hostname.
    pub hostname: String,
    /// Address other nodes reach it at.
    pub addr: String,
    /// Runtime and version, e.g. `process` or `docker 28.2.2`.
    pub engine_version: String,
    /// Capacity the scheduler may reserve.
    pub resources: Resources,
    /// Labels given at init/join.
    pub labels: BTreeMap<String, String>,
}

// Matching lives with the node it reads, so the spec does not depend on the model.
impl Constraint {
    /// Whether `node` satisfies this constraint. A missing label never equals anything.
    pub fn matches(&self, node: &Node) -> bool {
        let actual = match &self.key {
            ConstraintKey::NodeId => Some(node.id.as_str()),
            ConstraintKey::Hostname => Some(node.hostname.as_str()),
            ConstraintKey::Role => Some(match node.role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }),
            ConstraintKey::Label(key) => node.labels.get(key).map(String::as_str),
        };
        let equal = actual == Some(self.value.as_str());
        match self.op {
            ConstraintOp::Eq => equal,
            ConstraintOp::Ne => !equal,
        }
    }
}
