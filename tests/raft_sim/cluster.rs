//! One simulated run: a Raft group of real `RaftMember`s on crashable simulated disks, a lossy
//! network, clients, fault injection, and the invariant checks. Everything is driven by one
//! seeded generator and a step counter, so a seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use flotilla::consensus::{MemberConfig, MemberError, RaftMember, RedbStorage, SimDisk};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kv::{apply_to, Journal, JournalEvent, Key, KvCommand, KvOutput, KvStore, Value};
use crate::linearizability::{check_register, HistoryOp};
use crate::network::{Network, NetworkFaults};

/// Steps with faults and clients, then steps of healed quiet for convergence.
pub const CHAOS_STEPS: u64 = 500;
pub const QUIET_STEPS: u64 = 150;
const KEYS: Key = 2;
const CLIENTS: usize = 4;
/// Recorded client operations per run, all keys together (the checker takes 128 per key).
const HISTORY_OPS_MAX: usize = 100;
const CLIENT_TIMEOUT_STEPS: u64 = 40;

/// Counters summed over runs, to show the faults really happen.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub runs: u64,
    pub leaders_elected: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub transfers: u64,
    pub snapshots_restored: u64,
    pub ops_ok: u64,
    pub ops_unknown: u64,
    pub messages_sent: u64,
    pub entries_committed: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.runs += other.runs;
        self.leaders_elected += other.leaders_elected;
        self.crashes += other.crashes;
        self.partitions += other.partitions;
        self.transfers += other.transfers;
        self.snapshots_restored += other.snapshots_restored;
        self.ops_ok += other.ops_ok;
        self.ops_unknown += other.ops_unknown;
        self.messages_sent += other.messages_sent;
        self.entries_committed += other.entries_committed;
    }
}

struct SimNode {
    id: u64,
    disk: SimDisk,
    journal: Journal,
    replica: Option<RaftMember<KvStore>>,
    restart_at_step: u64,
    /// Crash right after the next Ready: its writes are done; with `Some(false)` nothing it
    /// produced leaves the node, with `Some(true)` its messages are sent first.
    crash_after_next_ready: Option<bool>,
    pending_proposals: BTreeSet<u64>,
    pending_reads: BTreeSet<u64>,
    /// Index of the last command this node's state machine applied (or restored up to).
    last_command_index: u64,
}

struct ClientOp {
    client: usize,
    command: KvCommand,
    via_read_index: bool,
    invoke_step: u64,
    node: u64,
}

#[derive(Default)]
struct Client {
    outstanding: Option<u64>,
    believed_leader: u64,
}

/// A symmetric partition. Its `minority` side must not commit past `commit_bound`: it may
/// still learn that an entry which existed before the cut reached a quorum, but nothing
/// appended after the cut can commit there.
struct Partition {
    minority: Vec<u64>,
    commit_bound: Option<u64>,
    heal_at_step: u64,
}

pub struct Simulation {
    rng: StdRng,
    step: u64,
    node_ids: Vec<u64>,
    nodes: Vec<SimNode>,
    network: Network,
    snapshot_every_entries: u64,
    /// Per node: its election timeout, pinned so raft's own RNG cannot change a replay.
    election_timeout_ticks: Vec<usize>,
    crash_per_mille: u32,
    partition_per_mille: u32,
    join_mode: bool,
    last_conf_change_step: u64,
    /// Every command any node applied, by log index: the one true log.
    global_log: BTreeMap<u64, KvCommand>,
    leaders_by_term: BTreeMap<u64, u64>,
    max_commit_seen: u64,
    /// Highest log index any node ever held: entries above it did not exist yet.
    max_last_index_seen: u64,
    partition: Option<Partition>,
    clients: Vec<Client>,
    outstanding: BTreeMap<u64, ClientOp>,
    history: Vec<HistoryOp>,
    next_op_id: u64,
    recent_values: Vec<Value>,
    stats: Stats,
}

type SimResult<T = ()> = Result<T, String>;

fn tracing_enabled() -> bool {
    std::env::var_os("FLOTILLA_SIM_TRACE").is_some()
}

/// Prints a simulation event when `FLOTILLA_SIM_TRACE` is set (for replaying a seed).
macro_rules! trace {
    ($step:expr, $($arg:tt)*) => {
        if tracing_enabled() {
            eprintln!("[step {}] {}", $step, format!($($arg)*));
        }
    };
}

// After the macro, so both see `trace!`.
#[path = "clients.rs"]
mod clients;
#[path = "faults.rs"]
mod faults;

