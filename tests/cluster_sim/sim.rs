//! One simulated run of a whole cluster: three managers (real `RaftMember<StoreMachine>` on
//! crashable `SimDisk`s) with the leader-only components, workers with a simulated container
//! runtime, an admin client, a faulty network, and the invariant checks. One seeded
//! generator and a millisecond clock decide everything, so a seed replays exactly.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use flotilla::consensus::{MemberConfig, RaftMember, RedbStorage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::admin::AdminClient;
use crate::manager::Manager;
use crate::messages::Payload;
use crate::network::{Addr, Network, NetworkFaults};
use crate::worker::Worker;

/// One step of the simulation.
pub const STEP_MS: u64 = 10;
/// Raft ticks every this long: elections take 10-20 ticks.
pub const RAFT_TICK_MS: u64 = 50;
/// Workers heartbeat this often; three missed periods mark a node down.
pub const HEARTBEAT_PERIOD_MS: u64 = 200;
/// Faults happen for this long, then the network heals and every node restarts.
pub const CHAOS_MS: u64 = 20_000;
/// The quiet phase ends when the cluster converged, or fails after this long. It must cover
/// the longest restart backoff (30 s) plus a few elections.
pub const QUIET_MS_MAX: u64 = 60_000;
/// The converged state must hold this long before the final checks.
pub const STABLE_MS: u64 = 2_000;
pub const MANAGERS: u64 = 3;
/// Worker `i` (1-based) is at address `WORKER_ADDR_BASE + i` and has node ID `w<i>`.
pub const WORKER_ADDR_BASE: Addr = 10;
pub const ADMIN_ADDR: Addr = 99;

pub type SimResult<T = ()> = Result<T, String>;

/// Counters summed over runs, to show the faults really happen.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub runs: u64,
    pub leaders_elected: u64,
    pub manager_crashes: u64,
    pub worker_crashes: u64,
    pub partitions: u64,
    pub tasks_started: u64,
    pub task_crashes: u64,
    pub ops_acked: u64,
    pub ops_unknown: u64,
    pub ops_rejected: u64,
    pub nodes_removed: u64,
    pub removals_learned: u64,
    pub messages_sent: u64,
    pub proposals: u64,
    /// Simulated milliseconds of the quiet phase until convergence, summed and at most.
    pub converge_ms_total: u64,
    pub converge_ms_max: u64,
    /// Runs where the known heartbeat-refresh overwrite lost an acknowledged node update.
    pub known_lost_node_updates: u64,
    /// Services whose last rollout ended completed (or rolled back) / paused, at the end.
    pub rollouts_completed: u64,
    pub rollouts_paused: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.runs += other.runs;
        self.leaders_elected += other.leaders_elected;
        self.manager_crashes += other.manager_crashes;
        self.worker_crashes += other.worker_crashes;
        self.partitions += other.partitions;
        self.tasks_started += other.tasks_started;
        self.task_crashes += other.task_crashes;
        self.ops_acked += other.ops_acked;
        self.ops_unknown += other.ops_unknown;
        self.ops_rejected += other.ops_rejected;
        self.nodes_removed += other.nodes_removed;
        self.removals_learned += other.removals_learned;
        self.messages_sent += other.messages_sent;
        self.proposals += other.proposals;
        self.converge_ms_total += other.converge_ms_total;
        self.converge_ms_max = self.converge_ms_max.max(other.converge_ms_max);
        self.known_lost_node_updates += other.known_lost_node_updates;
        self.rollouts_completed += other.rollouts_completed;
        self.rollouts_paused += other.rollouts_paused;
    }
}

/// Fault rates, fixed per seed so some seeds are gentle and some brutal.
#[derive(Debug, Clone)]
pub struct FaultRates {
    /// Per 10 s of simulated time.
    pub manager_crashes_per_10s: u32,
    pub worker_crashes_per_10s: u32,
    pub partitions_per_10s: u32,
    /// Chance per second that one running container dies.
    pub task_crash_per_mille_per_s: u32,
}

