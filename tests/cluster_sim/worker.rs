//! Workers: the worker agent (heartbeats, assignment set, status reports, replicas) over a
//! simulated container runtime. Containers outlive a crash of the agent (as Docker's do); a
//! machine crash takes them too. The last assignment set is persisted, as the worker saves
//! `assignments.json`, and so is the knowledge that the node was removed.

use std::collections::BTreeMap;

use flotilla::core::assignment::{self, AssignmentSet};
use flotilla::core::model::{Task, TaskState, TaskStatus};
use flotilla::core::store::TaskStatusUpdate;
use rand::Rng;

use crate::messages::Payload;
use crate::network::Addr;
use crate::sim::{trace, SimResult, Simulation, HEARTBEAT_PERIOD_MS, MANAGERS, STEP_MS};

const HEARTBEAT_TIMEOUT_MS: u64 = 2 * HEARTBEAT_PERIOD_MS;
const STATUS_TIMEOUT_MS: u64 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Starting { running_at_ms: u64 },
    Running,
    Exited { exit_code: i64 },
}

#[derive(Clone, Debug)]
pub struct Container {
    pub service_id: String,
    pub slot: Option<u64>,
    pub state: ContainerState,
}

impl Container {
    pub fn is_live(&self) -> bool {
        !matches!(self.state, ContainerState::Exited { .. })
    }
}

/// One task's replica on the worker (the replica actor).
#[derive(Clone, Debug)]
pub struct Replica {
    pub reported_running: bool,
    pub finished: bool,
}

pub struct Worker {
    pub node_id: String,
    pub addr: Addr,
    /// Its join was acknowledged: it has credentials and runs.
    pub joined: bool,
    pub agent_up: bool,
    pub restart_at_ms: Option<u64>,
    // Survives an agent crash (disk, runtime).
    pub removed: bool,
    pub persisted: AssignmentSet,
    pub containers: BTreeMap<String, Container>,
    // Lost with the agent.
    pub assignments: AssignmentSet,
    pub authoritative: bool,
    pub replicas: BTreeMap<String, Replica>,
    pub unsent: BTreeMap<String, TaskStatusUpdate>,
    pub target: u64,
    pub beat: Option<(u64, u64)>,
    pub beat_sequence: u64,
    pub next_beat_ms: u64,
    pub flush: Option<(u64, u64, Vec<TaskStatusUpdate>)>,
    pub batch_sequence: u64,
}

impl Worker {
    pub fn new(node_id: String, addr: Addr) -> Self {
        let empty = AssignmentSet::empty(&node_id);
        Self {
            node_id,
            addr,
            joined: false,
            agent_up: false,
            restart_at_ms: None,
            removed: false,
            persisted: empty.clone(),
            containers: BTreeMap::new(),
            assignments: empty,
            authoritative: false,
            replicas: BTreeMap::new(),
            unsent: BTreeMap::new(),
            target: 1,
            beat: None,
            beat_sequence: 0,
            next_beat_ms: 0,
            flush: None,
            batch_sequence: 0,
        }
    }

    fn report(&mut self, now_ms: u64, task_id: &str, state: TaskState, exit_code: Option<i64>) {
        let update = TaskStatusUpdate {
            task_id: task_id.to_string(),
            status: TaskStatus {
                state,
                since_ms: now_ms,
                message: state.as_str().to_string(),
                error: (state == TaskState::Failed).then(|| "simulated failure".to_string()),
                exit_code,
            },
            runtime: Some("sim".to_string()),
            runtime_id: Some(format!("c-{task_id}")),
            endpoints: None,
        };
        let keep = self
            .unsent
            .get(task_id)
            .is_none_or(|previous| state >= previous.status.state);
        if keep {
            self.unsent.insert(task_id.to_string(), update);
        }
    }

    fn next_manager(&mut self) {
        self.target = self.target % MANAGERS + 1;
    }

    fn follow(&mut self, leader: Option<u64>) {
        match leader {
            Some(leader) if (1..=MANAGERS).contains(&leader) => self.target = leader,
            _ => self.next_manager(),
        }
    }
}

impl Simulation {
    /// The join of worker `position` was acknowledged: it starts.
    pub fn worker_joined(&mut self, position: usize) {
        let worker = &mut self.workers[position];
        if worker.joined {
            return;
        }
        worker.joined = true;
        worker.agent_up = true;
        worker.next_beat_ms = self.now_ms;
    }

