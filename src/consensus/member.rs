//! [`RaftMember`]: one Raft member, driving `raft::RawNode` over [`RedbStorage`].
//!
//! The replica has no network, clock or actix: the caller feeds it ticks, peer messages and
//! proposals, then calls [`RaftMember::handle_ready`] and acts on the returned
//! [`ReadyOutput`](super::ReadyOutput). See `docs/raft.md` for the order of a Ready and why.

use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfState, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};

use super::output::{LeadershipState, MemberConfig, MemberError, MembershipChange};
use super::state_machine::{encode_command, ProposalContext, StateMachine};
use super::storage::RedbStorage;
use super::validate::check_peer_message;

mod ready;

/// Index and term of the snapshot that `bootstrap` writes: the group's history starts here.
const BOOTSTRAP_INDEX: u64 = 1;
const BOOTSTRAP_TERM: u64 = 1;

/// How far behind the commit index a learner may be and still count as caught up.
pub const PROMOTE_LAG_ENTRIES: u64 = 32;

/// One Raft member with its durable log and its state machine. See the module documentation.
pub struct RaftMember<S: StateMachine> {
    raw_node: RawNode<RedbStorage>,
    state_machine: S,
    config: MemberConfig,
    boot_epoch: u64,
    /// Last log index applied to `state_machine`.
    applied_index: u64,
    /// Index of the last snapshot stored (made here or received).
    snapshot_index: u64,
    /// Configuration as of `applied_index` (what a snapshot made now must record).
    applied_conf_state: ConfState,
    /// Reads confirmed by a quorum, waiting for `applied_index` to reach their index.
    pending_reads: Vec<(u64, u64)>,
    /// Reads asked of a leader that has not yet committed an entry of its term: raft-rs drops
    /// a ReadIndex then, so they wait here and go in as soon as the term's first entry commits.
    deferred_reads: Vec<u64>,
    /// The leadership last reported in a [`ReadyOutput`](super::ReadyOutput).
    reported_leadership: Option<LeadershipState>,
    /// The term in which this member, leading, applied an entry of its own term (0: none).
    /// Kept so the check reads the log once per term, not on every Ready (the term of an
    /// applied entry comes from storage: a read and decode of the whole entry).
    caught_up_term: u64,
    /// Peer messages refused by validation so far; warnings back off as it grows.
    refused_messages: u64,
}

/// Reads held while no leader can serve them, at most (their callers have long timed out by
/// the time this many pile up).
pub const DEFERRED_READS_MAX: usize = 10_000;

impl<S: StateMachine> RaftMember<S> {
    /// Starts a brand-new group whose members are `voters` (`[config.id]` for the first
    /// manager). Writes an initial snapshot holding `state_machine`'s state; the storage must be
    /// empty. Every founding member may be bootstrapped with the same voters.
    pub fn bootstrap(
        config: MemberConfig,
        mut storage: RedbStorage,
        state_machine: S,
        voters: &[u64],
    ) -> Result<Self, MemberError> {
        if !storage.is_empty() {
            return Err(MemberError::StorageNotEmpty);
        }
        let mut snapshot = Snapshot::default();
        snapshot.data = state_machine.snapshot().into();
        let metadata = snapshot.mut_metadata();
        metadata.index = BOOTSTRAP_INDEX;
        metadata.term = BOOTSTRAP_TERM;
        metadata.mut_conf_state().voters = voters.to_vec();
        storage.apply_snapshot(&snapshot)?;
        Self::restart(config, storage, state_machine)
    }

    /// Starts a member that joins an existing group: empty storage, no configuration. It waits
    /// for the leader (after a conf change adding it) to send a snapshot and the log.
    pub fn join(
        config: MemberConfig,
        storage: RedbStorage,
        state_machine: S,
    ) -> Result<Self, MemberError> {
        if !storage.is_empty() {
            return Err(MemberError::StorageNotEmpty);
        }
        Self::restart(config, storage, state_machine)
    }

