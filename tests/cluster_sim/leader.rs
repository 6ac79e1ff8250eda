//! The leader-only components, driven the way the actors drive `flotilla::core`: the
//! dispatcher's session check and assignment pushes, one "service actor" per service calling
//! `core::orchestrator::reconcile_service`, and the scheduler calling
//! `core::scheduler::schedule_unassigned`. Each proposes its plan's commands one after the
//! other and coalesces new work while a plan is in flight, as the actors do.

use std::collections::VecDeque;

use flotilla::core::assignment::{assignment_set, assignment_version};
use flotilla::core::model::{NodeStatus, TaskState};
use flotilla::core::orchestrator::{reconcile_service, services_affected_by_node};
use flotilla::core::scheduler::scheduling_round;
use flotilla::core::sessions::SessionCheck;
use flotilla::core::store::{Command, Event};
use flotilla::core::updater::{plan_rollout, waits_for_running};

use crate::manager::{worker_addr, Origin};
use crate::messages::Payload;
use crate::sim::{SimResult, Simulation, HEARTBEAT_PERIOD_MS};

/// Tasks placed per proposal (as the scheduler actor).
const SCHEDULE_BATCH_MAX: usize = 10_000;
/// A service actor whose plan failed tries again this much later.
const SERVICE_RETRY_MS: u64 = 100;

impl Simulation {
    /// What the orchestrator, scheduler and dispatcher do with the events of one Ready.
    pub fn route_events(&mut self, position: usize, events: &[Event]) {
        let manager = &mut self.managers[position];
        let Some(leader) = manager.leader.as_mut() else {
            return;
        };
        let mut nodes = Vec::new();
        for event in events {
            match event {
                Event::ServiceCreated { service_id }
                | Event::ServiceUpdated { service_id }
                | Event::ServiceRemoved { service_id } => {
                    leader.dirty_services.insert(service_id.clone());
                }
                Event::TaskCreated(task) | Event::TaskUpdated(task) | Event::TaskRemoved(task) => {
                    leader.scheduler_dirty = true;
                    if let Some(node) = &task.node_id {
                        leader.touched_nodes.insert(node.clone());
                    }
                    // A worker's progress on a live task changes no plan (as the actor),
                    // unless it starts running in a service that is rolling out.
                    let progress = matches!(event, Event::TaskUpdated(_)) && task.is_progress();
                    if !progress
                        || (task.state == TaskState::Running
                            && waits_for_running(&manager.store.read(), &task.service_id))
                    {
                        leader.dirty_services.insert(task.service_id.clone());
                    }
                }
                Event::NodeChanged { node_id } => {
                    leader.scheduler_dirty = true;
                    nodes.push(node_id.clone());
                }
                Event::NodeRemoved { node_id } => {
                    leader.scheduler_dirty = true;
                    leader.sessions.forget(node_id);
                    leader.pushed.remove(node_id);
                    nodes.push(node_id.clone());
                }
                Event::ClusterChanged
                | Event::CertificatesRevoked { .. }
                | Event::SecretChanged { .. }
                | Event::SecretRemoved { .. }
                | Event::AutolockChanged => {}
            }
        }
        if !nodes.is_empty() {
            let store = manager.store.read();
            for node_id in &nodes {
                leader
                    .dirty_services
                    .extend(services_affected_by_node(&store, node_id));
            }
        }
    }

    /// Events were missed: every component reads the whole store again (as on leadership).
    pub fn reconcile_everything(&mut self, position: usize) {
        let manager = &mut self.managers[position];
        let Some(leader) = manager.leader.as_mut() else {
            return;
        };
        let store = manager.store.read();
        leader
            .dirty_services
            .extend(flotilla::core::orchestrator::services_to_reconcile(&store));
        leader.scheduler_dirty = true;
        leader.touched_nodes.extend(store.nodes().keys().cloned());
        leader.cursor = flotilla::core::events::EventCursor::at(store.applied_index());
    }

    pub fn run_leader_components(&mut self, position: usize) -> SimResult {
        if self.managers[position].leader.is_none() {
            return Ok(());
        }
        self.check_sessions(position);
        self.push_assignments(position);
        self.run_services(position);
        self.run_scheduler(position);
        Ok(())
    }

    /// The dispatcher's `CheckSessions`, every heartbeat period.
    fn check_sessions(&mut self, position: usize) {
        let now_ms = self.now_ms;
        let expired = {
            let manager = &mut self.managers[position];
            let Some(leader) = manager.leader.as_mut() else {
                return;
            };
            if now_ms < leader.next_session_check_ms {
                return;
            }
            leader.next_session_check_ms = now_ms + HEARTBEAT_PERIOD_MS;
            let store = manager.store.read();
            match leader.sessions.check(&store, now_ms) {
                SessionCheck::Down(expired) => expired,
                _ => return,
            }
        };
        for node_id in expired {
            let Some(leader) = self.managers[position].leader.as_mut() else {
                return;
            };
            if !leader.nodes_proposing.insert(node_id.clone()) {
                continue;
            }
            leader.pushed.remove(&node_id);
            let command = Command::UpdateNodeStatus {
                node_id: node_id.clone(),
                status: NodeStatus::Down,
            };
            if self
                .propose(position, Origin::Node(node_id.clone()), command)
                .is_err()
            {
                if let Some(leader) = self.managers[position].leader.as_mut() {
                    leader.nodes_proposing.remove(&node_id);
                }
            }
        }
    }

