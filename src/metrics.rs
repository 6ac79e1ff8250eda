//! One node's measurements that cannot be read off its state at scrape time (SPEC §11): how
//! long proposals, Raft Readies and runtime operations took, and how many runtime operations
//! failed. A [`NodeMetrics`] is made once per node by the composition root and handed to those
//! that observe (the Raft actor, the metered runtime); never a global, so nodes sharing a
//! process (tests, hollow workers) keep their own. `node::metrics` serves it with the
//! scrape-time gauges.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self {
            proposal_seconds: latency_histogram(),
            ready_seconds: latency_histogram(),
            runtime_seconds: Family::new_with_constructor(latency_histogram),
            runtime_errors: Family::default(),
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

    fn register_raft(&self, registry: &mut Registry) {
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
