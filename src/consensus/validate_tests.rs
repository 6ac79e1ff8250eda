//! Tests of the peer-message validator: each malformed kind is refused with its reason and the
//! member works on; the raft-rs panics it guards against are real; nothing random panics.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Message, MessageType, Snapshot};
use raft::storage::MemStorage;
use raft::RawNode;

use super::InvalidPeerMessage;
use crate::consensus::state_machine::encode_command;
use crate::consensus::test_counter::Counter;
use crate::consensus::{
    MemberConfig, MemberError, OutgoingMessage, RaftMember, RedbStorage, SimDisk,
};

/// The term the test plays leader 2 at.
const LEADER_TERM: u64 = 2;

/// Member 1 of the group {1, 2, 3}, a follower that has heard from no leader yet (log: the
/// bootstrap snapshot at index 1, term 1).
fn follower() -> RaftMember<Counter> {
    let storage = RedbStorage::open_with_backend(SimDisk::new().backend()).expect("open");
    RaftMember::bootstrap(
        MemberConfig::new(1),
        storage,
        Counter::default(),
        &[1, 2, 3],
    )
    .expect("bootstrap")
}

/// A message of `kind` from peer 2 (the leader the test plays) to member 1.
fn from_leader(kind: MessageType) -> Message {
    let mut message = Message::default();
    message.set_msg_type(kind);
    message.from = 2;
    message.to = 1;
    message.term = LEADER_TERM;
    message
}

fn entry(index: u64, term: u64, data: Vec<u8>) -> Entry {
    Entry {
        index,
        term,
        data: data.into(),
        ..Entry::default()
    }
}

/// Leader 2's append of index 2 (its empty entry) and 3 (the command "add `amount`"),
/// committing both.
fn valid_append(amount: u64) -> Message {
    let mut message = from_leader(MessageType::MsgAppend);
    message.index = 1;
    message.log_term = 1;
    message.commit = 3;
    message.entries = vec![
        entry(2, LEADER_TERM, Vec::new()),
        entry(3, LEADER_TERM, encode_command(&amount).expect("encodes")),
    ]
    .into();
    message
}

fn bytes(message: &Message) -> Vec<u8> {
    message.write_to_bytes().expect("encodes")
}

/// Steps `message` into `member`, expecting it refused; returns the reason.
fn refused(member: &mut RaftMember<Counter>, message: &Message) -> InvalidPeerMessage {
    match member.step(&bytes(message)) {
        Err(MemberError::InvalidPeerMessage { from, reason }) => {
            assert_eq!(from, message.from);
            reason
        }
        other => panic!("{:?} was not refused: {other:?}", message.get_msg_type()),
    }
}

/// After the refusals, the follower still takes leader 2's log and applies it.
fn assert_follows_and_applies(member: &mut RaftMember<Counter>) {
    member
        .step(&bytes(&valid_append(5)))
        .expect("a valid append");
    member.handle_ready().expect("ready");
    assert_eq!(member.commit_index(), 3);
    assert_eq!(member.state_machine().total, 5);
    assert_eq!(member.leadership().leader_id, Some(2));
}

#[test]
fn senders_types_and_terms_that_no_peer_sends_are_refused() {
    let mut member = follower();
    let mut message = from_leader(MessageType::MsgHeartbeat);
    message.from = 0;
    assert_eq!(refused(&mut member, &message), InvalidPeerMessage::NoSender);
    message.from = 1;
    assert_eq!(
        refused(&mut member, &message),
        InvalidPeerMessage::FromSelf(1)
    );
    for kind in [
        MessageType::MsgHup,
        MessageType::MsgBeat,
        MessageType::MsgUnreachable,
        MessageType::MsgSnapStatus,
        MessageType::MsgCheckQuorum,
    ] {
        assert_eq!(
            refused(&mut member, &from_leader(kind)),
            InvalidPeerMessage::LocalOnly(kind)
        );
    }
    // An empty forwarded proposal is a `fatal!` on a leader; any would bypass the clients.
    assert_eq!(
        refused(&mut member, &from_leader(MessageType::MsgPropose)),
        InvalidPeerMessage::ForwardedProposal
    );
    let mut unterm = valid_append(1);
    unterm.term = 0;
    assert_eq!(
        refused(&mut member, &unterm),
        InvalidPeerMessage::MissingTerm(MessageType::MsgAppend)
    );
    let mut read = from_leader(MessageType::MsgReadIndex);
    read.entries = vec![entry(0, 0, b"ctx".to_vec())].into();
    assert_eq!(
        refused(&mut member, &read),
        InvalidPeerMessage::UnexpectedTerm(MessageType::MsgReadIndex, LEADER_TERM)
    );
    assert_eq!(
        refused(&mut member, &from_leader(MessageType::MsgTransferLeader)),
        InvalidPeerMessage::TransferNotToLeader
    );
    assert_follows_and_applies(&mut member);
}

