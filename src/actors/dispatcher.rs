//! The dispatcher (leader only): one session per node, kept alive by heartbeats.
//!
//! A node that misses [`MISSED_HEARTBEATS_DOWN`] periods is marked `down`; after this manager
//! becomes leader, every node gets that long again before it can be marked down (it may have
//! been heartbeating the old leader). Heartbeats register a node on first contact and mark it
//! `ready`. The dispatcher also keeps each worker's assignment set: it pushes the set when the
//! store changes it, and answers a heartbeat that reports a stale version with the full set.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::actors::raft::{
    ChangeMembership, GetStatus, Propose, RaftActor, StoreEvents, Subscribe,
};
use crate::actors::transport::SendMessage;
use crate::consensus::MembershipChange;
use crate::core::model::{Node, NodeRole, NodeStatus, Task};
use crate::core::store::{Command, Event, Store, TaskStatusUpdate};
use crate::net::message::RoleChange;
use crate::net::message::{
    AssignmentSet, ErrorKind, Heartbeat, HeartbeatAck, Message as WireMessage, WireError,
};
use crate::net::tls::{ClusterCa, Role};
use crate::node::machine::raft_id_of;
use crate::node::machine::SharedStore;

/// Periods without a heartbeat after which a node is down (SPEC §3).
pub const MISSED_HEARTBEATS_DOWN: u32 = 3;

/// A node's heartbeat, as the dispatcher receives it.
#[derive(Debug, Message)]
#[rtype(result = "Result<HeartbeatAck, WireError>")]
pub struct NodeHeartbeat {
    /// The node (from its certificate).
    pub node_id: String,
    /// Its certificate role.
    pub role: NodeRole,
    /// What it reported.
    pub heartbeat: Heartbeat,
}

/// A node's batch of task status changes.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), WireError>")]
pub struct NodeTaskStatuses {
    /// The node (from its certificate).
    pub node_id: String,
    /// The changes.
    pub updates: Vec<TaskStatusUpdate>,
}

/// Stop the dispatcher (leadership lost, or chaos).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopDispatcher;

impl Handler<StopDispatcher> for DispatcherActor {
    type Result = ();

    fn handle(&mut self, _: StopDispatcher, ctx: &mut Context<Self>) {
        tracing::info!("dispatcher stopped");
        ctx.stop();
    }
}

/// Internal: check for nodes that stopped heartbeating.
#[derive(Message)]
#[rtype(result = "()")]
struct CheckSessions;

/// The dispatcher actor. See the module documentation.
pub struct DispatcherActor {
    store: SharedStore,
    raft: Addr<RaftActor>,
    transport: Recipient<SendMessage>,
    period: Duration,
    started: Instant,
    last_seen: HashMap<String, Instant>,
    /// Nodes with a status or registration proposal in flight (not proposed again meanwhile).
    proposing: HashSet<String>,
    /// Version of the assignment set last pushed to each node.
    pushed: HashMap<String, u64>,
    /// When the session check last ran: a late check means this manager stalled.
    last_check: Instant,
}

impl DispatcherActor {
    /// A dispatcher expecting heartbeats every `period`.
    pub fn new(
        store: SharedStore,
        raft: Addr<RaftActor>,
        transport: Recipient<SendMessage>,
        period: Duration,
    ) -> Self {
        Self {
            store,
            raft,
            transport,
            period,
            started: Instant::now(),
            last_seen: HashMap::new(),
            proposing: HashSet::new(),
            pushed: HashMap::new(),
            last_check: Instant::now(),
        }
    }

    fn propose(&mut self, ctx: &mut Context<Self>, node_id: String, command: Command) {
        if !self.proposing.insert(node_id.clone()) {
            return;
        }
        self.raft
            .send(Propose { command })
            .into_actor(self)
            .map(move |result, actor, _| {
                actor.proposing.remove(&node_id);
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(node = %node_id, %error, "node update not applied")
                    }
                    Err(error) => tracing::warn!(%error, "raft actor unavailable"),
                }
            })
            .spawn(ctx);
    }

    fn push_assignments(&mut self, store: &Store, node_id: &str) {
        let Some(node) = store.node(node_id) else {
            return;
        };
        let set = assignment_set(store, node_id);
        if self.pushed.get(node_id) == Some(&set.version) {
            return;
        }
        let Ok(addr) = node.addr.parse() else {
            return;
        };
        self.pushed.insert(node_id.to_string(), set.version);
        self.transport.do_send(SendMessage {
            to: addr,
            message: WireMessage::Assignments(set),
        });
    }
}

