//! The Raft actor: owns the manager's `RaftReplica` and drives it from message handlers.
//!
//! Inputs are messages: [`Tick`] (a `run_interval`), [`StepRaft`] (peer traffic),
//! [`Propose`], [`ChangeMembership`], [`TransferLeadership`] and [`LinearizableRead`]. After a
//! batch of inputs one Ready is handled inside one handler (`drive`): the replica persists
//! (fsync) before it hands out the messages that depend on the writes, then the actor sends
//! them, answers applied proposals and ready reads, and publishes store events and leadership
//! changes. Every proposal is registered by id with its reply; all pending replies fail when
//! this node stops being leader.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::actors::environment::NodeEnvironment;
use crate::actors::store_events::EventPublisher;
use crate::actors::transport::Request;
use crate::consensus::store_machine::{
    raft_id_of, EventQueue, Proposal, SharedStore, StoreMachine,
};
use crate::consensus::{LeadershipState, MembershipChange, RaftReplica, ReadyOutput, ReplicaError};
use crate::core::model::NodeRole;
use crate::core::store::Command;
use crate::core::CoreError;
use crate::net::message::{Message as WireMessage, RaftEnvelope};
use crate::net::transport::{OrderedSender, Transport};

/// How long sending a snapshot to a follower may take.
pub const SNAPSHOT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a proposal or read may wait for a quorum before failing (SPEC: within 5 s).
pub const QUORUM_TIMEOUT: Duration = Duration::from_millis(4_500);

/// Why a proposal or read failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RaftError {
    /// This manager is not the leader; the caller forwards.
    #[error("this manager is not the leader")]
    NotLeader {
        /// The leader's Raft ID, if known.
        leader_id: Option<u64>,
    },
    /// The command was refused by validation (before proposing) or on apply.
    #[error("{0}")]
    Rejected(CoreError),
    /// Leadership changed while the proposal waited; it may or may not have committed.
    #[error("no quorum: leadership was lost while the request was in flight (it may or may not have been applied); are a majority of managers up and reachable?")]
    LeadershipLost,
    /// No quorum answered in time.
    #[error("no quorum: the managers could not agree within {} ms (are a majority of managers up and reachable?)", QUORUM_TIMEOUT.as_millis())]
    NoQuorum,
    /// The replica failed in a way that is not the caller's fault.
    #[error("raft: {0}")]
    Internal(String),
}

/// Advance Raft's logical clock by one tick.
#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

/// A Raft message from a peer manager.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StepRaft {
    /// The envelope as received.
    pub envelope: RaftEnvelope,
    /// The sender's socket address: a manager that just joined learns its peers from it
    /// before its store holds them.
    pub remote: SocketAddr,
}

/// Propose a command; answered with the index it applied at, once applied here. Its events
/// reach watchers as every other entry's do: in a [`StoreEvents`] batch.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, RaftError>")]
pub struct Propose {
    /// The change.
    pub command: Command,
}

/// Add or remove a voting manager; answered once the change is applied.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RaftError>")]
pub struct ChangeMembership {
    /// The change.
    pub change: MembershipChange,
    /// For an added manager: where to reach it (it may not be in the store yet).
    pub addr: Option<SocketAddr>,
}

/// Hand leadership to another up-to-date voter (graceful shutdown or demotion).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct TransferLeadership {
    /// The target, or `None` for any other voter.
    pub to: Option<u64>,
}

/// Wait until this manager's store reflects everything committed before the call (ReadIndex).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RaftError>")]
pub struct LinearizableRead;

/// Leadership as this manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct LeadershipChanged {
    /// The leader's Raft ID, if known.
    pub leader_id: Option<u64>,
    /// The leader's advertised address, if known.
    pub leader_addr: Option<String>,
    /// The term.
    pub term: u64,
    /// Whether this manager leads.
    pub is_leader: bool,
}

pub use crate::actors::store_events::StoreEvents;

/// Register for store events and leadership changes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    /// Receives store events.
    pub events: Option<Recipient<StoreEvents>>,
    /// Receives leadership changes (and the current state at once).
    pub leadership: Option<Recipient<LeadershipChanged>>,
}

/// Ask for the current leadership and voters.
#[derive(Message)]
#[rtype(result = "RaftStatus")]
pub struct GetStatus;

/// The answer to [`GetStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// Leadership as this manager sees it.
    pub leadership: LeadershipChanged,
    /// Voters as of the applied index.
    pub voters: Vec<u64>,
    /// Learners as of the applied index.
    pub learners: Vec<u64>,
    /// On the leader: the learners that are caught up (see `RaftReplica::caught_up`).
    pub caught_up_learners: Vec<u64>,
    /// This manager's Raft ID.
    pub raft_id: u64,
}

