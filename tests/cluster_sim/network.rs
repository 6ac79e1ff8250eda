//! The simulated network between every pair of nodes: per-message drop, delay (hence
//! reordering), duplication, and cut links that model partitions, symmetric or one-way. Time
//! is the simulation's clock in milliseconds; delivery order is a pure function of the seed.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use rand::rngs::StdRng;
use rand::Rng;

use crate::messages::Payload;

/// Where a message goes: managers are 1..=3, workers 11.., the admin client 99.
pub type Addr = u64;

/// How unreliable the network is during the chaos phase; fixed per seed.
#[derive(Clone, Debug)]
pub struct NetworkFaults {
    pub drop_per_mille: u32,
    pub duplicate_per_mille: u32,
    pub delay_ms_max: u64,
}

/// Messages in flight at most; beyond it the network drops (a bounded queue, as everywhere).
const IN_FLIGHT_MAX: usize = 100_000;
/// Smallest one-way delay: one step of the simulation.
pub const DELAY_MS_MIN: u64 = 10;

#[derive(Debug)]
struct InFlight {
    deliver_at_ms: u64,
    /// Tie breaker that keeps delivery order a pure function of the seed.
    sequence: u64,
    from: Addr,
    to: Addr,
    payload: Payload,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.deliver_at_ms, self.sequence) == (other.deliver_at_ms, other.sequence)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deliver_at_ms, self.sequence).cmp(&(other.deliver_at_ms, other.sequence))
    }
}

/// A message that arrived, or (`lost`) reached a cut link.
pub struct Delivery {
    pub from: Addr,
    pub to: Addr,
    pub payload: Payload,
    pub lost: bool,
}

pub struct Network {
    faults: NetworkFaults,
    /// Off in the quiet phase: no drops, no duplicates, shortest delays.
    pub chaos: bool,
    queue: BinaryHeap<Reverse<InFlight>>,
    sequence: u64,
    /// Directed links `(from, to)` that currently lose every message.
    cut_links: BTreeSet<(Addr, Addr)>,
    pub sent: u64,
    pub dropped: u64,
}

impl Network {
    pub fn new(faults: NetworkFaults) -> Self {
        Self {
            faults,
            chaos: true,
            queue: BinaryHeap::new(),
            sequence: 0,
            cut_links: BTreeSet::new(),
            sent: 0,
            dropped: 0,
        }
    }

    /// Queues a message, or loses it (returning false).
    pub fn send(
        &mut self,
        rng: &mut StdRng,
        now_ms: u64,
        from: Addr,
        to: Addr,
        payload: Payload,
    ) -> bool {
        self.sent += 1;
        if self.queue.len() >= IN_FLIGHT_MAX {
            self.dropped += 1;
            return false;
        }
        if self.chaos {
            if rng.random_range(0..1000) < self.faults.drop_per_mille {
                self.dropped += 1;
                return false;
            }
            // Only Raft traffic is duplicated: the product's requests travel on QUIC streams,
            // which do not duplicate, while Raft must survive retransmitted messages.
            let is_raft = matches!(payload, Payload::Raft { .. });
            if is_raft && rng.random_range(0..1000) < self.faults.duplicate_per_mille {
                self.enqueue(rng, now_ms, from, to, payload.clone());
            }
        }
        self.enqueue(rng, now_ms, from, to, payload);
        true
    }

    fn enqueue(&mut self, rng: &mut StdRng, now_ms: u64, from: Addr, to: Addr, payload: Payload) {
        let delay_ms = if self.chaos {
            rng.random_range(DELAY_MS_MIN..=self.faults.delay_ms_max)
        } else {
            DELAY_MS_MIN
        };
        self.sequence += 1;
        self.queue.push(Reverse(InFlight {
            deliver_at_ms: now_ms + delay_ms,
            sequence: self.sequence,
            from,
            to,
            payload,
        }));
    }

    /// Messages due at `now_ms`; those crossing a cut link are marked lost.
    pub fn deliver_due(&mut self, now_ms: u64) -> Vec<Delivery> {
        let mut due = Vec::new();
        while let Some(Reverse(head)) = self.queue.peek() {
            if head.deliver_at_ms > now_ms {
                break;
            }
            let Some(Reverse(message)) = self.queue.pop() else {
                break;
            };
            let lost = self.cut_links.contains(&(message.from, message.to));
            if lost {
                self.dropped += 1;
            }
            due.push(Delivery {
                from: message.from,
                to: message.to,
                payload: message.payload,
                lost,
            });
        }
        due
    }

    pub fn cut(&mut self, from: Addr, to: Addr) {
        self.cut_links.insert((from, to));
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn isolate(&mut self, side: &[Addr], all: &[Addr]) {
        for &inside in side {
            for &outside in all.iter().filter(|node| !side.contains(node)) {
                self.cut(inside, outside);
                self.cut(outside, inside);
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut_links.clear();
    }
}