    pub fn crash_worker(&mut self, position: usize, machine: bool, down_ms: u64) {
        self.stats.worker_crashes += 1;
        let now_ms = self.now_ms;
        let worker = &mut self.workers[position];
        trace!(
            now_ms,
            "worker {} crashed (machine: {machine}) for {down_ms} ms",
            worker.node_id
        );
        worker.agent_up = false;
        worker.restart_at_ms = Some(now_ms + down_ms);
        worker.assignments = AssignmentSet::empty(&worker.node_id);
        worker.authoritative = false;
        worker.replicas.clear();
        worker.unsent.clear();
        worker.beat = None;
        worker.flush = None;
        if machine {
            worker.containers.clear();
        }
    }

    pub fn restart_worker(&mut self, position: usize) {
        let now_ms = self.now_ms;
        let worker = &mut self.workers[position];
        worker.restart_at_ms = None;
        worker.agent_up = true;
        worker.next_beat_ms = now_ms;
        // The last set the leader sent survives restarts, so replicas re-attach at once.
        worker.assignments = worker.persisted.clone();
        trace!(now_ms, "worker {} restarted", worker.node_id);
        self.reconcile_worker(position);
    }

    /// During chaos, running containers die at random.
    pub fn crash_containers(&mut self) {
        let rate = self.rates.task_crash_per_mille_per_s;
        if rate == 0 {
            return;
        }
        for position in 0..self.workers.len() {
            let running: Vec<String> = self.workers[position]
                .containers
                .iter()
                .filter(|(_, c)| c.state == ContainerState::Running)
                .map(|(id, _)| id.clone())
                .collect();
            for task_id in running {
                if self.rng.random_range(0..1_000_000) < rate as u64 * STEP_MS {
                    self.stats.task_crashes += 1;
                    if let Some(container) = self.workers[position].containers.get_mut(&task_id) {
                        container.state = ContainerState::Exited { exit_code: 1 };
                    }
                }
            }
        }
    }

    pub fn step_worker(&mut self, position: usize) -> SimResult {
        let now_ms = self.now_ms;
        // The runtime: containers finish starting whether or not the agent runs.
        for container in self.workers[position].containers.values_mut() {
            if let ContainerState::Starting { running_at_ms } = container.state {
                if running_at_ms <= now_ms {
                    container.state = ContainerState::Running;
                }
            }
        }
        let worker = &self.workers[position];
        if !worker.agent_up || worker.removed {
            return Ok(());
        }
        self.observe_containers(position);
        let worker = &mut self.workers[position];
        if let Some((_, sent_at)) = worker.beat {
            if now_ms >= sent_at + HEARTBEAT_TIMEOUT_MS {
                worker.beat = None;
                worker.next_manager();
            }
        }
        if worker.beat.is_none() && now_ms >= worker.next_beat_ms {
            worker.beat_sequence += 1;
            worker.beat = Some((worker.beat_sequence, now_ms));
            worker.next_beat_ms = now_ms + HEARTBEAT_PERIOD_MS;
            let payload = Payload::Heartbeat {
                node_id: worker.node_id.clone(),
                sequence: worker.beat_sequence,
                assignments_version: worker.assignments.version,
            };
            let (from, to) = (worker.addr, worker.target);
            self.send(from, to, payload);
        }
        let worker = &mut self.workers[position];
        if let Some((_, sent_at, _)) = &worker.flush {
            if now_ms >= sent_at + STATUS_TIMEOUT_MS {
                if let Some((_, _, batch)) = worker.flush.take() {
                    for update in batch {
                        worker
                            .unsent
                            .entry(update.task_id.clone())
                            .or_insert(update);
                    }
                }
                worker.next_manager();
            }
        }
        self.flush_statuses_of(position);
        Ok(())
    }

