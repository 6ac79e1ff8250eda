//! A simulated network: per-message drop, delay (hence reordering), duplication, and link cuts
//! that model partitions, symmetric or one-way. Time is the simulation's step counter.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use rand::rngs::StdRng;
use rand::Rng;

/// How unreliable the network is; fixed per seed.
#[derive(Clone, Debug)]
pub struct NetworkFaults {
    pub drop_per_mille: u32,
    pub duplicate_per_mille: u32,
    pub delay_steps_max: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    deliver_at_step: u64,
    /// Tie breaker that keeps delivery order a pure function of the seed.
    sequence: u64,
    from: u64,
    to: u64,
    carries_snapshot: bool,
    bytes: Vec<u8>,
}

/// A message that arrived, or (`lost`) reached a cut link.
pub struct Delivery {
    pub from: u64,
    pub to: u64,
    pub bytes: Vec<u8>,
    pub carries_snapshot: bool,
    pub lost: bool,
}

pub struct Network {
    pub faults: NetworkFaults,
    queue: BinaryHeap<Reverse<InFlight>>,
    sequence: u64,
    /// Directed links `(from, to)` that currently lose every message.
    cut_links: HashSet<(u64, u64)>,
    pub sent: u64,
    pub dropped: u64,
}

impl Network {
    pub fn new(faults: NetworkFaults) -> Self {
        Self {
            faults,
            queue: BinaryHeap::new(),
            sequence: 0,
            cut_links: HashSet::new(),
            sent: 0,
            dropped: 0,
        }
    }

    /// Queues a message, or loses it (returning false).
    pub fn send(
        &mut self,
        rng: &mut StdRng,
        now: u64,
        from: u64,
        to: u64,
        bytes: Vec<u8>,
        carries_snapshot: bool,
    ) -> bool {
        self.sent += 1;
        if rng.random_range(0..1000) < self.faults.drop_per_mille {
            self.dropped += 1;
            return false;
        }
        if rng.random_range(0..1000) < self.faults.duplicate_per_mille {
            self.enqueue(rng, now, (from, to, carries_snapshot), bytes.clone());
        }
        self.enqueue(rng, now, (from, to, carries_snapshot), bytes);
        true
    }

    fn enqueue(
        &mut self,
        rng: &mut StdRng,
        now: u64,
        (from, to, carries_snapshot): (u64, u64, bool),
        bytes: Vec<u8>,
    ) {
        let delay = rng.random_range(1..=self.faults.delay_steps_max);
        self.sequence += 1;
        self.queue.push(Reverse(InFlight {
            deliver_at_step: now + delay,
            sequence: self.sequence,
            from,
            to,
            carries_snapshot,
            bytes,
        }));
    }

    /// Messages due at `now`; those crossing a cut link are marked lost.
    pub fn deliver_due(&mut self, now: u64) -> Vec<Delivery> {
        let mut due = Vec::new();
        while let Some(Reverse(head)) = self.queue.peek() {
            if head.deliver_at_step > now {
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
                bytes: message.bytes,
                carries_snapshot: message.carries_snapshot,
                lost,
            });
        }
        due
    }

    pub fn cut(&mut self, from: u64, to: u64) {
        self.cut_links.insert((from, to));
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn isolate(&mut self, side: &[u64], all: &[u64]) {
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
