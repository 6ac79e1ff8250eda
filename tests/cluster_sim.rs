//! Seeded, replayable simulation of a whole Flotilla cluster (VOPR-style): three managers
//! running the real `RaftMember<StoreMachine>` on crashable simulated disks, the leader-only
//! components calling the same `flotilla::core` logic as the actors, workers with a simulated
//! container runtime, an admin client, and a faulty network. No sockets, threads, wall clock
//! or OS randomness: one `u64` seed decides everything, so a failing seed replays exactly.
//!
//! A failure prints the seed and `replay with FLOTILLA_SEED=<seed> cargo nextest run -E
//! 'test(cluster_sim)'`; `FLOTILLA_SIM_TRACE=1` prints the run's events. See
//! `docs/simulation.md`.

#[path = "cluster_sim/admin.rs"]
mod admin;
#[path = "cluster_sim/checks.rs"]
mod checks;
#[path = "cluster_sim/leader.rs"]
mod leader;
#[path = "cluster_sim/manager.rs"]
mod manager;
#[path = "cluster_sim/messages.rs"]
mod messages;
#[path = "cluster_sim/network.rs"]
mod network;
#[path = "cluster_sim/planning.rs"]
mod planning;
#[path = "cluster_sim/sim.rs"]
mod sim;
#[path = "cluster_sim/worker.rs"]
mod worker;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use sim::{Simulation, Stats};

/// Seeds run by the normal test suite.
const SEEDS_QUICK: u64 = 200;
/// Seeds run by the ignored long test, from a base that does not repeat the quick ones.
const SEEDS_LONG: u64 = 10_000;
const SEED_BASE_LONG: u64 = 1_000_000;

fn replay_hint(seed: u64) -> String {
    format!("replay with FLOTILLA_SEED={seed} cargo nextest run -E 'test(cluster_sim)'")
}

/// Runs one seed; `Err` carries the failure and the replay line.
fn run_seed(seed: u64, record_digest: bool) -> Result<(Stats, u64), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Simulation::new(seed, record_digest)?.run()
    }));
    match outcome {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(failure)) => Err(format!(
            "seed {seed} failed: {failure}\n{}",
            replay_hint(seed)
        )),
        Err(_) => Err(format!(
            "seed {seed} panicked (see above)\n{}",
            replay_hint(seed)
        )),
    }
}

/// Runs every seed (a failure does not stop the others, so one run lists them all), prints
/// the stats line, and fails with the failing seeds.
fn run_seeds(seeds: impl Iterator<Item = u64>) {
    let started = Instant::now();
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for seed in seeds {
        match run_seed(seed, false) {
            Ok((stats, _)) => total.add(&stats),
            Err(failure) => {
                eprintln!("{failure}");
                failures.push(failure);
            }
        }
    }
    let elapsed = started.elapsed();
    let runs = total.runs + failures.len() as u64;
    println!(
        "cluster_sim: {runs} runs ({} failed) in {elapsed:.1?} ({:.0?} per seed): leaders elected {}, manager crashes {}, worker crashes {}, partitions {}, tasks started {}, task crashes {}, ops acked {} / unknown {} / rejected {}, nodes removed {} (learned {}), proposals {}, messages {}, converged after {} ms on average ({} ms at most), known lost node updates {}, rollouts completed {} / paused {}",
        failures.len(),
        elapsed / runs.max(1) as u32,
        total.leaders_elected,
        total.manager_crashes,
        total.worker_crashes,
        total.partitions,
        total.tasks_started,
        total.task_crashes,
        total.ops_acked,
        total.ops_unknown,
        total.ops_rejected,
        total.nodes_removed,
        total.removals_learned,
        total.proposals,
        total.messages_sent,
        total.converge_ms_total / total.runs.max(1),
        total.converge_ms_max,
        total.known_lost_node_updates,
        total.rollouts_completed,
        total.rollouts_paused,
    );
    assert!(
        failures.is_empty(),
        "{} of {runs} seeds failed; the first:\n{}",
        failures.len(),
        failures[0]
    );
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
fn cluster_sim_seeds() {
    match replay_seed() {
        Some(seed) => run_seeds(seed..=seed),
        None => run_seeds(0..SEEDS_QUICK),
    }
}

#[test]
#[ignore = "long run: cargo nextest run --cargo-profile release --run-ignored ignored-only -E 'test(cluster_sim_long_run)'"]
fn cluster_sim_long_run() {
    match replay_seed() {
        Some(seed) => run_seeds(seed..=seed),
        None => run_seeds(SEED_BASE_LONG..SEED_BASE_LONG + SEEDS_LONG),
    }
}

/// A seed replays exactly: the digest of its whole trace (every message delivered, every
/// command proposed) is the same on a second run.
#[test]
fn cluster_sim_replays_exactly() {
    let seed = replay_seed().unwrap_or(7);
    let (first_stats, first) = run_seed(seed, true).unwrap_or_else(|failure| panic!("{failure}"));
    let (second_stats, second) = run_seed(seed, true).unwrap_or_else(|failure| panic!("{failure}"));
    assert_ne!(first, 0, "the digest covers something");
    let (_, other) = run_seed(seed + 1, true).unwrap_or_else(|failure| panic!("{failure}"));
    assert_ne!(first, other, "another seed makes another trace");
    assert_eq!(
        first, second,
        "seed {seed} did not replay exactly ({first_stats:?} vs {second_stats:?})"
    );
}