    fn flush_statuses_of(&mut self, position: usize) {
        let now_ms = self.now_ms;
        let worker = &mut self.workers[position];
        if worker.flush.is_some() || worker.unsent.is_empty() {
            return;
        }
        worker.batch_sequence += 1;
        let batch: Vec<TaskStatusUpdate> =
            std::mem::take(&mut worker.unsent).into_values().collect();
        trace!(
            now_ms,
            "worker {} reports batch {} to manager {}: {:?}",
            worker.node_id,
            worker.batch_sequence,
            worker.target,
            batch
                .iter()
                .map(|u| (&u.task_id[..6], u.status.state))
                .collect::<Vec<_>>()
        );
        worker.flush = Some((worker.batch_sequence, now_ms, batch.clone()));
        let payload = Payload::Statuses {
            node_id: worker.node_id.clone(),
            batch: worker.batch_sequence,
            updates: batch,
        };
        let (from, to) = (worker.addr, worker.target);
        self.send(from, to, payload);
    }

    /// Replicas watch their containers and report what they see.
    fn observe_containers(&mut self, position: usize) {
        let now_ms = self.now_ms;
        let worker = &mut self.workers[position];
        let ids: Vec<String> = worker.replicas.keys().cloned().collect();
        for task_id in ids {
            let Some(replica) = worker.replicas.get(&task_id).cloned() else {
                continue;
            };
            if replica.finished {
                continue;
            }
            match worker.containers.get(&task_id).map(|c| c.state.clone()) {
                None => {
                    // The machine went down under it.
                    worker.report(now_ms, &task_id, TaskState::Failed, None);
                    mark(worker, &task_id, |r| r.finished = true);
                }
                Some(ContainerState::Starting { .. }) => {}
                Some(ContainerState::Running) => {
                    if !replica.reported_running {
                        worker.report(now_ms, &task_id, TaskState::Running, None);
                        mark(worker, &task_id, |r| r.reported_running = true);
                    }
                }
                Some(ContainerState::Exited { exit_code }) => {
                    let state = if exit_code == 0 {
                        TaskState::Complete
                    } else {
                        TaskState::Failed
                    };
                    worker.report(now_ms, &task_id, state, Some(exit_code));
                    mark(worker, &task_id, |r| r.finished = true);
                    worker.containers.remove(&task_id);
                }
            }
        }
    }

