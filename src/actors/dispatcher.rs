//! The dispatcher (leader only): one session per node, kept alive by heartbeats.
//!
//! A node that misses [`MISSED_HEARTBEATS_DOWN`] periods is marked `down`; after this manager
//! becomes leader, every node gets that long again before it can be marked down (it may have
//! been heartbeating the old leader). Heartbeats register a node on first contact and mark it
//! `ready`. The dispatcher also keeps each worker's assignment set: it pushes the set when the
//! store changes it, and answers a heartbeat that reports a stale version with the full set.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

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
use crate::consensus::store_machine::raft_id_of;
use crate::consensus::store_machine::SharedStore;

/// Periods without a heartbeat after which a node is down (SPEC §3).
pub const MISSED_HEARTBEATS_DOWN: u32 = 3;

/// From this many nodes up, a cluster is large enough for [`mass_expiry`] to apply (as in
/// Kubernetes' node lifecycle controller, small clusters are left alone: two of three nodes
/// dying is plausible there).
pub const LARGE_CLUSTER_NODES: usize = 50;

/// Share of the nodes up (in percent) that must fall silent in one check for [`mass_expiry`].
pub const MASS_EXPIRY_PERCENT: usize = 55;

/// Whether `expired` of `up` nodes missing their heartbeats in the same check looks like a
/// fault of the manager rather than of the nodes (see `CheckSessions`).
pub fn mass_expiry(up: usize, expired: usize) -> bool {
    up >= LARGE_CLUSTER_NODES && expired * 100 > up * MASS_EXPIRY_PERCENT
}

/// Most task status updates committed as one Raft entry (reports are never split).
pub const STATUS_BATCH_MAX: usize = 10_000;

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

/// A node's status report waiting to be committed, with the channel that answers the node.
type PendingReport = (
    Vec<TaskStatusUpdate>,
    oneshot::Sender<Result<(), WireError>>,
);

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
    /// Status reports waiting for the batch in flight to commit, with their reporters.
    statuses: VecDeque<PendingReport>,
    /// Whether a batch of status reports is being committed.
    statuses_in_flight: bool,
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
            statuses: VecDeque::new(),
            statuses_in_flight: false,
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
        if self.pushed.get(node_id) == Some(&assignment_version(store, node_id)) {
            return;
        }
        let set = assignment_set(store, node_id);
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
    /// just joined, or was promoted) becomes a learner, then a voter once it has caught up.
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
            // Learner first, voter once caught up (a later heartbeat), so that a manager
            // still receiving its snapshot never counts toward the quorum.
            let (change, what) = if !status.learners.contains(&raft_id) {
                (MembershipChange::AddLearner(raft_id), "as a learner")
            } else if status.caught_up_learners.contains(&raft_id) {
                (MembershipChange::AddVoter(raft_id), "as a voter")
            } else {
                return Some(());
            };
            let change = ChangeMembership {
                change,
                addr: Some(addr),
            };
            match raft.send(change).await {
                Ok(Ok(())) => tracing::info!(raft_id, "manager added {what}"),
                Ok(Err(error)) => tracing::warn!(%error, "cannot add the manager {what}"),
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
    AssignmentSet {
        version: assignment_version(store, node_id),
        tasks: live_tasks_of(store, node_id).cloned().collect(),
    }
}

/// The version [`assignment_set`] would carry: the store's per-node digest, kept on apply (every
/// heartbeat compares it; visiting the node's tasks each time was the leader's largest CPU
/// cost at 1,500 nodes).
pub fn assignment_version(store: &Store, node_id: &str) -> u64 {
    store.assignment_digest(node_id).max(1)
}

fn live_tasks_of<'s>(store: &'s Store, node_id: &str) -> impl Iterator<Item = &'s Task> {
    store
        .tasks_of_node(node_id)
        .into_iter()
        .filter(|task| !task.status.state.is_terminal())
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
        let store = store.read_now();
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
        let version = assignment_version(&store, &beat.node_id);
        let assignments = (version != beat.heartbeat.assignments_version).then(|| {
            self.pushed.insert(beat.node_id.clone(), version);
            assignment_set(&store, &beat.node_id)
        });
        let manager_addrs = store
            .nodes()
            .values()
            .filter(|n| n.role == NodeRole::Manager)
            .map(|n| n.addr.clone())
            .collect();
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
            assignments,
            role_change,
        })
    }
}

