//! Checks every peer message must pass before raft-rs sees it.
//!
//! raft-rs trusts its peers: a heartbeat whose commit index is past our log, an append whose
//! entries are not consecutive, an empty forwarded proposal or a snapshot whose configuration
//! cannot be restored all end in a `panic!` inside `RawNode::step`. Peers are other managers,
//! authenticated but not infallible (a bug, a corrupt disk, a stolen certificate), so nothing
//! they send may crash this one. [`check_peer_message`] refuses, with a reason, every message
//! that could reach such a panic or that no correct peer sends; see `docs/raft.md`.
//!
//! The checks are conservative where a correct peer could send the message: a correct leader's
//! heartbeat never claims a commit past what we acknowledged, and a correct leader's log
//! contains every committed entry, so refusing those costs nothing. Leader messages from an ID
//! outside our configuration are accepted when they bring a newer term (or come from the leader
//! we already follow): a member that lags behind the conf change adding the new leader, or one
//! that is joining with no configuration yet, must still hear from it.

use std::collections::HashSet;

use raft::prelude::{ConfState, Message, MessageType, Snapshot};
use raft::{Raft, StateRole, Storage};

/// Why a peer message was refused. Each leaves the member untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPeerMessage {
    /// `from` is 0, which raft reserves for "nobody".
    #[error("message has no sender (from = 0)")]
    NoSender,
    /// `from` is this member's own ID: no peer may speak for us.
    #[error("message claims to come from this member ({0})")]
    FromSelf(u64),
    /// A type raft only creates locally (ticks, reports); a peer must never send it.
    #[error("{0:?} is local to a member, never sent by a peer")]
    LocalOnly(MessageType),
    /// A forwarded proposal. Followers here never forward proposals (they answer "not leader"),
    /// and accepting one would let a peer write to the store without going through a client.
    #[error("proposals are never forwarded between members")]
    ForwardedProposal,
    /// The message type always carries the sender's term but this one has term 0, which raft
    /// would take for a local message and step without any term check.
    #[error("{0:?} without a term")]
    MissingTerm(MessageType),
    /// A forwarded read request must not carry a term: raft forwards it again as is, and panics
    /// when it sends such a message with a term set.
    #[error("{0:?} must not carry a term (has {1})")]
    UnexpectedTerm(MessageType, u64),
    /// The sender is neither a voter nor a learner of our configuration, and the message is not
    /// one a leader we may not know yet would send.
    #[error("{from} is not a member of the configuration")]
    UnknownSender {
        /// The claimed sender.
        from: u64,
    },
    /// The protobuf message claims another sender than the envelope it came in (whose sender
    /// is bound to the certificate, see `consensus::envelope`).
    #[error("message claims sender {message}, its envelope {envelope}")]
    SenderMismatch {
        /// The envelope's (certified) sender.
        envelope: u64,
        /// The message's `from`.
        message: u64,
    },
    /// A leader-transfer request reached a member that does not lead (it would forward it).
    #[error("leader transfer request, but this member does not lead")]
    TransferNotToLeader,
    /// MsgTimeoutNow (start an election at once) is only honoured from the current leader.
    #[error("leadership handover from {from}, but the leader is {leader:?}")]
    TimeoutNowNotFromLeader {
        /// The claimed sender.
        from: u64,
        /// The leader this member follows, if any.
        leader: Option<u64>,
    },
    /// A read-index request or response carries exactly one entry (the request context).
    #[error("{kind:?} carries {count} entries, not 1")]
    ReadIndexEntries {
        /// MsgReadIndex or MsgReadIndexResp.
        kind: MessageType,
        /// How many it carries.
        count: usize,
    },
    /// Appended entries must follow `index` one by one.
    #[error("entry index {found} where {expected} was due")]
    NonConsecutiveEntries {
        /// The index that follows the previous one.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// Entry terms are never 0 (but at index 0), never decrease along a log, start at or after
    /// the term of the entry they follow, and never exceed the sender's term.
    #[error("entry {index} has term {term}, impossible here")]
    ImpossibleEntryTerm {
        /// The entry's index.
        index: u64,
        /// The entry's term.
        term: u64,
    },
    /// The append contradicts an entry we know is committed: a correct leader holds every
    /// committed entry, so this one is wrong (raft-rs panics on it).
    #[error("append gives committed index {index} term {theirs}, ours is {ours}")]
    ConflictsWithCommitted {
        /// The committed index.
        index: u64,
        /// Its term in our log.
        ours: u64,
        /// The term the message gives it.
        theirs: u64,
    },
    /// A heartbeat asks to commit past our last index (raft-rs panics on it). A correct leader
    /// sends at most what we acknowledged.
    #[error("heartbeat commits {commit}, beyond our last index {last_index}")]
    CommitBeyondLog {
        /// The commit index in the message.
        commit: u64,
        /// Our last log index.
        last_index: u64,
    },
    /// An append response acknowledging entries this leader never had.
    #[error("append response acknowledges {index}, beyond our last index {last_index}")]
    AcknowledgesBeyondLog {
        /// The acknowledged index.
        index: u64,
        /// Our last log index.
        last_index: u64,
    },
    /// The snapshot's metadata makes no sense (see the reason).
    #[error("snapshot refused: {0}")]
    BadSnapshot(&'static str),
    /// An index in the message is so large that the next one overflows.
    #[error("index overflows")]
    IndexOverflow,
}

impl InvalidPeerMessage {
    /// A short stable name for the reason, for counting and rate-limited logging.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoSender => "no-sender",
            Self::FromSelf(_) => "from-self",
            Self::LocalOnly(_) => "local-only",
            Self::ForwardedProposal => "forwarded-proposal",
            Self::MissingTerm(_) => "missing-term",
            Self::UnexpectedTerm(..) => "unexpected-term",
            Self::UnknownSender { .. } => "unknown-sender",
            Self::SenderMismatch { .. } => "sender-mismatch",
            Self::TransferNotToLeader => "transfer-not-to-leader",
            Self::TimeoutNowNotFromLeader { .. } => "timeout-now-not-from-leader",
            Self::ReadIndexEntries { .. } => "read-index-entries",
            Self::NonConsecutiveEntries { .. } => "non-consecutive-entries",
            Self::ImpossibleEntryTerm { .. } => "impossible-entry-term",
            Self::ConflictsWithCommitted { .. } => "conflicts-with-committed",
            Self::CommitBeyondLog { .. } => "commit-beyond-log",
            Self::AcknowledgesBeyondLog { .. } => "acknowledges-beyond-log",
            Self::BadSnapshot(_) => "bad-snapshot",
            Self::IndexOverflow => "index-overflow",
        }
    }
}

