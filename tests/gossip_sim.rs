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
    membership: Duration,
    table: Duration,
    down: Duration,
}

fn converges(nodes: usize, bounds: Bounds) {
    let seed = seed();
    let replay = format!("replay with FLOTILLA_SEED={seed}");
    let mut simulation = Simulation::new(SimConfig::lan(nodes, seed));
    let membership = simulation
        .run_until(bounds.membership, Duration::from_millis(100), |s| {
            s.live() == nodes && s.membership_converged()
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
        "gossip_sim: {nodes} nodes, seed {seed}: membership {membership:?}, table {table:?}, \
         down everywhere {down:?}"
    );
}

#[test]
fn two_hundred_nodes_converge_on_membership_and_a_table() {
    converges(
        200,
        Bounds {
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
            membership: Duration::from_secs(300),
            table: Duration::from_secs(10),
            down: Duration::from_secs(60),
        },
    );
}