impl Handler<NodeTaskStatuses> for DispatcherActor {
    type Result = ResponseFuture<Result<(), WireError>>;

    fn handle(&mut self, report: NodeTaskStatuses, ctx: &mut Context<Self>) -> Self::Result {
        // A node may only report on tasks placed on it.
        let updates: Vec<TaskStatusUpdate> = {
            let store = self.store.read_now();
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
        if updates.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        let (done, committed) = oneshot::channel();
        self.statuses.push_back((updates, done));
        self.flush_statuses(ctx);
        Box::pin(async move {
            committed.await.unwrap_or_else(|_| {
                Err(WireError::new(
                    ErrorKind::Internal,
                    "the dispatcher stopped before the report was committed",
                ))
            })
        })
    }
}

impl DispatcherActor {
    /// Group commit: while one batch of status reports is being committed, the reports that
    /// arrive wait and then go as one proposal, so a thousand workers reporting at once cost a
    /// few Raft entries, not a thousand. Each reporter is answered when its updates commit.
    fn flush_statuses(&mut self, ctx: &mut Context<Self>) {
        if self.statuses_in_flight || self.statuses.is_empty() {
            return;
        }
        let mut updates = Vec::new();
        let mut waiters = Vec::new();
        while let Some((batch, _)) = self.statuses.front() {
            if !updates.is_empty() && updates.len() + batch.len() > STATUS_BATCH_MAX {
                break;
            }
            let Some((batch, done)) = self.statuses.pop_front() else {
                break;
            };
            updates.extend(batch);
            waiters.push(done);
        }
        self.statuses_in_flight = true;
        self.raft
            .send(Propose {
                command: Command::UpdateTaskStatuses(updates),
            })
            .into_actor(self)
            .map(move |result, actor, ctx| {
                actor.statuses_in_flight = false;
                let outcome = match result {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(crate::actors::control::wire_error(error)),
                    Err(error) => Err(WireError::new(ErrorKind::Internal, error.to_string())),
                };
                for done in waiters {
                    // A reporter that gave up waiting resends; nothing to do here.
                    let _ = done.send(outcome.clone());
                }
                actor.flush_statuses(ctx);
            })
            .spawn(ctx);
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
        let mut up = 0;
        let mut expired = Vec::new();
        {
            let store = self.store.read_now();
            for node in store.nodes().values() {
                if node.status == NodeStatus::Down {
                    continue;
                }
                up += 1;
                // A node that registered since the last check (it joined, or was promoted)
                // has its full grace period from now, not from before it existed.
                let seen = self.last_seen.entry(node.id.clone()).or_insert(now);
                if now.duration_since(*seen) > down_after {
                    expired.push(node.id.clone());
                }
            }
        }
        if mass_expiry(up, expired.len()) {
            // Most of a large cluster falling silent at once is far likelier to be this
            // manager (overloaded, or cut off) than the nodes: marking them down would replace
            // their tasks elsewhere and make the overload worse. Wait for them instead.
            tracing::warn!(
                expired = expired.len(),
                up,
                "most nodes missed heartbeats at once; not marking them down"
            );
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_expiry_only_in_large_clusters_and_only_for_most_nodes() {
        // Small clusters: every expiry counts, even all nodes at once.
        assert!(!mass_expiry(3, 2));
        assert!(!mass_expiry(
            LARGE_CLUSTER_NODES - 1,
            LARGE_CLUSTER_NODES - 1
        ));
        // Large clusters: a minority is real, a majority is suspect.
        assert!(!mass_expiry(1000, 10));
        assert!(!mass_expiry(1000, 550));
        assert!(mass_expiry(1000, 551));
        assert!(mass_expiry(LARGE_CLUSTER_NODES, LARGE_CLUSTER_NODES));
    }
}
