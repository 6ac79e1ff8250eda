//! The invariants: those that hold at every step, convergence in the quiet phase, and the
//! final checks of acknowledged writes against the converged store.

use std::collections::{BTreeMap, BTreeSet};

use flotilla::core::model::{Availability, NodeStatus, TaskState};
use flotilla::core::rollout::UpdateState;
use flotilla::core::spec::ServiceMode;
use flotilla::core::store::Store;

use crate::admin::Outcome;
use crate::messages::AdminOp;
use crate::sim::{SimResult, Simulation, HEARTBEAT_PERIOD_MS, STABLE_MS};

/// Found by this simulation (seed 23): the dispatcher's heartbeat refresh proposed
/// `UpsertNode` with the whole record as it read it, so an admin's `node update` committed in
/// between was overwritten. Fixed by `Command::RefreshNode` (only the node's own fields, only
/// on an existing record); kept as a switch so a regression can be tolerated while it is
/// chased (`FLOTILLA_SIM_STRICT=1` always fails).
const TOLERATE_HEARTBEAT_REFRESH_OVERWRITE: bool = false;

/// How often the quiet phase looks for convergence.
const CONVERGENCE_CHECK_MS: u64 = 100;

/// What a service can be at the end, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ServiceFate {
    Absent,
    Present { replicas: u64 },
}

impl Simulation {
    /// Invariants that hold at every step, faults or not.
    pub fn check_always(&mut self) -> SimResult {
        for worker in &self.workers {
            if worker.removed && !worker.containers.is_empty() {
                return Err(format!(
                    "worker {} learned it was removed but still has containers",
                    worker.node_id
                ));
            }
        }
        for (node_id, index) in &self.removed_at_index {
            for manager in &self.managers {
                let Some(replica) = &manager.replica else {
                    continue;
                };
                if replica.applied_index() >= *index && manager.store.read().node(node_id).is_some()
                {
                    return Err(format!(
                        "manager {}: acknowledged removal of {node_id} (index {index}) did not stick",
                        manager.raft_id
                    ));
                }
            }
        }
        if self.converged_since_ms.is_some() {
            // After convergence, never two live tasks in one slot (SPEC §3).
            let mut per_slot: BTreeMap<(String, Option<u64>), Vec<String>> = BTreeMap::new();
            for worker in &self.workers {
                for (task_id, container) in &worker.containers {
                    if container.is_live() {
                        per_slot
                            .entry((container.service_id.clone(), container.slot))
                            .or_default()
                            .push(format!("{task_id}@{}", worker.node_id));
                    }
                }
            }
            if let Some((slot, tasks)) = per_slot.iter().find(|(_, tasks)| tasks.len() > 1) {
                return Err(format!("after convergence, slot {slot:?} runs {tasks:?}"));
            }
        }
        Ok(())
    }

    /// Whether the cluster has been converged for [`STABLE_MS`].
    pub fn track_convergence(&mut self) -> SimResult<bool> {
        if !self.now_ms.is_multiple_of(CONVERGENCE_CHECK_MS) {
            return Ok(false);
        }
        match self.convergence_gap() {
            Ok(()) => {
                let since = *self.converged_since_ms.get_or_insert(self.now_ms);
                Ok(self.now_ms - since >= STABLE_MS)
            }
            Err(_) => {
                // A heartbeat lost just before the heal can still break it for a moment; the
                // converged state must then hold again for the whole window.
                self.converged_since_ms = None;
                Ok(false)
            }
        }
    }

