//! One node's measurements that cannot be read off its state at scrape time (SPEC §11): how
//! long proposals, Raft Readies and runtime operations took, and how many runtime operations
//! failed. A [`NodeMetrics`] is made once per node by the composition root and handed to those
//! that observe (the Raft actor, the metered runtime); never a global, so nodes sharing a
//! process (tests, hollow workers) keep their own. `node::metrics` serves it with the
//! scrape-time gauges.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Bucket bounds in seconds: 0.5 ms doubling to about 16 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The runtime operation a measurement is of.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuntimeOperation {
    /// `start`, `stop`, `remove`, `find`, `inspect`, `list`, `health`.
    pub operation: String,
}

type Histograms = Family<RuntimeOperation, Histogram, fn() -> Histogram>;

/// A node a heartbeat age is of.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HeartbeatNode {
    /// The node's ID.
    pub node_id: String,
}

/// See the module documentation. Cheap to clone; clones share the measurements.
#[derive(Clone)]
pub struct NodeMetrics {
    /// Propose to applied (or refused), on the leader.
    pub proposal_seconds: Histogram,
    /// One Raft Ready: persist, send, apply.
    pub ready_seconds: Histogram,
    /// Runtime operations, by operation.
    pub runtime_seconds: Histograms,
    /// Runtime operations that failed, by operation.
    pub runtime_errors: Family<RuntimeOperation, Counter>,
    /// One scheduling round: read the store, place, propose (the leader's scheduler).
    pub schedule_seconds: Histogram,
    /// One full reconcile of every service (the leader's orchestrator).
    pub reconcile_seconds: Histogram,
    /// When the leader's dispatcher last heard from each node (empty off the leader).
    heartbeats: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self {
            proposal_seconds: latency_histogram(),
            ready_seconds: latency_histogram(),
            runtime_seconds: Family::new_with_constructor(latency_histogram),
            runtime_errors: Family::default(),
            schedule_seconds: latency_histogram(),
            reconcile_seconds: latency_histogram(),
            heartbeats: Arc::default(),
        }
    }
}

impl NodeMetrics {
    /// Adds the measurements to `registry` (one scrape's); the Raft ones only on a manager.
    pub fn register(&self, registry: &mut Registry, manager: bool) {
        if manager {
            self.register_raft(registry);
        }
        registry.register(
            "runtime_operation_seconds",
            "Time of container runtime operations",
            self.runtime_seconds.clone(),
        );
        registry.register(
            "runtime_operation_errors",
            "Container runtime operations that failed",
            self.runtime_errors.clone(),
        );
    }

    /// A heartbeat from `node_id` arrived now.
    pub fn heartbeat(&self, node_id: &str) {
        let now = Instant::now();
        let mut held = self.heartbeats_held();
        // Every node, every period: no new key unless the node is new.
        match held.get_mut(node_id) {
            Some(seen) => *seen = now,
            None => {
                held.insert(node_id.to_string(), now);
            }
        }
    }

    /// `node_id` is gone (removed, or its session forgotten).
    pub fn forget_heartbeats_of(&self, node_id: &str) {
        self.heartbeats_held().remove(node_id);
    }

    /// This manager no longer hears heartbeats (it lost the leadership).
    pub fn forget_heartbeats(&self) {
        self.heartbeats_held().clear();
    }

    fn heartbeats_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.heartbeats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register_raft(&self, registry: &mut Registry) {
        registry.register(
            "schedule_seconds",
            "Time of one scheduling round on the leader: read, place, propose",
            self.schedule_seconds.clone(),
        );
        registry.register(
            "reconcile_seconds",
            "Time of one full reconcile of every service on the leader",
            self.reconcile_seconds.clone(),
        );
        let ages = Family::<HeartbeatNode, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (node_id, seen) in self.heartbeats_held().iter() {
            ages.get_or_create(&HeartbeatNode {
                node_id: node_id.clone(),
            })
            .set(seen.elapsed().as_secs_f64());
        }
        registry.register(
            "node_heartbeat_age_seconds",
            "Seconds since the leader last heard a node's heartbeat (on the leader only)",
            ages,
        );
        registry.register(
            "raft_proposal_seconds",
            "Time from a proposal to its apply (or refusal), on the leader",
            self.proposal_seconds.clone(),
        );
        registry.register(
            "raft_ready_seconds",
            "Time to handle one Raft Ready: persist, send, apply",
            self.ready_seconds.clone(),
        );
    }

    /// Records one runtime operation of `seconds`, failed or not.
    pub fn runtime_operation(&self, operation: &'static str, seconds: f64, failed: bool) {
        let labels = RuntimeOperation {
            operation: operation.to_string(),
        };
        self.runtime_seconds.get_or_create(&labels).observe(seconds);
        if failed {
            self.runtime_errors.get_or_create(&labels).inc();
        }
    }
}
