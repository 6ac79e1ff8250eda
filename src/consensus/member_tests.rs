//! Unit tests of [`RaftMember`](super::RaftMember): a single-node group, and reads on a three-node one.

use super::*;
use crate::consensus::output::{OutgoingMessage, ReadyOutput};
use crate::consensus::test_counter::Counter;
use crate::consensus::SimDisk;

fn config() -> MemberConfig {
    MemberConfig {
        snapshot_every_entries: 4,
        ..MemberConfig::new(1)
    }
}

/// Ticks until the single member leads, collecting its outputs.
fn elect(replica: &mut RaftMember<Counter>) {
    for _ in 0..100 {
        replica.tick();
        replica.handle_ready().expect("ready");
        if replica.leadership().is_leader {
            return;
        }
    }
    panic!("a single-node group must elect itself");
}

#[test]
fn single_node_applies_proposals_snapshots_and_restarts() {
    let disk = SimDisk::new();
    let storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    let mut replica =
        RaftMember::bootstrap(config(), storage, Counter::default(), &[1]).expect("bootstrap");
    elect(&mut replica);
    let mut results = Vec::new();
    for (proposal_id, amount) in (1..=10).zip(1..=10u64) {
        replica.propose(proposal_id, &amount).expect("propose");
        let output = replica.handle_ready().expect("ready");
        results.extend(
            output
                .applied
                .into_iter()
                .map(|applied| (applied.proposal_id, applied.result.expect("applies"))),
        );
    }
    assert_eq!(results.last(), Some(&(10, 55)));
    assert_eq!(results.len(), 10);
    assert!(
        replica.storage().snapshot_metadata().index > 1,
        "snapshots are taken every 4 entries"
    );

    // Restart from disk: the state comes back from the snapshot plus replayed entries, and
    // replayed results of the previous run are not reported as ours.
    drop(replica);
    let storage = RedbStorage::open_with_backend(disk.backend()).expect("reopen");
    let mut replica = RaftMember::restart(config(), storage, Counter::default()).expect("restart");
    let output = replica.handle_ready().expect("ready");
    assert!(output.applied.is_empty());
    assert_eq!(replica.state_machine().total, 55);
}

#[test]
fn malformed_and_misaddressed_messages_are_errors() {
    let disk = SimDisk::new();
    let storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    let mut replica =
        RaftMember::bootstrap(config(), storage, Counter::default(), &[1]).expect("bootstrap");
    assert!(matches!(
        replica.step(&[0xff, 0xff, 0xff, 0xff]),
        Err(MemberError::MalformedMessage(_))
    ));
    let mut message = Message::default();
    message.set_to(7);
    message.set_from(2);
    let bytes = message.write_to_bytes().expect("encodes");
    assert!(matches!(
        replica.step(&bytes),
        Err(MemberError::MisaddressedMessage { to: 7, id: 1 })
    ));
}

#[test]
fn a_message_claiming_another_sender_than_its_envelope_is_refused_unstepped() {
    let disk = SimDisk::new();
    let storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    let mut replica =
        RaftMember::bootstrap(config(), storage, Counter::default(), &[1, 2, 3]).expect("boot");
    // A vote request claiming to come from member 3, in an envelope certified as member 2's.
    let mut message = Message::default();
    message.set_msg_type(raft::eraftpb::MessageType::MsgRequestVote);
    message.set_to(1);
    message.set_from(3);
    message.set_term(5);
    let bytes = message.write_to_bytes().expect("encodes");
    let term_before = replica.leadership().term;
    assert!(matches!(
        replica.step_from(2, &bytes),
        Err(MemberError::InvalidPeerMessage {
            reason: crate::consensus::InvalidPeerMessage::SenderMismatch {
                envelope: 2,
                message: 3
            },
            ..
        })
    ));
    assert_eq!(
        replica.leadership().term,
        term_before,
        "never stepped: no term change"
    );
    // The same message in an envelope of its own sender is stepped (raft takes the term).
    replica.step_from(3, &bytes).expect("stepped");
    assert_eq!(replica.leadership().term, 5);
}

