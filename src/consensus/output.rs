//! The replica's configuration, errors, and the plain data a Ready turns into.

use super::storage::StorageError;
use super::validate::InvalidPeerMessage;

/// Settings of one Raft replica. Times are in ticks; the caller decides how long a tick is.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// This replica's Raft id (non-zero, unique in the group).
    pub id: u64,
    /// Ticks without a leader before a follower starts an election (randomized up to twice).
    pub election_ticks: usize,
    /// Range the randomized election timeout is drawn from; `None` means raft's default
    /// `[election_ticks, 2 × election_ticks)`. raft-rs draws it with its own thread-local RNG,
    /// so a deterministic simulation pins a one-value range per replica.
    pub election_timeout_ticks: Option<std::ops::Range<usize>>,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries between two state machine snapshots (which also compact the log).
    pub snapshot_every_entries: u64,
    /// Largest append message, in bytes of entries.
    pub max_message_bytes: u64,
    /// Append messages in flight to one follower.
    pub max_inflight_messages: usize,
}

impl MemberConfig {
    /// The defaults: election 10 ticks, heartbeat 1 tick, snapshot every 10,000 entries.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            election_ticks: 10,
            election_timeout_ticks: None,
            heartbeat_ticks: 1,
            snapshot_every_entries: 10_000,
            max_message_bytes: 1 << 20,
            max_inflight_messages: 256,
        }
    }
}

/// Errors of the replica driver.
///
/// [`MemberError::Storage`] and [`MemberError::Raft`] out of `handle_ready`, and
/// [`MemberError::RestoreSnapshot`], are fatal: drop the replica and restart it from disk.
/// The others concern one call and leave the replica usable.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The durable storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// raft-rs refused an operation or a message.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A peer message did not parse as a Raft protobuf message.
    #[error("malformed raft message: {0}")]
    MalformedMessage(protobuf::ProtobufError),
    /// A peer message addressed to another replica (a routing bug in the caller).
    #[error("raft message for {to} delivered to {id}")]
    MisaddressedMessage {
        /// The message's recipient.
        to: u64,
        /// This replica.
        id: u64,
    },
    /// A peer message failed validation and was dropped before raft-rs saw it (it could have
    /// panicked raft-rs, or no correct peer sends it). See [`InvalidPeerMessage`].
    #[error("raft message from {from} refused: {reason}")]
    InvalidPeerMessage {
        /// The message's claimed sender.
        from: u64,
        /// Why it was refused.
        reason: InvalidPeerMessage,
    },
    /// A message could not be encoded for sending.
    #[error("cannot encode raft message: {0}")]
    EncodeMessage(protobuf::ProtobufError),
    /// Proposals and conf changes go to the leader; this replica is not it.
    #[error("not the leader (leader is {leader_id:?})")]
    NotLeader {
        /// The leader this replica knows of, if any.
        leader_id: Option<u64>,
    },
    /// The leader dropped the proposal (for example during a leadership transfer).
    #[error("proposal dropped by raft")]
    ProposalDropped,
    /// The command could not be encoded (or is larger than `MAX_COMMAND_BYTES`).
    #[error("cannot encode command: {0}")]
    EncodeCommand(#[from] bincode::error::EncodeError),
    /// `bootstrap` or `join` was given storage that already holds Raft state.
    #[error("storage already holds raft state; use restart")]
    StorageNotEmpty,
    /// The state machine rejected a snapshot's data.
    #[error("cannot restore state machine from snapshot: {0}")]
    RestoreSnapshot(Box<dyn std::error::Error + Send + Sync>),
    /// A committed conf change entry does not parse.
    #[error("committed entry {index} is corrupt: {detail}")]
    CorruptEntry {
        /// Log index of the entry.
        index: u64,
        /// What was wrong.
        detail: String,
    },
}

/// A change of the group's membership, proposed with `propose_conf_change`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a voting member (or promote a learner).
    AddVoter(u64),
    /// Add a non-voting member that receives the log.
    AddLearner(u64),
    /// Remove a member.
    RemoveMember(u64),
}

/// A Raft message to send to a peer, already encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The peer's Raft id.
    pub to: u64,
    /// `raft::prelude::Message` in protobuf encoding; the receiver passes it to `step`.
    pub bytes: Vec<u8>,
    /// The message carries a snapshot. The leader stops replicating to `to` until the caller
    /// reports the transfer's end with `report_snapshot`, delivered or not.
    pub carries_snapshot: bool,
}

/// Why a committed entry produced no output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The command bytes did not decode; every replica skipped the entry the same way.
    #[error("committed command does not decode: {0}")]
    UndecodableCommand(String),
    /// raft-rs refused the committed conf change (for example removing an unknown member).
    #[error("conf change rejected: {0}")]
    ConfChangeRejected(String),
}

/// The outcome of one of this replica's own proposals, now committed and applied.
#[derive(Debug, PartialEq, Eq)]
pub struct AppliedProposal<O> {
    /// The id passed to `propose`.
    pub proposal_id: u64,
    /// Log index the proposal was committed at.
    pub index: u64,
    /// The state machine's output.
    pub result: Result<O, ApplyError>,
}

/// A conf change that was committed and applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedConfChange {
    /// The id passed to `propose_conf_change`, when this replica proposed it in this run.
    pub proposal_id: Option<u64>,
    /// Log index of the change.
    pub index: u64,
    /// The change (`None` for a joint-consensus entry this driver never proposes).
    pub change: Option<MembershipChange>,
    /// Whether raft accepted the change.
    pub result: Result<(), ApplyError>,
    /// Voters after the change.
    pub voters: Vec<u64>,
    /// Learners after the change.
    pub learners: Vec<u64>,
}

/// Who leads, as this replica sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeadershipState {
    /// The leader's id, `None` when unknown (election in progress).
    pub leader_id: Option<u64>,
    /// The current term.
    pub term: u64,
    /// Whether this replica is the leader.
    pub is_leader: bool,
    /// Whether this replica leads *and* has applied an entry of its own term, so its state
    /// machine holds everything its predecessors committed. Leader-only work that acts on the
    /// state (reconciling, scheduling, pushing assignments) waits for this; proposals need
    /// only `is_leader`.
    pub caught_up: bool,
}

/// Everything one `handle_ready` call asks the caller to do. Storage writes are done already.
#[derive(Debug)]
pub struct ReadyOutput<O> {
    /// Messages to send, in order. Safe to send now: what they depend on is on disk.
    pub messages: Vec<OutgoingMessage>,
    /// Results of this replica's proposals, in log order.
    pub applied: Vec<AppliedProposal<O>>,
    /// Committed membership changes, in log order (whoever proposed them).
    pub conf_changes: Vec<AppliedConfChange>,
    /// Read requests (ids given to `read_index`) that may now be served from the state machine:
    /// it has applied everything committed when the read was confirmed by a quorum.
    pub reads_ready: Vec<u64>,
    /// Set by the first call and whenever the leader, the term or this replica's leadership
    /// changed. When `is_leader`
    /// turns false, fail every pending proposal with "leadership lost": it may still commit.
    pub leadership_change: Option<LeadershipState>,
}

impl<O> Default for ReadyOutput<O> {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            applied: Vec::new(),
            conf_changes: Vec::new(),
            reads_ready: Vec::new(),
            leadership_change: None,
        }
    }
}