pub struct Simulation {
    pub rng: StdRng,
    pub now_ms: u64,
    pub chaos: bool,
    pub managers: Vec<Manager>,
    pub workers: Vec<Worker>,
    pub admin: AdminClient,
    pub network: Network,
    pub rates: FaultRates,
    pub snapshot_every_entries: u64,
    pub election_timeout_ticks: Vec<usize>,
    pub leaders_by_term: BTreeMap<u64, u64>,
    pub partition_heal_at_ms: Option<u64>,
    /// Acknowledged node removals and the log index they committed at.
    pub removed_at_index: BTreeMap<String, u64>,
    /// Log index of every acknowledged admin write, by attempt id.
    pub admin_index: BTreeMap<u64, u64>,
    pub stats: Stats,
    /// Digest of the whole trace (every delivered message, every proposal), when recorded.
    pub digest: Option<std::hash::DefaultHasher>,
    /// When the cluster was last seen converged without a break (quiet phase).
    pub converged_since_ms: Option<u64>,
}

fn tracing_enabled() -> bool {
    std::env::var_os("FLOTILLA_SIM_TRACE").is_some()
}

/// Prints a simulation event when `FLOTILLA_SIM_TRACE` is set (for replaying a seed).
macro_rules! trace {
    ($now:expr, $($arg:tt)*) => {
        if $crate::sim::tracing_enabled_pub() {
            eprintln!("[{:>6} ms] {}", $now, format!($($arg)*));
        }
    };
}
pub(crate) use trace;

pub fn tracing_enabled_pub() -> bool {
    tracing_enabled()
}