/// Checks a decoded peer message (already known to be addressed to `raft.id`) against this
/// member's state. `Ok` means raft-rs may step it without panicking.
pub fn check_peer_message<T: Storage>(
    message: &Message,
    raft: &Raft<T>,
) -> Result<(), InvalidPeerMessage> {
    use MessageType::*;
    if message.from == raft::INVALID_ID {
        return Err(InvalidPeerMessage::NoSender);
    }
    if message.from == raft.id {
        return Err(InvalidPeerMessage::FromSelf(raft.id));
    }
    let kind = message.get_msg_type();
    match kind {
        MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum => {
            return Err(InvalidPeerMessage::LocalOnly(kind));
        }
        MsgPropose => return Err(InvalidPeerMessage::ForwardedProposal),
        // Raft forwards read requests from a follower to the leader untouched (term 0).
        MsgReadIndex => {
            if message.term != 0 {
                return Err(InvalidPeerMessage::UnexpectedTerm(kind, message.term));
            }
        }
        _ => {
            if message.term == 0 {
                return Err(InvalidPeerMessage::MissingTerm(kind));
            }
        }
    }
    // raft-rs looks at nothing but the type of a message from an older term (it drops it,
    // answering at most with its own term), and a correct peer sends them all the time
    // (delayed messages, a deposed leader): let raft-rs deal with them.
    if message.term != 0 && message.term < raft.term {
        return Ok(());
    }
    check_sender(message, raft)?;
    match kind {
        MsgAppend => check_append(message, raft),
        MsgHeartbeat => check_heartbeat(message, raft),
        MsgSnapshot => check_snapshot(message.get_snapshot(), message.term),
        MsgAppendResponse => check_append_response(message, raft),
        MsgReadIndex | MsgReadIndexResp => match message.entries.len() {
            1 => Ok(()),
            count => Err(InvalidPeerMessage::ReadIndexEntries { kind, count }),
        },
        // A follower forwards a leader transfer to its leader after setting the term, which
        // raft-rs refuses with a panic when the term is already set; only a leader acts on it.
        MsgTransferLeader if raft.state != StateRole::Leader => {
            Err(InvalidPeerMessage::TransferNotToLeader)
        }
        // Only a term's leader sends MsgTimeoutNow, so it is refused only from someone else
        // at a term whose leader we know; a newer term's may come from a leader elected while
        // we did not listen.
        MsgTimeoutNow
            if raft.leader_id != raft::INVALID_ID
                && message.from != raft.leader_id
                && message.term <= raft.term =>
        {
            Err(InvalidPeerMessage::TimeoutNowNotFromLeader {
                from: message.from,
                leader: (raft.leader_id != raft::INVALID_ID).then_some(raft.leader_id),
            })
        }
        _ => Ok(()),
    }
}

