//! The replicated store's pure state machine: the objects, secondary indexes kept in step on
//! every change, read queries for the control plane, and snapshots.
//!
//! The only way to change a [`Store`] is [`Store::apply`] (in [`command`]), so the indexes can
//! never drift from the objects. Indexes are not serialized; [`Store::restore`] rebuilds them.

mod command;
mod legacy;
mod legacy_v3;
mod revocation;
mod secrets;
#[cfg(test)]
mod sharing_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use command::{
    Command, Event, JoinSecret, NodeRefresh, NodeSpecUpdate, TaskRef, TaskStatusUpdate,
};
pub(crate) use legacy::CommandV2;
pub(crate) use legacy_v3::CommandV3;
pub use revocation::{CertificateStanding, Revocation, RevocationList, RevocationScope};
pub use secrets::references;

use super::error::CoreError;
use super::format;
use super::ids;
use super::model::{ClusterInfo, Node, Resources, Service, Task, TaskSpec, TaskState};
use super::secrets::{Sealed, SecretObject};
use super::spec::ServiceMode;

/// What the tasks placed on one node hold: the scheduler's view, kept incrementally.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeUsage {
    /// Sum of the reservations of the tasks counted below.
    pub reserved: Resources,
    /// Tasks placed on the node and not finished (see [`Task::holds_resources`]).
    pub tasks: u64,
    /// The same, per service ID.
    pub tasks_by_service: BTreeMap<String, u64>,
}

/// Derived lookups, rebuilt on restore, so no control-plane path scans all tasks per event.
#[derive(Clone, Debug, Default, PartialEq)]
struct Indexes {
    service_by_name: BTreeMap<String, String>,
    tasks_by_service: BTreeMap<String, BTreeSet<String>>,
    tasks_by_node: BTreeMap<String, BTreeSet<String>>,
    /// Tasks that want to run and have no node yet: the scheduler's queue.
    unassigned: BTreeSet<String>,
    node_usage: BTreeMap<String, NodeUsage>,
    running_by_service: BTreeMap<String, u64>,
    /// Per node, the XOR of [`assignment_digest`] over its unfinished tasks, and their count:
    /// the assignment version every heartbeat compares, without visiting the tasks.
    assignments_by_node: BTreeMap<String, (u64, u64)>,
    /// One shared task spec per `(service, spec version)`: tasks point at it instead of each
    /// holding a copy. An entry goes when its last task does.
    task_specs: HashMap<(String, u64), Arc<TaskSpec>>,
}

/// One task's share of its node's assignment version: its ID and desired state. SipHash with
/// fixed keys, so every manager computes the same.
fn assignment_digest(task: &Task) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    task.id.hash(&mut hasher);
    task.desired_state.hash(&mut hasher);
    hasher.finish()
}

/// Points `task` at the shared spec of its `(service, spec version)`, or makes its spec that
/// shared one. A task whose spec differs from the shared one (which no correct orchestrator
/// creates) keeps its own copy rather than run another spec.
fn intern_spec(specs: &mut HashMap<(String, u64), Arc<TaskSpec>>, task: &mut Task) {
    let key = (task.service_id.clone(), task.spec_version);
    match specs.get(&key) {
        Some(shared) if Arc::ptr_eq(shared, &task.spec) => {}
        Some(shared) if **shared == *task.spec => task.spec = shared.clone(),
        Some(_) => {}
        None => {
            specs.insert(key, task.spec.clone());
        }
    }
}

/// The cluster state every manager holds, changed only by applying committed [`Command`]s.
///
/// BTreeMaps everywhere: iteration order, and so every derived decision, is deterministic.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Store {
    cluster: Option<ClusterInfo>,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<String, Service>,
    tasks: BTreeMap<String, Task>,
    #[serde(skip)]
    index: Indexes,
    /// The Raft index of the last entry applied (kept by the applier, not serialized: a
    /// snapshot's index is in its metadata). Watchers start their event cursor here.
    #[serde(skip)]
    applied_index: u64,
    /// Revoked certificates (`node rm`, `node demote`). Last, so a snapshot of the previous
    /// release is only missing a trailing field (the legacy-snapshot path supplies it).
    #[serde(default)]
    revocations: RevocationList,
    /// Secrets by ID, their data sealed (SPEC §9). Format 5 on, as the two fields below.
    secrets: BTreeMap<String, SecretObject>,
    /// Configs by ID.
    configs: BTreeMap<String, SecretObject>,
    /// Under autolock, the unlock key sealed with the data key: every manager wraps its data
    /// key with it (see `docs/secrets.md`).
    autolock: Option<Sealed>,
}