    /// Restarts a member from its storage: the state machine is restored from the stored
    /// snapshot, and the committed entries after it are applied again through the next Ready
    /// (the applied index is not persisted; the state machine is rebuilt instead).
    pub fn restart(
        config: MemberConfig,
        mut storage: RedbStorage,
        mut state_machine: S,
    ) -> Result<Self, MemberError> {
        let boot_epoch = storage.next_boot_epoch()?;
        let snapshot = storage.read_snapshot()?;
        let snapshot_index = snapshot.get_metadata().index;
        if snapshot_index > 0 {
            state_machine
                .restore(snapshot_index, &snapshot.data)
                .map_err(|error| MemberError::RestoreSnapshot(Box::new(error)))?;
        }
        let applied_conf_state = snapshot.get_metadata().get_conf_state().clone();
        let (min_election_tick, max_election_tick) = match &config.election_timeout_ticks {
            Some(range) => (range.start, range.end),
            None => (0, 0),
        };
        let raft_config = raft::Config {
            min_election_tick,
            max_election_tick,
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: snapshot_index,
            max_size_per_msg: config.max_message_bytes,
            max_inflight_msgs: config.max_inflight_messages,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw_node = RawNode::new(&raft_config, storage, &logger)?;
        Ok(Self {
            raw_node,
            state_machine,
            config,
            boot_epoch,
            applied_index: snapshot_index,
            snapshot_index,
            applied_conf_state,
            pending_reads: Vec::new(),
            deferred_reads: Vec::new(),
            reported_leadership: None,
            caught_up_term: 0,
            refused_messages: 0,
        })
    }

    /// This replica's Raft id.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// The state machine, for serving reads once
    /// [`ReadyOutput::reads_ready`](super::ReadyOutput::reads_ready) allows.
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }

    /// The durable storage (read-only).
    pub fn storage(&self) -> &RedbStorage {
        self.raw_node.store()
    }

    /// Last log index applied to the state machine.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Highest log index known to be committed.
    pub fn commit_index(&self) -> u64 {
        self.raw_node.raft.raft_log.committed
    }

    /// Who leads, as this replica currently sees it.
    pub fn leadership(&self) -> LeadershipState {
        let raft = &self.raw_node.raft;
        LeadershipState {
            leader_id: (raft.leader_id != raft::INVALID_ID).then_some(raft.leader_id),
            term: raft.term,
            is_leader: raft.state == StateRole::Leader,
            caught_up: raft.state == StateRole::Leader && self.caught_up_term == raft.term,
        }
    }

    /// Voters of the configuration as of the applied index.
    pub fn voters(&self) -> &[u64] {
        &self.applied_conf_state.voters
    }

    /// Whether a membership change is proposed but not yet applied. raft-rs drops (turns into
    /// an empty entry) any other membership change proposed meanwhile, so callers queue theirs
    /// until this is false. May be a false positive, never a false negative.
    pub fn membership_change_pending(&self) -> bool {
        self.raw_node.raft.has_pending_conf()
    }

    /// Learners (members that receive the log but do not vote) as of the applied index.
    pub fn learners(&self) -> &[u64] {
        &self.applied_conf_state.learners
    }

    /// On the leader: whether member `id` has the log up to within [`PROMOTE_LAG_ENTRIES`] of
    /// the commit index, so that making it a voter cannot stall commits while it catches up.
    /// Always false elsewhere.
    pub fn caught_up(&self, id: u64) -> bool {
        let raft = &self.raw_node.raft;
        if raft.state != StateRole::Leader {
            return false;
        }
        let committed = raft.raft_log.committed;
        raft.prs()
            .get(id)
            .is_some_and(|progress| progress.matched + PROMOTE_LAG_ENTRIES >= committed)
    }

    /// Advances logical time by one tick (elections, heartbeats).
    pub fn tick(&mut self) {
        self.raw_node.tick();
    }

    /// Feeds a protobuf-encoded message from a peer. A malformed or misaddressed message is an
    /// error, as is one that fails validation ([`MemberError::InvalidPeerMessage`], logged here)
    /// or one raft refuses (such as a response from an unknown peer); none harms the replica.
    pub fn step(&mut self, message_bytes: &[u8]) -> Result<(), MemberError> {
        self.step_checked(message_bytes, None)
    }

