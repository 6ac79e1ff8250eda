//! Managers: the real `RaftMember<StoreMachine>` on a crashable disk, the Ready loop, and
//! what a manager does with a message (Raft, heartbeat, status report, admin write). The
//! leader-only components are in `leader.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use flotilla::consensus::store_machine::{EventQueue, Proposal, SharedStore, StoreMachine};
use flotilla::consensus::{MemberError, RaftMember, RedbStorage, SimDisk};
use flotilla::core::assignment::{assignment_set, assignment_version};
use flotilla::core::events::{Delivery, EventCursor};
use flotilla::core::model::TaskState;
use flotilla::core::restart::RestartTracker;
use flotilla::core::sessions::{refresh_command, NodeSessions};
use flotilla::core::store::{Command, Event, TaskStatusUpdate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::messages::{AdminOp, AdminOutcome, Payload};
use crate::network::Addr;
use crate::planning::{description_of, plan_admin_write};
use crate::sim::{trace, SimResult, Simulation, HEARTBEAT_PERIOD_MS, WORKER_ADDR_BASE};

/// Who waits for a proposal's result.
#[derive(Clone, Debug)]
pub enum Origin {
    Admin {
        op_id: u64,
    },
    Service(String),
    Scheduler,
    /// A node's status or registration (one in flight per node).
    Node(String),
    /// Status reports of `(worker address, batch)`, group-committed.
    Statuses(Vec<(Addr, u64)>),
}

/// The leader-only components' state; dropped when leadership is lost.
pub struct LeaderState {
    /// The leader's first entry of its term: once applied, the store holds everything
    /// committed before the term (a "caught-up" leader).
    pub term_start_index: u64,
    pub restarts: RestartTracker,
    pub rng: StdRng,
    // dispatcher
    pub sessions: NodeSessions,
    /// Where the leader's components are in the event stream (as the actors' cursors).
    pub cursor: EventCursor,
    pub next_session_check_ms: u64,
    pub nodes_proposing: BTreeSet<String>,
    pub pushed: BTreeMap<String, u64>,
    pub touched_nodes: BTreeSet<String>,
    pub status_queue: VecDeque<(Addr, u64, Vec<TaskStatusUpdate>)>,
    pub statuses_in_flight: bool,
    // orchestrator (one "service actor" per service)
    pub dirty_services: BTreeSet<String>,
    pub service_plans: BTreeMap<String, VecDeque<Command>>,
    pub service_wake_ms: BTreeMap<String, u64>,
    // scheduler
    pub scheduler_dirty: bool,
    pub scheduler_plan: Option<VecDeque<Command>>,
}

pub struct Manager {
    pub raft_id: u64,
    pub disk: SimDisk,
    pub store: SharedStore,
    pub events: EventQueue,
    pub replica: Option<RaftMember<StoreMachine>>,
    pub restart_at_ms: Option<u64>,
    pub leader: Option<LeaderState>,
    pub pending: BTreeMap<u64, Origin>,
    pub next_proposal_id: u64,
    /// Nodes whose removal this manager applied since it started, with the tasks placed on
    /// them then (for the invariants: no task is placed on them afterwards).
    pub removed_seen: BTreeMap<String, BTreeSet<String>>,
}

/// Most status updates in one proposal (as the dispatcher's group commit).
const STATUS_BATCH_MAX: usize = 10_000;

impl Manager {
    pub fn new(raft_id: u64) -> Self {
        Self {
            raft_id,
            disk: SimDisk::new(),
            store: SharedStore::default(),
            events: EventQueue::default(),
            replica: None,
            restart_at_ms: None,
            leader: None,
            pending: BTreeMap::new(),
            next_proposal_id: 1,
            removed_seen: BTreeMap::new(),
        }
    }

    /// A new, empty store and its state machine (at start and after a crash).
    pub fn fresh_machine(&mut self) -> StoreMachine {
        self.store = SharedStore::default();
        self.events = EventQueue::default();
        StoreMachine::new(self.store.clone(), self.events.clone())
    }

    pub fn caught_up(&self) -> bool {
        match (&self.leader, &self.replica) {
            (Some(leader), Some(replica)) => replica.applied_index() >= leader.term_start_index,
            _ => false,
        }
    }
}

fn worker_addr_of(node_id: &str) -> Option<Addr> {
    let number: u64 = node_id.strip_prefix('w')?.parse().ok()?;
    Some(WORKER_ADDR_BASE + number)
}

impl Simulation {
    pub fn crash_manager(&mut self, position: usize, down_ms: u64) {
        self.stats.manager_crashes += 1;
        let manager = &mut self.managers[position];
        trace!(
            self.now_ms,
            "manager {} crashed for {down_ms} ms",
            manager.raft_id
        );
        // The disk first, so nothing the dropped database writes on its way out survives.
        manager.disk.crash();
        manager.replica = None;
        manager.leader = None;
        manager.pending.clear();
        manager.removed_seen.clear();
        manager.restart_at_ms = Some(self.now_ms + down_ms);
    }

    pub fn restart_manager(&mut self, position: usize) -> SimResult {
        let config = self.replica_config(self.managers[position].raft_id);
        let manager = &mut self.managers[position];
        manager.restart_at_ms = None;
        let raft_id = manager.raft_id;
        let storage = RedbStorage::open_with_backend(manager.disk.backend())
            .map_err(|e| format!("manager {raft_id} storage does not reopen: {e}"))?;
        let machine = manager.fresh_machine();
        let replica = RaftMember::restart(config, storage, machine)
            .map_err(|e| format!("manager {raft_id} does not restart: {e}"))?;
        manager.replica = Some(replica);
        trace!(self.now_ms, "manager {raft_id} restarted");
        Ok(())
    }

    /// Proposes a command on the leader at `position`, as the Raft actor does: check against
    /// the store first, then propose. `Err` means it will never apply.
    pub fn propose(
        &mut self,
        position: usize,
        origin: Origin,
        command: Command,
    ) -> Result<(), String> {
        let now_ms = self.now_ms;
        let manager = &mut self.managers[position];
        let Some(replica) = manager.replica.as_mut() else {
            return Err("manager down".into());
        };
        if manager.leader.is_none() {
            return Err("not the leader".into());
        }
        manager
            .store
            .read()
            .check(&command)
            .map_err(|e| e.to_string())?;
        let id = manager.next_proposal_id;
        manager.next_proposal_id += 1;
        trace!(
            now_ms,
            "manager {} proposes {}",
            manager.raft_id,
            command_summary(&command)
        );
        let proposal = Proposal { now_ms, command };
        replica.propose(id, &proposal).map_err(|e| e.to_string())?;
        manager.pending.insert(id, origin);
        self.stats.proposals += 1;
        let raft_id = self.managers[position].raft_id;
        self.record(&proposal, raft_id, raft_id);
        Ok(())
    }

    pub fn handle_ready(&mut self, position: usize) -> SimResult {
        let raft_id = self.managers[position].raft_id;
        let Some(replica) = self.managers[position].replica.as_mut() else {
            return Ok(());
        };
        let output = match replica.handle_ready() {
            Ok(output) => output,
            Err(error) => return Err(format!("manager {raft_id} handle_ready failed: {error}")),
        };
        let leadership = replica.leadership();
        let last_index = raft::Storage::last_index(replica.storage()).map_err(|e| e.to_string())?;
        if leadership.is_leader {
            let leader = self
                .leaders_by_term
                .entry(leadership.term)
                .or_insert(raft_id);
            if *leader != raft_id {
                return Err(format!(
                    "two leaders in term {}: managers {leader} and {raft_id}",
                    leadership.term
                ));
            }
        }
        for message in output.messages {
            let payload = Payload::Raft {
                bytes: message.bytes,
                carries_snapshot: message.carries_snapshot,
            };
            let sent = self.send(raft_id, message.to, payload);
            if message.carries_snapshot && !sent {
                if let Some(replica) = self.managers[position].replica.as_mut() {
                    replica.report_snapshot(message.to, false);
                }
            }
        }
        if let Some(change) = output.leadership_change {
            let was_leader = self.managers[position].leader.is_some();
            if change.is_leader && !was_leader {
                self.gain_leadership(position, change.term, last_index);
            } else if !change.is_leader && was_leader {
                self.lose_leadership(position);
            }
        }
        for applied in output.applied {
            let Some(origin) = self.managers[position].pending.remove(&applied.proposal_id) else {
                continue;
            };
            let result = match applied.result {
                Ok(Ok(_)) => Ok(applied.index),
                Ok(Err(error)) => Err(error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            self.proposal_done(position, origin, result)?;
        }
        self.drain_events(position)
    }

    fn gain_leadership(&mut self, position: usize, term: u64, last_index: u64) {
        self.stats.leaders_elected += 1;
        let seed = self.rng.random();
        let manager = &mut self.managers[position];
        trace!(self.now_ms, "manager {} leads term {term}", manager.raft_id);
        let (all_services, applied_index) = {
            let store = manager.store.read();
            (
                flotilla::core::orchestrator::services_to_reconcile(&store),
                store.applied_index(),
            )
        };
        manager.leader = Some(LeaderState {
            term_start_index: last_index,
            restarts: RestartTracker::new(),
            rng: StdRng::seed_from_u64(seed),
            sessions: NodeSessions::new(HEARTBEAT_PERIOD_MS, self.now_ms),
            cursor: EventCursor::at(applied_index),
            next_session_check_ms: self.now_ms,
            nodes_proposing: BTreeSet::new(),
            pushed: BTreeMap::new(),
            touched_nodes: BTreeSet::new(),
            status_queue: VecDeque::new(),
            statuses_in_flight: false,
            dirty_services: all_services,
            service_plans: BTreeMap::new(),
            service_wake_ms: BTreeMap::new(),
            scheduler_dirty: true,
            scheduler_plan: None,
        });
    }

    /// Leadership lost: every pending proposal may or may not commit; its waiter is told so.
    fn lose_leadership(&mut self, position: usize) {
        let raft_id = self.managers[position].raft_id;
        trace!(self.now_ms, "manager {raft_id} lost leadership");
        let manager = &mut self.managers[position];
        manager.leader = None;
        let pending = std::mem::take(&mut manager.pending);
        for origin in pending.into_values() {
            match origin {
                Origin::Admin { op_id } => {
                    let outcome = AdminOutcome::Unknown;
                    self.send(
                        raft_id,
                        crate::sim::ADMIN_ADDR,
                        Payload::AdminReply { op_id, outcome },
                    );
                }
                Origin::Statuses(waiters) => {
                    for (addr, batch) in waiters {
                        let ack = Payload::StatusesAck {
                            batch,
                            ok: false,
                            leader: None,
                        };
                        self.send(raft_id, addr, ack);
                    }
                }
                _ => {}
            }
        }
    }

    /// Reads what the state machine applied: invariants on every manager, routing on the leader.
    fn drain_events(&mut self, position: usize) -> SimResult {
        let Some(batch) = self.managers[position].events.take() else {
            return Ok(());
        };
        let events: Vec<Event> = batch.events.iter().map(|e| e.event.clone()).collect();
        let raft_id = self.managers[position].raft_id;
        let manager = &mut self.managers[position];
        for event in &events {
            match event {
                Event::NodeRemoved { node_id } => {
                    let placed: BTreeSet<String> = manager
                        .store
                        .read()
                        .tasks_of_node(node_id)
                        .into_iter()
                        .map(|task| task.id.clone())
                        .collect();
                    manager.removed_seen.insert(node_id.clone(), placed);
                }
                Event::NodeChanged { node_id } if manager.removed_seen.contains_key(node_id) => {
                    return Err(format!(
                        "manager {raft_id}: removed node {node_id} came back into the store"
                    ));
                }
                Event::TaskUpdated(task) if task.state == TaskState::Assigned => {
                    let Some(node_id) = &task.node_id else {
                        continue;
                    };
                    let Some(placed_before) = manager.removed_seen.get(node_id) else {
                        continue;
                    };
                    if !placed_before.contains(&task.task_id) {
                        return Err(format!(
                            "manager {raft_id}: task {} assigned to removed node {node_id}",
                            task.task_id
                        ));
                    }
                }
                _ => {}
            }
        }
        let delivery = match self.managers[position].leader.as_mut() {
            Some(leader) => match leader.cursor.accept(&batch) {
                Delivery::Events(fresh) => Some(Ok(fresh.into_iter().cloned().collect::<Vec<_>>())),
                Delivery::Reconcile { .. } => Some(Err(())),
                Delivery::Nothing => None,
            },
            None => None,
        };
        match delivery {
            Some(Ok(fresh)) => self.route_events(position, &fresh),
            Some(Err(())) => self.reconcile_everything(position),
            None => {}
        }
        Ok(())
    }

    pub fn manager_receive(&mut self, position: usize, from: Addr, payload: Payload) -> SimResult {
        if self.managers[position].replica.is_none() {
            return Ok(());
        }
        match payload {
            Payload::Raft { bytes, .. } => {
                let raft_id = self.managers[position].raft_id;
                let Some(replica) = self.managers[position].replica.as_mut() else {
                    return Ok(());
                };
                match replica.step(&bytes) {
                    Ok(()) | Err(MemberError::Raft(_)) => Ok(()),
                    Err(error) => Err(format!(
                        "manager {raft_id} refused a message from {from}: {error}"
                    )),
                }
            }
            Payload::Heartbeat {
                node_id,
                sequence,
                assignments_version,
            } => {
                self.heartbeat(position, from, node_id, sequence, assignments_version);
                Ok(())
            }
            Payload::Statuses {
                node_id,
                batch,
                updates,
            } => {
                self.statuses(position, from, node_id, batch, updates);
                Ok(())
            }
            Payload::AdminRequest { op_id, op } => {
                self.admin_request(position, from, op_id, op);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn leader_hint(&self, position: usize) -> Option<u64> {
        self.managers[position]
            .replica
            .as_ref()
            .and_then(|r| r.leadership().leader_id)
    }

    /// The dispatcher's heartbeat handler.
    fn heartbeat(
        &mut self,
        position: usize,
        from: Addr,
        node_id: String,
        sequence: u64,
        version: u64,
    ) {
        let raft_id = self.managers[position].raft_id;
        if self.managers[position].leader.is_none() {
            let leader = self.leader_hint(position);
            self.send(raft_id, from, Payload::NotLeader { sequence, leader });
            return;
        }
        let caught_up = self.managers[position].caught_up();
        let now_ms = self.now_ms;
        let store = self.managers[position].store.clone();
        let store = store.read();
        let Some(node) = store.node(&node_id) else {
            drop(store);
            // Node records are only ever deleted by `node rm`: a caught-up leader without the
            // record of an admitted node knows it was removed.
            let removed = caught_up;
            self.send(raft_id, from, Payload::Refused { sequence, removed });
            return;
        };
        let refresh = refresh_command(node, &description_of(&node_id));
        let current = assignment_version(&store, &node_id);
        let assignments = (current != version).then(|| assignment_set(&store, &node_id));
        drop(store);
        let Some(leader) = self.managers[position].leader.as_mut() else {
            return;
        };
        leader.sessions.heartbeat(&node_id, now_ms);
        if assignments.is_some() {
            leader.pushed.insert(node_id.clone(), current);
        }
        if let Some(refresh) = refresh {
            if leader.nodes_proposing.insert(node_id.clone()) {
                let origin = Origin::Node(node_id.clone());
                if self.propose(position, origin, refresh).is_err() {
                    if let Some(leader) = self.managers[position].leader.as_mut() {
                        leader.nodes_proposing.remove(&node_id);
                    }
                }
            }
        }
        self.send(
            raft_id,
            from,
            Payload::HeartbeatAck {
                sequence,
                assignments,
            },
        );
    }

    /// The dispatcher's status report handler: reports on tasks placed on the node only,
    /// group-committed.
    fn statuses(
        &mut self,
        position: usize,
        from: Addr,
        node_id: String,
        batch: u64,
        updates: Vec<TaskStatusUpdate>,
    ) {
        let raft_id = self.managers[position].raft_id;
        if self.managers[position].leader.is_none() {
            let leader = self.leader_hint(position);
            self.send(
                raft_id,
                from,
                Payload::StatusesAck {
                    batch,
                    ok: false,
                    leader,
                },
            );
            return;
        }
        let updates: Vec<TaskStatusUpdate> = {
            let store = self.managers[position].store.read();
            updates
                .into_iter()
                .filter(|update| {
                    store
                        .task(&update.task_id)
                        .is_some_and(|task| task.node_id.as_deref() == Some(node_id.as_str()))
                })
                .collect()
        };
        if updates.is_empty() {
            self.send(
                raft_id,
                from,
                Payload::StatusesAck {
                    batch,
                    ok: true,
                    leader: None,
                },
            );
            return;
        }
        if let Some(leader) = self.managers[position].leader.as_mut() {
            leader.status_queue.push_back((from, batch, updates));
        }
        self.flush_statuses(position);
    }

    pub fn flush_statuses(&mut self, position: usize) {
        let Some(leader) = self.managers[position].leader.as_mut() else {
            return;
        };
        if leader.statuses_in_flight || leader.status_queue.is_empty() {
            return;
        }
        let mut updates = Vec::new();
        let mut waiters = Vec::new();
        while let Some((_, _, batch)) = leader.status_queue.front() {
            if !updates.is_empty() && updates.len() + batch.len() > STATUS_BATCH_MAX {
                break;
            }
            let Some((addr, batch_id, batch)) = leader.status_queue.pop_front() else {
                break;
            };
            updates.extend(batch);
            waiters.push((addr, batch_id));
        }
        leader.statuses_in_flight = true;
        let command = Command::UpdateTaskStatuses(updates);
        if let Err(error) = self.propose(position, Origin::Statuses(waiters.clone()), command) {
            let raft_id = self.managers[position].raft_id;
            trace!(
                self.now_ms,
                "manager {raft_id}: status batch not proposed: {error}"
            );
            if let Some(leader) = self.managers[position].leader.as_mut() {
                leader.statuses_in_flight = false;
            }
            for (addr, batch) in waiters {
                self.send(
                    raft_id,
                    addr,
                    Payload::StatusesAck {
                        batch,
                        ok: false,
                        leader: None,
                    },
                );
            }
        }
    }

    /// The control plane's write path: plan against the store, then propose.
    fn admin_request(&mut self, position: usize, from: Addr, op_id: u64, op: AdminOp) {
        let raft_id = self.managers[position].raft_id;
        let outcome = if self.managers[position].leader.is_none() {
            AdminOutcome::NotLeader {
                leader: self.leader_hint(position),
            }
        } else {
            let planned = {
                let manager = &mut self.managers[position];
                let store = manager.store.read();
                let Some(leader) = manager.leader.as_mut() else {
                    return;
                };
                plan_admin_write(&store, &op, &mut leader.rng)
            };
            match planned {
                Err(error) => AdminOutcome::Rejected(error),
                Ok(mut commands) => {
                    // Every write the client issues plans to one command.
                    let Some(command) = commands.pop() else {
                        return;
                    };
                    match self.propose(position, Origin::Admin { op_id }, command) {
                        Ok(()) => return,
                        Err(error) => AdminOutcome::Rejected(error),
                    }
                }
            }
        };
        self.send(raft_id, from, Payload::AdminReply { op_id, outcome });
    }

    /// A proposal of this manager applied (`Ok(index)`) or failed at apply.
    fn proposal_done(
        &mut self,
        position: usize,
        origin: Origin,
        result: Result<u64, String>,
    ) -> SimResult {
        let raft_id = self.managers[position].raft_id;
        match origin {
            Origin::Admin { op_id } => {
                let outcome = match &result {
                    Ok(_) => AdminOutcome::Done,
                    Err(error) => AdminOutcome::Rejected(error.clone()),
                };
                if let Ok(index) = result {
                    self.admin_index.insert(op_id, index);
                }
                self.send(
                    raft_id,
                    crate::sim::ADMIN_ADDR,
                    Payload::AdminReply { op_id, outcome },
                );
            }
            Origin::Statuses(waiters) => {
                if let Some(leader) = self.managers[position].leader.as_mut() {
                    leader.statuses_in_flight = false;
                }
                for (addr, batch) in waiters {
                    let ack = Payload::StatusesAck {
                        batch,
                        ok: result.is_ok(),
                        leader: None,
                    };
                    self.send(raft_id, addr, ack);
                }
                self.flush_statuses(position);
            }
            Origin::Node(node_id) => {
                if let Some(leader) = self.managers[position].leader.as_mut() {
                    leader.nodes_proposing.remove(&node_id);
                }
            }
            Origin::Service(service_id) => {
                self.service_step_done(position, &service_id, result.is_ok())
            }
            Origin::Scheduler => self.scheduler_step_done(position),
        }
        Ok(())
    }
}

pub fn worker_addr(node_id: &str) -> Option<Addr> {
    worker_addr_of(node_id)
}

/// A one-line description of a command for the trace.
fn command_summary(command: &Command) -> String {
    match command {
        Command::UpsertNode(node) => format!(
            "UpsertNode({} {:?} {:?})",
            node.id, node.status, node.availability
        ),
        Command::UpdateNodeStatus { node_id, status } => {
            format!("UpdateNodeStatus({node_id} {status:?})")
        }
        Command::RefreshNode(refresh) => format!("RefreshNode({})", refresh.node_id),
        Command::UpdateNodeSpec(update) => format!(
            "UpdateNodeSpec({} {:?})",
            update.node_id, update.availability
        ),
        Command::RemoveNode { node_id, .. } => format!("RemoveNode({node_id})"),
        Command::CreateTasks(tasks) => format!(
            "CreateTasks({:?})",
            tasks
                .iter()
                .map(|t| (&t.id[..6], t.slot))
                .collect::<Vec<_>>()
        ),
        Command::AssignTasks(items) => format!(
            "AssignTasks({:?})",
            items.iter().map(|(t, n)| (&t[..6], n)).collect::<Vec<_>>()
        ),
        Command::UpdateTaskStatuses(updates) => format!(
            "UpdateTaskStatuses({:?})",
            updates
                .iter()
                .map(|u| (&u.task_id[..6], u.status.state))
                .collect::<Vec<_>>()
        ),
        Command::SetTaskDesiredStates(items) => format!(
            "SetTaskDesiredStates({:?})",
            items.iter().map(|(t, s)| (&t[..6], s)).collect::<Vec<_>>()
        ),
        Command::RemoveTasks(ids) => format!("RemoveTasks({})", ids.len()),
        other => format!("{:?}", std::mem::discriminant(other)),
    }
}
