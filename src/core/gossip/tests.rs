//! Unit tests of the gossip state machine, over the seeded simulation and by hand.

use std::sync::Arc;
use std::time::Duration;

use super::sim::{SimConfig, Simulation};
use super::*;

fn id(name: &str, port: u16) -> GossipId {
    GossipId::new(name, std::net::SocketAddr::from(([127, 0, 0, 1], port)), 1)
}

/// Two nodes, `a` announced to `b`; packets are carried by hand until both are quiet.
fn pair() -> (Gossip, Gossip) {
    let mut a = Gossip::new(id("a", 1), GossipConfig::default(), 1);
    let mut b = Gossip::new(id("b", 2), GossipConfig::default(), 2);
    a.announce_to(b.identity().clone()).expect("announce");
    exchange(&mut a, &mut b);
    (a, b)
}

fn exchange(a: &mut Gossip, b: &mut Gossip) {
    for _ in 0..10 {
        let from_a = a.take_effects().packets;
        let from_b = b.take_effects().packets;
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        for (_, packet) in from_a {
            let _ = b.handle_packet("a", &packet);
        }
        for (_, packet) in from_b {
            let _ = a.handle_packet("b", &packet);
        }
    }
}

#[test]
fn an_announce_makes_two_nodes_members_of_each_other() {
    let (a, b) = pair();
    assert_eq!(a.state_of("b"), Some(MemberState::Alive));
    assert_eq!(b.state_of("a"), Some(MemberState::Alive));
    assert_eq!(b.view().members.len(), 1);
}

#[test]
fn a_packet_claiming_another_sender_is_refused_and_changes_nothing() {
    let (mut a, mut b) = pair();
    let _ = a.take_effects();
    a.announce_to(id("c", 3)).expect("announce");
    let (_, packet) = a.take_effects().packets.pop().expect("a packet");
    let before = b.view();
    let error = b.handle_packet("c", &packet).expect_err("impostor");
    assert!(
        matches!(&error, GossipError::ImpostorSender { certificate, claimed }
            if certificate == "c" && claimed == "a"),
        "{error}"
    );
    assert_eq!(b.view(), before);
    assert!(b.take_effects().is_empty(), "nothing to do after a refusal");
    assert!(matches!(
        b.handle_packet("a", &[1, 2, 3]),
        Err(GossipError::Malformed(_))
    ));
    // The real sender is still heard.
    let _ = a.take_effects();
    a.announce_to(b.identity().clone()).expect("announce");
    exchange(&mut a, &mut b);
    assert_eq!(b.state_of("a"), Some(MemberState::Alive));
}

#[test]
fn a_removed_member_is_refused_and_declared_down() {
    let (mut a, mut b) = pair();
    b.remove_member("a");
    assert_eq!(b.state_of("a"), Some(MemberState::Down));
    let _ = a.take_effects();
    a.announce_to(b.identity().clone()).expect("announce");
    let (_, packet) = a.take_effects().packets.pop().expect("a packet");
    assert!(matches!(
        b.handle_packet("a", &packet),
        Err(GossipError::RemovedSender(_))
    ));
}

#[test]
fn a_table_is_announced_once_per_version_and_fetched_by_the_peer() {
    let (mut a, mut b) = pair();
    let bytes: Arc<[u8]> = vec![7u8; 40_000].into();
    assert!(a.announce_table(5, bytes.clone()));
    assert!(!a.announce_table(5, bytes.clone()), "same version");
    assert!(!a.announce_table(4, bytes.clone()), "older version");
    assert_eq!(std::mem::take(&mut a.effects.learned).len(), 1);
    // The announcement goes out at once, without waiting for a round of gossip.
    exchange_keep_fetches(&mut a, &mut b);
    let fetch = b.effects.fetches.pop().expect("b fetches");
    assert_eq!(fetch.version, 5);
    assert_eq!(fetch.from.node_id, a.identity().node_id);
    let served = a.serve_fetch(fetch.version);
    assert!(a.serve_fetch(6).is_none());
    b.handle_fetch_reply(&fetch.from, served);
    let effects = b.take_effects();
    assert_eq!(effects.learned.len(), 1);
    assert_eq!(b.latest_table().map(|t| t.bytes.len()), Some(40_000));
    assert_eq!(b.view().table_version, Some(5));
}

fn exchange_keep_fetches(a: &mut Gossip, b: &mut Gossip) {
    let from_a = std::mem::take(&mut a.effects.packets);
    for (_, packet) in from_a {
        let _ = b.handle_packet("a", &packet);
    }
    let from_b = std::mem::take(&mut b.effects.packets);
    for (_, packet) in from_b {
        let _ = a.handle_packet("b", &packet);
    }
}

#[test]
fn a_failed_fetch_tries_another_peer_after_the_retry_delay() {
    let mut simulation = Simulation::new(SimConfig::lan(5, 11));
    let settled = simulation.run_until(Duration::from_secs(20), Duration::from_millis(50), |s| {
        s.membership_converged()
    });
    assert!(settled.is_some(), "five nodes settle");
    // The origin dies right after announcing: the others must get it from each other.
    simulation.announce_table(0, 9, 10_000);
    simulation.run_for(Duration::from_millis(1));
    simulation.kill(0);
    let fetched = simulation.run_until(Duration::from_secs(20), Duration::from_millis(10), |s| {
        s.table_converged(9)
    });
    // Some node may have heard only from the dead origin, before a relay: then nobody has
    // it and that is fine; but whoever got it serves the rest.
    if fetched.is_none() {
        let holders = (1..5)
            .filter(|i| simulation.node(*i).table_version() == Some(9))
            .count();
        assert_eq!(
            holders, 0,
            "some have it, but not all: relays failed to serve"
        );
    }
}

#[test]
fn a_small_cluster_converges_and_notices_a_death() {
    let mut simulation = Simulation::new(SimConfig::lan(8, 3));
    let joined = simulation.run_until(Duration::from_secs(20), Duration::from_millis(50), |s| {
        s.membership_converged()
    });
    assert!(joined.is_some(), "eight nodes see each other");
    simulation.announce_table(1, 42, 30_000);
    let spread = simulation.run_until(Duration::from_secs(10), Duration::from_millis(10), |s| {
        s.table_converged(42)
    });
    assert!(spread.is_some(), "the table reaches everyone");
    simulation.kill(5);
    let noticed = simulation.run_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
        s.seen_as(5, MemberState::Down) == s.live()
    });
    assert!(noticed.is_some(), "everyone declares the dead node down");
    assert_eq!(simulation.refused(), 0);
}