#[test]
fn followers_refuse_proposals_and_used_storage_refuses_bootstrap() {
    let disk = SimDisk::new();
    let storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    let mut replica =
        RaftMember::bootstrap(config(), storage, Counter::default(), &[1, 2, 3]).expect("boot");
    assert!(matches!(
        replica.propose(1, &5),
        Err(MemberError::NotLeader { leader_id: None })
    ));
    drop(replica);
    let storage = RedbStorage::open_with_backend(disk.backend()).expect("reopen");
    assert!(matches!(
        RaftMember::bootstrap(config(), storage, Counter::default(), &[1]),
        Err(MemberError::StorageNotEmpty)
    ));
}

/// Delivers messages one at a time (FIFO) until none are left; `on_output(replica index,
/// output)` sees every Ready output. Returns when the network is quiet.
fn pump(
    replicas: &mut [RaftMember<Counter>],
    queue: &mut std::collections::VecDeque<OutgoingMessage>,
    mut on_output: impl FnMut(&mut [RaftMember<Counter>], usize, &ReadyOutput<u64>),
) {
    while let Some(message) = queue.pop_front() {
        let index = (message.to - 1) as usize;
        replicas[index].step(&message.bytes).expect("step");
        let output = replicas[index].handle_ready().expect("ready");
        on_output(replicas, index, &output);
        queue.extend(output.messages.iter().cloned());
    }
}

#[test]
fn a_read_asked_of_a_just_elected_leader_is_answered_after_its_first_commit() {
    let mut replicas: Vec<RaftMember<Counter>> =
        crate::consensus::test_counter::bootstrapped_group(&[
            SimDisk::new(),
            SimDisk::new(),
            SimDisk::new(),
        ]);
    // Only replica 1 ticks, so it starts the election.
    let mut queue = std::collections::VecDeque::new();
    while queue.is_empty() {
        replicas[0].tick();
        let output = replicas[0].handle_ready().expect("ready");
        queue.extend(output.messages);
    }
    let mut asked = false;
    let mut answered = false;
    pump(&mut replicas, &mut queue, |replicas, index, output| {
        if index == 0 {
            answered |= output.reads_ready.contains(&42);
            if !asked && replicas[0].leadership().is_leader {
                // Elected, but the entry of its term is not committed yet (raft-rs would
                // drop a ReadIndex now).
                asked = true;
                replicas[0].read_index(42);
            }
        }
    });
    // The read was asked inside a Ready; the replica says it has more to do.
    let mut rounds = 0;
    while !answered && rounds < 10 {
        rounds += 1;
        let output = replicas[0].handle_ready().expect("ready");
        answered |= output.reads_ready.contains(&42);
        queue.extend(output.messages);
        pump(&mut replicas, &mut queue, |_, index, output| {
            answered |= index == 0 && output.reads_ready.contains(&42);
        });
    }
    assert!(asked, "replica 1 was elected");
    assert!(answered, "the read was answered, not dropped");
}