impl Simulation {
    pub fn new(seed: u64) -> SimResult<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let node_count = if rng.random_bool(0.5) { 3 } else { 5 };
        let faults = NetworkFaults {
            drop_per_mille: rng.random_range(0..150),
            duplicate_per_mille: rng.random_range(0..50),
            delay_steps_max: rng.random_range(1..=4),
        };
        let snapshot_every_entries = [3, 10, 10_000][rng.random_range(0..3)];
        let join_mode = rng.random_bool(0.3);
        let node_ids: Vec<u64> = (1..=node_count).collect();
        let election_timeout_ticks = node_ids.iter().map(|_| rng.random_range(10..20)).collect();
        let mut simulation = Self {
            election_timeout_ticks,
            crash_per_mille: rng.random_range(0..20),
            partition_per_mille: rng.random_range(0..15),
            rng,
            step: 0,
            nodes: Vec::new(),
            network: Network::new(faults),
            snapshot_every_entries,
            join_mode,
            last_conf_change_step: 0,
            global_log: BTreeMap::new(),
            leaders_by_term: BTreeMap::new(),
            max_commit_seen: 0,
            max_last_index_seen: 0,
            partition: None,
            clients: (0..CLIENTS).map(|_| Client::default()).collect(),
            outstanding: BTreeMap::new(),
            history: Vec::new(),
            next_op_id: 1,
            recent_values: Vec::new(),
            stats: Stats {
                runs: 1,
                ..Stats::default()
            },
            node_ids: node_ids.clone(),
        };
        for &id in &node_ids {
            let disk = SimDisk::new();
            let journal = Journal::default();
            let storage =
                RedbStorage::open_with_backend(disk.backend()).map_err(|e| e.to_string())?;
            let config = simulation.replica_config(id);
            let store = KvStore::new(journal.clone());
            let replica = if !join_mode {
                RaftMember::bootstrap(config, storage, store, &node_ids)
            } else if id == 1 {
                RaftMember::bootstrap(config, storage, store, &[1])
            } else {
                RaftMember::join(config, storage, store)
            }
            .map_err(|e| format!("node {id} failed to start: {e}"))?;
            simulation.nodes.push(SimNode {
                id,
                disk,
                journal,
                replica: Some(replica),
                restart_at_step: 0,
                crash_after_next_ready: None,
                pending_proposals: BTreeSet::new(),
                pending_reads: BTreeSet::new(),
                last_command_index: 0,
            });
        }
        for position in 0..simulation.nodes.len() {
            simulation.drain_journal(position)?;
        }
        Ok(simulation)
    }

    fn replica_config(&self, id: u64) -> MemberConfig {
        let timeout = self.election_timeout_ticks[self.position(id)];
        MemberConfig {
            snapshot_every_entries: self.snapshot_every_entries,
            election_timeout_ticks: Some(timeout..timeout + 1),
            ..MemberConfig::new(id)
        }
    }

    pub fn run(mut self) -> SimResult<Stats> {
        for step in 1..=CHAOS_STEPS + QUIET_STEPS {
            self.step = step;
            if step <= CHAOS_STEPS {
                self.inject_faults()?;
                self.issue_client_ops()?;
            } else if step == CHAOS_STEPS + 1 {
                self.heal_everything()?;
            }
            self.restart_due_nodes()?;
            self.deliver_messages()?;
            for node in &mut self.nodes {
                // Clocks drift: a node sometimes misses a tick, which also varies timeouts.
                if let Some(replica) = node.replica.as_mut() {
                    if self.rng.random_range(0..100) < 95 {
                        replica.tick();
                    }
                }
            }
            if self.join_mode {
                self.grow_membership();
            }
            for position in 0..self.nodes.len() {
                self.handle_ready(position)?;
            }
            self.time_out_client_ops();
            self.check_partition_bound()?;
        }
        self.final_checks()?;
        self.stats.messages_sent = self.network.sent;
        Ok(self.stats)
    }

    fn position(&self, id: u64) -> usize {
        (id - 1) as usize
    }

    fn alive_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|node| node.replica.is_some())
            .map(|node| node.id)
            .collect()
    }

    fn known_leader(&self) -> Option<u64> {
        self.nodes.iter().find_map(|node| {
            let replica = node.replica.as_ref()?;
            replica.leadership().is_leader.then_some(node.id)
        })
    }

    // ----- network -----

    fn deliver_messages(&mut self) -> SimResult {
        for delivery in self.network.deliver_due(self.step) {
            let position = self.position(delivery.to);
            let receiver_alive = self.nodes[position].replica.is_some();
            if delivery.carries_snapshot {
                let sender = self.position(delivery.from);
                if let Some(replica) = self.nodes[sender].replica.as_mut() {
                    replica.report_snapshot(delivery.to, receiver_alive && !delivery.lost);
                }
            }
            if delivery.lost {
                continue;
            }
            if tracing_enabled() {
                let message: raft::prelude::Message =
                    protobuf::Message::parse_from_bytes(&delivery.bytes)
                        .map_err(|e| e.to_string())?;
                trace!(
                    self.step,
                    "{} -> {}: {:?} term {} index {} commit {} reject {}",
                    delivery.from,
                    delivery.to,
                    message.get_msg_type(),
                    message.term,
                    message.index,
                    message.commit,
                    message.reject
                );
            }
            let Some(replica) = self.nodes[position].replica.as_mut() else {
                continue;
            };
            match replica.step(&delivery.bytes) {
                Ok(()) | Err(MemberError::Raft(_)) => {}
                Err(error) => {
                    return Err(format!(
                        "node {} refused a message from {}: {error}",
                        delivery.to, delivery.from
                    ))
                }
            }
        }
        Ok(())
    }

    // ----- ready handling and invariants -----

    fn handle_ready(&mut self, position: usize) -> SimResult {
        let id = self.nodes[position].id;
        let Some(replica) = self.nodes[position].replica.as_mut() else {
            return Ok(());
        };
        let output = replica
            .handle_ready()
            .map_err(|e| format!("node {id} handle_ready failed: {e}"))?;
        let leadership = replica.leadership();
        let commit = replica.commit_index();
        let last_index = raft::Storage::last_index(replica.storage()).map_err(|e| e.to_string())?;
        self.max_last_index_seen = self.max_last_index_seen.max(last_index);
        self.drain_journal(position)?;
        if commit > self.max_commit_seen {
            trace!(self.step, "node {id} {leadership:?} commit {commit}");
        }
        self.max_commit_seen = self.max_commit_seen.max(commit);
        if leadership.is_leader {
            let leader = self.leaders_by_term.entry(leadership.term).or_insert(id);
            if *leader != id {
                return Err(format!(
                    "two leaders in term {}: {} and {id}",
                    leadership.term, leader
                ));
            }
        }
        if self.nodes[position].crash_after_next_ready == Some(false) {
            // Crash after the Ready's writes but before anything it produced leaves the node.
            self.crash(id);
            return Ok(());
        }
        for message in output.messages {
            let sent = self.network.send(
                &mut self.rng,
                self.step,
                id,
                message.to,
                message.bytes,
                message.carries_snapshot,
            );
            // Snapshots travel on a stream whose end the sender learns (as over QUIC).
            if message.carries_snapshot && !sent {
                if let Some(replica) = self.nodes[position].replica.as_mut() {
                    replica.report_snapshot(message.to, false);
                }
            }
        }
        if self.nodes[position].crash_after_next_ready == Some(true) {
            // Crash after the Ready's writes and sends, before the results reach clients.
            self.crash(id);
            return Ok(());
        }
        for applied in output.applied {
            if !self.nodes[position]
                .pending_proposals
                .remove(&applied.proposal_id)
            {
                continue;
            }
            let Some(op) = self.outstanding.get(&applied.proposal_id) else {
                continue;
            };
            if self.global_log.get(&applied.index) != Some(&op.command) {
                return Err(format!(
                    "proposal {} acknowledged at index {} but the log holds {:?} there",
                    applied.proposal_id,
                    applied.index,
                    self.global_log.get(&applied.index)
                ));
            }
            let result = applied
                .result
                .map_err(|e| format!("command failed to apply: {e}"))?;
            self.complete_ok(applied.proposal_id, result);
        }
        for op_id in output.reads_ready {
            if !self.nodes[position].pending_reads.remove(&op_id) {
                continue;
            }
            let Some(op) = self.outstanding.get(&op_id) else {
                continue;
            };
            let Some(replica) = self.nodes[position].replica.as_ref() else {
                continue;
            };
            let value = replica
                .state_machine()
                .values
                .get(&op.command.key())
                .copied();
            self.complete_ok(op_id, KvOutput::Value(value));
        }
        if let Some(change) = output.leadership_change {
            if change.is_leader {
                self.stats.leaders_elected += 1;
            } else {
                // Leadership lost: pending proposals may or may not commit.
                let pending: Vec<u64> = std::mem::take(&mut self.nodes[position].pending_proposals)
                    .into_iter()
                    .collect();
                for op_id in pending {
                    self.complete_unknown(op_id);
                }
            }
        }
        Ok(())
    }

    /// Checks what the node's state machine just did against the global log.
    fn drain_journal(&mut self, position: usize) -> SimResult {
        let events: Vec<JournalEvent> = self.nodes[position]
            .journal
            .borrow_mut()
            .drain(..)
            .collect();
        let id = self.nodes[position].id;
        for event in events {
            match event {
                JournalEvent::Applied { index, command } => {
                    let last = self.nodes[position].last_command_index;
                    if index <= last {
                        return Err(format!(
                            "node {id} applied index {index} after index {last}"
                        ));
                    }
                    if let Some((skipped, _)) = self.global_log.range(last + 1..index).next() {
                        return Err(format!(
                            "node {id} applied index {index} but skipped committed index {skipped}"
                        ));
                    }
                    match self.global_log.get(&index) {
                        Some(existing) if *existing != command => {
                            return Err(format!(
                                "node {id} applied {command:?} at index {index}, others applied {existing:?}"
                            ))
                        }
                        Some(_) => {}
                        None => {
                            self.global_log.insert(index, command);
                            self.stats.entries_committed += 1;
                        }
                    }
                    self.nodes[position].last_command_index = index;
                }
                JournalEvent::Restored {
                    applied_through,
                    values,
                } => {
                    self.stats.snapshots_restored += 1;
                    let expected = self.reference_state(applied_through);
                    if values != expected {
                        return Err(format!(
                            "node {id} restored a snapshot through {applied_through} holding {values:?}, the log gives {expected:?}"
                        ));
                    }
                    self.nodes[position].last_command_index = applied_through;
                }
            }
        }
        Ok(())
    }

    fn reference_state(&self, through: u64) -> BTreeMap<Key, Value> {
        let mut values = BTreeMap::new();
        for command in self
            .global_log
            .range(..=through)
            .map(|(_, command)| command)
        {
            apply_to(&mut values, command);
        }
        values
    }

    fn check_partition_bound(&self) -> SimResult {
        let Some(partition) = &self.partition else {
            return Ok(());
        };
        let Some(bound) = partition.commit_bound else {
            return Ok(());
        };
        for &id in &partition.minority {
            if let Some(replica) = &self.nodes[self.position(id)].replica {
                if replica.commit_index() > bound {
                    if std::env::var_os("FLOTILLA_SIM_TRACE").is_some() {
                        for node in &self.nodes {
                            if let Some(replica) = &node.replica {
                                eprintln!(
                                    "node {}: {:?} voters {:?} {:?} join_mode {}",
                                    node.id,
                                    replica.leadership(),
                                    replica.voters(),
                                    replica.storage(),
                                    self.join_mode
                                );
                            }
                        }
                    }
                    return Err(format!(
                        "node {id} in minority {:?} committed up to {} past {bound}",
                        partition.minority,
                        replica.commit_index()
                    ));
                }
            }
        }
        Ok(())
    }

    // ----- the end -----

    fn final_checks(&mut self) -> SimResult {
        let pending: Vec<u64> = self.outstanding.keys().copied().collect();
        for op_id in pending {
            self.complete_unknown(op_id);
        }
        let reference = self.reference_state(u64::MAX);
        let mut applied_indexes = Vec::new();
        for node in &self.nodes {
            let replica = node
                .replica
                .as_ref()
                .ok_or_else(|| format!("node {} still down after the quiet period", node.id))?;
            applied_indexes.push((node.id, replica.applied_index(), replica.commit_index()));
            if std::env::var_os("FLOTILLA_SIM_TRACE").is_some() {
                eprintln!(
                    "node {}: {:?} voters {:?} {:?} join_mode {}",
                    node.id,
                    replica.leadership(),
                    replica.voters(),
                    replica.storage(),
                    self.join_mode
                );
            }
            if replica.state_machine().values != reference {
                return Err(format!(
                    "node {} did not converge: holds {:?}, the log gives {reference:?}; applied/commit per node {applied_indexes:?}",
                    node.id,
                    replica.state_machine().values
                ));
            }
        }
        let first = applied_indexes[0].1;
        if applied_indexes
            .iter()
            .any(|&(_, applied, commit)| applied != first || commit != first)
        {
            return Err(format!(
                "nodes did not converge to one applied index: (id, applied, commit) {applied_indexes:?}"
            ));
        }
        if self.leaders_by_term.is_empty() {
            return Err("no leader was ever elected".to_string());
        }
        for key in 0..KEYS {
            let ops: Vec<HistoryOp> = self
                .history
                .iter()
                .filter(|op| op.command.key() == key)
                .cloned()
                .collect();
            check_register(&ops).map_err(|e| format!("key {key}: {e}"))?;
        }
        Ok(())
    }
}