    /// `Ok` when the cluster is converged, else what is still off.
    pub fn convergence_gap(&self) -> SimResult {
        let leader = self.leader_position().ok_or("no leader")?;
        let leader_manager = &self.managers[leader];
        if !leader_manager.caught_up() {
            return Err("the leader has not applied its term's first entry".into());
        }
        let commit = leader_manager
            .replica
            .as_ref()
            .map(|r| r.commit_index())
            .ok_or("leader down")?;
        let store = leader_manager.store.read();
        for manager in &self.managers {
            let replica = manager
                .replica
                .as_ref()
                .ok_or_else(|| format!("manager {} is down", manager.raft_id))?;
            if replica.applied_index() != commit {
                return Err(format!(
                    "manager {} applied {} of {commit}",
                    manager.raft_id,
                    replica.applied_index()
                ));
            }
            if *manager.store.read() != *store {
                return Err(format!("manager {} holds another store", manager.raft_id));
            }
        }
        if self.admin.outstanding_op().is_some() {
            return Err("an admin write is outstanding".into());
        }
        for worker in &self.workers {
            if !worker.joined {
                return Err(format!("worker {} has not joined", worker.node_id));
            }
            if !worker.agent_up {
                return Err(format!("worker {} is down", worker.node_id));
            }
            match store.node(&worker.node_id) {
                None if !worker.removed => {
                    return Err(format!(
                        "worker {} is removed but does not know",
                        worker.node_id
                    ))
                }
                None => continue,
                Some(node) if node.status != NodeStatus::Ready => {
                    return Err(format!(
                        "worker {} is {:?} in the store",
                        worker.node_id, node.status
                    ))
                }
                Some(_) => {}
            }
            // A worker the leader has not heard from lately is about to be marked down.
            let seen_ms = leader_manager
                .leader
                .as_ref()
                .and_then(|l| l.sessions.last_seen_ms(&worker.node_id));
            if seen_ms
                .is_none_or(|seen| self.now_ms.saturating_sub(seen) > HEARTBEAT_PERIOD_MS + 50)
            {
                return Err(format!(
                    "the leader has not heard from {} since {seen_ms:?} (now {})",
                    worker.node_id, self.now_ms
                ));
            }
            if !worker.authoritative
                || worker.assignments.version
                    != flotilla::core::assignment::assignment_version(&store, &worker.node_id)
            {
                return Err(format!(
                    "worker {} holds a stale assignment set",
                    worker.node_id
                ));
            }
            if !worker.unsent.is_empty() || worker.flush.is_some() {
                return Err(format!("worker {} has unsent reports", worker.node_id));
            }
        }
        let mut running: BTreeMap<(String, Option<u64>), u64> = BTreeMap::new();
        for worker in &self.workers {
            for container in worker.containers.values() {
                if !container.is_live() {
                    continue;
                }
                if worker.removed {
                    return Err(format!("removed worker {} runs a task", worker.node_id));
                }
                *running
                    .entry((container.service_id.clone(), container.slot))
                    .or_default() += 1;
            }
        }
        let mut expected: BTreeMap<(String, Option<u64>), u64> = BTreeMap::new();
        for service in store.services().values() {
            let ServiceMode::Replicated { replicas } = service.spec.mode else {
                continue;
            };
            for slot in 1..=replicas {
                expected.insert((service.id.clone(), Some(slot)), 1);
            }
            if store.running_count(&service.id) != replicas {
                let tasks: Vec<String> = store
                    .service_task_iter(&service.id)
                    .map(|t| {
                        format!(
                            "{} slot {:?} on {:?} {:?} (desired {:?})",
                            &t.id[..6],
                            t.slot,
                            t.node_id,
                            t.status.state,
                            t.desired_state
                        )
                    })
                    .collect();
                return Err(format!(
                    "service {} runs {} of {replicas} in the store: {tasks:?}",
                    service.spec.name,
                    store.running_count(&service.id)
                ));
            }
        }
        if running != expected {
            return Err(format!(
                "live containers per slot {running:?}, the store wants {expected:?}"
            ));
        }
        // A rollout still moving has not converged; a finished one left every running task
        // on the service's spec version (a paused one may leave a mix, as Swarm does).
        for service in store.services().values() {
            let Some(status) = &service.update_status else {
                continue;
            };
            if status.state.is_active() {
                return Err(format!(
                    "service {} is still rolling out ({})",
                    service.spec.name,
                    status.state.as_str()
                ));
            }
            let finished = matches!(
                status.state,
                UpdateState::Completed | UpdateState::RollbackCompleted
            );
            let stale = store
                .service_task_iter(&service.id)
                .filter(|t| t.status.state == TaskState::Running)
                .find(|t| t.spec_version != service.spec_version);
            if let (true, Some(task)) = (finished, stale) {
                return Err(format!(
                    "service {} completed its rollout but task {} runs spec version {} of {}",
                    service.spec.name, task.id, task.spec_version, service.spec_version
                ));
            }
        }
        Ok(())
    }

    /// Invariants 3 and 4 on the converged cluster.
    pub fn final_checks(&mut self) -> SimResult {
        let leader = self.leader_position().ok_or("no leader at the end")?;
        let store = self.managers[leader].store.read().clone();
        for status in store
            .services()
            .values()
            .filter_map(|s| s.update_status.as_ref())
        {
            match status.state {
                UpdateState::Completed | UpdateState::RollbackCompleted => {
                    self.stats.rollouts_completed += 1
                }
                _ => self.stats.rollouts_paused += 1,
            }
        }
        self.check_acknowledged_services(&store)?;
        if let Err(lost) = self.check_acknowledged_nodes(&store)? {
            let strict = std::env::var_os("FLOTILLA_SIM_STRICT").is_some();
            if !TOLERATE_HEARTBEAT_REFRESH_OVERWRITE || strict {
                return Err(lost);
            }
            self.stats.known_lost_node_updates += 1;
        }
        for worker in &self.workers {
            if store.node(&worker.node_id).is_none() && !worker.removed {
                return Err(format!(
                    "worker {} was removed but never learned it",
                    worker.node_id
                ));
            }
        }
        Ok(())
    }