#[test]
fn strangers_and_non_leaders_are_refused_but_a_new_leader_is_heard() {
    let mut member = follower();
    // A leader of a newer term the configuration does not name yet (member 1 may lag behind
    // the conf change adding it) is heard...
    let mut stranger = from_leader(MessageType::MsgHeartbeat);
    stranger.from = 9;
    member
        .step(&bytes(&stranger))
        .expect("a newer term's leader");
    assert_eq!(member.leadership().leader_id, Some(9));
    // ...but not a response or a second "leader" at the same term.
    let mut response = from_leader(MessageType::MsgHeartbeatResponse);
    response.from = 8;
    assert_eq!(
        refused(&mut member, &response),
        InvalidPeerMessage::UnknownSender { from: 8 }
    );
    let mut impostor = from_leader(MessageType::MsgAppend);
    impostor.from = 8;
    assert_eq!(
        refused(&mut member, &impostor),
        InvalidPeerMessage::UnknownSender { from: 8 }
    );
    // Only the leader may hand over leadership.
    let mut timeout_now = from_leader(MessageType::MsgTimeoutNow);
    timeout_now.from = 3;
    assert_eq!(
        refused(&mut member, &timeout_now),
        InvalidPeerMessage::TimeoutNowNotFromLeader {
            from: 3,
            leader: Some(9)
        }
    );
    let mut read_response = from_leader(MessageType::MsgReadIndexResp);
    read_response.from = 9;
    assert_eq!(
        refused(&mut member, &read_response),
        InvalidPeerMessage::ReadIndexEntries {
            kind: MessageType::MsgReadIndexResp,
            count: 0
        }
    );
    // Leader 2 at a newer term takes over.
    let mut append = valid_append(5);
    append.term = LEADER_TERM + 1;
    for entry in append.entries.iter_mut() {
        entry.term = LEADER_TERM + 1;
    }
    member.step(&bytes(&append)).expect("append");
    member.handle_ready().expect("ready");
    assert_eq!(member.state_machine().total, 5);
}

#[test]
fn appends_with_broken_entries_or_contradicting_the_commit_are_refused() {
    let mut member = follower();
    let mut gap = valid_append(1);
    gap.entries[1].index = 4;
    assert_eq!(
        refused(&mut member, &gap),
        InvalidPeerMessage::NonConsecutiveEntries {
            expected: 3,
            found: 4
        }
    );
    let mut backwards = valid_append(1);
    backwards.entries[0].index = 1;
    assert_eq!(
        refused(&mut member, &backwards),
        InvalidPeerMessage::NonConsecutiveEntries {
            expected: 2,
            found: 1
        }
    );
    let mut future_term = valid_append(1);
    future_term.entries[1].term = LEADER_TERM + 1;
    assert_eq!(
        refused(&mut member, &future_term),
        InvalidPeerMessage::ImpossibleEntryTerm { index: 3, term: 3 }
    );
    // Found by the proptest: raft-rs reads term 0 past its log, so these would "match" there
    // and be appended after a gap (or committed past the log).
    let mut zero_anchor = from_leader(MessageType::MsgAppend);
    zero_anchor.index = 4;
    zero_anchor.entries = vec![entry(5, 1, Vec::new())].into();
    assert_eq!(
        refused(&mut member, &zero_anchor),
        InvalidPeerMessage::ImpossibleEntryTerm { index: 4, term: 0 }
    );
    let mut zero_entry = valid_append(1);
    zero_entry.entries[0].term = 0;
    assert_eq!(
        refused(&mut member, &zero_entry),
        InvalidPeerMessage::ImpossibleEntryTerm { index: 2, term: 0 }
    );
    let mut overflow = valid_append(1);
    overflow.index = u64::MAX;
    overflow.log_term = 1;
    overflow.entries.truncate(1);
    assert_eq!(
        refused(&mut member, &overflow),
        InvalidPeerMessage::IndexOverflow
    );
    assert_follows_and_applies(&mut member);
    // Entries 2 and 3 are committed at term 2; an append claiming index 2 has term 1 lies.
    let mut conflicting = from_leader(MessageType::MsgAppend);
    conflicting.index = 1;
    conflicting.log_term = 1;
    conflicting.entries = vec![entry(2, 1, Vec::new())].into();
    assert_eq!(
        refused(&mut member, &conflicting),
        InvalidPeerMessage::ConflictsWithCommitted {
            index: 2,
            ours: LEADER_TERM,
            theirs: 1
        }
    );
    // The member goes on taking the log.
    let mut next = from_leader(MessageType::MsgAppend);
    next.index = 3;
    next.log_term = LEADER_TERM;
    next.commit = 4;
    next.entries = vec![entry(
        4,
        LEADER_TERM,
        encode_command(&7u64).expect("encodes"),
    )]
    .into();
    member.step(&bytes(&next)).expect("append");
    member.handle_ready().expect("ready");
    assert_eq!(member.state_machine().total, 12);
}