    /// The dispatcher pushes a node's set when the store changed it.
    fn push_assignments(&mut self, position: usize) {
        let raft_id = self.managers[position].raft_id;
        let mut sends = Vec::new();
        {
            let manager = &mut self.managers[position];
            let Some(leader) = manager.leader.as_mut() else {
                return;
            };
            if leader.touched_nodes.is_empty() {
                return;
            }
            let store = manager.store.read();
            for node_id in std::mem::take(&mut leader.touched_nodes) {
                if store.node(&node_id).is_none() {
                    continue;
                }
                let version = assignment_version(&store, &node_id);
                if leader.pushed.get(&node_id) == Some(&version) {
                    continue;
                }
                leader.pushed.insert(node_id.clone(), version);
                if let Some(addr) = worker_addr(&node_id) {
                    sends.push((addr, assignment_set(&store, &node_id)));
                }
            }
        }
        for (addr, set) in sends {
            self.send(raft_id, addr, Payload::Assignments(set));
        }
    }

    /// Service actors: reconcile dirty services (and due wake-ups) that have no plan in flight.
    fn run_services(&mut self, position: usize) {
        let now_ms = self.now_ms;
        let ready: Vec<String> = {
            let Some(leader) = self.managers[position].leader.as_mut() else {
                return;
            };
            let due: Vec<String> = leader
                .service_wake_ms
                .iter()
                .filter(|(_, &at)| at <= now_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                leader.service_wake_ms.remove(&id);
                leader.dirty_services.insert(id);
            }
            leader
                .dirty_services
                .iter()
                .filter(|id| !leader.service_plans.contains_key(*id))
                .cloned()
                .collect()
        };
        for service_id in ready {
            let plan = {
                let manager = &mut self.managers[position];
                let Some(leader) = manager.leader.as_mut() else {
                    return;
                };
                leader.dirty_services.remove(&service_id);
                let store = manager.store.read();
                let mut plan = reconcile_service(
                    &store,
                    &service_id,
                    now_ms,
                    &mut leader.restarts,
                    &mut leader.rng,
                );
                // The service actor runs the updater on the same view (actors/service.rs).
                let rollout = plan_rollout(&store, &service_id, now_ms, &mut leader.rng);
                plan.wake_at_ms = match (plan.wake_at_ms, rollout.wake_at_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (plan, rollout.commands)
            };
            let (plan, rollout_commands) = plan;
            let Some(leader) = self.managers[position].leader.as_mut() else {
                return;
            };
            if let Some(wake_at_ms) = plan.wake_at_ms {
                leader
                    .service_wake_ms
                    .insert(service_id.clone(), wake_at_ms);
            }
            if plan.is_empty() && rollout_commands.is_empty() {
                continue;
            }
            let mut commands: VecDeque<Command> = plan.into_commands().into();
            commands.extend(rollout_commands);
            leader.service_plans.insert(service_id.clone(), commands);
            self.service_propose_next(position, &service_id);
        }
    }

    /// Proposes the next command of a service's plan, or ends the plan.
    fn service_propose_next(&mut self, position: usize, service_id: &str) {
        let Some(leader) = self.managers[position].leader.as_mut() else {
            return;
        };
        let Some(plan) = leader.service_plans.get_mut(service_id) else {
            return;
        };
        let Some(command) = plan.pop_front() else {
            leader.service_plans.remove(service_id);
            return;
        };
        let origin = Origin::Service(service_id.to_string());
        if self.propose(position, origin, command).is_err() {
            self.service_step_done(position, service_id, false);
        }
    }

    pub fn service_step_done(&mut self, position: usize, service_id: &str, ok: bool) {
        if ok {
            self.service_propose_next(position, service_id);
            return;
        }
        // A half-applied plan heals on the next reconcile; try again soon (as the actor).
        let now_ms = self.now_ms;
        let Some(leader) = self.managers[position].leader.as_mut() else {
            return;
        };
        leader.service_plans.remove(service_id);
        let wake = leader
            .service_wake_ms
            .entry(service_id.to_string())
            .or_insert(now_ms + SERVICE_RETRY_MS);
        *wake = (*wake).min(now_ms + SERVICE_RETRY_MS);
    }

    fn run_scheduler(&mut self, position: usize) {
        let commands = {
            let manager = &mut self.managers[position];
            let Some(leader) = manager.leader.as_mut() else {
                return;
            };
            if !leader.scheduler_dirty || leader.scheduler_plan.is_some() {
                return;
            }
            leader.scheduler_dirty = false;
            let commands = scheduling_round(&manager.store.read(), SCHEDULE_BATCH_MAX);
            if commands.is_empty() {
                return;
            }
            commands
        };
        if let Some(leader) = self.managers[position].leader.as_mut() {
            leader.scheduler_plan = Some(commands.into());
        }
        self.scheduler_step_done(position);
    }

    /// The scheduler proposes its plan's commands in turn, ignoring failures (as the actor).
    pub fn scheduler_step_done(&mut self, position: usize) {
        loop {
            let Some(leader) = self.managers[position].leader.as_mut() else {
                return;
            };
            let Some(plan) = leader.scheduler_plan.as_mut() else {
                return;
            };
            let Some(command) = plan.pop_front() else {
                leader.scheduler_plan = None;
                return;
            };
            if self.propose(position, Origin::Scheduler, command).is_ok() {
                return;
            }
        }
    }
}
