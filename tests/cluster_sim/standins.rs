//! STAND-INS for core modules that are landing on `main` today (issue 14). Each function here
//! is the smallest copy of what the actors do now, kept in ONE place so that the sim switches
//! to the core call (`flotilla::core::sessions`, `flotilla::core::assignment`,
//! `flotilla::core::control_plan`) as soon as those land, with nothing else to change.

use std::collections::{BTreeMap, BTreeSet};

use flotilla::core::ids::new_id;
use flotilla::core::model::{Node, NodeRole, NodeStatus, Service, Task, TaskState};
use flotilla::core::spec::{ServiceMode, ServiceSpec};
use flotilla::core::store::{Command, NodeSpecUpdate, Store};
use flotilla::net::message::AssignmentSet;
use rand::Rng;

use crate::messages::AdminOp;

/// Periods without a heartbeat after which a node is down (SPEC §3).
pub const MISSED_HEARTBEATS_DOWN: u64 = 3;
const LARGE_CLUSTER_NODES: usize = 50;
const MASS_EXPIRY_PERCENT: usize = 55;

/// STAND-IN for `core::sessions`: the nodes to mark down at `now_ms`, as the dispatcher's
/// `CheckSessions` decides (grace period after gaining leadership, nodes registered since
/// the last check get a full period, mass-expiry guard).
pub fn expired_nodes(
    store: &Store,
    last_seen_ms: &mut BTreeMap<String, u64>,
    leader_since_ms: u64,
    now_ms: u64,
    period_ms: u64,
) -> Vec<String> {
    let down_after_ms = period_ms * MISSED_HEARTBEATS_DOWN;
    if now_ms.saturating_sub(leader_since_ms) < down_after_ms {
        return Vec::new();
    }
    let mut up = 0;
    let mut expired = Vec::new();
    for node in store.nodes().values() {
        if node.status == NodeStatus::Down {
            continue;
        }
        up += 1;
        let seen = *last_seen_ms.entry(node.id.clone()).or_insert(now_ms);
        if now_ms.saturating_sub(seen) > down_after_ms {
            expired.push(node.id.clone());
        }
    }
    let mass_expiry = up >= LARGE_CLUSTER_NODES && expired.len() * 100 > up * MASS_EXPIRY_PERCENT;
    if mass_expiry {
        return Vec::new();
    }
    expired
}

/// STAND-IN for `core::sessions`: the record a heartbeat registers, if it differs from the
/// stored one (the dispatcher then proposes `UpsertNode`). Simulated nodes describe
/// themselves with fixed facts.
pub fn refreshed_node(node: &Node, hostname: &str) -> Option<Node> {
    let registered = Node {
        hostname: hostname.to_string(),
        addr: format!("sim-{hostname}:4242"),
        engine_version: "sim".to_string(),
        resources: flotilla::core::model::Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        },
        labels: node.labels.clone(),
        status: NodeStatus::Ready,
        ..node.clone()
    };
    (registered != *node).then_some(registered)
}

/// STAND-IN for `core::assignment`: every task a node must know of, with a version that is
/// equal for equal sets on any leader.
pub fn assignment_set(store: &Store, node_id: &str) -> AssignmentSet {
    AssignmentSet {
        version: assignment_version(store, node_id),
        tasks: store
            .tasks_of_node(node_id)
            .into_iter()
            .filter(|task| !task.status.state.is_terminal())
            .cloned()
            .collect(),
    }
}

/// STAND-IN for `core::assignment`: the version [`assignment_set`] would carry.
pub fn assignment_version(store: &Store, node_id: &str) -> u64 {
    store.assignment_digest(node_id).max(1)
}

/// STAND-IN for `core::assignment`: the worker-side diff of an assignment set against the
/// replicas it has: the tasks to start (a replica each) and the replicas to retire.
pub fn worker_diff(set: &AssignmentSet, replicas: &BTreeSet<String>) -> (Vec<Task>, Vec<String>) {
    let mut wanted = BTreeSet::new();
    let mut start = Vec::new();
    for task in &set.tasks {
        if task.desired_state != TaskState::Running || task.status.state.is_terminal() {
            continue;
        }
        wanted.insert(task.id.clone());
        if !replicas.contains(&task.id) {
            start.push(task.clone());
        }
    }
    let retire = replicas
        .iter()
        .filter(|id| !wanted.contains(*id))
        .cloned()
        .collect();
    (start, retire)
}

/// STAND-IN for `core::control_plan`: the commands an admin write turns into, validated
/// against the store as it is now, with IDs from the passed-in generator.
pub fn plan_admin_write<R: Rng + ?Sized>(
    store: &Store,
    op: &AdminOp,
    rng: &mut R,
) -> Result<Vec<Command>, String> {
    match op {
        AdminOp::Join { node_id } => Ok(vec![Command::UpsertNode(Node {
            id: node_id.clone(),
            hostname: node_id.clone(),
            role: NodeRole::Worker,
            status: NodeStatus::Unknown,
            availability: flotilla::core::model::Availability::Active,
            labels: Default::default(),
            addr: format!("sim-{node_id}:4242"),
            engine_version: String::new(),
            resources: Default::default(),
            meta: Default::default(),
        })]),
        AdminOp::ServiceCreate { name, replicas } => {
            let mut spec = ServiceSpec::new(name, "busybox");
            spec.mode = ServiceMode::Replicated {
                replicas: *replicas,
            };
            spec.validate().map_err(|e| e.to_string())?;
            Ok(vec![Command::CreateService(Service {
                id: new_id(rng),
                spec,
                meta: Default::default(),
            })])
        }
        AdminOp::ServiceScale { name, replicas } => {
            let service = store.resolve_service(name).map_err(|e| e.to_string())?;
            let mut spec = service.spec.clone();
            spec.mode = ServiceMode::Replicated {
                replicas: *replicas,
            };
            Ok(vec![Command::UpdateService {
                service_id: service.id.clone(),
                spec,
                expected_version: Some(service.meta.version),
            }])
        }
        AdminOp::ServiceRemove { name } => {
            let service = store.resolve_service(name).map_err(|e| e.to_string())?;
            Ok(vec![Command::RemoveService {
                service_id: service.id.clone(),
            }])
        }
        AdminOp::NodeAvailability {
            node_id,
            availability,
        } => {
            let node = store.resolve_node(node_id).map_err(|e| e.to_string())?;
            Ok(vec![Command::UpdateNodeSpec(NodeSpecUpdate {
                node_id: node.id.clone(),
                availability: Some(*availability),
                expected_version: Some(node.meta.version),
                ..NodeSpecUpdate::default()
            })])
        }
        AdminOp::NodeRemove { node_id } => {
            let node = store.resolve_node(node_id).map_err(|e| e.to_string())?;
            if node.status != NodeStatus::Down {
                return Err(format!("node {node_id} is not down"));
            }
            Ok(vec![Command::RemoveNode {
                node_id: node.id.clone(),
                force: false,
            }])
        }
    }
}
