//! Placement: business logic over a read-only [`Store`] that returns a [`SchedulePlan`].
//!
//! Pipeline per task: node ready and active, then resources (reservations of the node's
//! unfinished tasks plus this one within capacity), then constraints. Among the nodes that
//! pass, spread: fewest tasks of this service, then fewest tasks overall, then node ID.
//!
//! Tasks are grouped by service and placement spec; each group filters every node once and
//! then places its tasks from a min-heap keyed by the spread order, so a batch costs
//! O(groups × nodes + tasks × log nodes) and never rescans task lists (the store keeps
//! per-node counters). Counters move as the batch places tasks: 5 tasks over 3 empty nodes
//! land 2/2/1.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::model::{Availability, Node, NodeStatus, Resources, Task, TaskState};
use super::spec::Constraint;
use super::store::{Command, Store};

/// What the scheduler wants committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulePlan {
    /// `(task_id, node_id)` placements, for [`Command::AssignTasks`].
    pub assignments: Vec<(String, String)>,
    /// `(task_id, reason)` for tasks that fit nowhere, only where the reason changed.
    pub pending_reasons: Vec<(String, String)>,
}

impl SchedulePlan {
    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.assignments.is_empty() && self.pending_reasons.is_empty()
    }

    /// The commands to propose (assignments first).
    pub fn into_commands(self) -> Vec<Command> {
        let mut commands = Vec::new();
        if !self.assignments.is_empty() {
            commands.push(Command::AssignTasks(self.assignments));
        }
        if !self.pending_reasons.is_empty() {
            commands.push(Command::SetPendingReasons(self.pending_reasons));
        }
        commands
    }
}

/// Why a node was filtered out, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rejection {
    NotAvailable,
    InsufficientResources,
    Constraints,
}

#[derive(Default, Clone, Copy)]
struct RejectionCounts {
    not_available: u64,
    insufficient_resources: u64,
    constraints: u64,
}

impl RejectionCounts {
    fn add(&mut self, rejection: Rejection) {
        match rejection {
            Rejection::NotAvailable => self.not_available += 1,
            Rejection::InsufficientResources => self.insufficient_resources += 1,
            Rejection::Constraints => self.constraints += 1,
        }
    }

    /// `no suitable node (insufficient resources on 2 nodes; scheduling constraints not
    /// satisfied on 1 node)`, as Swarm words it.
    fn reason(&self) -> String {
        let nodes = |n: u64| {
            if n == 1 {
                "1 node".to_string()
            } else {
                format!("{n} nodes")
            }
        };
        let mut parts = Vec::new();
        if self.not_available > 0 {
            parts.push(format!(
                "{} not available for new tasks",
                nodes(self.not_available)
            ));
        }
        if self.insufficient_resources > 0 {
            parts.push(format!(
                "insufficient resources on {}",
                nodes(self.insufficient_resources)
            ));
        }
        if self.constraints > 0 {
            parts.push(format!(
                "scheduling constraints not satisfied on {}",
                nodes(self.constraints)
            ));
        }
        if parts.is_empty() {
            "no suitable node".to_string()
        } else {
            format!("no suitable node ({})", parts.join("; "))
        }
    }
}

/// One node as the batch sees it: capacity left and task counts, moving as tasks are placed.
struct NodeState<'a> {
    node: &'a Node,
    free: Resources,
    tasks_total: u64,
}

/// The part of a task that decides where it may go; tasks sharing it share a filter pass.
#[derive(PartialEq, Eq, Hash, Clone)]
struct GroupKey<'a> {
    service_id: &'a str,
    reservations: Resources,
    constraints: &'a [Constraint],
}

fn filter(
    node: &NodeState<'_>,
    reservations: &Resources,
    constraints: &[Constraint],
) -> Result<(), Rejection> {
    let Node {
        status,
        availability,
        ..
    } = node.node;
    if *status != NodeStatus::Ready || *availability != Availability::Active {
        return Err(Rejection::NotAvailable);
    }
    if !reservations.fits_in(&node.free) {
        return Err(Rejection::InsufficientResources);
    }
    if !constraints.iter().all(|c| c.matches(node.node)) {
        return Err(Rejection::Constraints);
    }
    Ok(())
}

/// Places the given tasks (IDs; tasks that are not unassigned are skipped) and explains the
/// ones that fit nowhere. Tasks that already carry a node (global mode) only try that node.
pub fn schedule<'a>(store: &Store, task_ids: impl IntoIterator<Item = &'a str>) -> SchedulePlan {
    let tasks: Vec<&Task> = task_ids
        .into_iter()
        .filter_map(|id| store.task(id))
        .filter(|t| t.desired_state == TaskState::Running && t.status.state < TaskState::Assigned)
        .collect();
    plan(store, tasks)
}

/// Places up to `tasks_max` of the store's unassigned tasks (ID order), bounding one pass.
pub fn schedule_unassigned(store: &Store, tasks_max: usize) -> SchedulePlan {
    plan(store, store.unassigned_tasks().take(tasks_max).collect())
}