    /// [`step`](Self::step) for bytes that came in an envelope whose sender is bound to the
    /// peer's certificate: the message must claim the same sender
    /// ([`InvalidPeerMessage::SenderMismatch`](super::InvalidPeerMessage::SenderMismatch)
    /// otherwise).
    pub fn step_from(&mut self, sender: u64, message_bytes: &[u8]) -> Result<(), MemberError> {
        self.step_checked(message_bytes, Some(sender))
    }

    fn step_checked(
        &mut self,
        message_bytes: &[u8],
        sender: Option<u64>,
    ) -> Result<(), MemberError> {
        let message =
            Message::parse_from_bytes(message_bytes).map_err(MemberError::MalformedMessage)?;
        if let Some(envelope) = sender.filter(|sender| *sender != message.from) {
            let reason = super::InvalidPeerMessage::SenderMismatch {
                envelope,
                message: message.from,
            };
            self.log_refused(&message, &reason);
            return Err(MemberError::InvalidPeerMessage {
                from: message.from,
                reason,
            });
        }
        if message.to != self.config.id {
            return Err(MemberError::MisaddressedMessage {
                to: message.to,
                id: self.config.id,
            });
        }
        if let Err(reason) = check_peer_message(&message, &self.raw_node.raft) {
            self.log_refused(&message, &reason);
            return Err(MemberError::InvalidPeerMessage {
                from: message.from,
                reason,
            });
        }
        self.raw_node.step(message)?;
        Ok(())
    }

    /// A refused message means a faulty or hostile peer, worth a warning; a peer sending them
    /// in a loop must not flood the log, so warnings come at the 1st, 2nd, 4th, 8th... refusal.
    fn log_refused(&mut self, message: &Message, reason: &super::InvalidPeerMessage) {
        self.refused_messages += 1;
        let refused = self.refused_messages;
        let (from, message_type) = (message.from, message.get_msg_type());
        if refused.is_power_of_two() {
            tracing::warn!(from, ?message_type, kind = reason.kind(), %reason, refused, "raft message refused");
        } else {
            tracing::debug!(from, ?message_type, kind = reason.kind(), %reason, refused, "raft message refused");
        }
    }

    /// Proposes a command on the leader. Its result comes back in
    /// [`ReadyOutput::applied`](super::ReadyOutput::applied) under `proposal_id` once committed and
    /// applied here.
    pub fn propose(&mut self, proposal_id: u64, command: &S::Command) -> Result<(), MemberError> {
        self.check_leader()?;
        let data = encode_command(command)?;
        let context = self.context(proposal_id);
        self.raw_node
            .propose(context, data)
            .map_err(Self::proposal_error)
    }

    /// Proposes a membership change on the leader; it shows up in
    /// [`ReadyOutput::conf_changes`](super::ReadyOutput::conf_changes) when applied. Raft allows
    /// one pending change at a time.
    pub fn propose_conf_change(
        &mut self,
        proposal_id: u64,
        change: MembershipChange,
    ) -> Result<(), MemberError> {
        self.check_leader()?;
        let mut conf_change = ConfChange::default();
        let (change_type, node_id) = match change {
            MembershipChange::AddVoter(id) => (ConfChangeType::AddNode, id),
            MembershipChange::AddLearner(id) => (ConfChangeType::AddLearnerNode, id),
            MembershipChange::RemoveMember(id) => (ConfChangeType::RemoveNode, id),
        };
        conf_change.set_change_type(change_type);
        conf_change.node_id = node_id;
        let context = self.context(proposal_id);
        self.raw_node
            .propose_conf_change(context, conf_change)
            .map_err(Self::proposal_error)
    }

    /// Asks the leader to hand leadership to `to` (which must be an up-to-date voter).
    pub fn transfer_leader(&mut self, to: u64) {
        self.raw_node.transfer_leader(to);
    }

    /// Starts a linearizable read. When it is safe to read the state machine, `request_id` appears
    /// in [`ReadyOutput::reads_ready`](super::ReadyOutput::reads_ready). Without a known leader
    /// the read is held until one is known (raft-rs would drop it); callers still time reads
    /// out, since a leader may never come.
    ///
    /// A leader elected a moment ago cannot serve reads until an entry of its term commits (raft-rs
    /// drops the request silently then); such reads are held and started right after.
    pub fn read_index(&mut self, request_id: u64) {
        if !self.can_start_reads() {
            self.deferred_reads.push(request_id);
            return;
        }
        self.raw_node.read_index(request_id.to_le_bytes().to_vec());
    }