type Reply<T> = oneshot::Sender<Result<T, RaftError>>;

/// The actor. See the module documentation.
pub struct RaftActor {
    /// Always `Some` outside `restarting()`, which drops it to reopen the same storage.
    replica: Option<RaftReplica<StoreMachine>>,
    /// Rebuilds the replica from disk after a crash of this actor.
    reopen: Box<dyn Fn() -> Result<RaftReplica<StoreMachine>, String>>,
    store: SharedStore,
    events: EventQueue,
    transport: Transport,
    /// One ordered channel per peer: Raft messages must not overtake each other.
    outboxes: HashMap<u64, (SocketAddr, OrderedSender)>,
    requests: Recipient<Request>,
    tick_period: Duration,
    environment: NodeEnvironment,
    peer_addrs: HashMap<u64, SocketAddr>,
    next_request_id: u64,
    proposals: HashMap<u64, Reply<u64>>,
    membership_changes: HashMap<u64, Reply<()>>,
    /// Membership changes waiting for the one in flight to apply, proposed one at a time
    /// (raft-rs silently drops a change proposed while another is unapplied: a manager's join
    /// and another's promotion to voter would otherwise collide).
    queued_changes: VecDeque<(MembershipChange, Reply<()>)>,
    reads: HashMap<u64, Reply<()>>,
    publisher: EventPublisher,
    leadership_subscribers: Vec<Recipient<LeadershipChanged>>,
    leadership: LeadershipChanged,
    drive_scheduled: bool,
}

/// What the Raft actor is connected to.
pub struct RaftWiring {
    /// The applied store (written only by the replica's apply).
    pub store: SharedStore,
    /// Events the state machine queues on apply.
    pub events: EventQueue,
    /// The endpoint, for ordered per-peer channels.
    pub transport: Transport,
    /// Requests (snapshots must learn whether they arrived).
    pub requests: Recipient<Request>,
    /// The Raft tick.
    pub tick_period: Duration,
    /// Known manager addresses by Raft ID.
    pub peers: HashMap<u64, SocketAddr>,
    /// The clock proposals are stamped with.
    pub environment: NodeEnvironment,
}

pub use crate::actors::environment::system_now_ms;

impl RaftActor {
    /// An actor over a started replica; `peers` seeds known manager addresses.
    pub fn new(
        replica: RaftReplica<StoreMachine>,
        reopen: Box<dyn Fn() -> Result<RaftReplica<StoreMachine>, String>>,
        wiring: RaftWiring,
    ) -> Self {
        let RaftWiring {
            store,
            events,
            transport,
            requests,
            tick_period,
            peers,
            environment,
        } = wiring;
        Self {
            replica: Some(replica),
            reopen,
            store,
            events,
            transport,
            outboxes: HashMap::new(),
            requests,
            tick_period,
            environment,
            peer_addrs: peers,
            next_request_id: 1,
            proposals: HashMap::new(),
            membership_changes: HashMap::new(),
            queued_changes: VecDeque::new(),
            reads: HashMap::new(),
            publisher: EventPublisher::default(),
            leadership_subscribers: Vec::new(),
            leadership: LeadershipChanged {
                leader_id: None,
                leader_addr: None,
                term: 0,
                is_leader: false,
            },
            drive_scheduled: false,
        }
    }