/// New credentials for a node whose role in the store differs from its certificate's.
fn issue_role_change(store: &Store, node: &Node) -> Option<RoleChange> {
    let cluster = store.cluster()?;
    let ca = ClusterCa::load(&cluster.ca_cert_pem, &cluster.ca_key_pem).ok()?;
    let role = match node.role {
        NodeRole::Manager => Role::Manager,
        NodeRole::Worker => Role::Worker,
    };
    match ca.issue(&node.id, role) {
        Ok(credentials) => Some(RoleChange { role, credentials }),
        Err(error) => {
            tracing::warn!(node = %node.id, %error, "cannot issue credentials for a role change");
            None
        }
    }
}

impl DispatcherActor {
    /// A manager that heartbeats with a manager certificate but is not a Raft voter yet (it
    /// was just promoted) becomes one.
    fn ensure_voter(&mut self, ctx: &mut Context<Self>, node: &Node) {
        let raft_id = raft_id_of(&node.id);
        let Ok(addr) = node.addr.parse() else {
            return;
        };
        if !self.proposing.insert(format!("voter:{}", node.id)) {
            return;
        }
        let raft = self.raft.clone();
        let key = format!("voter:{}", node.id);
        async move {
            let status = raft.send(GetStatus).await.ok()?;
            if status.voters.contains(&raft_id) {
                return Some(());
            }
            let change = ChangeMembership {
                change: MembershipChange::AddVoter(raft_id),
                addr: Some(addr),
            };
            match raft.send(change).await {
                Ok(Ok(())) => tracing::info!(raft_id, "promoted manager added as a voter"),
                Ok(Err(error)) => tracing::warn!(%error, "cannot add the promoted manager"),
                Err(_) => {}
            }
            Some(())
        }
        .into_actor(self)
        .map(move |_, actor, _| {
            actor.proposing.remove(&key);
        })
        .spawn(ctx);
    }
}

/// Every task a node must know of: those placed on it that have not finished. The version is a
/// digest of the tasks and their desired states, so equal sets have equal versions on any
/// leader.
pub fn assignment_set(store: &Store, node_id: &str) -> AssignmentSet {
    let tasks: Vec<Task> = store
        .tasks_of_node(node_id)
        .into_iter()
        .filter(|task| !task.status.state.is_terminal())
        .cloned()
        .collect();
    let mut hasher = DefaultHasher::new();
    for task in &tasks {
        task.id.hash(&mut hasher);
        task.desired_state.hash(&mut hasher);
    }
    AssignmentSet {
        version: hasher.finish().max(1),
        tasks,
    }
}

impl Actor for DispatcherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.started = Instant::now();
        self.raft.do_send(Subscribe {
            events: Some(ctx.address().recipient()),
            leadership: None,
        });
        ctx.run_interval(self.period, |_, ctx| ctx.notify(CheckSessions));
        tracing::info!("dispatcher started");
    }
}

impl Handler<NodeHeartbeat> for DispatcherActor {
    type Result = Result<HeartbeatAck, WireError>;