/// A store as format version 4 encoded it: no secrets, configs or autolock yet.
#[derive(Deserialize)]
struct StoreV4 {
    cluster: Option<ClusterInfo>,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<String, Service>,
    tasks: BTreeMap<String, Task>,
    revocations: RevocationList,
}

impl From<StoreV4> for Store {
    fn from(old: StoreV4) -> Store {
        Store {
            cluster: old.cluster,
            nodes: old.nodes,
            services: old.services,
            tasks: old.tasks,
            revocations: old.revocations,
            ..Store::default()
        }
    }
}

/// Largest snapshot [`Store::restore`] decodes; also the decoder's allocation limit.
pub const SNAPSHOT_DECODE_LIMIT: usize = 1 << 30;

fn decode_snapshot_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CoreError> {
    let config = bincode::config::standard().with_limit::<SNAPSHOT_DECODE_LIMIT>();
    let (value, read): (T, usize) = bincode::serde::decode_from_slice(body, config)
        .map_err(|e| CoreError::Snapshot(e.to_string()))?;
    if read != body.len() {
        return Err(CoreError::Snapshot(format!(
            "{} trailing bytes",
            body.len() - read
        )));
    }
    Ok(value)
}

impl PartialEq for Store {
    fn eq(&self, other: &Self) -> bool {
        // Indexes are derived from the objects; comparing the objects is enough.
        self.cluster == other.cluster
            && self.nodes == other.nodes
            && self.services == other.services
            && self.tasks == other.tasks
            && self.revocations == other.revocations
            && self.secrets == other.secrets
            && self.configs == other.configs
            && self.autolock == other.autolock
    }
}

fn count_add(map: &mut BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_string()).or_default() += 1;
}

fn count_sub(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(count) = map.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            map.remove(key);
        }
    }
}

