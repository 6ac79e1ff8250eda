//! The dispatcher (leader only): one session per node, kept alive by heartbeats.
//!
//! The liveness rules (grace after leadership and after a stall, three missed periods, the
//! mass-silence guard) are `core::sessions`; this actor keeps the timer and the mailbox. It
//! registers nodes on their heartbeats and marks them `ready`, keeps each worker's assignment
//! set (pushing the set when the store changes it, and answering a heartbeat that reports a
//! stale version with the full set), group-commits task status reports (`statuses`), adds
//! managers to the Raft group (`membership`) and hands promoted or demoted nodes their new
//! credentials (`credentials`). Each set it sends carries the plaintext of the secrets and
//! configs that node's tasks reference, opened with the keyring's data key (`delivery`).

mod credentials;
mod delivery;
mod membership;
mod statuses;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use actix::prelude::*;

use crate::core::secrets::Keyring;
use crate::metrics::NodeMetrics;
use tokio::sync::oneshot;

use crate::actors::environment::NodeEnvironment;
use crate::actors::raft::{Propose, RaftActor, StoreEvents, Subscribe};
use crate::actors::transport::SendMessage;
use crate::consensus::store_machine::SharedStore;
use crate::core::assignment::assignment_version;
use crate::core::events::{Delivery, EventCursor};
use crate::core::model::{NodeRole, NodeStatus};
use crate::core::sessions::{self, NodeSessions, SessionCheck, MISSED_HEARTBEATS_DOWN};
use crate::core::store::{Command, Event, Store, TaskStatusUpdate};
use crate::net::message::{ErrorKind, Heartbeat, HeartbeatAck, Message as WireMessage, WireError};
use crate::net::transport::Expect;

use credentials::RoleChanges;

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

/// Stop the dispatcher (leadership lost, or chaos).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopDispatcher;

/// Internal: check for nodes that stopped heartbeating.
#[derive(Message)]
#[rtype(result = "()")]
struct CheckSessions;

/// A node's status report waiting to be committed, with the channel that answers the node.
type PendingReport = (
    Vec<TaskStatusUpdate>,
    oneshot::Sender<Result<(), WireError>>,
);

/// The dispatcher actor. See the module documentation.
pub struct DispatcherActor {
    store: SharedStore,
    raft: Addr<RaftActor>,
    transport: Recipient<SendMessage>,
    environment: NodeEnvironment,
    sessions: NodeSessions,
    /// Nodes with a status or registration proposal in flight (not proposed again meanwhile).
    proposing: HashSet<String>,
    /// Version of the assignment set last pushed to each node.
    pushed: HashMap<String, u64>,
    /// Status reports waiting for the batch in flight to commit, with their reporters.
    statuses: VecDeque<PendingReport>,
    /// Whether a batch of status reports is being committed.
    statuses_in_flight: bool,
    role_changes: RoleChanges,
    events: EventCursor,
    /// The cluster's data key, which opens the secrets delivered to nodes (`delivery`).
    keyring: Keyring,
    /// Heartbeat ages for the metrics endpoint.
    metrics: NodeMetrics,
}

impl DispatcherActor {
    /// A dispatcher expecting heartbeats every `period`.
    pub fn new(
        store: SharedStore,
        raft: Addr<RaftActor>,
        transport: Recipient<SendMessage>,
        period: Duration,
        environment: NodeEnvironment,
        keyring: Keyring,
    ) -> Self {
        let sessions = NodeSessions::new(period.as_millis() as u64, environment.monotonic_ms());
        Self {
            store,
            raft,
            transport,
            environment,
            sessions,
            proposing: HashSet::new(),
            pushed: HashMap::new(),
            statuses: VecDeque::new(),
            statuses_in_flight: false,
            role_changes: RoleChanges::default(),
            events: EventCursor::at(0),
            keyring,
            metrics: NodeMetrics::default(),
        }
    }

    /// The same dispatcher, recording when each node was last heard in `metrics`.
    pub fn with_metrics(mut self, metrics: NodeMetrics) -> Self {
        self.metrics = metrics;
        self
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

    /// After missed events: forget nodes that are gone and push every node whose assignment
    /// set differs from the one it was last sent.
    fn reconcile_all(&mut self) {
        let store = self.store.clone();
        let store = store.read();
        self.events = EventCursor::at(store.applied_index());
        let gone: Vec<String> = self
            .pushed
            .keys()
            .filter(|id| store.node(id).is_none())
            .cloned()
            .collect();
        for node_id in &gone {
            self.forget(node_id);
        }
        let nodes: Vec<String> = store.nodes().keys().cloned().collect();
        for node_id in nodes {
            self.push_assignments(&store, &node_id);
        }
    }

    fn forget(&mut self, node_id: &str) {
        self.metrics.forget_heartbeats_of(node_id);
        self.sessions.forget(node_id);
        self.role_changes.forget(node_id);
        self.pushed.remove(node_id);
    }

    fn push_assignments(&mut self, store: &Store, node_id: &str) {
        let Some(node) = store.node(node_id) else {
            return;
        };
        if self.pushed.get(node_id) == Some(&assignment_version(store, node_id)) {
            return;
        }
        let Ok(addr) = node.addr.parse() else {
            return;
        };
        let set = self.full_set(store, node_id);
        self.pushed.insert(node_id.to_string(), set.version);
        // Only a server with this node's certificate gets the set: a wrong address in the
        // node's record (or a node that lied about it) reaches no other node.
        self.transport.do_send(SendMessage {
            to: addr,
            expect: Expect::Node(node_id.to_string()),
            message: WireMessage::Assignments(set),
        });
    }
}

impl Actor for DispatcherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.sessions =
            NodeSessions::new(self.sessions.period_ms(), self.environment.monotonic_ms());
        // Heartbeats compare assignment versions, so a fresh dispatcher needs no full pass.
        self.events = EventCursor::at(self.store.read().applied_index());
        self.raft.do_send(Subscribe {
            events: Some(ctx.address().recipient()),
            leadership: None,
        });
        let period = Duration::from_millis(self.sessions.period_ms());
        ctx.run_interval(period, |_, ctx| ctx.notify(CheckSessions));
        tracing::info!("dispatcher started");
    }
}