    /// Every acknowledged create exists unless a remove may have followed; the replica count
    /// is the last acknowledged one unless an unknown write may have followed.
    fn check_acknowledged_services(&self, store: &Store) -> SimResult {
        let mut names: BTreeSet<&str> = self.admin.names.iter().map(String::as_str).collect();
        for service in store.services().values() {
            if !names.contains(service.spec.name.as_str()) {
                return Err(format!("service {} was never created", service.spec.name));
            }
        }
        for name in std::mem::take(&mut names) {
            let mut possible = BTreeSet::from([ServiceFate::Absent]);
            for record in &self.admin.history {
                let apply = |fate: ServiceFate| -> Option<ServiceFate> {
                    match (&record.op, fate) {
                        (AdminOp::ServiceCreate { name: n, replicas }, ServiceFate::Absent)
                            if n == name =>
                        {
                            Some(ServiceFate::Present {
                                replicas: *replicas,
                            })
                        }
                        (
                            AdminOp::ServiceScale { name: n, replicas },
                            ServiceFate::Present { .. },
                        ) if n == name => Some(ServiceFate::Present {
                            replicas: *replicas,
                        }),
                        (AdminOp::ServiceRemove { name: n }, _) if n == name => {
                            Some(ServiceFate::Absent)
                        }
                        _ => None,
                    }
                };
                let touches = possible.iter().any(|fate| apply(*fate).is_some());
                if !touches {
                    continue;
                }
                possible = match record.outcome {
                    Outcome::Rejected => possible,
                    // Acknowledged: it applied, in issue order (one write at a time).
                    Outcome::Acked => possible
                        .iter()
                        .map(|fate| apply(*fate).unwrap_or(*fate))
                        .collect(),
                    Outcome::Unknown => {
                        let mut both = possible.clone();
                        both.extend(possible.iter().filter_map(|fate| apply(*fate)));
                        both
                    }
                };
            }
            let actual = match store.service_by_name(name) {
                None => ServiceFate::Absent,
                Some(service) => match service.spec.mode {
                    ServiceMode::Replicated { replicas } => ServiceFate::Present { replicas },
                    ServiceMode::Global => return Err(format!("service {name} became global")),
                },
            };
            if !possible.contains(&actual) {
                return Err(format!(
                    "acknowledged write lost: service {name} is {actual:?}, the acknowledged history allows {possible:?}"
                ));
            }
        }
        Ok(())
    }

    /// Acknowledged removals stick; availability is the last acknowledged one unless an
    /// unknown write may have followed.
    /// `Ok(Err(..))` is the known overwrite of an acknowledged availability change.
    fn check_acknowledged_nodes(&self, store: &Store) -> SimResult<Result<(), String>> {
        for worker in &self.workers {
            let node_id = &worker.node_id;
            let mut removal_possible = false;
            let mut removed_acked = false;
            let mut availability = vec![Availability::Active];
            for record in &self.admin.history {
                match (&record.op, record.outcome) {
                    (AdminOp::NodeRemove { node_id: n }, Outcome::Acked) if n == node_id => {
                        removed_acked = true;
                        removal_possible = true;
                    }
                    (AdminOp::NodeRemove { node_id: n }, Outcome::Unknown) if n == node_id => {
                        removal_possible = true;
                    }
                    (
                        AdminOp::NodeAvailability {
                            node_id: n,
                            availability: a,
                        },
                        Outcome::Acked,
                    ) if n == node_id => {
                        availability = vec![*a];
                    }
                    (
                        AdminOp::NodeAvailability {
                            node_id: n,
                            availability: a,
                        },
                        Outcome::Unknown,
                    ) if n == node_id => {
                        availability.push(*a);
                    }
                    _ => {}
                }
            }
            match store.node(node_id) {
                Some(_) if removed_acked => {
                    return Err(format!("acknowledged removal of {node_id} did not stick"))
                }
                None if !removal_possible => {
                    return Err(format!("node {node_id} vanished without a removal"))
                }
                Some(node) if !availability.contains(&node.availability) => {
                    return Ok(Err(format!(
                        "acknowledged write lost: node {node_id} is {:?}, the acknowledged history allows {availability:?}",
                        node.availability
                    )))
                }
                _ => {}
            }
        }
        Ok(Ok(()))
    }
}