    fn handle(&mut self, beat: NodeHeartbeat, ctx: &mut Context<Self>) -> Self::Result {
        self.last_seen.insert(beat.node_id.clone(), Instant::now());
        let store = self.store.clone();
        let store = store.read();
        let Some(node) = store.node(&beat.node_id) else {
            return Err(WireError::new(
                ErrorKind::Forbidden,
                "this node is not (or no longer) registered in the swarm",
            ));
        };
        let description = &beat.heartbeat.description;
        let registered = Node {
            hostname: description.hostname.clone(),
            addr: description.addr.clone(),
            engine_version: description.engine_version.clone(),
            resources: description.resources,
            // Labels given at join count until an admin changes them.
            labels: if node.engine_version.is_empty() {
                description.labels.clone()
            } else {
                node.labels.clone()
            },
            status: NodeStatus::Ready,
            ..node.clone()
        };
        if registered != *node {
            self.propose(ctx, beat.node_id.clone(), Command::UpsertNode(registered));
        }
        let set = assignment_set(&store, &beat.node_id);
        let manager_addrs = store
            .nodes()
            .values()
            .filter(|n| n.role == NodeRole::Manager)
            .map(|n| n.addr.clone())
            .collect();
        let stale = set.version != beat.heartbeat.assignments_version;
        if stale {
            self.pushed.insert(beat.node_id.clone(), set.version);
        }
        let role_change = if beat.role == node.role {
            if node.role == NodeRole::Manager {
                self.ensure_voter(ctx, node);
            }
            None
        } else {
            issue_role_change(&store, node)
        };
        Ok(HeartbeatAck {
            period_ms: self.period.as_millis() as u64,
            manager_addrs,
            assignments: stale.then_some(set),
            role_change,
        })
    }
}

impl Handler<NodeTaskStatuses> for DispatcherActor {
    type Result = ResponseFuture<Result<(), WireError>>;

    fn handle(&mut self, report: NodeTaskStatuses, _: &mut Context<Self>) -> Self::Result {
        // A node may only report on tasks placed on it.
        let updates: Vec<TaskStatusUpdate> = {
            let store = self.store.read();
            report
                .updates
                .into_iter()
                .filter(|update| {
                    store.task(&update.task_id).is_some_and(|task| {
                        task.node_id.as_deref() == Some(report.node_id.as_str())
                    })
                })
                .collect()
        };
        let raft = self.raft.clone();
        Box::pin(async move {
            if updates.is_empty() {
                return Ok(());
            }
            match raft
                .send(Propose {
                    command: Command::UpdateTaskStatuses(updates),
                })
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(crate::actors::control::wire_error(error)),
                Err(error) => Err(WireError::new(ErrorKind::Internal, error.to_string())),
            }
        })
    }
}

impl Handler<CheckSessions> for DispatcherActor {
    type Result = ();

    fn handle(&mut self, _: CheckSessions, ctx: &mut Context<Self>) {
        let down_after = self.period * MISSED_HEARTBEATS_DOWN;
        let now = Instant::now();
        let since_last_check = now.duration_since(self.last_check);
        self.last_check = now;
        if since_last_check > self.period * 2 {
            // This manager was stalled, not the nodes: heartbeats may be waiting unread. Give
            // every node a full grace period again rather than marking the cluster down.
            tracing::warn!(
                stalled_ms = since_last_check.as_millis() as u64,
                "dispatcher stalled; extending every node's grace period"
            );
            self.started = now;
        }
        if self.started.elapsed() < down_after {
            return;
        }
        let expired: Vec<String> = {
            let store = self.store.read();
            store
                .nodes()
                .values()
                .filter(|node| node.status != NodeStatus::Down)
                .filter(|node| {
                    self.last_seen
                        .get(&node.id)
                        .is_none_or(|seen| now.duration_since(*seen) > down_after)
                })
                .map(|node| node.id.clone())
                .collect()
        };
        for node_id in expired {
            tracing::info!(node = %node_id, "node missed {MISSED_HEARTBEATS_DOWN} heartbeats: down");
            self.pushed.remove(&node_id);
            self.propose(
                ctx,
                node_id.clone(),
                Command::UpdateNodeStatus {
                    node_id,
                    status: NodeStatus::Down,
                },
            );
        }
    }
}

impl Handler<StoreEvents> for DispatcherActor {
    type Result = ();

    fn handle(&mut self, StoreEvents(events): StoreEvents, _: &mut Context<Self>) {
        let mut touched = BTreeSet::new();
        for event in &events {
            match event {
                Event::TaskCreated(task) | Event::TaskUpdated(task) | Event::TaskRemoved(task) => {
                    if let Some(node) = &task.node_id {
                        touched.insert(node.clone());
                    }
                }
                Event::NodeRemoved { node_id } => {
                    self.last_seen.remove(node_id);
                    self.pushed.remove(node_id);
                }
                _ => {}
            }
        }
        if touched.is_empty() {
            return;
        }
        let store = self.store.clone();
        let store = store.read();
        for node_id in touched {
            self.push_assignments(&store, &node_id);
        }
    }
}
