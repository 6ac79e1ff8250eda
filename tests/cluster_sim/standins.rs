//! STAND-INS for `flotilla::core::assignment`, which is landing on `main` today (issue 14).
//! Each function here is the smallest copy of what the dispatcher and worker actors do now,
//! kept in ONE place so that the sim switches to the core calls as soon as they land, with
//! nothing else to change.

use std::collections::BTreeSet;

use flotilla::core::model::{Task, TaskState};
use flotilla::core::store::Store;
use flotilla::net::message::AssignmentSet;

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