    pub fn worker_receive(&mut self, position: usize, payload: Payload) -> SimResult {
        let worker = &mut self.workers[position];
        if !worker.agent_up || worker.removed {
            return Ok(());
        }
        match payload {
            Payload::HeartbeatAck {
                sequence,
                assignments,
            } => {
                if worker.beat.map(|(s, _)| s) != Some(sequence) {
                    return Ok(());
                }
                worker.beat = None;
                match assignments {
                    Some(set) => self.apply_assignments(position, set),
                    None if !worker.authoritative => {
                        // The leader confirmed our version: it is authoritative.
                        worker.authoritative = true;
                        self.reconcile_worker(position);
                    }
                    None => {}
                }
                self.flush_statuses_of(position);
            }
            Payload::NotLeader { sequence, leader } => {
                if worker.beat.map(|(s, _)| s) != Some(sequence) {
                    return Ok(());
                }
                worker.beat = None;
                worker.follow(leader);
                worker.next_beat_ms = self.now_ms;
            }
            Payload::Refused { sequence, removed } => {
                if worker.beat.map(|(s, _)| s) != Some(sequence) {
                    return Ok(());
                }
                worker.beat = None;
                if removed {
                    self.learn_removal(position);
                } else {
                    worker.next_manager();
                }
            }
            Payload::Assignments(set) => self.apply_assignments(position, set),
            Payload::StatusesAck { batch, ok, leader } => {
                let Some((in_flight, _, _)) = &worker.flush else {
                    return Ok(());
                };
                if *in_flight != batch {
                    return Ok(());
                }
                if let Some((_, _, updates)) = worker.flush.take() {
                    if !ok {
                        worker.follow(leader);
                        for update in updates {
                            worker
                                .unsent
                                .entry(update.task_id.clone())
                                .or_insert(update);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// SPEC §4: `node rm` revokes the node. The agent stops every task and never runs one again.
    fn learn_removal(&mut self, position: usize) {
        self.stats.removals_learned += 1;
        let worker = &mut self.workers[position];
        trace!(
            self.now_ms,
            "worker {} learned it was removed",
            worker.node_id
        );
        worker.removed = true;
        worker.containers.clear();
        worker.replicas.clear();
        worker.unsent.clear();
        worker.flush = None;
    }

    fn apply_assignments(&mut self, position: usize, set: AssignmentSet) {
        let worker = &mut self.workers[position];
        // As the worker actor: only its own sets, never an older one.
        match assignment::judge(&worker.node_id, &worker.assignments, &set) {
            assignment::Arrival::NotOurs | assignment::Arrival::Stale => return,
            assignment::Arrival::Confirm => {
                worker.assignments.sequence = set.sequence;
                if !std::mem::replace(&mut worker.authoritative, true) {
                    self.reconcile_worker(position);
                }
                return;
            }
            assignment::Arrival::Replace => worker.authoritative = true,
        }
        worker.persisted = set.clone();
        worker.assignments = set;
        self.reconcile_worker(position);
    }

    /// Starts replicas for assigned tasks, retires those no longer wanted, and (once the set
    /// is the leader's) removes containers of tasks this node no longer has.
    pub fn reconcile_worker(&mut self, position: usize) {
        let now_ms = self.now_ms;
        let worker = &self.workers[position];
        let plan = assignment::plan_replicas(
            &worker.assignments,
            worker.replicas.keys().map(String::as_str),
            worker.authoritative,
        );
        for task in plan.start {
            let delay_ms = self.rng.random_range(20..500);
            self.start_replica(position, &task, plan.adopt_only, now_ms + delay_ms);
        }
        let worker = &mut self.workers[position];
        for task_id in plan.retire {
            let Some(replica) = worker.replicas.remove(&task_id) else {
                continue;
            };
            if let Some(container) = worker.containers.remove(&task_id) {
                if !replica.finished && container.is_live() {
                    worker.report(now_ms, &task_id, TaskState::Shutdown, None);
                }
            } else if !replica.finished {
                worker.report(now_ms, &task_id, TaskState::Shutdown, None);
            }
        }
        // As the worker actor: report stopped tasks it holds nothing for.
        for task_id in plan.settle {
            worker.report(now_ms, &task_id, TaskState::Shutdown, None);
        }
        if plan.sweep_orphans {
            let orphans = assignment::orphans(
                worker.containers.keys().cloned(),
                |id| id.as_str(),
                |id| worker.replicas.contains_key(id),
            );
            for task_id in orphans {
                worker.containers.remove(&task_id);
            }
        }
    }

    /// The replica actor's attach-or-start.
    fn start_replica(
        &mut self,
        position: usize,
        task: &Task,
        adopt_only: bool,
        running_at_ms: u64,
    ) {
        let now_ms = self.now_ms;
        let worker = &mut self.workers[position];
        assert_eq!(
            task.node_id.as_deref(),
            Some(worker.node_id.as_str()),
            "invariant: a worker only receives tasks placed on it"
        );
        // Until the leader has spoken, the set is the one saved before this node went down:
        // its tasks may have run already, so only re-attach to them.
        let reattaching = adopt_only || task.status.state >= TaskState::Starting;
        let mut replica = Replica {
            reported_running: false,
            finished: false,
        };
        match worker.containers.get(&task.id).map(|c| c.state.clone()) {
            Some(ContainerState::Running) => {
                worker.report(now_ms, &task.id, TaskState::Running, None);
                replica.reported_running = true;
            }
            Some(ContainerState::Starting { .. }) => {}
            Some(ContainerState::Exited { exit_code }) => {
                let state = if exit_code == 0 {
                    TaskState::Complete
                } else {
                    TaskState::Failed
                };
                worker.report(now_ms, &task.id, state, Some(exit_code));
                worker.containers.remove(&task.id);
                replica.finished = true;
            }
            None if reattaching => {
                worker.report(now_ms, &task.id, TaskState::Failed, None);
                replica.finished = true;
            }
            None => {
                worker.report(now_ms, &task.id, TaskState::Starting, None);
                worker.containers.insert(
                    task.id.clone(),
                    Container {
                        service_id: task.service_id.clone(),
                        slot: task.slot,
                        state: ContainerState::Starting { running_at_ms },
                    },
                );
                self.stats.tasks_started += 1;
            }
        }
        self.workers[position]
            .replicas
            .insert(task.id.clone(), replica);
    }
}

fn mark(worker: &mut Worker, task_id: &str, change: impl FnOnce(&mut Replica)) {
    if let Some(replica) = worker.replicas.get_mut(task_id) {
        change(replica);
    }
}