    /// Whether raft-rs would act on a read now: it drops one silently while no leader is known
    /// (an election, or a member restarting) and on a leader that has not committed in its
    /// term yet. Such reads are held until it would.
    fn can_start_reads(&self) -> bool {
        let raft = &self.raw_node.raft;
        match raft.state {
            StateRole::Leader => raft.commit_to_current_term(),
            _ => raft.leader_id != raft::INVALID_ID,
        }
    }

    /// Whether inputs since the last [`handle_ready`](Self::handle_ready) left work for
    /// another call (e.g. held reads that could start).
    pub fn has_ready(&self) -> bool {
        self.raw_node.has_ready()
    }

    /// Starts the held reads once a leader is known and, if it is this member, has committed
    /// in its term. Callers time reads out, so a read held through a long election is answered
    /// late or not at all; at most [`DEFERRED_READS_MAX`] are held (the oldest go first).
    fn start_deferred_reads(&mut self) {
        if self.deferred_reads.is_empty() {
            return;
        }
        if self.can_start_reads() {
            for request_id in std::mem::take(&mut self.deferred_reads) {
                self.raw_node.read_index(request_id.to_le_bytes().to_vec());
            }
        } else if self.deferred_reads.len() > DEFERRED_READS_MAX {
            let excess = self.deferred_reads.len() - DEFERRED_READS_MAX;
            self.deferred_reads.drain(..excess);
        }
    }

    /// Reports the end of a snapshot transfer to `to` (see
    /// [`OutgoingMessage::carries_snapshot`](super::OutgoingMessage::carries_snapshot)). Until then
    /// the leader sends `to` nothing new; after a failure it retries.
    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.raw_node.report_snapshot(to, status);
    }

    /// Reports that a message to `to` could not be sent (connection down): the leader falls
    /// back to probing that follower instead of streaming to it.
    pub fn report_unreachable(&mut self, to: u64) {
        self.raw_node.report_unreachable(to);
    }

    fn check_leader(&self) -> Result<(), MemberError> {
        let leadership = self.leadership();
        if leadership.is_leader {
            Ok(())
        } else {
            Err(MemberError::NotLeader {
                leader_id: leadership.leader_id,
            })
        }
    }

    fn proposal_error(error: raft::Error) -> MemberError {
        match error {
            raft::Error::ProposalDropped => MemberError::ProposalDropped,
            other => MemberError::Raft(other),
        }
    }

    fn context(&self, proposal_id: u64) -> Vec<u8> {
        ProposalContext {
            node_id: self.config.id,
            boot_epoch: self.boot_epoch,
            proposal_id,
        }
        .encode()
    }
}

#[cfg(test)]
#[path = "member_tests.rs"]
mod tests;

/// Rebuilds, into `machine`, the state the stored snapshot and the committed entries after it
/// hold, without starting a member (a read-only replay: the node's start-up uses it to see its
/// own record before its endpoint exists). Returns the index applied through.
pub fn replay_committed<S: StateMachine>(
    storage: &RedbStorage,
    machine: &mut S,
) -> Result<u64, MemberError> {
    use raft::prelude::EntryType;
    let snapshot = storage.read_snapshot()?;
    let mut applied = snapshot.get_metadata().index;
    if applied > 0 {
        machine
            .restore(applied, &snapshot.data)
            .map_err(|error| MemberError::RestoreSnapshot(Box::new(error)))?;
    }
    let commit = storage.hard_state().commit;
    if commit <= applied {
        return Ok(applied);
    }
    for entry in storage.read_entries(applied + 1..commit + 1, None)? {
        if entry.get_entry_type() == EntryType::EntryNormal && !entry.get_data().is_empty() {
            let command = super::state_machine::decode_command::<S::Command>(entry.get_data())
                .map_err(|detail| MemberError::CorruptEntry {
                    index: entry.index,
                    detail,
                })?;
            machine.apply(entry.index, command);
        }
        applied = entry.index;
    }
    Ok(applied)
}