#[test]
fn a_survivor_forced_into_a_new_cluster_keeps_its_state_and_leads_alone() {
    let disks: Vec<SimDisk> = (1..=3).map(|_| SimDisk::new()).collect();
    let mut replicas = crate::consensus::test_counter::bootstrapped_group(&disks);
    let mut queue = std::collections::VecDeque::new();
    while !replicas[0].leadership().is_leader {
        replicas[0].tick();
        let output = replicas[0].handle_ready().expect("ready");
        queue.extend(output.messages);
        pump(&mut replicas, &mut queue, |_, _, _| {});
    }
    for (proposal_id, amount) in (1..=5).zip([1u64, 2, 3, 4, 5]) {
        replicas[0].propose(proposal_id, &amount).expect("propose");
        let output = replicas[0].handle_ready().expect("ready");
        queue.extend(output.messages);
        pump(&mut replicas, &mut queue, |_, _, _| {});
    }
    assert_eq!(replicas[0].state_machine().total, 15);

    // Managers 2 and 3 are gone for good; 1 restarts as a cluster of its own.
    replicas.truncate(1);
    drop(replicas);
    let mut storage = RedbStorage::open_with_backend(disks[0].backend()).expect("reopen");
    let forced = storage.force_new_cluster(1).expect("forced");
    assert_eq!(forced.removed, vec![2, 3]);
    let mut survivor =
        RaftMember::restart(MemberConfig::new(1), storage, Counter::default()).expect("restart");
    for _ in 0..100 {
        survivor.tick();
        survivor.handle_ready().expect("ready");
        if survivor.leadership().is_leader {
            break;
        }
    }
    assert!(
        survivor.leadership().is_leader,
        "a group of one elects itself"
    );
    assert_eq!(survivor.voters(), &[1]);
    assert_eq!(survivor.state_machine().total, 15, "all state kept");
    survivor.propose(6, &100u64).expect("propose");
    let output = survivor.handle_ready().expect("ready");
    let applied: Vec<_> = output
        .applied
        .iter()
        .map(|applied| {
            (
                applied.proposal_id,
                applied.result.clone().expect("applies"),
            )
        })
        .collect();
    assert_eq!(applied, vec![(6, 115)], "writes commit with one member");
}

#[test]
fn a_new_leader_is_caught_up_only_once_an_entry_of_its_term_is_applied() {
    let mut replicas: Vec<RaftMember<Counter>> =
        crate::consensus::test_counter::bootstrapped_group(&[
            SimDisk::new(),
            SimDisk::new(),
            SimDisk::new(),
        ]);
    let mut queue = std::collections::VecDeque::new();
    let mut reports = Vec::new();
    while queue.is_empty() {
        replicas[0].tick();
        let output = replicas[0].handle_ready().expect("ready");
        reports.extend(output.leadership_change);
        queue.extend(output.messages);
    }
    pump(&mut replicas, &mut queue, |replicas, index, output| {
        if index == 0 {
            if let Some(change) = output.leadership_change {
                // Whenever it says caught up, the applied entry is of its term.
                if change.caught_up {
                    let raft = &replicas[0].raw_node.raft;
                    let applied = replicas[0].applied_index;
                    assert_eq!(raft.raft_log.term(applied).ok(), Some(change.term));
                }
                reports.push(change);
            }
        }
    });
    let leading: Vec<_> = reports.iter().filter(|r| r.is_leader).collect();
    assert!(
        leading.len() >= 2,
        "elected, then caught up, reported apart: {reports:?}"
    );
    assert!(!leading[0].caught_up, "not caught up when first elected");
    assert!(leading.last().is_some_and(|r| r.caught_up));
    assert!(reports.iter().all(|r| !r.caught_up || r.is_leader));
}

#[test]
fn a_read_asked_before_any_leader_is_known_is_answered_once_one_is() {
    let mut replicas = crate::consensus::test_counter::bootstrapped_group(&[
        SimDisk::new(),
        SimDisk::new(),
        SimDisk::new(),
    ]);
    // Member 2 is asked first, with no leader anywhere (as after a restart of its actor).
    replicas[1].read_index(7);
    let mut answered = replicas[1]
        .handle_ready()
        .expect("ready")
        .reads_ready
        .contains(&7);
    let mut queue = std::collections::VecDeque::new();
    for _ in 0..200 {
        if answered {
            break;
        }
        replicas[0].tick();
        let output = replicas[0].handle_ready().expect("ready");
        queue.extend(output.messages);
        pump(&mut replicas, &mut queue, |_, index, output| {
            answered |= index == 1 && output.reads_ready.contains(&7);
        });
        // The follower drives its own held reads when it has more to do.
        while replicas[1].has_ready() {
            let output = replicas[1].handle_ready().expect("ready");
            answered |= output.reads_ready.contains(&7);
            queue.extend(output.messages);
            pump(&mut replicas, &mut queue, |_, index, output| {
                answered |= index == 1 && output.reads_ready.contains(&7);
            });
        }
    }
    assert!(replicas[0].leadership().is_leader);
    assert!(answered, "the held read was answered, not dropped");
}
