//! Seeded, replayable simulation of Raft groups built from the real `RaftMember` and
//! `RedbStorage` (on a crashable simulated disk), over a lossy, partitionable network.
//!
//! One `u64` seed decides everything; time is a step counter. A failing seed prints
//! `replay with FLOTILLA_SEED=<seed>`; `FLOTILLA_SEED=<seed> cargo test --test raft_sim` runs
//! just that seed. See `docs/raft.md`.

#[path = "raft_sim/cluster.rs"]
mod cluster;
#[path = "raft_sim/kv.rs"]
mod kv;
#[path = "raft_sim/linearizability.rs"]
mod linearizability;
#[path = "raft_sim/network.rs"]
mod network;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use cluster::{Simulation, Stats};

/// Seeds run by the normal test suite.
const SEEDS_QUICK: u64 = 200;
/// Seeds run by the ignored long test.
const SEEDS_LONG: u64 = 5_000;
/// Where the long run starts, so it does not repeat the quick seeds.
const SEED_BASE_LONG: u64 = 1_000_000;

fn run_seed(seed: u64) -> Stats {
    let outcome = catch_unwind(AssertUnwindSafe(|| Simulation::new(seed)?.run()));
    match outcome {
        Ok(Ok(stats)) => stats,
        Ok(Err(failure)) => {
            panic!("seed {seed} failed: {failure}\nreplay with FLOTILLA_SEED={seed}")
        }
        Err(_) => panic!("seed {seed} panicked (see above)\nreplay with FLOTILLA_SEED={seed}"),
    }
}

fn run_seeds(seeds: impl Iterator<Item = u64>) {
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in seeds {
        total.add(&run_seed(seed));
    }
    println!("raft_sim: {total:?} in {:.1?}", started.elapsed());
}

/// `FLOTILLA_SEED`, if set, replaces the seed range.
fn replay_seed() -> Option<u64> {
    let value = std::env::var("FLOTILLA_SEED").ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("FLOTILLA_SEED={value} is not a u64")),
    )
}

#[test]
fn simulated_raft_groups_stay_safe_and_converge() {
    match replay_seed() {
        Some(seed) => run_seeds(seed..=seed),
        None => run_seeds(0..SEEDS_QUICK),
    }
}

#[test]
#[ignore = "long run: cargo nextest run --test raft_sim --run-ignored only"]
fn simulated_raft_groups_long_run() {
    match replay_seed() {
        Some(seed) => run_seeds(seed..=seed),
        None => run_seeds(SEED_BASE_LONG..SEED_BASE_LONG + SEEDS_LONG),
    }
}
