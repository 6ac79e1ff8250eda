//! Gossip benchmark: the seeded simulation of `core::gossip::sim` (the real state machine on
//! every node, a simulated LAN with 0.2-2 ms latency and 0.5 % loss, a simulated clock).
//!
//! `cargo run --release --example bench_gossip [-- NODES...]` (default: 100 and 1000) prints
//! one JSON object per cluster size: how long (simulated seconds) after every node started
//! within 1 s each node knew 99 % of the others, and all of them, how long a 30 KiB table announced by a seed took to
//! reach every node, how long until every survivor declared a killed node down, and the
//! steady gossip traffic per node. `FLOTILLA_SEED` picks the run (default 1).

use std::time::{Duration, Instant};

use flotilla::core::gossip::sim::{SimConfig, Simulation};
use flotilla::core::gossip::MemberState;

/// The table's size: a routing table of a few hundred services and endpoints.
const TABLE_BYTES: usize = 30 * 1024;
/// Steady-state traffic is measured over this much simulated time.
const STEADY_WINDOW: Duration = Duration::from_secs(10);

fn seconds(duration: Option<Duration>) -> serde_json::Value {
    duration.map_or(serde_json::Value::Null, |d| d.as_secs_f64().into())
}

/// Whether every node counts at least `share` of the other nodes as active.
fn knows_at_least(simulation: &Simulation, share: f64) -> bool {
    let others = simulation.len().saturating_sub(1) as f64;
    (0..simulation.len()).all(|i| simulation.node(i).active_members() as f64 >= share * others)
}

fn run(nodes: usize, seed: u64) -> serde_json::Value {
    let wall = Instant::now();
    let mut simulation = Simulation::new(SimConfig::lan(nodes, seed));
    // Every node knows 99 % of the others; then every node knows all of them.
    let most = simulation.run_until(Duration::from_secs(120), Duration::from_millis(100), |s| {
        s.live() == nodes && knows_at_least(s, 0.99)
    });
    let rest = simulation.run_until(Duration::from_secs(300), Duration::from_millis(500), |s| {
        s.membership_converged()
    });
    let membership = most.zip(rest).map(|(most, rest)| most + rest);
    simulation.reset_traffic();
    simulation.run_for(STEADY_WINDOW);
    let steady = simulation.traffic();
    simulation.reset_traffic();
    simulation.announce_table(0, 1, TABLE_BYTES);
    let table = simulation.run_until(Duration::from_secs(60), Duration::from_millis(10), |s| {
        s.table_converged(1)
    });
    let spread = simulation.traffic();
    let victim = nodes - 1;
    simulation.kill(victim);
    let down = simulation.run_until(Duration::from_secs(120), Duration::from_millis(100), |s| {
        s.seen_as(victim, MemberState::Down) == s.live()
    });
    serde_json::json!({
        "bench": "gossip",
        "seed": seed,
        "nodes": nodes,
        "membership_99pct_s": seconds(most),
        "membership_converged_s": seconds(membership),
        "table_bytes": TABLE_BYTES,
        "table_converged_s": seconds(table),
        "table_fetches": spread.fetches,
        "killed_node_down_everywhere_s": seconds(down),
        "packets_per_node_per_s": steady.packets_per_node_per_s(nodes),
        "bytes_per_node_per_s": steady.bytes_per_node_per_s(nodes),
        "refused_packets": simulation.refused(),
        "wall_s": wall.elapsed().as_secs_f64(),
    })
}

fn main() {
    let seed = std::env::var("FLOTILLA_SEED")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(1);
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000]
    } else {
        sizes
    };
    for nodes in sizes {
        println!("{}", run(nodes, seed));
    }
}