#[test]
fn a_heartbeat_committing_past_the_log_is_refused() {
    let mut member = follower();
    let mut heartbeat = from_leader(MessageType::MsgHeartbeat);
    heartbeat.commit = 100;
    assert_eq!(
        refused(&mut member, &heartbeat),
        InvalidPeerMessage::CommitBeyondLog {
            commit: 100,
            last_index: 1
        }
    );
    assert_follows_and_applies(&mut member);
    heartbeat.commit = 3;
    member
        .step(&bytes(&heartbeat))
        .expect("a heartbeat within the log");
}

#[test]
fn snapshots_with_nonsensical_metadata_are_refused() {
    let mut member = follower();
    let snapshot_message = |index: u64, term: u64, voters: &[u64], learners: &[u64]| {
        let mut message = from_leader(MessageType::MsgSnapshot);
        let mut snapshot = Snapshot {
            data: 9u64.to_le_bytes().to_vec().into(),
            ..Snapshot::default()
        };
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(ConfState::from((voters.to_vec(), learners.to_vec())));
        message.set_snapshot(snapshot);
        message
    };
    let cases: [(Message, &str); 6] = [
        (snapshot_message(0, 2, &[1, 2, 3], &[]), "index 0"),
        (
            snapshot_message(5, 0, &[1, 2, 3], &[]),
            "term 0 or newer than the sender's",
        ),
        (
            snapshot_message(5, 3, &[1, 2, 3], &[]),
            "term 0 or newer than the sender's",
        ),
        (snapshot_message(5, 2, &[], &[1]), "no voters"),
        (
            snapshot_message(5, 2, &[1, 2, 3], &[2]),
            "member listed twice (or both voter and learner)",
        ),
        (snapshot_message(5, 2, &[1, 0], &[]), "member ID 0"),
    ];
    for (message, reason) in cases {
        assert_eq!(
            refused(&mut member, &message),
            InvalidPeerMessage::BadSnapshot(reason)
        );
    }
    // A sound snapshot installs.
    member
        .step(&bytes(&snapshot_message(5, 2, &[1, 2, 3], &[])))
        .expect("snapshot");
    member.handle_ready().expect("ready");
    assert_eq!(member.state_machine().total, 9);
    assert_eq!(member.commit_index(), 5);
}

/// Delivers messages among `members` (FIFO) until none are left.
fn pump(members: &mut [RaftMember<Counter>], queue: &mut VecDeque<OutgoingMessage>) {
    while let Some(message) = queue.pop_front() {
        let member = &mut members[(message.to - 1) as usize];
        member.step(&message.bytes).expect("step");
        queue.extend(member.handle_ready().expect("ready").messages);
    }
}