/// One scheduling round as the leader runs it: [`schedule_unassigned`], keeping only the
/// pending reasons that changed, so a task that fits nowhere does not make the scheduler wake
/// itself for ever. The commands to propose; none when there is nothing to do.
pub fn scheduling_round(store: &Store, tasks_max: usize) -> Vec<Command> {
    if store.unassigned_tasks().next().is_none() {
        return Vec::new();
    }
    let mut plan = schedule_unassigned(store, tasks_max);
    plan.pending_reasons.retain(|(task_id, reason)| {
        store.task(task_id).is_some_and(|task| {
            task.status.state < TaskState::Pending
                || task.status.error.as_deref() != Some(reason.as_str())
        })
    });
    if plan.is_empty() {
        return Vec::new();
    }
    plan.into_commands()
}

fn plan(store: &Store, tasks: Vec<&Task>) -> SchedulePlan {
    let mut nodes: Vec<NodeState<'_>> = store
        .nodes()
        .values()
        .map(|node| {
            let usage = store.node_usage(&node.id);
            NodeState {
                node,
                free: node
                    .resources
                    .saturating_sub(&usage.map(|u| u.reserved).unwrap_or_default()),
                tasks_total: usage.map_or(0, |u| u.tasks),
            }
        })
        .collect();
    let node_index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.node.id.as_str(), i))
        .collect();
    // Tasks this plan put on each node, per service: added to the store's counters.
    let mut placed: HashMap<(&str, usize), u64> = HashMap::new();
    let mut result = SchedulePlan::default();
    let mut groups: Vec<(GroupKey<'_>, Vec<&Task>)> = Vec::new();
    let mut group_of: HashMap<GroupKey<'_>, usize> = HashMap::new();

    for task in tasks {
        if let Some(target) = &task.node_id {
            place_targeted(task, target, &node_index, &mut nodes, &mut result);
            continue;
        }
        let key = GroupKey {
            service_id: &task.service_id,
            reservations: task.spec.resources.reservations,
            constraints: &task.spec.constraints,
        };
        let next = groups.len();
        let at = *group_of.entry(key.clone()).or_insert(next);
        if at == next {
            groups.push((key, Vec::new()));
        }
        groups[at].1.push(task);
    }

    for (key, group_tasks) in groups {
        let service_count = |placed: &HashMap<(&str, usize), u64>, i: usize, node: &Node| {
            let stored = store
                .node_usage(&node.id)
                .and_then(|u| u.tasks_by_service.get(key.service_id).copied())
                .unwrap_or(0);
            stored + placed.get(&(key.service_id, i)).copied().unwrap_or(0)
        };
        let mut counts = RejectionCounts::default();
        let mut heap = BinaryHeap::new();
        for (i, state) in nodes.iter().enumerate() {
            match filter(state, &key.reservations, key.constraints) {
                Ok(()) => heap.push(Reverse((
                    service_count(&placed, i, state.node),
                    state.tasks_total,
                    i,
                ))),
                Err(rejection) => counts.add(rejection),
            }
        }
        for task in group_tasks {
            let mut chosen = None;
            while let Some(Reverse((service_tasks, _, i))) = heap.pop() {
                if key.reservations.fits_in(&nodes[i].free) {
                    chosen = Some((service_tasks, i));
                    break;
                }
                // Earlier tasks of this batch used the room; identical reservations
                // will not fit again in this pass.
                counts.add(Rejection::InsufficientResources);
            }
            let Some((service_tasks, i)) = chosen else {
                explain(task, counts.reason(), &mut result);
                continue;
            };
            let state = &mut nodes[i];
            state.free = state.free.saturating_sub(&key.reservations);
            state.tasks_total += 1;
            *placed.entry((key.service_id, i)).or_default() += 1;
            heap.push(Reverse((service_tasks + 1, state.tasks_total, i)));
            result
                .assignments
                .push((task.id.clone(), state.node.id.clone()));
        }
    }
    result
}

/// A global task goes to its node or nowhere.
fn place_targeted(
    task: &Task,
    target: &str,
    node_index: &HashMap<&str, usize>,
    nodes: &mut [NodeState<'_>],
    result: &mut SchedulePlan,
) {
    let reservations = task.spec.resources.reservations;
    let mut counts = RejectionCounts::default();
    match node_index.get(target) {
        None => counts.add(Rejection::NotAvailable),
        Some(&i) => match filter(&nodes[i], &reservations, &task.spec.constraints) {
            Ok(()) => {
                let state = &mut nodes[i];
                state.free = state.free.saturating_sub(&reservations);
                state.tasks_total += 1;
                result
                    .assignments
                    .push((task.id.clone(), target.to_string()));
                return;
            }
            Err(rejection) => counts.add(rejection),
        },
    }
    explain(task, counts.reason(), result);
}

fn explain(task: &Task, reason: String, result: &mut SchedulePlan) {
    let unchanged = task.status.state == TaskState::Pending
        && task.status.error.as_deref() == Some(reason.as_str());
    if !unchanged {
        result.pending_reasons.push((task.id.clone(), reason));
    }
}

/// Tasks placed per node in a plan: a convenience for callers and tests.
pub fn placements_per_node(plan: &SchedulePlan) -> BTreeMap<&str, u64> {
    let mut per_node = BTreeMap::new();
    for (_, node_id) in &plan.assignments {
        *per_node.entry(node_id.as_str()).or_default() += 1;
    }
    per_node
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
