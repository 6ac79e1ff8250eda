//! Node sessions and liveness, as the leader's dispatcher judges them.
//!
//! A node that misses [`MISSED_HEARTBEATS_DOWN`] heartbeat periods is down. After a manager
//! becomes leader every node gets that long again before it can be marked down (it may have
//! been heartbeating the old leader), and so it does after the dispatcher itself stalled (its
//! heartbeats may be waiting unread). In a large cluster, most nodes falling silent at once is
//! taken for a fault of the manager, not of the nodes (Kubernetes' full-disruption mode).
//! Time is a monotonic `now_ms` passed in, so the rules replay in the simulation.

use std::collections::BTreeMap;

use crate::core::model::{Node, NodeDescription, NodeStatus};
use crate::core::store::{Command, NodeRefresh, Store};

/// Periods without a heartbeat after which a node is down (SPEC §3).
pub const MISSED_HEARTBEATS_DOWN: u64 = 3;

/// From this many nodes up, a cluster is large enough for [`mass_expiry`] to apply (as in
/// Kubernetes' node lifecycle controller, small clusters are left alone: two of three nodes
/// dying is plausible there).
pub const LARGE_CLUSTER_NODES: usize = 50;

/// Share of the nodes up (in percent) that must fall silent in one check for [`mass_expiry`].
pub const MASS_EXPIRY_PERCENT: usize = 55;

/// A check that comes this many periods after the previous one means the dispatcher stalled.
pub const STALL_PERIODS: u64 = 2;

/// Whether `expired` of `up` nodes missing their heartbeats in the same check looks like a
/// fault of the manager rather than of the nodes.
pub fn mass_expiry(up: usize, expired: usize) -> bool {
    up >= LARGE_CLUSTER_NODES && expired * 100 > up * MASS_EXPIRY_PERCENT
}

/// What one session check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCheck {
    /// Still inside the grace period after leadership began (or after a stall).
    Grace,
    /// The check came late: the dispatcher was stalled for `stalled_ms`; grace starts again.
    Stalled {
        /// How long since the previous check.
        stalled_ms: u64,
    },
    /// Most of a large cluster fell silent at once; nobody is marked down.
    MassSilence {
        /// Nodes that would have expired.
        expired: usize,
        /// Nodes up before the check.
        up: usize,
    },
    /// These nodes missed their heartbeats and are down (possibly none).
    Down(Vec<String>),
}

/// The heartbeat bookkeeping of one leadership term.
#[derive(Debug, Clone)]
pub struct NodeSessions {
    period_ms: u64,
    grace_from_ms: u64,
    last_check_ms: u64,
    last_seen_ms: BTreeMap<String, u64>,
}

impl NodeSessions {
    /// Sessions of a dispatcher that started at `now_ms`, expecting a heartbeat every
    /// `period_ms`.
    pub fn new(period_ms: u64, now_ms: u64) -> Self {
        Self {
            period_ms: period_ms.max(1),
            grace_from_ms: now_ms,
            last_check_ms: now_ms,
            last_seen_ms: BTreeMap::new(),
        }
    }

    /// The heartbeat period nodes are told to keep.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// `node_id` heartbeated at `now_ms`.
    pub fn heartbeat(&mut self, node_id: &str, now_ms: u64) {
        match self.last_seen_ms.get_mut(node_id) {
            Some(seen) => *seen = (*seen).max(now_ms),
            None => {
                self.last_seen_ms.insert(node_id.to_string(), now_ms);
            }
        }
    }

    /// `node_id` left the cluster.
    pub fn forget(&mut self, node_id: &str) {
        self.last_seen_ms.remove(node_id);
    }

    /// When `node_id` last heartbeated, if it has in this term.
    pub fn last_seen_ms(&self, node_id: &str) -> Option<u64> {
        self.last_seen_ms.get(node_id).copied()
    }

    /// Which nodes of `store` are down as of `now_ms`. Meant to run once per period.
    pub fn check(&mut self, store: &Store, now_ms: u64) -> SessionCheck {
        let down_after_ms = self.period_ms * MISSED_HEARTBEATS_DOWN;
        let since_last_check_ms = now_ms.saturating_sub(self.last_check_ms);
        self.last_check_ms = now_ms;
        if since_last_check_ms > self.period_ms * STALL_PERIODS {
            self.grace_from_ms = now_ms;
            return SessionCheck::Stalled {
                stalled_ms: since_last_check_ms,
            };
        }
        if now_ms.saturating_sub(self.grace_from_ms) < down_after_ms {
            return SessionCheck::Grace;
        }
        let mut up = 0;
        let mut expired = Vec::new();
        for node in store.nodes().values() {
            if node.status == NodeStatus::Down {
                continue;
            }
            up += 1;
            // A node that registered since the last check (it joined, or was promoted) has
            // its full grace period from now, not from before it existed.
            let seen_ms = *self.last_seen_ms.entry(node.id.clone()).or_insert(now_ms);
            if now_ms.saturating_sub(seen_ms) > down_after_ms {
                expired.push(node.id.clone());
            }
        }
        if mass_expiry(up, expired.len()) {
            return SessionCheck::MassSilence {
                expired: expired.len(),
                up,
            };
        }
        SessionCheck::Down(expired)
    }
}

/// The record a heartbeat with `description` makes of `node`: ready, with what it reports
/// about itself; labels given at join count until an admin changes them. `None` when nothing
/// changed, so a steady heartbeat proposes nothing.
pub fn refreshed_record(node: &Node, description: &NodeDescription) -> Option<Node> {
    let refreshed = Node {
        hostname: description.hostname.clone(),
        addr: description.addr.clone(),
        engine_version: description.engine_version.clone(),
        resources: description.resources,
        labels: if node.engine_version.is_empty() {
            description.labels.clone()
        } else {
            node.labels.clone()
        },
        status: NodeStatus::Ready,
        ..node.clone()
    };
    (refreshed != *node).then_some(refreshed)
}

/// The write a heartbeat makes when [`refreshed_record`] finds something changed: a
/// [`Command::RefreshNode`], applied against the record as it is at commit time.
pub fn refresh_command(node: &Node, description: &NodeDescription) -> Option<Command> {
    refreshed_record(node, description)?;
    Some(Command::RefreshNode(NodeRefresh {
        node_id: node.id.clone(),
        description: description.clone(),
    }))
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