impl Handler<StopDispatcher> for DispatcherActor {
    type Result = ();

    fn handle(&mut self, _: StopDispatcher, ctx: &mut Context<Self>) {
        tracing::info!("dispatcher stopped");
        self.metrics.forget_heartbeats();
        ctx.stop();
    }
}

impl Handler<NodeHeartbeat> for DispatcherActor {
    type Result = Result<HeartbeatAck, WireError>;

    fn handle(&mut self, beat: NodeHeartbeat, ctx: &mut Context<Self>) -> Self::Result {
        if beat.heartbeat.node_id != beat.node_id {
            tracing::warn!(
                certificate = %beat.node_id,
                named = %beat.heartbeat.node_id,
                "heartbeat for another node refused"
            );
            return Err(WireError::new(
                ErrorKind::Forbidden,
                format!(
                    "a heartbeat from node {} cannot be for node {}",
                    beat.node_id, beat.heartbeat.node_id
                ),
            ));
        }
        self.sessions
            .heartbeat(&beat.node_id, self.environment.monotonic_ms());
        self.metrics.heartbeat(&beat.node_id);
        let store = self.store.clone();
        let store = store.read_now();
        let Some(node) = store.node(&beat.node_id) else {
            return Err(WireError::new(
                ErrorKind::Forbidden,
                "this node is not (or no longer) registered in the swarm",
            ));
        };
        if let Some(refresh) = sessions::refresh_command(node, &beat.heartbeat.description) {
            self.propose(ctx, beat.node_id.clone(), refresh);
        }
        let version = assignment_version(&store, &beat.node_id);
        let assignments = (version != beat.heartbeat.assignments_version).then(|| {
            self.pushed.insert(beat.node_id.clone(), version);
            self.full_set(&store, &beat.node_id)
        });
        let manager_addrs = store
            .nodes()
            .values()
            .filter(|n| n.role == NodeRole::Manager)
            .map(|n| n.addr.clone())
            .collect();
        if beat.role == node.role && node.role == NodeRole::Manager {
            self.ensure_voter(ctx, node);
        }
        let role_change = self.role_change_for(ctx, &store, node, beat.role);
        let renewed_cert_pem = self.renewal_for(
            ctx,
            &store,
            node,
            beat.role,
            beat.heartbeat.renewal_csr_der.as_deref(),
        );
        Ok(HeartbeatAck {
            period_ms: self.sessions.period_ms(),
            manager_addrs,
            assignments,
            role_change,
            renewed_cert_pem,
        })
    }
}

impl Handler<CheckSessions> for DispatcherActor {
    type Result = ();

    fn handle(&mut self, _: CheckSessions, ctx: &mut Context<Self>) {
        let now_ms = self.environment.monotonic_ms();
        let check = self.sessions.check(&self.store.read_now(), now_ms);
        match check {
            SessionCheck::Grace => {}
            SessionCheck::Stalled { stalled_ms } => {
                // This manager was stalled, not the nodes: heartbeats may be waiting unread.
                tracing::warn!(
                    stalled_ms,
                    "dispatcher stalled; extending every node's grace period"
                );
            }
            SessionCheck::MassSilence { expired, up } => {
                // Marking them down would replace their tasks elsewhere and make an overload
                // of this manager worse. Wait for them instead.
                tracing::warn!(
                    expired,
                    up,
                    "most nodes missed heartbeats at once; not marking them down"
                );
            }
            SessionCheck::Down(expired) => {
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
    }
}

impl Handler<StoreEvents> for DispatcherActor {
    type Result = ();

    fn handle(&mut self, StoreEvents(batch): StoreEvents, _: &mut Context<Self>) {
        let events = match self.events.accept(&batch) {
            Delivery::Events(events) => events,
            Delivery::Nothing => return,
            Delivery::Reconcile { missed_from } => {
                tracing::info!(
                    missed_from,
                    "dispatcher missed store events; checking every node"
                );
                return self.reconcile_all();
            }
        };
        let mut touched = BTreeSet::new();
        for event in events {
            match event {
                Event::TaskCreated(task) | Event::TaskUpdated(task) | Event::TaskRemoved(task) => {
                    if let Some(node) = &task.node_id {
                        touched.insert(node.clone());
                    }
                }
                Event::NodeRemoved { node_id } => self.forget(node_id),
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