fn set_remove(map: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl Indexes {
    fn add_task(&mut self, task: &Task) {
        let id = task.id.clone();
        self.tasks_by_service
            .entry(task.service_id.clone())
            .or_default()
            .insert(id.clone());
        if let Some(node) = &task.node_id {
            self.tasks_by_node
                .entry(node.clone())
                .or_default()
                .insert(id.clone());
        }
        if is_unassigned(task) {
            self.unassigned.insert(id);
        }
        if let (false, Some(node)) = (task.status.state.is_terminal(), &task.node_id) {
            let (digest, count) = self.assignments_by_node.entry(node.clone()).or_default();
            *digest ^= assignment_digest(task);
            *count += 1;
        }
        if let (true, Some(node)) = (task.holds_resources(), &task.node_id) {
            let usage = self.node_usage.entry(node.clone()).or_default();
            usage.reserved = usage
                .reserved
                .saturating_add(&task.spec.resources.reservations);
            usage.tasks += 1;
            count_add(&mut usage.tasks_by_service, &task.service_id);
        }
        if task.status.state == TaskState::Running {
            count_add(&mut self.running_by_service, &task.service_id);
        }
    }

    fn remove_task(&mut self, task: &Task) {
        set_remove(&mut self.tasks_by_service, &task.service_id, &task.id);
        if let Some(node) = &task.node_id {
            set_remove(&mut self.tasks_by_node, node, &task.id);
        }
        self.unassigned.remove(&task.id);
        if let (false, Some(node)) = (task.status.state.is_terminal(), &task.node_id) {
            if let Some((digest, count)) = self.assignments_by_node.get_mut(node) {
                *digest ^= assignment_digest(task);
                *count -= 1;
                if *count == 0 {
                    self.assignments_by_node.remove(node);
                }
            }
        }
        if let (true, Some(node)) = (task.holds_resources(), &task.node_id) {
            if let Some(usage) = self.node_usage.get_mut(node) {
                usage.reserved = usage
                    .reserved
                    .saturating_sub(&task.spec.resources.reservations);
                usage.tasks -= 1;
                count_sub(&mut usage.tasks_by_service, &task.service_id);
                if usage.tasks == 0 {
                    self.node_usage.remove(node);
                }
            }
        }
        if task.status.state == TaskState::Running {
            count_sub(&mut self.running_by_service, &task.service_id);
        }
    }
}

/// Wants to run and has not been placed yet.
fn is_unassigned(task: &Task) -> bool {
    task.desired_state == TaskState::Running && task.status.state < TaskState::Assigned
}

impl Store {
    /// An empty store (no cluster yet).
    pub fn new() -> Store {
        Store::default()
    }

    /// The Raft index of the last entry applied to this store.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Records that the store now reflects the log through `index` (an entry applied, or a
    /// snapshot taken at `index` restored).
    pub fn set_applied_index(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// Encodes the objects (not the indexes): the [`format::STORE_SNAPSHOT`] header, then
    /// bincode 2.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = format::STORE_SNAPSHOT.header().to_vec();
        bincode::serde::encode_into_std_write(self, &mut bytes, bincode::config::standard())
            .expect("invariant: store types use only serde features bincode supports");
        bytes
    }

    /// Decodes a [`Store::snapshot`] (of this format version or the first release's, which
    /// had no header) and rebuilds the indexes. Never allocates beyond
    /// [`SNAPSHOT_DECODE_LIMIT`], whatever lengths a corrupt snapshot claims.
    pub fn restore(bytes: &[u8]) -> Result<Store, CoreError> {
        if bytes.len() > SNAPSHOT_DECODE_LIMIT {
            return Err(CoreError::Snapshot(format!(
                "{} bytes is more than the {SNAPSHOT_DECODE_LIMIT} a snapshot may hold",
                bytes.len()
            )));
        }
        let (version, body) = format::STORE_SNAPSHOT
            .split(bytes)
            .map_err(|e| CoreError::Snapshot(e.to_string()))?;
        let mut store = match version {
            format::LEGACY_VERSION => {
                let old = decode_snapshot_body::<legacy::StoreV1>(body)?;
                Store::from(legacy::StoreV2::from(old))
            }
            2 => Store::from(decode_snapshot_body::<legacy::StoreV2>(body)?),
            3 => Store::from(decode_snapshot_body::<legacy_v3::StoreV3>(body)?),
            4 => Store::from(decode_snapshot_body::<StoreV4>(body)?),
            _ => decode_snapshot_body::<Store>(body)?,
        };
        store.rebuild_indexes();
        Ok(store)
    }

    fn rebuild_indexes(&mut self) {
        let mut index = Indexes::default();
        for service in self.services.values() {
            index
                .service_by_name
                .insert(service.spec.name.clone(), service.id.clone());
        }
        for task in self.tasks.values_mut() {
            intern_spec(&mut index.task_specs, task);
            index.add_task(task);
        }
        self.index = index;
    }

    /// Inserts or replaces a task, keeping the indexes in step.
    fn put_task(&mut self, mut task: Task) {
        intern_spec(&mut self.index.task_specs, &mut task);
        if let Some(old) = self.tasks.get(&task.id) {
            self.index.remove_task(old);
        }
        self.index.add_task(&task);
        self.tasks.insert(task.id.clone(), task);
    }

    fn take_task(&mut self, task_id: &str) -> Option<Task> {
        let task = self.tasks.remove(task_id)?;
        self.index.remove_task(&task);
        let key = (task.service_id.clone(), task.spec_version);
        // Two holders left (the table and this task): nobody else runs this version.
        if self
            .index
            .task_specs
            .get(&key)
            .is_some_and(|shared| Arc::strong_count(shared) <= 2)
        {
            self.index.task_specs.remove(&key);
        }
        Some(task)
    }

    /// Task specs held, one per `(service, spec version)` with tasks.
    pub fn shared_spec_count(&self) -> usize {
        self.index.task_specs.len()
    }

    /// The certificate revocation list.
    pub fn revocations(&self) -> &RevocationList {
        &self.revocations
    }

    /// The cluster record, once initialized.
    pub fn cluster(&self) -> Option<&ClusterInfo> {
        self.cluster.as_ref()
    }

    /// All nodes by ID.
    pub fn nodes(&self) -> &BTreeMap<String, Node> {
        &self.nodes
    }

    /// One node by full ID.
    pub fn node(&self, node_id: &str) -> Option<&Node> {
        self.nodes.get(node_id)
    }

    /// All services by ID.
    pub fn services(&self) -> &BTreeMap<String, Service> {
        &self.services
    }

    /// One service by full ID.
    pub fn service(&self, service_id: &str) -> Option<&Service> {
        self.services.get(service_id)
    }

    /// One service by exact name.
    pub fn service_by_name(&self, name: &str) -> Option<&Service> {
        let id = self.index.service_by_name.get(name)?;
        self.services.get(id)
    }

    /// All tasks by ID.
    pub fn tasks(&self) -> &BTreeMap<String, Task> {
        &self.tasks
    }

    /// One task by full ID.
    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks.get(task_id)
    }

    /// A node by hostname, full ID or unique ID prefix.
    pub fn resolve_node(&self, query: &str) -> Result<&Node, CoreError> {
        let items = self
            .nodes
            .values()
            .map(|n| (n.id.as_str(), n.hostname.as_str(), n));
        ids::resolve("node", query, items)
    }

    /// A service by name, full ID or unique ID prefix.
    pub fn resolve_service(&self, query: &str) -> Result<&Service, CoreError> {
        let items = self
            .services
            .values()
            .map(|s| (s.id.as_str(), s.spec.name.as_str(), s));
        ids::resolve("service", query, items)
    }

    /// A task by full ID or unique ID prefix.
    pub fn resolve_task(&self, query: &str) -> Result<&Task, CoreError> {
        let items = self.tasks.values().map(|t| (t.id.as_str(), "", t));
        ids::resolve("task", query, items)
    }

    /// Tasks of a service in `service ps` order: by slot (global: node ID), newest first
    /// within a slot.
    pub fn tasks_of_service(&self, service_id: &str) -> Vec<&Task> {
        let mut tasks: Vec<&Task> = self.service_task_iter(service_id).collect();
        // Replicated tasks group by slot alone (the node varies between attempts).
        let group = |t: &Task| {
            (
                t.slot,
                t.slot.is_none().then(|| t.node_id.clone()).flatten(),
            )
        };
        tasks.sort_by(|a, b| group(a).cmp(&group(b)).then(newest_first(a, b)));
        tasks
    }

    /// Tasks of a service in ID order, without sorting.
    pub fn service_task_iter<'a>(&'a self, service_id: &str) -> impl Iterator<Item = &'a Task> {
        self.index
            .tasks_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id))
    }

    /// IDs of the services that own tasks, including removed services whose tasks remain.
    pub fn service_ids_with_tasks(&self) -> impl Iterator<Item = &str> {
        self.index.tasks_by_service.keys().map(String::as_str)
    }

    /// Tasks on (or targeting) a node, newest first.
    pub fn tasks_of_node(&self, node_id: &str) -> Vec<&Task> {
        let mut tasks: Vec<&Task> = self
            .index
            .tasks_by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id))
            .collect();
        tasks.sort_by(|a, b| newest_first(a, b));
        tasks
    }

    /// A digest of the unfinished tasks placed on `node_id` (their IDs and desired states):
    /// equal sets give equal digests on every manager; 0 when there are none. Kept up to date
    /// on apply, so reading it costs one lookup however many tasks the node has had.
    pub fn assignment_digest(&self, node_id: &str) -> u64 {
        self.index
            .assignments_by_node
            .get(node_id)
            .map_or(0, |(digest, _)| *digest)
    }

    /// Tasks that want to run and have no node yet, in ID order: the scheduler's queue.
    pub fn unassigned_tasks(&self) -> impl Iterator<Item = &Task> {
        self.index
            .unassigned
            .iter()
            .filter_map(|id| self.tasks.get(id))
    }

    /// What the unfinished tasks on a node hold (`None`: nothing).
    pub fn node_usage(&self, node_id: &str) -> Option<&NodeUsage> {
        self.index.node_usage.get(node_id)
    }

    /// Tasks of the service whose observed state is `running` (REPLICAS' left side).
    pub fn running_count(&self, service_id: &str) -> u64 {
        self.index
            .running_by_service
            .get(service_id)
            .copied()
            .unwrap_or(0)
    }

    /// REPLICAS' right side: the replica count, or for a global service the tasks that are
    /// meant to run.
    pub fn desired_count(&self, service: &Service) -> u64 {
        match service.spec.mode {
            ServiceMode::Replicated { replicas } => replicas,
            ServiceMode::Global => self
                .service_task_iter(&service.id)
                .filter(|t| t.desired_state == TaskState::Running)
                .count() as u64,
        }
    }
}

/// Newest first: later creation index, then ID for a stable order within one batch.
pub(crate) fn newest_first(a: &Task, b: &Task) -> std::cmp::Ordering {
    b.meta
        .created_index
        .cmp(&a.meta.created_index)
        .then_with(|| a.id.cmp(&b.id))
}
