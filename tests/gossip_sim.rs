//! The gossip state machine on many simulated nodes (`core::gossip::sim`): membership
//! converges after every node starts within 1 s, a table announced by a seed reaches every
//! node, and a killed node is declared down by every survivor, each within a bound.
//!
//! One seed decides the run: `FLOTILLA_SEED=<seed> cargo test --test gossip_sim` replays it.
//! 200 nodes run in CI; the 1,000-node run is `#[ignore]`d (slow in debug builds):
//! `cargo test --release --test gossip_sim -- --ignored`. Measured numbers: see
//! `docs/gossip.md` and `examples/bench_gossip.rs`.

use std::time::Duration;

use flotilla::core::gossip::sim::{SimConfig, Simulation};
use flotilla::core::gossip::MemberState;

fn seed() -> u64 {
    std::env::var("FLOTILLA_SEED")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(17)
}

/// Generous bounds (simulated time); the measured numbers are far below them.
struct Bounds {
    /// The share of the other nodes every node must know (1.0: exactly the live nodes).
    share: f64,
    membership: Duration,
    table: Duration,
    down: Duration,
}

/// Whether every node counts at least `share` of the other nodes as active.
fn knows_at_least(simulation: &Simulation, share: f64) -> bool {
    let others = simulation.len().saturating_sub(1) as f64;
    (0..simulation.len()).all(|i| simulation.node(i).active_members() as f64 >= share * others)
}

fn converges(nodes: usize, bounds: Bounds) {
    let share = bounds.share;
    let seed = seed();
    let replay = format!("replay with FLOTILLA_SEED={seed}");
    let mut simulation = Simulation::new(SimConfig::lan(nodes, seed));
    let membership = simulation
        .run_until(bounds.membership, Duration::from_millis(100), |s| {
            s.live() == nodes
                && if bounds.share >= 1.0 {
                    s.membership_converged()
                } else {
                    knows_at_least(s, bounds.share)
                }
        })
        .unwrap_or_else(|| panic!("{nodes} nodes: membership did not converge; {replay}"));
    simulation.announce_table(0, 1, 30 * 1024);
    let table = simulation
        .run_until(bounds.table, Duration::from_millis(10), |s| {
            s.table_converged(1)
        })
        .unwrap_or_else(|| panic!("{nodes} nodes: the table did not spread; {replay}"));
    let victim = nodes - 1;
    simulation.kill(victim);
    let down = simulation
        .run_until(bounds.down, Duration::from_millis(100), |s| {
            s.seen_as(victim, MemberState::Down) == s.live()
        })
        .unwrap_or_else(|| {
            panic!("{nodes} nodes: the killed node is not down everywhere; {replay}")
        });
    assert_eq!(
        simulation.refused(),
        0,
        "no packet refused in a healthy run; {replay}"
    );
    println!(
        "gossip_sim: {nodes} nodes, seed {seed}: membership ({} % known) {membership:?}, \
         table {table:?}, down everywhere {down:?}",
        share * 100.0
    );
}

#[test]
fn two_hundred_nodes_converge_on_membership_and_a_table() {
    converges(
        200,
        Bounds {
            share: 1.0,
            membership: Duration::from_secs(150),
            table: Duration::from_secs(5),
            down: Duration::from_secs(30),
        },
    );
}

#[test]
#[ignore = "slow in debug builds: run with --release -- --ignored"]
fn a_thousand_nodes_converge_on_membership_and_a_table() {
    converges(
        1_000,
        Bounds {
            // Full membership takes minutes at this size (see docs/gossip.md); 99 % is what
            // the bound holds.
            share: 0.99,
            membership: Duration::from_secs(60),
            table: Duration::from_secs(10),
            down: Duration::from_secs(60),
        },
    );
}