    fn replica(&mut self) -> &mut RaftReplica<StoreMachine> {
        self.replica
            .as_mut()
            .expect("the raft replica exists except inside restarting()")
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Handles the Ready produced by the inputs so far, once per batch of messages.
    fn schedule_drive(&mut self, ctx: &mut Context<Self>) {
        if !self.drive_scheduled {
            self.drive_scheduled = true;
            ctx.notify(Drive);
        }
    }

    fn not_leader(&self) -> RaftError {
        RaftError::NotLeader {
            leader_id: self.leadership.leader_id,
        }
    }

    fn drive(&mut self, ctx: &mut Context<Self>) {
        self.drive_scheduled = false;
        let started = std::time::Instant::now();
        let output = match self.replica().handle_ready() {
            Ok(output) => output,
            Err(error) => return self.fatal(ctx, error),
        };
        tracing::trace!(
            messages = output.messages.len(),
            applied = output.applied.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "ready handled"
        );
        self.act_on(ctx, output);
        self.propose_queued_change(ctx);
        if self.replica().has_ready() {
            self.schedule_drive(ctx);
        }
        self.publish_events();
    }

    /// Sends the batch applied since the last Ready to every watcher (see `store_events`).
    fn publish_events(&mut self) {
        if let Some(batch) = self.events.take() {
            self.publisher.publish(batch);
        }
    }

    fn act_on(&mut self, ctx: &mut Context<Self>, output: ReadyOutput<Result<u64, CoreError>>) {
        for message in output.messages {
            if message.carries_snapshot {
                self.send_snapshot(ctx, message.to, message.bytes);
            } else {
                self.send_to_peer(message.to, message.bytes);
            }
        }
        for applied in output.applied {
            if let Some(reply) = self.proposals.remove(&applied.proposal_id) {
                let result = match applied.result {
                    Ok(Ok(index)) => Ok(index),
                    Ok(Err(rejected)) => Err(RaftError::Rejected(rejected)),
                    Err(error) => Err(RaftError::Internal(error.to_string())),
                };
                let _ = reply.send(result);
            }
        }
        for change in output.conf_changes {
            self.peer_addrs
                .retain(|id, _| change.voters.contains(id) || change.learners.contains(id));
            if let Some(reply) = change
                .proposal_id
                .and_then(|id| self.membership_changes.remove(&id))
            {
                let _ = reply.send(
                    change
                        .result
                        .map_err(|error| RaftError::Internal(error.to_string())),
                );
            }
        }
        for read in output.reads_ready {
            if let Some(reply) = self.reads.remove(&read) {
                let _ = reply.send(Ok(()));
            }
        }
        if let Some(state) = output.leadership_change {
            self.leadership_changed(state);
        }
    }

    fn leadership_changed(&mut self, state: LeadershipState) {
        let was_leader = self.leadership.is_leader;
        self.leadership = LeadershipChanged {
            leader_id: state.leader_id,
            leader_addr: state
                .leader_id
                .and_then(|id| self.peer_addr(id))
                .map(|addr| addr.to_string()),
            term: state.term,
            is_leader: state.is_leader,
        };
        if was_leader && !state.is_leader {
            for (_, reply) in self.proposals.drain() {
                let _ = reply.send(Err(RaftError::LeadershipLost));
            }
            for (_, reply) in self.membership_changes.drain() {
                let _ = reply.send(Err(RaftError::LeadershipLost));
            }
            for (_, reply) in self.queued_changes.drain(..) {
                let _ = reply.send(Err(RaftError::LeadershipLost));
            }
            for (_, reply) in self.reads.drain() {
                let _ = reply.send(Err(RaftError::LeadershipLost));
            }
        }
        tracing::info!(leader = ?state.leader_id, term = state.term, is_leader = state.is_leader, "leadership");
        let leadership = self.leadership.clone();
        self.leadership_subscribers
            .retain(|subscriber| subscriber.try_send(leadership.clone()).is_ok());
    }

    /// The address of a manager: known peers first, then the managers in the store.
    fn peer_addr(&mut self, raft_id: u64) -> Option<SocketAddr> {
        if let Some(addr) = self.peer_addrs.get(&raft_id) {
            return Some(*addr);
        }
        let store = self.store.read();
        let found = store
            .nodes()
            .values()
            .filter(|node| node.role == NodeRole::Manager)
            .find(|node| raft_id_of(&node.id) == raft_id)
            .and_then(|node| node.addr.parse().ok());
        drop(store);
        if let Some(addr) = found {
            self.peer_addrs.insert(raft_id, addr);
        }
        found
    }

    fn send_to_peer(&mut self, to: u64, bytes: Vec<u8>) {
        let Some(addr) = self.peer_addr(to) else {
            tracing::debug!(to, "no address for raft peer; message dropped");
            return;
        };
        let stale = self
            .outboxes
            .get(&to)
            .is_none_or(|(known, outbox)| *known != addr || outbox.is_closed());
        if stale {
            self.outboxes
                .insert(to, (addr, self.transport.ordered_sender(addr)));
        }
        let envelope = RaftEnvelope {
            from: self.replica().id(),
            to,
            bytes,
        };
        if let Some((_, outbox)) = self.outboxes.get(&to) {
            if !outbox.send(WireMessage::Raft(envelope)) {
                self.replica().report_unreachable(to);
            }
        }
    }

    /// A snapshot goes as a request so its delivery is known: raft sends the follower nothing
    /// new until it hears how the snapshot fared.
    fn send_snapshot(&mut self, ctx: &mut Context<Self>, to: u64, bytes: Vec<u8>) {
        let Some(addr) = self.peer_addr(to) else {
            self.replica().report_snapshot(to, false);
            return;
        };
        let request = Request {
            to: addr,
            message: WireMessage::Raft(RaftEnvelope {
                from: self.replica().id(),
                to,
                bytes,
            }),
            timeout: SNAPSHOT_SEND_TIMEOUT,
        };
        self.requests
            .send(request)
            .into_actor(self)
            .map(move |result, actor, ctx| {
                let delivered = matches!(result, Ok(Ok(WireMessage::Ack)));
                actor.replica().report_snapshot(to, delivered);
                actor.schedule_drive(ctx);
            })
            .spawn(ctx);
    }

    fn fatal(&mut self, ctx: &mut Context<Self>, error: ReplicaError) {
        // The Ready is half done: the only safe continuation is a restart from disk.
        tracing::error!(%error, "raft replica failed; stopping the node");
        ctx.stop();
        System::current().stop_with_code(70);
    }

    fn expire_closed_waiters(&mut self) {
        self.proposals.retain(|_, reply| !reply.is_closed());
        self.membership_changes
            .retain(|_, reply| !reply.is_closed());
        self.reads.retain(|_, reply| !reply.is_closed());
    }
}

/// Internal: handle the pending Ready.
#[derive(Message)]
#[rtype(result = "()")]
struct Drive;

impl Actor for RaftActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Raft messages and proposals arrive in bursts; a larger mailbox keeps senders from
        // blocking on this actor (the transport uses do_send for Raft traffic).
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(self.tick_period, |_, ctx| ctx.notify(Tick));
        self.schedule_drive(ctx);
    }
}

