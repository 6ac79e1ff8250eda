//! Handling one Ready: persist, then send, then apply, then advance (see `docs/raft.md`), and
//! the snapshots and reads that applying releases.

use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot,
};

use super::RaftMember;
use crate::consensus::output::{
    AppliedConfChange, AppliedProposal, ApplyError, MemberError, MembershipChange, OutgoingMessage,
    ReadyOutput,
};
use crate::consensus::state_machine::{decode_command, ProposalContext, StateMachine};

impl<S: StateMachine> RaftMember<S> {
    /// Handles one Ready, if there is one, and returns what the caller must do. Call it after
    /// every `tick`, `step`, `propose`, `propose_conf_change`, `transfer_leader` and
    /// `read_index` (or after a batch of them). All storage writes are durable before it
    /// returns, so every returned message may be sent at once.
    ///
    /// An error is fatal: the Ready is half done. Drop the replica and restart it from disk.
    pub fn handle_ready(&mut self) -> Result<ReadyOutput<S::Output>, MemberError> {
        let mut output = ReadyOutput::default();
        if self.raw_node.has_ready() {
            let mut ready = self.raw_node.ready();
            // 1. Messages that do not depend on this Ready's writes (a leader's appends may go
            //    out before its own fsync: Raft counts the leader's copy only once persisted).
            Self::encode_messages(ready.take_messages(), &mut output)?;
            // 2. A snapshot from the leader replaces log and state machine.
            if !ready.snapshot().is_empty() {
                self.install_snapshot(ready.snapshot())?;
            }
            // 3. New entries and the hard state (term, vote, commit), in one fsynced write.
            self.raw_node
                .mut_store()
                .persist(ready.entries(), ready.hs())?;
            // 4. Messages that promise what step 3 wrote (votes, append acknowledgements).
            Self::encode_messages(ready.take_persisted_messages(), &mut output)?;
            for read_state in ready.take_read_states() {
                if let Some(request_id) = decode_read_request(&read_state.request_ctx) {
                    self.pending_reads.push((request_id, read_state.index));
                }
            }
            // 5. Entries a quorum has persisted.
            self.apply_entries(ready.take_committed_entries(), &mut output)?;
            // 6. The light ready: a commit index moved by step 3, and what it releases.
            let mut light = self.raw_node.advance(ready);
            if let Some(commit) = light.commit_index() {
                let mut hard_state = self.raw_node.store().hard_state().clone();
                hard_state.commit = commit;
                self.raw_node.mut_store().set_hard_state(&hard_state)?;
            }
            Self::encode_messages(light.take_messages(), &mut output)?;
            self.apply_entries(light.take_committed_entries(), &mut output)?;
            self.raw_node.advance_apply();
        }
        self.maybe_snapshot()?;
        self.release_reads(&mut output);
        // The entries just applied may be the term's first commit: start held reads now (the
        // next call sends what they need; the caller sees `has_ready`).
        self.start_deferred_reads();
        let raft = &self.raw_node.raft;
        if raft.state == raft::StateRole::Leader
            && self.caught_up_term != raft.term
            && raft.raft_log.term(self.applied_index).ok() == Some(raft.term)
        {
            self.caught_up_term = raft.term;
        }
        let leadership = self.leadership();
        if self.reported_leadership != Some(leadership) {
            self.reported_leadership = Some(leadership);
            output.leadership_change = Some(leadership);
        }
        Ok(output)
    }

    fn encode_messages(
        messages: Vec<Message>,
        output: &mut ReadyOutput<S::Output>,
    ) -> Result<(), MemberError> {
        for message in messages {
            let bytes = message
                .write_to_bytes()
                .map_err(MemberError::EncodeMessage)?;
            output.messages.push(OutgoingMessage {
                to: message.to,
                bytes,
                carries_snapshot: message.get_msg_type() == MessageType::MsgSnapshot,
            });
        }
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), MemberError> {
        self.raw_node.mut_store().apply_snapshot(snapshot)?;
        self.state_machine
            .restore(snapshot.get_metadata().index, &snapshot.data)
            .map_err(|error| MemberError::RestoreSnapshot(Box::new(error)))?;
        let metadata = snapshot.get_metadata();
        self.applied_index = metadata.index;
        self.snapshot_index = metadata.index;
        self.applied_conf_state = metadata.get_conf_state().clone();
        Ok(())
    }

    fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
        output: &mut ReadyOutput<S::Output>,
    ) -> Result<(), MemberError> {
        for entry in entries {
            if entry.index <= self.applied_index {
                continue;
            }
            assert_eq!(
                entry.index,
                self.applied_index + 1,
                "invariant: committed entries are applied without gaps"
            );
            let ours = ProposalContext::decode(entry.get_context()).filter(|context| {
                context.node_id == self.config.id && context.boot_epoch == self.boot_epoch
            });
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_command(&entry, ours, output),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry, ours, output)?
                }
            }
            self.applied_index = entry.index;
        }
        Ok(())
    }

    fn apply_command(
        &mut self,
        entry: &Entry,
        ours: Option<ProposalContext>,
        output: &mut ReadyOutput<S::Output>,
    ) {
        if entry.get_data().is_empty() {
            // A new leader's empty entry: nothing to apply.
            return;
        }
        let result = match decode_command::<S::Command>(entry.get_data()) {
            Ok(command) => Ok(self.state_machine.apply(entry.index, command)),
            Err(detail) => Err(ApplyError::UndecodableCommand(detail)),
        };
        if let Some(context) = ours {
            output.applied.push(AppliedProposal {
                proposal_id: context.proposal_id,
                index: entry.index,
                result,
            });
        }
    }

    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        ours: Option<ProposalContext>,
        output: &mut ReadyOutput<S::Output>,
    ) -> Result<(), MemberError> {
        let corrupt = |error: protobuf::ProtobufError| MemberError::CorruptEntry {
            index: entry.index,
            detail: error.to_string(),
        };
        let (applied, change) = if entry.get_entry_type() == EntryType::EntryConfChange {
            let conf_change = ConfChange::parse_from_bytes(entry.get_data()).map_err(corrupt)?;
            let change = membership_change(conf_change.get_change_type(), conf_change.node_id);
            (self.raw_node.apply_conf_change(&conf_change), Some(change))
        } else {
            let conf_change = ConfChangeV2::parse_from_bytes(entry.get_data()).map_err(corrupt)?;
            let change = match conf_change.get_changes() {
                [single] => Some(membership_change(single.get_change_type(), single.node_id)),
                _ => None,
            };
            (self.raw_node.apply_conf_change(&conf_change), change)
        };
        let result = match applied {
            Ok(conf_state) => {
                self.raw_node.mut_store().set_conf_state(&conf_state)?;
                self.applied_conf_state = conf_state;
                Ok(())
            }
            Err(error) => Err(ApplyError::ConfChangeRejected(error.to_string())),
        };
        output.conf_changes.push(AppliedConfChange {
            proposal_id: ours.map(|context| context.proposal_id),
            index: entry.index,
            change,
            result,
            voters: self.applied_conf_state.voters.clone(),
            learners: self.applied_conf_state.learners.clone(),
        });
        Ok(())
    }

    /// Every `snapshot_every_entries` applied entries: store a snapshot of the state machine
    /// and drop the log it covers. Lagging or new members then catch up from the snapshot.
    /// Also on demand, when raft needed a newer snapshot than the stored one for a follower.
    fn maybe_snapshot(&mut self) -> Result<(), MemberError> {
        let wanted = self.raw_node.store().take_snapshot_wanted();
        let due = self.applied_index >= self.snapshot_index + self.config.snapshot_every_entries;
        if !(due || wanted) || self.applied_index <= self.snapshot_index {
            return Ok(());
        }
        let data = self.state_machine.snapshot();
        let storage = self.raw_node.mut_store();
        storage.store_snapshot(self.applied_index, &self.applied_conf_state, data)?;
        storage.compact(self.applied_index)?;
        self.snapshot_index = self.applied_index;
        Ok(())
    }

    fn release_reads(&mut self, output: &mut ReadyOutput<S::Output>) {
        let applied_index = self.applied_index;
        self.pending_reads.retain(|&(request_id, index)| {
            if index <= applied_index {
                output.reads_ready.push(request_id);
                false
            } else {
                true
            }
        });
    }
}

fn membership_change(change_type: ConfChangeType, node_id: u64) -> MembershipChange {
    match change_type {
        ConfChangeType::AddNode => MembershipChange::AddVoter(node_id),
        ConfChangeType::AddLearnerNode => MembershipChange::AddLearner(node_id),
        ConfChangeType::RemoveNode => MembershipChange::RemoveMember(node_id),
    }
}

fn decode_read_request(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}
