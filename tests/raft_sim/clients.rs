//! The simulation's clients: they invoke operations, and record each outcome (ok, or unknown
//! when it may or may not have taken effect) in the history the linearizability check reads.

use flotilla::consensus::MemberError;
use rand::Rng;

use super::{
    ClientOp, SimResult, Simulation, CLIENTS, CLIENT_TIMEOUT_STEPS, HISTORY_OPS_MAX, KEYS,
};
use crate::kv::{KvCommand, KvOutput};
use crate::linearizability::HistoryOp;

impl Simulation {
    pub(super) fn issue_client_ops(&mut self) -> SimResult {
        for client in 0..CLIENTS {
            if self.clients[client].outstanding.is_some()
                || self.history.len() + self.outstanding.len() >= HISTORY_OPS_MAX
                || !self.rng.random_bool(0.15)
            {
                continue;
            }
            let alive = self.alive_ids();
            if alive.is_empty() {
                return Ok(());
            }
            let op_id = self.next_op_id;
            self.next_op_id += 1;
            let key = self.rng.random_range(0..KEYS);
            let roll = self.rng.random_range(0..100);
            let via_read_index = roll >= 70;
            // Reads through read_index go to any node half of the time: followers must wait
            // until they applied what the leader had committed.
            let believed = self.clients[client].believed_leader;
            let leader_odds = if via_read_index { 0.5 } else { 0.8 };
            let node = if alive.contains(&believed) && self.rng.random_bool(leader_odds) {
                believed
            } else {
                alive[self.rng.random_range(0..alive.len())]
            };
            let command = match roll {
                0..35 => KvCommand::Put { key, value: op_id },
                35..55 => {
                    let expected = if self.recent_values.is_empty() || self.rng.random_bool(0.2) {
                        None
                    } else {
                        Some(self.recent_values[self.rng.random_range(0..self.recent_values.len())])
                    };
                    KvCommand::Cas {
                        key,
                        expected,
                        new: op_id,
                    }
                }
                _ => KvCommand::Get { key },
            };
            let position = self.position(node);
            let Some(replica) = self.nodes[position].replica.as_mut() else {
                continue;
            };
            if via_read_index {
                replica.read_index(op_id);
                self.nodes[position].pending_reads.insert(op_id);
            } else {
                match replica.propose(op_id, &command) {
                    Ok(()) => {
                        self.nodes[position].pending_proposals.insert(op_id);
                    }
                    Err(MemberError::NotLeader { leader_id }) => {
                        // Definitely not applied: nothing to record. Follow the hint.
                        self.clients[client].believed_leader = leader_id.unwrap_or(0);
                        continue;
                    }
                    Err(MemberError::ProposalDropped) => continue,
                    Err(error) => return Err(format!("propose failed unexpectedly: {error}")),
                }
            }
            if let KvCommand::Put { value, .. } | KvCommand::Cas { new: value, .. } = command {
                self.recent_values.push(value);
            }
            self.clients[client].outstanding = Some(op_id);
            self.outstanding.insert(
                op_id,
                ClientOp {
                    client,
                    command,
                    via_read_index,
                    invoke_step: self.step,
                    node,
                },
            );
        }
        Ok(())
    }

    pub(super) fn time_out_client_ops(&mut self) {
        let expired: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, op)| op.invoke_step + CLIENT_TIMEOUT_STEPS <= self.step)
            .map(|(&op_id, _)| op_id)
            .collect();
        for op_id in expired {
            if let Some(op) = self.outstanding.get(&op_id) {
                let position = self.position(op.node);
                self.nodes[position].pending_proposals.remove(&op_id);
                self.nodes[position].pending_reads.remove(&op_id);
            }
            self.complete_unknown(op_id);
        }
    }

    pub(super) fn finish(&mut self, op_id: u64) -> Option<ClientOp> {
        let op = self.outstanding.remove(&op_id)?;
        self.clients[op.client].outstanding = None;
        Some(op)
    }

    pub(super) fn complete_ok(&mut self, op_id: u64, output: KvOutput) {
        if let Some(op) = self.finish(op_id) {
            self.stats.ops_ok += 1;
            self.clients[op.client].believed_leader = op.node;
            self.history.push(HistoryOp {
                command: op.command,
                invoke_step: op.invoke_step,
                complete: Some((self.step, output)),
            });
        }
    }

    /// The op may or may not have taken effect. Reads without an answer are simply dropped.
    pub(super) fn complete_unknown(&mut self, op_id: u64) {
        if let Some(op) = self.finish(op_id) {
            if op.via_read_index || matches!(op.command, KvCommand::Get { .. }) {
                return;
            }
            self.stats.ops_unknown += 1;
            self.history.push(HistoryOp {
                command: op.command,
                invoke_step: op.invoke_step,
                complete: None,
            });
        }
    }

    pub(super) fn abandon(&mut self, op_id: u64) {
        self.finish(op_id);
    }
}