/// Chaos: stop as if the actor had crashed; its supervisor restarts it from disk.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CrashRaft;

impl Handler<CrashRaft> for RaftActor {
    type Result = ();

    fn handle(&mut self, _: CrashRaft, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Supervised for RaftActor {
    /// Everything in memory is suspect after a crash: rebuild the replica from disk, as a
    /// process restart would. Pending requests fail (their outcome is unknown).
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        tracing::warn!("raft actor restarting from disk");
        self.proposals.clear();
        self.membership_changes.clear();
        self.queued_changes.clear();
        self.reads.clear();
        self.outboxes.clear();
        self.drive_scheduled = false;
        self.replica = None;
        match (self.reopen)() {
            Ok(replica) => self.replica = Some(replica),
            Err(error) => {
                tracing::error!(%error, "cannot reopen the raft storage; stopping the node");
                ctx.stop();
                System::current().stop_with_code(70);
                return;
            }
        }
        let previous = std::mem::replace(
            &mut self.leadership,
            LeadershipChanged {
                leader_id: None,
                leader_addr: None,
                term: 0,
                is_leader: false,
            },
        );
        if previous.is_leader {
            // Leader-only components must stop until leadership is won again.
            let leadership = self.leadership.clone();
            self.leadership_subscribers
                .retain(|subscriber| subscriber.try_send(leadership.clone()).is_ok());
        }
    }
}

impl Handler<Drive> for RaftActor {
    type Result = ();

    fn handle(&mut self, _: Drive, ctx: &mut Context<Self>) {
        self.drive(ctx);
    }
}

impl Handler<Tick> for RaftActor {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.replica().tick();
        self.expire_closed_waiters();
        self.publisher.notify_behind();
        self.schedule_drive(ctx);
    }
}

impl Handler<StepRaft> for RaftActor {
    type Result = ();

    fn handle(&mut self, message: StepRaft, ctx: &mut Context<Self>) {
        if message.envelope.to != self.replica().id() {
            tracing::debug!(
                to = message.envelope.to,
                "raft message for another replica dropped"
            );
            return;
        }
        self.peer_addrs
            .entry(message.envelope.from)
            .or_insert(message.remote);
        tracing::trace!(
            from = message.envelope.from,
            bytes = message.envelope.bytes.len(),
            "raft message"
        );
        if let Err(error) = self.replica().step(&message.envelope.bytes) {
            tracing::debug!(%error, from = message.envelope.from, "raft message refused");
        }
        self.schedule_drive(ctx);
    }
}

async fn await_reply<T>(receiver: oneshot::Receiver<Result<T, RaftError>>) -> Result<T, RaftError> {
    match tokio::time::timeout(QUORUM_TIMEOUT, receiver).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(RaftError::LeadershipLost),
        Err(_) => Err(RaftError::NoQuorum),
    }
}

