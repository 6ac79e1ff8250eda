//! Builders shared by the core's unit tests.

use std::collections::BTreeMap;

use super::model::{Availability, Node, NodeRole, NodeStatus, Resources, Service};
use super::spec::{ServiceMode, ServiceSpec};
use super::store::{Command, Event, Store};

/// A ready, active worker with 4 CPUs and 8 GiB.
pub fn node(id: &str) -> Node {
    Node {
        id: id.to_string(),
        hostname: format!("host-{id}"),
        role: NodeRole::Worker,
        status: NodeStatus::Ready,
        availability: Availability::Active,
        labels: BTreeMap::new(),
        addr: "127.0.0.1:4240".into(),
        engine_version: "sim".into(),
        resources: Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        },
        meta: Default::default(),
    }
}

/// A replicated service.
pub fn service(id: &str, name: &str, replicas: u64) -> Service {
    let mut spec = ServiceSpec::new(name, "busybox");
    spec.mode = ServiceMode::Replicated { replicas };
    Service::new(id.to_string(), spec)
}

/// A store under test with a Raft index and clock that advance on every command.
pub struct Harness {
    /// The store.
    pub store: Store,
    /// Last applied index.
    pub index: u64,
}

impl Harness {
    /// A store holding `nodes`.
    pub fn with_nodes(nodes: Vec<Node>) -> Harness {
        let mut harness = Harness {
            store: Store::new(),
            index: 0,
        };
        for node in nodes {
            harness.apply(Command::UpsertNode(node));
        }
        harness
    }

    /// Applies a command that must succeed, at the next index, with `now_ms = 1000 * index`.
    pub fn apply(&mut self, command: Command) -> Vec<Event> {
        self.index += 1;
        self.store
            .apply(self.index, self.index * 1000, command)
            .expect("test command must apply")
    }

    /// Applies a command at a given time.
    pub fn apply_at(&mut self, now_ms: u64, command: Command) -> Vec<Event> {
        self.index += 1;
        self.store
            .apply(self.index, now_ms, command)
            .expect("test command must apply")
    }
}
