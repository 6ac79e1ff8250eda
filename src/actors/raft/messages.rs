//! The messages the Raft actor handles and answers with.

use actix::prelude::*;
use std::net::SocketAddr;
use tokio::sync::oneshot;

use super::RaftError;
use crate::consensus::MembershipChange;
use crate::core::store::Command;
use crate::net::message::RaftEnvelope;

/// Advance Raft's logical clock by one tick.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Tick;

/// A Raft message from a peer manager.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StepRaft {
    /// The envelope as received.
    pub envelope: RaftEnvelope,
    /// The sender's socket address: a manager that just joined learns its peers from it
    /// before its store holds them (only once the envelope passed the certificate check, and
    /// only while the store has no record of that manager).
    pub remote: SocketAddr,
    /// The node ID of the sender's verified certificate: the envelope's `from` must be its
    /// Raft ID (see `consensus::envelope`).
    pub sender_node_id: String,
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
    /// Whether it leads and has applied an entry of its term (its store holds everything
    /// committed before): leader-only components start only then.
    pub caught_up: bool,
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
    /// On the leader: the learners that are caught up (see `RaftMember::caught_up`).
    pub caught_up_learners: Vec<u64>,
    /// This manager's Raft ID.
    pub raft_id: u64,
    /// The highest index known committed.
    pub commit_index: u64,
    /// The highest index applied to the store.
    pub applied_index: u64,
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, RaftError>>;

/// Internal: handle the pending Ready.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Drive;

/// Chaos: stop as if the actor had crashed; its supervisor restarts it from disk.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CrashRaft;