impl Simulation {
    pub fn new(seed: u64, record_digest: bool) -> SimResult<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let worker_count = rng.random_range(4..=5);
        let faults = NetworkFaults {
            drop_per_mille: rng.random_range(0..100),
            duplicate_per_mille: rng.random_range(0..50),
            delay_ms_max: rng.random_range(10..=60),
        };
        let rates = FaultRates {
            manager_crashes_per_10s: rng.random_range(0..6),
            worker_crashes_per_10s: rng.random_range(0..8),
            partitions_per_10s: rng.random_range(0..6),
            task_crash_per_mille_per_s: rng.random_range(0..100),
        };
        let snapshot_every_entries = [20, 200, 10_000][rng.random_range(0..3)];
        let election_timeout_ticks = (0..MANAGERS).map(|_| rng.random_range(10..20)).collect();
        let workers = (1..=worker_count)
            .map(|i| Worker::new(format!("w{i}"), WORKER_ADDR_BASE + i))
            .collect();
        let admin = AdminClient::new(worker_count);
        let mut simulation = Self {
            rng,
            now_ms: 0,
            chaos: true,
            managers: Vec::new(),
            workers,
            admin,
            network: Network::new(faults),
            rates,
            snapshot_every_entries,
            election_timeout_ticks,
            leaders_by_term: BTreeMap::new(),
            partition_heal_at_ms: None,
            removed_at_index: BTreeMap::new(),
            admin_index: BTreeMap::new(),
            stats: Stats {
                runs: 1,
                ..Stats::default()
            },
            digest: record_digest.then(std::hash::DefaultHasher::new),
            converged_since_ms: None,
        };
        let voters: Vec<u64> = (1..=MANAGERS).collect();
        for raft_id in 1..=MANAGERS {
            let mut manager = Manager::new(raft_id);
            let storage = RedbStorage::open_with_backend(manager.disk.backend())
                .map_err(|e| e.to_string())?;
            let machine = manager.fresh_machine();
            let replica = RaftMember::bootstrap(
                simulation.replica_config(raft_id),
                storage,
                machine,
                &voters,
            )
            .map_err(|e| format!("manager {raft_id} failed to start: {e}"))?;
            manager.replica = Some(replica);
            simulation.managers.push(manager);
        }
        Ok(simulation)
    }

    pub fn replica_config(&self, raft_id: u64) -> MemberConfig {
        let timeout = self.election_timeout_ticks[(raft_id - 1) as usize];
        MemberConfig {
            snapshot_every_entries: self.snapshot_every_entries,
            election_timeout_ticks: Some(timeout..timeout + 1),
            ..MemberConfig::new(raft_id)
        }
    }

    pub fn run(mut self) -> SimResult<(Stats, u64)> {
        let mut quiet_started_ms = None;
        loop {
            self.now_ms += STEP_MS;
            if self.now_ms <= CHAOS_MS {
                self.inject_faults()?;
            } else if quiet_started_ms.is_none() {
                quiet_started_ms = Some(self.now_ms);
                self.heal_everything();
            }
            self.restart_due_nodes()?;
            self.deliver_messages()?;
            if self.now_ms.is_multiple_of(RAFT_TICK_MS) {
                for manager in &mut self.managers {
                    if let Some(replica) = manager.replica.as_mut() {
                        // Clocks drift: a manager sometimes misses a tick.
                        if self.rng.random_range(0..100) < 95 {
                            replica.tick();
                        }
                    }
                }
            }
            for position in 0..self.managers.len() {
                self.handle_ready(position)?;
            }
            for position in 0..self.managers.len() {
                self.run_leader_components(position)?;
            }
            for position in 0..self.workers.len() {
                self.step_worker(position)?;
            }
            self.step_admin();
            self.check_always()?;
            if let Some(started) = quiet_started_ms {
                if self.track_convergence()? {
                    let converge_ms = self.now_ms - started - STABLE_MS;
                    self.stats.converge_ms_total = converge_ms;
                    self.stats.converge_ms_max = converge_ms;
                    break;
                }
                if self.now_ms - started > QUIET_MS_MAX {
                    return Err(format!(
                        "the cluster did not converge within {QUIET_MS_MAX} ms of quiet: {}",
                        self.convergence_gap().unwrap_err()
                    ));
                }
            }
        }
        self.final_checks()?;
        self.stats.messages_sent = self.network.sent;
        let digest = self.digest.as_ref().map_or(0, |d| d.finish());
        Ok((self.stats, digest))
    }

    /// Adds an event of the trace to the digest (when recorded).
    pub fn record(&mut self, what: &impl serde::Serialize, from: Addr, to: Addr) {
        if let Some(digest) = self.digest.as_mut() {
            self.now_ms.hash(digest);
            from.hash(digest);
            to.hash(digest);
            if let Ok(bytes) = bincode::serde::encode_to_vec(what, bincode::config::standard()) {
                bytes.hash(digest);
            }
        }
    }

    // ----- network -----

    pub fn send(&mut self, from: Addr, to: Addr, payload: Payload) -> bool {
        self.network
            .send(&mut self.rng, self.now_ms, from, to, payload)
    }

    fn deliver_messages(&mut self) -> SimResult {
        for delivery in self.network.deliver_due(self.now_ms) {
            if let Payload::Raft {
                carries_snapshot: true,
                ..
            } = &delivery.payload
            {
                let receiver_alive = self.manager_alive(delivery.to);
                if let Some(replica) = self.managers[(delivery.from - 1) as usize].replica.as_mut()
                {
                    replica.report_snapshot(delivery.to, receiver_alive && !delivery.lost);
                }
            }
            if delivery.lost {
                continue;
            }
            self.record(&delivery.payload, delivery.from, delivery.to);
            match delivery.to {
                to if (1..=MANAGERS).contains(&to) => {
                    self.manager_receive((to - 1) as usize, delivery.from, delivery.payload)?
                }
                ADMIN_ADDR => self.admin_receive(delivery.payload),
                to => {
                    let position = (to - WORKER_ADDR_BASE - 1) as usize;
                    self.worker_receive(position, delivery.payload)?;
                }
            }
        }
        Ok(())
    }

    pub fn manager_alive(&self, raft_id: u64) -> bool {
        self.managers
            .get((raft_id - 1) as usize)
            .is_some_and(|m| m.replica.is_some())
    }

    /// Every address, for partitions.
    fn all_addrs(&self) -> Vec<Addr> {
        let mut all: Vec<Addr> = (1..=MANAGERS).collect();
        all.extend(self.workers.iter().map(|w| w.addr));
        all.push(ADMIN_ADDR);
        all
    }

    // ----- faults -----

    /// Whether an event with `per_10s` occurrences per 10 simulated seconds happens this step.
    fn happens(&mut self, per_10s: u32) -> bool {
        per_10s > 0 && self.rng.random_range(0..10_000 / STEP_MS as u32) < per_10s
    }

    fn inject_faults(&mut self) -> SimResult {
        match self.partition_heal_at_ms {
            Some(heal_at) if self.now_ms >= heal_at => {
                trace!(self.now_ms, "partition healed");
                self.network.heal();
                self.partition_heal_at_ms = None;
            }
            Some(_) => {}
            None => {
                if self.happens(self.rates.partitions_per_10s) {
                    self.start_partition();
                }
            }
        }
        if self.happens(self.rates.manager_crashes_per_10s) {
            let alive: Vec<usize> = (0..self.managers.len())
                .filter(|&p| self.managers[p].replica.is_some())
                .collect();
            if !alive.is_empty() {
                let victim = alive[self.rng.random_range(0..alive.len())];
                let down_ms = if self.rng.random_bool(0.4) {
                    self.rng.random_range(20..300)
                } else {
                    self.rng.random_range(300..4_000)
                };
                self.crash_manager(victim, down_ms);
            }
        }
        if self.happens(1) {
            // A leadership transfer to a random manager.
            if let Some(leader) = self.leader_position() {
                let to = self.rng.random_range(1..=MANAGERS);
                if let Some(replica) = self.managers[leader].replica.as_mut() {
                    replica.transfer_leader(to);
                }
            }
        }
        if self.happens(self.rates.worker_crashes_per_10s) {
            let candidates: Vec<usize> = (0..self.workers.len())
                .filter(|&p| self.workers[p].agent_up)
                .collect();
            if !candidates.is_empty() {
                let victim = candidates[self.rng.random_range(0..candidates.len())];
                let machine = self.rng.random_bool(0.4);
                let down_ms = self.rng.random_range(100..5_000);
                self.crash_worker(victim, machine, down_ms);
            }
        }
        self.crash_containers();
        Ok(())
    }

    fn start_partition(&mut self) {
        self.stats.partitions += 1;
        let heal_in_ms = self.rng.random_range(300..5_000);
        self.partition_heal_at_ms = Some(self.now_ms + heal_in_ms);
        let all = self.all_addrs();
        if self.rng.random_range(0..10) < 2 {
            for _ in 0..self.rng.random_range(1..=3) {
                let from = all[self.rng.random_range(0..all.len())];
                let to = all[self.rng.random_range(0..all.len())];
                if from != to {
                    trace!(self.now_ms, "partition: link {from} -> {to} cut");
                    self.network.cut(from, to);
                }
            }
        } else {
            let size = self.rng.random_range(1..=3);
            let mut side = Vec::new();
            while side.len() < size {
                let pick = all[self.rng.random_range(0..all.len())];
                if !side.contains(&pick) {
                    side.push(pick);
                }
            }
            trace!(
                self.now_ms,
                "partition: {side:?} cut off for {heal_in_ms} ms"
            );
            self.network.isolate(&side, &all);
        }
    }

    fn heal_everything(&mut self) {
        trace!(
            self.now_ms,
            "quiet phase: network healed, every node restarts"
        );
        self.chaos = false;
        self.network.heal();
        self.network.chaos = false;
        self.partition_heal_at_ms = None;
        for manager in &mut self.managers {
            if let Some(at) = manager.restart_at_ms.as_mut() {
                *at = (*at).min(self.now_ms);
            }
        }
        for worker in &mut self.workers {
            if let Some(at) = worker.restart_at_ms.as_mut() {
                *at = (*at).min(self.now_ms);
            }
        }
    }

    fn restart_due_nodes(&mut self) -> SimResult {
        for position in 0..self.managers.len() {
            if self.managers[position]
                .restart_at_ms
                .is_some_and(|at| at <= self.now_ms)
            {
                self.restart_manager(position)?;
            }
        }
        for position in 0..self.workers.len() {
            if self.workers[position]
                .restart_at_ms
                .is_some_and(|at| at <= self.now_ms)
            {
                self.restart_worker(position);
            }
        }
        Ok(())
    }

    pub fn leader_position(&self) -> Option<usize> {
        (0..self.managers.len()).find(|&p| self.managers[p].leader.is_some())
    }
}