/// A group {1, 2, 3} in which member 1 leads.
fn group_led_by_1() -> Vec<RaftMember<Counter>> {
    let mut members: Vec<RaftMember<Counter>> =
        crate::consensus::test_counter::bootstrapped_group(&[
            SimDisk::new(),
            SimDisk::new(),
            SimDisk::new(),
        ]);
    let mut queue = VecDeque::new();
    while !members[0].leadership().is_leader {
        members[0].tick();
        queue.extend(members[0].handle_ready().expect("ready").messages);
        pump(&mut members, &mut queue);
    }
    members
}

#[test]
fn a_leader_refuses_acks_past_its_log_and_forwarded_proposals_then_commits() {
    let mut members = group_led_by_1();
    let term = members[0].leadership().term;
    let last_index = raft::Storage::last_index(members[0].storage()).expect("last index");
    let mut ack = from_leader(MessageType::MsgAppendResponse);
    ack.term = term;
    ack.index = 1000;
    assert_eq!(
        refused(&mut members[0], &ack),
        InvalidPeerMessage::AcknowledgesBeyondLog {
            index: 1000,
            last_index
        }
    );
    let mut proposal = from_leader(MessageType::MsgPropose);
    proposal.term = 0;
    assert_eq!(
        refused(&mut members[0], &proposal),
        InvalidPeerMessage::ForwardedProposal
    );
    members[0].propose(1, &4).expect("propose");
    let output = members[0].handle_ready().expect("ready");
    let mut queue: VecDeque<_> = output.messages.into();
    pump(&mut members, &mut queue);
    assert!(members
        .iter()
        .all(|member| member.state_machine().total == 4));
}