/// Messages from an ID outside the configuration are refused, except those the configuration
/// may not know about yet: a leader's (a newer term, or the one leader of ours) and vote requests
/// (a just-added member may campaign before we applied its addition; raft-rs decides the vote).
fn check_sender<T: Storage>(message: &Message, raft: &Raft<T>) -> Result<(), InvalidPeerMessage> {
    if raft.prs().get(message.from).is_some() {
        return Ok(());
    }
    let from_a_leader = matches!(
        message.get_msg_type(),
        MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
    );
    let accepted = match message.get_msg_type() {
        // At our term with no leader yet: we voted in this term's election (or heard of it),
        // and this is the winner's first message; a second leader of one term cannot be.
        _ if from_a_leader => {
            message.term > raft.term
                || (message.term == raft.term
                    && (raft.leader_id == raft::INVALID_ID || message.from == raft.leader_id))
        }
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => true,
        // The leader's answer to a read we forwarded; it may be a leader we do not know yet.
        MessageType::MsgReadIndexResp => message.from == raft.leader_id,
        MessageType::MsgTimeoutNow => {
            message.from == raft.leader_id
                || message.term > raft.term
                || (message.term == raft.term && raft.leader_id == raft::INVALID_ID)
        }
        _ => false,
    };
    if accepted {
        Ok(())
    } else {
        Err(InvalidPeerMessage::UnknownSender { from: message.from })
    }
}

