//! Fault injection of the simulation: partitions, crashes and reboots, leadership transfers,
//! membership growth, and the final heal.

use flotilla::consensus::{MembershipChange, RaftMember, RedbStorage};
use rand::Rng;

use super::{tracing_enabled, Partition, SimResult, Simulation};
use crate::kv::KvStore;

impl Simulation {
    pub(super) fn inject_faults(&mut self) -> SimResult {
        if let Some(partition) = &self.partition {
            if self.step >= partition.heal_at_step {
                trace!(self.step, "partition healed");
                self.network.heal();
                self.partition = None;
            }
        } else if self.rng.random_range(0..1000) < self.partition_per_mille {
            self.start_partition();
        }
        if self.rng.random_range(0..1000) < 4 {
            // Leadership transfer to a random member; proposals meanwhile are dropped.
            if let Some(leader) = self.known_leader() {
                let to = self.node_ids[self.rng.random_range(0..self.node_ids.len())];
                let position = self.position(leader);
                if let Some(replica) = self.nodes[position].replica.as_mut() {
                    if to != leader && replica.voters().contains(&to) {
                        trace!(self.step, "leader {leader} transfers to {to}");
                        replica.transfer_leader(to);
                        self.stats.transfers += 1;
                    }
                }
            }
        }
        if self.rng.random_range(0..1000) < self.crash_per_mille {
            let alive = self.alive_ids();
            if !alive.is_empty() {
                let victim = alive[self.rng.random_range(0..alive.len())];
                if self.rng.random_range(0..3) > 0 {
                    let position = self.position(victim);
                    self.nodes[position].crash_after_next_ready = Some(self.rng.random_bool(0.5));
                } else {
                    self.crash(victim);
                }
            }
        }
        Ok(())
    }

    pub(super) fn start_partition(&mut self) {
        self.stats.partitions += 1;
        let heal_at_step = self.step + self.rng.random_range(10..80);
        let all = self.node_ids.clone();
        let roll = self.rng.random_range(0..10);
        if roll < 2 {
            // One-way cuts: a sender whose messages vanish, or a node that hears but is unheard.
            for _ in 0..self.rng.random_range(1..=3) {
                let from = all[self.rng.random_range(0..all.len())];
                let to = all[self.rng.random_range(0..all.len())];
                if from != to {
                    trace!(self.step, "partition: link {from} -> {to} cut");
                    self.network.cut(from, to);
                }
            }
            self.partition = Some(Partition {
                minority: Vec::new(),
                commit_bound: None,
                heal_at_step,
            });
            return;
        }
        let minority_size = self.rng.random_range(1..=(all.len() - 1) / 2);
        let mut minority: Vec<u64> = match self.known_leader() {
            // Often isolate the leader itself, with or without company.
            Some(leader) if roll < 6 => vec![leader],
            _ => Vec::new(),
        };
        while minority.len() < minority_size {
            let candidate = all[self.rng.random_range(0..all.len())];
            if !minority.contains(&candidate) {
                minority.push(candidate);
            }
        }
        self.network.isolate(&minority, &all);
        for node in &self.nodes {
            if let Some(replica) = &node.replica {
                let last_index = raft::Storage::last_index(replica.storage()).unwrap_or(0);
                self.max_last_index_seen = self.max_last_index_seen.max(last_index);
            }
        }
        trace!(
            self.step,
            "partition: {minority:?} isolated, bound {}",
            self.max_last_index_seen
        );
        // The bound only holds when every node is a voter (join mode grows membership).
        let full_membership = self.nodes.iter().any(|node| {
            node.replica
                .as_ref()
                .is_some_and(|replica| replica.voters().len() == all.len())
        });
        self.partition = Some(Partition {
            minority,
            commit_bound: full_membership.then_some(self.max_last_index_seen),
            heal_at_step,
        });
    }

    pub(super) fn crash(&mut self, id: u64) {
        self.stats.crashes += 1;
        trace!(self.step, "node {id} crashed");
        // Quick reboots matter: a node back within an election can vote again in that term.
        let down_steps = if self.rng.random_bool(0.4) {
            self.rng.random_range(1..4)
        } else {
            self.rng.random_range(5..50)
        };
        let position = self.position(id);
        let node = &mut self.nodes[position];
        node.disk.crash();
        node.replica = None;
        node.crash_after_next_ready = None;
        node.restart_at_step = self.step + down_steps;
        node.journal.borrow_mut().clear();
        let proposals: Vec<u64> = std::mem::take(&mut node.pending_proposals)
            .into_iter()
            .collect();
        let reads: Vec<u64> = std::mem::take(&mut node.pending_reads)
            .into_iter()
            .collect();
        for op_id in proposals {
            self.complete_unknown(op_id);
        }
        for op_id in reads {
            self.abandon(op_id);
        }
    }

    pub(super) fn restart_due_nodes(&mut self) -> SimResult {
        for position in 0..self.nodes.len() {
            let node = &self.nodes[position];
            if node.replica.is_some() || node.restart_at_step > self.step {
                continue;
            }
            let id = node.id;
            let config = self.replica_config(id);
            let node = &mut self.nodes[position];
            let storage = RedbStorage::open_with_backend(node.disk.backend())
                .map_err(|e| format!("node {id} storage does not reopen after crash: {e}"))?;
            let store = KvStore::new(node.journal.clone());
            let replica = RaftMember::restart(config, storage, store)
                .map_err(|e| format!("node {id} does not restart: {e}"))?;
            node.replica = Some(replica);
            node.last_command_index = 0;
            trace!(self.step, "node {id} restarted");
            self.drain_journal(position)?;
        }
        Ok(())
    }

    pub(super) fn heal_everything(&mut self) -> SimResult {
        self.network.heal();
        self.partition = None;
        self.network.faults.drop_per_mille = 0;
        for node in &mut self.nodes {
            node.restart_at_step = node.restart_at_step.min(self.step);
            node.crash_after_next_ready = None;
        }
        Ok(())
    }

    pub(super) fn grow_membership(&mut self) {
        if self.step < self.last_conf_change_step + 30 {
            return;
        }
        let Some(leader) = self.known_leader() else {
            return;
        };
        let position = self.position(leader);
        let Some(replica) = self.nodes[position].replica.as_mut() else {
            return;
        };
        let voters = replica.voters().to_vec();
        if let Some(&missing) = self.node_ids.iter().find(|id| !voters.contains(id)) {
            self.last_conf_change_step = self.step;
            // Failure (lost leadership meanwhile) is fine: the next attempt retries.
            let _ = replica.propose_conf_change(0, MembershipChange::AddVoter(missing));
        }
    }
}