/// A bare raft-rs node over `MemStorage`: member 1 of {1, 2, 3}, with entries 1..=3 of term 2
/// committed.
fn raw_node_with_committed_log() -> RawNode<MemStorage> {
    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
    {
        let mut core = storage.wl();
        core.append(&[
            entry(1, 1, Vec::new()),
            entry(2, 2, Vec::new()),
            entry(3, 2, Vec::new()),
        ])
        .expect("append");
        core.set_hardstate(HardState {
            term: 2,
            commit: 3,
            ..HardState::default()
        });
    }
    let config = raft::Config {
        id: 1,
        ..raft::Config::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    RawNode::new(&config, storage, &logger).expect("raw node")
}

/// Proves the tests above meaningful: what they refuse does panic raft-rs.
#[test]
fn without_the_validator_raft_rs_panics_on_these_messages() {
    let mut heartbeat = from_leader(MessageType::MsgHeartbeat);
    heartbeat.commit = 100;
    let mut raw = raw_node_with_committed_log();
    assert!(
        catch_unwind(AssertUnwindSafe(|| raw.step(heartbeat.clone()))).is_err(),
        "raft-rs commits past its log on a heartbeat"
    );
    // An append whose entries go back below the commit index: "conflict with committed entry".
    let mut append = from_leader(MessageType::MsgAppend);
    append.index = 3;
    append.log_term = 2;
    append.entries = vec![entry(2, 1, Vec::new())].into();
    let mut raw = raw_node_with_committed_log();
    assert!(
        catch_unwind(AssertUnwindSafe(|| raw.step(append.clone()))).is_err(),
        "raft-rs panics on a conflicting append"
    );
    // Both refused by the member instead, which stays alive.
    let mut member = follower();
    assert!(matches!(
        refused(&mut member, &heartbeat),
        InvalidPeerMessage::CommitBeyondLog { .. }
    ));
    assert!(matches!(
        refused(&mut member, &append),
        InvalidPeerMessage::NonConsecutiveEntries { .. }
    ));
    assert_follows_and_applies(&mut member);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [MessageType; 19] = [
        MessageType::MsgHup,
        MessageType::MsgBeat,
        MessageType::MsgPropose,
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgRequestVote,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgSnapshot,
        MessageType::MsgHeartbeat,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgUnreachable,
        MessageType::MsgSnapStatus,
        MessageType::MsgCheckQuorum,
        MessageType::MsgTransferLeader,
        MessageType::MsgTimeoutNow,
        MessageType::MsgReadIndex,
        MessageType::MsgReadIndexResp,
        MessageType::MsgRequestPreVote,
        MessageType::MsgRequestPreVoteResponse,
    ];

    prop_compose! {
        fn arbitrary_entry()(index in 0u64..10, term in 0u64..5, conf in any::<bool>(),
                             data in proptest::collection::vec(any::<u8>(), 0..12)) -> Entry {
            let mut entry = entry(index, term, data);
            if conf {
                entry.set_entry_type(raft::prelude::EntryType::EntryConfChange);
            }
            entry
        }
    }

    prop_compose! {
        /// Well-formed protobuf with arbitrary, often nonsensical, contents; half the time the
        /// entries are consecutive from `index + 1`, to get past the cheapest checks.
        fn arbitrary_message()(
            kind in 0..KINDS.len(), from in 0u64..5, to in prop_oneof![9 => Just(1u64), 1 => 0u64..4],
            term in 0u64..5, log_term in 0u64..5, index in 0u64..8, commit in 0u64..10,
            commit_term in 0u64..5, reject in any::<bool>(), reject_hint in 0u64..8,
            mut entries in proptest::collection::vec(arbitrary_entry(), 0..4),
            consecutive in any::<bool>(),
            snapshot in proptest::option::of((0u64..10, 0u64..5,
                proptest::collection::vec(0u64..5, 0..4), proptest::collection::vec(0u64..5, 0..3),
                proptest::collection::vec(any::<u8>(), 0..10))),
            context in proptest::collection::vec(any::<u8>(), 0..4),
        ) -> Message {
            let mut message = Message::default();
            message.set_msg_type(KINDS[kind]);
            message.from = from;
            message.to = to;
            message.term = term;
            message.log_term = log_term;
            message.index = index;
            message.commit = commit;
            message.commit_term = commit_term;
            message.reject = reject;
            message.reject_hint = reject_hint;
            if consecutive {
                for (offset, entry) in entries.iter_mut().enumerate() {
                    entry.index = index + 1 + offset as u64;
                    entry.term = entry.term.max(log_term).min(term);
                }
            }
            message.entries = entries.into();
            if let Some((index, term, voters, learners, data)) = snapshot {
                let mut snapshot = Snapshot {
                    data: data.into(),
                    ..Snapshot::default()
                };
                snapshot.mut_metadata().index = index;
                snapshot.mut_metadata().term = term;
                snapshot.mut_metadata().set_conf_state(ConfState::from((voters, learners)));
                message.set_snapshot(snapshot);
            }
            message.context = context.into();
            message
        }
    }

    /// Steps each input into `member`, then runs its Ready; an error from `handle_ready`
    /// (say, a snapshot whose data the state machine refuses) means "restart from disk",
    /// which is legitimate; a panic never is.
    fn drive(member: &mut RaftMember<Counter>, inputs: &[Vec<u8>]) -> bool {
        for input in inputs {
            let _ = member.step(input);
            if member.handle_ready().is_err() {
                return false;
            }
            member.tick();
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(inputs in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
            let mut member = follower();
            drive(&mut member, &inputs);
        }

        #[test]
        fn mutated_appends_never_panic(edits in proptest::collection::vec(
            (any::<usize>(), any::<u8>(), any::<bool>()), 1..8)) {
            // Valid protobuf bytes with some bytes flipped or the tail cut: decode + validate
            // (+ step when accepted) must refuse or take them, never panic.
            let mut input = bytes(&valid_append(3));
            for (position, value, cut) in edits {
                if input.is_empty() {
                    break;
                }
                let at = position % input.len();
                if cut {
                    input.truncate(at);
                } else {
                    input[at] ^= value | 1;
                }
            }
            let mut member = follower();
            drive(&mut member, &[input]);
        }

        #[test]
        fn arbitrary_messages_never_panic_a_follower(
            messages in proptest::collection::vec(arbitrary_message(), 1..10)) {
            let mut member = follower();
            // First make it follow leader 2 with a committed log, so there is something to
            // contradict.
            member.step(&bytes(&valid_append(5))).expect("append");
            member.handle_ready().expect("ready");
            let inputs: Vec<Vec<u8>> = messages.iter().map(bytes).collect();
            drive(&mut member, &inputs);
        }

        #[test]
        fn arbitrary_messages_never_panic_a_leader(
            messages in proptest::collection::vec(arbitrary_message(), 1..10)) {
            let mut members = group_led_by_1();
            let inputs: Vec<Vec<u8>> = messages.iter().map(bytes).collect();
            drive(&mut members[0], &inputs);
        }
    }
}
