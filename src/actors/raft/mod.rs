//! The Raft actor: owns the manager's `RaftMember` and drives it from message handlers.
//!
//! Inputs are messages: [`Tick`] (a `run_interval`), [`StepRaft`] (peer traffic),
//! [`Propose`], [`ChangeMembership`], [`TransferLeadership`] and [`LinearizableRead`]. After a
//! batch of inputs one Ready is handled inside one handler (`drive`): the member persists
//! (fsync) before it hands out the messages that depend on the writes, then the actor sends
//! them, answers applied proposals and ready reads, and publishes store events and leadership
//! changes. Every proposal is registered by id with its reply; all pending replies fail when
//! this node stops being leader.
//!
//! Files: this one holds the actor, its start-up, restarts and the Ready loop; `messages` what
//! it handles; `peers` the traffic with other managers; `requests` proposals, membership
//! changes, reads and subscriptions.

mod messages;
mod peers;
mod requests;

pub use messages::{
    ChangeMembership, CrashRaft, GetStatus, LeadershipChanged, LinearizableRead, Propose,
    RaftStatus, StepRaft, StoreEvents, Subscribe, TransferLeadership,
};
use messages::{Drive, Reply, Tick};

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
use crate::consensus::{LeadershipState, MemberError, MembershipChange, RaftMember, ReadyOutput};
use crate::core::model::NodeRole;
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
    /// The member failed in a way that is not the caller's fault.
    #[error("raft: {0}")]
    Internal(String),
}

/// The actor. See the module documentation.
pub struct RaftActor {
    /// Always `Some` outside `restarting()`, which drops it to reopen the same storage.
    member: Option<RaftMember<StoreMachine>>,
    /// Rebuilds the member from disk after a crash of this actor.
    reopen: Box<dyn Fn() -> Result<RaftMember<StoreMachine>, String>>,
    store: SharedStore,
    events: EventQueue,
    transport: Transport,
    /// One ordered channel per peer: Raft messages must not overtake each other.
    outboxes: HashMap<u64, (SocketAddr, OrderedSender)>,
    requests: Recipient<Request>,
    tick_period: Duration,
    environment: NodeEnvironment,
    peer_addrs: HashMap<u64, SocketAddr>,
    /// Addresses of managers the store has no record of yet, learned from their certified
    /// messages (a manager that just joined, before the leader's snapshot reaches it).
    learned_addrs: HashMap<u64, SocketAddr>,
    /// Envelopes dropped by the certificate check (for rate-limited warnings).
    refused_envelopes: u64,
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
    metrics: crate::metrics::NodeMetrics,
}

/// What the Raft actor is connected to.
pub struct RaftWiring {
    /// The applied store (written only by the member's apply).
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
    /// Where proposal and Ready times go.
    pub metrics: crate::metrics::NodeMetrics,
}

pub use crate::actors::environment::system_now_ms;

impl RaftActor {
    /// An actor over a started member; `peers` seeds known manager addresses.
    pub fn new(
        member: RaftMember<StoreMachine>,
        reopen: Box<dyn Fn() -> Result<RaftMember<StoreMachine>, String>>,
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
            metrics,
        } = wiring;
        Self {
            member: Some(member),
            reopen,
            store,
            events,
            transport,
            outboxes: HashMap::new(),
            requests,
            tick_period,
            environment,
            peer_addrs: peers,
            learned_addrs: HashMap::new(),
            refused_envelopes: 0,
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
                caught_up: false,
            },
            drive_scheduled: false,
            metrics,
        }
    }

    fn member(&mut self) -> &mut RaftMember<StoreMachine> {
        self.member
            .as_mut()
            .expect("the raft member exists except inside restarting()")
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
        let output = match self.member().handle_ready() {
            Ok(output) => output,
            Err(error) => return self.fatal(ctx, error),
        };
        self.metrics
            .ready_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::trace!(
            messages = output.messages.len(),
            applied = output.applied.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "ready handled"
        );
        self.act_on(ctx, output);
        self.propose_queued_change(ctx);
        if self.member().has_ready() {
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
            let member = |id: &u64| change.voters.contains(id) || change.learners.contains(id);
            self.peer_addrs.retain(|id, _| member(id));
            self.learned_addrs.retain(|id, _| member(id));
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
            caught_up: state.caught_up,
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
        tracing::info!(leader = ?state.leader_id, term = state.term, is_leader = state.is_leader, caught_up = state.caught_up, "leadership");
        let leadership = self.leadership.clone();
        self.leadership_subscribers
            .retain(|subscriber| subscriber.try_send(leadership.clone()).is_ok());
    }

    fn fatal(&mut self, ctx: &mut Context<Self>, error: MemberError) {
        // The Ready is half done: the only safe continuation is a restart from disk.
        tracing::error!(%error, "raft member failed; stopping the node");
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

impl Handler<CrashRaft> for RaftActor {
    type Result = ();

    fn handle(&mut self, _: CrashRaft, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Supervised for RaftActor {
    /// Everything in memory is suspect after a crash: rebuild the member from disk, as a
    /// process restart would. Pending requests fail (their outcome is unknown).
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        tracing::warn!("raft actor restarting from disk");
        self.proposals.clear();
        self.membership_changes.clear();
        self.queued_changes.clear();
        self.reads.clear();
        self.outboxes.clear();
        self.drive_scheduled = false;
        self.member = None;
        match (self.reopen)() {
            Ok(member) => self.member = Some(member),
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
                caught_up: false,
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
        self.member().tick();
        self.expire_closed_waiters();
        self.publisher.notify_behind();
        self.schedule_drive(ctx);
    }
}