impl Handler<Propose> for RaftActor {
    type Result = ResponseFuture<Result<u64, RaftError>>;

    fn handle(&mut self, propose: Propose, ctx: &mut Context<Self>) -> Self::Result {
        if !self.leadership.is_leader {
            let error = self.not_leader();
            return Box::pin(async move { Err(error) });
        }
        if let Err(rejected) = self.store.read().check(&propose.command) {
            return Box::pin(async move { Err(RaftError::Rejected(rejected)) });
        }
        let id = self.next_id();
        let proposal = Proposal {
            now_ms: self.environment.unix_ms(),
            command: propose.command,
        };
        if let Err(error) = self.replica().propose(id, &proposal) {
            let error = match error {
                ReplicaError::NotLeader { leader_id } => RaftError::NotLeader { leader_id },
                other => RaftError::Internal(other.to_string()),
            };
            return Box::pin(async move { Err(error) });
        }
        let (sender, receiver) = oneshot::channel();
        self.proposals.insert(id, sender);
        self.schedule_drive(ctx);
        Box::pin(await_reply(receiver))
    }
}

impl Handler<ChangeMembership> for RaftActor {
    type Result = ResponseFuture<Result<(), RaftError>>;

    fn handle(&mut self, request: ChangeMembership, ctx: &mut Context<Self>) -> Self::Result {
        if let (MembershipChange::AddVoter(id) | MembershipChange::AddLearner(id), Some(addr)) =
            (request.change, request.addr)
        {
            self.peer_addrs.insert(id, addr);
        }
        if !self.leadership.is_leader {
            let error = self.not_leader();
            return Box::pin(async move { Err(error) });
        }
        let (sender, receiver) = oneshot::channel();
        self.queued_changes.push_back((request.change, sender));
        self.propose_queued_change(ctx);
        Box::pin(await_reply(receiver))
    }
}

impl RaftActor {
    /// Proposes the next queued membership change, unless one is still unapplied.
    fn propose_queued_change(&mut self, ctx: &mut Context<Self>) {
        while !self.replica().membership_change_pending() {
            let Some((change, reply)) = self.queued_changes.pop_front() else {
                return;
            };
            if reply.is_closed() {
                continue;
            }
            let id = self.next_id();
            match self.replica().propose_conf_change(id, change) {
                Ok(()) => {
                    self.membership_changes.insert(id, reply);
                    self.schedule_drive(ctx);
                    return;
                }
                Err(ReplicaError::NotLeader { leader_id }) => {
                    let _ = reply.send(Err(RaftError::NotLeader { leader_id }));
                }
                Err(other) => {
                    let _ = reply.send(Err(RaftError::Internal(other.to_string())));
                }
            }
        }
    }
}

impl Handler<TransferLeadership> for RaftActor {
    type Result = ();

    fn handle(&mut self, request: TransferLeadership, ctx: &mut Context<Self>) {
        if !self.leadership.is_leader {
            return;
        }
        let own = self.replica().id();
        let target = request.to.or_else(|| {
            self.replica()
                .voters()
                .iter()
                .copied()
                .find(|id| *id != own)
        });
        if let Some(target) = target {
            self.replica().transfer_leader(target);
            self.schedule_drive(ctx);
        }
    }
}

impl Handler<LinearizableRead> for RaftActor {
    type Result = ResponseFuture<Result<(), RaftError>>;

    fn handle(&mut self, _: LinearizableRead, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.next_id();
        let (sender, receiver) = oneshot::channel();
        self.reads.insert(id, sender);
        self.replica().read_index(id);
        self.schedule_drive(ctx);
        Box::pin(await_reply(receiver))
    }
}

impl Handler<Subscribe> for RaftActor {
    type Result = ();

    fn handle(&mut self, subscribe: Subscribe, _: &mut Context<Self>) {
        if let Some(events) = subscribe.events {
            self.publisher.subscribe(events);
        }
        if let Some(leadership) = subscribe.leadership {
            let _ = leadership.try_send(self.leadership.clone());
            self.leadership_subscribers.push(leadership);
        }
    }
}

impl Handler<GetStatus> for RaftActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let leadership = self.leadership.clone();
        let replica = self.replica();
        MessageResult(RaftStatus {
            leadership,
            voters: replica.voters().to_vec(),
            learners: replica.learners().to_vec(),
            caught_up_learners: replica
                .learners()
                .iter()
                .copied()
                .filter(|id| replica.caught_up(*id))
                .collect(),
            raft_id: replica.id(),
        })
    }
}