fn check_append<T: Storage>(message: &Message, raft: &Raft<T>) -> Result<(), InvalidPeerMessage> {
    let log = &raft.raft_log;
    // raft-rs's `term(index)` answers 0 for an index past the log, so term 0 "matches" there:
    // an anchor (index > 0, term 0) or an entry of term 0 would be taken as already present and
    // then appended after a gap or committed past the log, both panics. Only index 0 has term 0.
    if (message.log_term == 0 && message.index > 0) || message.log_term > message.term {
        return Err(InvalidPeerMessage::ImpossibleEntryTerm {
            index: message.index,
            term: message.log_term,
        });
    }
    // raft-rs's `maybe_append` slices the entries at `conflict - (index + 1)`: any gap or
    // reordering underflows or commits a conflict below our commit index.
    let mut expected = message.index;
    let mut previous_term = message.log_term;
    for entry in &message.entries {
        expected = expected
            .checked_add(1)
            .ok_or(InvalidPeerMessage::IndexOverflow)?;
        if entry.index != expected {
            return Err(InvalidPeerMessage::NonConsecutiveEntries {
                expected,
                found: entry.index,
            });
        }
        if entry.term == 0 || entry.term < previous_term || entry.term > message.term {
            return Err(InvalidPeerMessage::ImpossibleEntryTerm {
                index: entry.index,
                term: entry.term,
            });
        }
        previous_term = entry.term;
    }
    // Every (index, term) the message states at or below our commit index must be ours.
    // Compacted indexes cannot be compared and are skipped (raft-rs does not look at them
    // either: it answers an append below the commit index without reading it).
    let committed = log.committed;
    let stated = std::iter::once((message.index, message.log_term)).chain(
        message
            .entries
            .iter()
            .map(|entry| (entry.index, entry.term)),
    );
    for (index, theirs) in stated.take_while(|(index, _)| *index <= committed) {
        if index < log.first_index() {
            continue;
        }
        if let Ok(ours) = log.term(index) {
            if ours != theirs {
                return Err(InvalidPeerMessage::ConflictsWithCommitted {
                    index,
                    ours,
                    theirs,
                });
            }
        }
    }
    Ok(())
}

/// raft-rs's `handle_heartbeat` calls `commit_to(commit)` unclamped, which panics past the
/// last index. (Appends are clamped by raft-rs to what they carry, so they need no check.)
fn check_heartbeat<T: Storage>(
    message: &Message,
    raft: &Raft<T>,
) -> Result<(), InvalidPeerMessage> {
    let last_index = raft.raft_log.last_index();
    if message.commit > last_index {
        return Err(InvalidPeerMessage::CommitBeyondLog {
            commit: message.commit,
            last_index,
        });
    }
    Ok(())
}

/// A leader's log only grows during its term, so a follower of the same term cannot have
/// matched past it; raft-rs would record that match and corrupt the follower's progress.
fn check_append_response<T: Storage>(
    message: &Message,
    raft: &Raft<T>,
) -> Result<(), InvalidPeerMessage> {
    let last_index = raft.raft_log.last_index();
    if raft.state == StateRole::Leader
        && message.term == raft.term
        && !message.reject
        && message.index > last_index
    {
        return Err(InvalidPeerMessage::AcknowledgesBeyondLog {
            index: message.index,
            last_index,
        });
    }
    Ok(())
}

/// raft-rs restores a snapshot's configuration with `fatal!` on any inconsistency; this group
/// never uses joint consensus, so a snapshot names a plain set of voters and learners.
fn check_snapshot(snapshot: &Snapshot, message_term: u64) -> Result<(), InvalidPeerMessage> {
    let metadata = snapshot.get_metadata();
    if metadata.index == 0 {
        return Err(InvalidPeerMessage::BadSnapshot("index 0"));
    }
    if metadata.term == 0 || metadata.term > message_term {
        return Err(InvalidPeerMessage::BadSnapshot(
            "term 0 or newer than the sender's",
        ));
    }
    check_conf_state(metadata.get_conf_state())
}

fn check_conf_state(conf_state: &ConfState) -> Result<(), InvalidPeerMessage> {
    if conf_state.voters.is_empty() {
        return Err(InvalidPeerMessage::BadSnapshot("no voters"));
    }
    if !conf_state.voters_outgoing.is_empty()
        || !conf_state.learners_next.is_empty()
        || conf_state.auto_leave
    {
        return Err(InvalidPeerMessage::BadSnapshot(
            "joint configuration (never used here)",
        ));
    }
    let mut seen = HashSet::new();
    for id in conf_state.voters.iter().chain(&conf_state.learners) {
        if *id == raft::INVALID_ID {
            return Err(InvalidPeerMessage::BadSnapshot("member ID 0"));
        }
        if !seen.insert(*id) {
            return Err(InvalidPeerMessage::BadSnapshot(
                "member listed twice (or both voter and learner)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
