//! A seeded simulation of many gossiping nodes: the real [`Gossip`] state machine on each,
//! a simulated clock (microseconds) and a simulated network that delays and drops packets.
//! The same seed gives the same run, so a failure replays. Used by `tests/gossip_sim.rs` and
//! `examples/bench_gossip.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Gossip, GossipConfig, GossipId, GossipTimer, MemberState, Table};

/// The simulated cluster's shape and network.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How many nodes start.
    pub nodes: usize,
    /// How many of them are seeds (the "managers" every node announces to).
    pub seeds: usize,
    /// The run's seed.
    pub seed: u64,
    /// One-way latency of a packet, uniform in this range (microseconds).
    pub latency_us: (u64, u64),
    /// Packets lost, per million.
    pub drop_per_million: u32,
    /// Nodes start at a random time within this window (microseconds).
    pub start_spread_us: u64,
    /// Bytes a fetch reply moves per microsecond (125 = 1 Gbit/s).
    pub bandwidth_bytes_per_us: u64,
    /// A fetch to a dead node fails after this long (microseconds).
    pub fetch_timeout_us: u64,
    /// The gossip configuration of every node.
    pub gossip: GossipConfig,
}

impl SimConfig {
    /// `nodes` nodes on a LAN (0.2 to 2 ms latency, 0.5 % loss), three seeds.
    pub fn lan(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seeds: 3.min(nodes),
            seed,
            latency_us: (200, 2_000),
            drop_per_million: 5_000,
            start_spread_us: 1_000_000,
            bandwidth_bytes_per_us: 125,
            fetch_timeout_us: 1_000_000,
            gossip: GossipConfig::default(),
        }
    }
}

/// Traffic counted since [`Simulation::reset_traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    /// Gossip packets sent (all nodes).
    pub packets: u64,
    /// Bytes of those packets.
    pub packet_bytes: u64,
    /// Table fetches made (requests).
    pub fetches: u64,
    /// Table bytes moved by fetch replies.
    pub fetch_bytes: u64,
    /// Simulated time counted over (microseconds).
    pub elapsed_us: u64,
}

impl Traffic {
    /// Gossip packets per node per second.
    pub fn packets_per_node_per_s(&self, nodes: usize) -> f64 {
        per_node_per_s(self.packets, nodes, self.elapsed_us)
    }

    /// Gossip bytes per node per second.
    pub fn bytes_per_node_per_s(&self, nodes: usize) -> f64 {
        per_node_per_s(self.packet_bytes, nodes, self.elapsed_us)
    }
}

fn per_node_per_s(count: u64, nodes: usize, elapsed_us: u64) -> f64 {
    if nodes == 0 || elapsed_us == 0 {
        return 0.0;
    }
    count as f64 / nodes as f64 / (elapsed_us as f64 / 1e6)
}

/// How often a node without members announces itself to the seeds again (the gossip actor's
/// `SEED_RETRY`).
const SEED_RETRY_US: u64 = 1_000_000;

enum Event {
    Start {
        node: usize,
    },
    Packet {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        timer: GossipTimer,
    },
    FetchRequest {
        to: usize,
        from: usize,
        version: u64,
    },
    FetchReply {
        to: usize,
        peer: GossipId,
        reply: Option<Table>,
    },
}

struct SimNode {
    id: GossipId,
    gossip: Gossip,
    alive: bool,
    started: bool,
}

/// The simulated cluster. See the module documentation.
pub struct Simulation {
    config: SimConfig,
    now_us: u64,
    sequence: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    nodes: Vec<SimNode>,
    by_name: HashMap<Arc<str>, usize>,
    network: StdRng,
    traffic: Traffic,
    traffic_since_us: u64,
    refused: u64,
}

fn node_addr(index: usize) -> SocketAddr {
    let index = index as u32;
    SocketAddr::from((
        [10, (index >> 16) as u8, (index >> 8) as u8, index as u8],
        4240,
    ))
}

impl Simulation {
    /// A cluster of `config.nodes` nodes; each starts (and announces itself to the seeds) at a
    /// random time within `start_spread_us`.
    pub fn new(config: SimConfig) -> Self {
        let mut simulation = Self {
            network: StdRng::seed_from_u64(config.seed),
            config,
            now_us: 0,
            sequence: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes: Vec::new(),
            by_name: HashMap::new(),
            traffic: Traffic::default(),
            traffic_since_us: 0,
            refused: 0,
        };
        for _ in 0..simulation.config.nodes {
            simulation.add_node();
        }
        simulation
    }

    /// Adds a node that starts within the start window from now; returns its index.
    pub fn add_node(&mut self) -> usize {
        let index = self.nodes.len();
        let id = GossipId::new(&format!("node-{index:05}"), node_addr(index), 0);
        let seed = self.config.seed ^ (index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let gossip = Gossip::new(id.clone(), self.config.gossip.clone(), seed);
        self.by_name.insert(id.node_id.clone(), index);
        self.nodes.push(SimNode {
            id,
            gossip,
            alive: true,
            started: false,
        });
        let delay = self.network.random_range(0..=self.config.start_spread_us);
        self.schedule(delay, Event::Start { node: index });
        index
    }

    /// The simulated time (microseconds).
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// How many nodes were ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the simulation has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many nodes are alive (and started).
    pub fn live(&self) -> usize {
        self.live_nodes().count()
    }

    /// The gossip of node `index`.
    pub fn node(&self, index: usize) -> &Gossip {
        &self.nodes[index].gossip
    }

    /// The node ID of node `index`.
    pub fn node_id(&self, index: usize) -> &str {
        &self.nodes[index].id.node_id
    }

    /// Packets refused by the state machines so far (none in a healthy run).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Stops node `index` abruptly (no leave message): its packets and timers vanish.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].alive = false;
    }

    /// Node `index` (a seed, say) adopts and announces table `version` of `size` bytes.
    pub fn announce_table(&mut self, index: usize, version: u64, size: usize) {
        let bytes: Arc<[u8]> = vec![(version % 251) as u8; size].into();
        self.nodes[index].gossip.announce_table(version, bytes);
        self.execute(index);
    }

    /// Counts traffic from now on.
    pub fn reset_traffic(&mut self) {
        self.traffic = Traffic::default();
        self.traffic_since_us = self.now_us;
    }

    /// Traffic since [`Simulation::reset_traffic`].
    pub fn traffic(&self) -> Traffic {
        Traffic {
            elapsed_us: self.now_us - self.traffic_since_us,
            ..self.traffic
        }
    }

    /// Whether every live node has table `version` or newer.
    pub fn table_converged(&self, version: u64) -> bool {
        self.live_nodes()
            .all(|node| node.gossip.table_version().is_some_and(|v| v >= version))
    }

    /// Whether every live node counts exactly the other live nodes as active.
    pub fn membership_converged(&self) -> bool {
        let live = self.live();
        let alive: Vec<&SimNode> = self.live_nodes().collect();
        if alive
            .iter()
            .any(|node| node.gossip.active_members() + 1 != live)
        {
            return false;
        }
        // Counts match; no live node may count a dead one among them.
        let dead: Vec<&str> = self
            .nodes
            .iter()
            .filter(|node| !node.alive)
            .map(|node| &*node.id.node_id)
            .collect();
        alive.iter().all(|node| {
            dead.iter().all(|id| {
                !matches!(
                    node.gossip.state_of(id),
                    Some(MemberState::Alive | MemberState::Suspect)
                )
            })
        })
    }

    /// How many live nodes see node `index` as `state`.
    pub fn seen_as(&self, index: usize, state: MemberState) -> usize {
        let id = &*self.nodes[index].id.node_id;
        self.live_nodes()
            .filter(|node| *node.id.node_id != *id)
            .filter(|node| node.gossip.state_of(id) == Some(state))
            .count()
    }

    /// Runs until `done` holds (checked every `check_every`) or `limit` more passes; returns
    /// the simulated time it took, or `None` at the limit.
    pub fn run_until(
        &mut self,
        limit: Duration,
        check_every: Duration,
        mut done: impl FnMut(&Simulation) -> bool,
    ) -> Option<Duration> {
        let start = self.now_us;
        let end = start + limit.as_micros() as u64;
        let step = (check_every.as_micros() as u64).max(1);
        let mut next_check = start;
        loop {
            if self.now_us >= next_check {
                if done(self) {
                    return Some(Duration::from_micros(self.now_us - start));
                }
                next_check = self.now_us + step;
            }
            if self.now_us >= end {
                return None;
            }
            self.step(next_check.min(end));
        }
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now_us + duration.as_micros() as u64;
        while self.now_us < end {
            self.step(end);
        }
    }

    fn live_nodes(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes.iter().filter(|node| node.alive && node.started)
    }

    /// Handles every event due before `until`, then moves the clock to `until`.
    fn step(&mut self, until: u64) {
        while let Some(Reverse((at, sequence))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now_us = at;
            if let Some(event) = self.events.remove(&sequence) {
                self.handle(event);
            }
        }
        self.now_us = until;
    }

    fn schedule(&mut self, after_us: u64, event: Event) {
        self.sequence += 1;
        self.queue
            .push(Reverse((self.now_us + after_us, self.sequence)));
        self.events.insert(self.sequence, event);
    }

    fn latency(&mut self) -> u64 {
        let (low, high) = self.config.latency_us;
        self.network.random_range(low..=high.max(low))
    }

    fn dropped(&mut self) -> bool {
        self.network.random_range(0..1_000_000) < self.config.drop_per_million
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Start { node } => {
                // As the gossip actor does: announce again while no seed answered (one may
                // not have started yet).
                let node_state = &self.nodes[node];
                if !node_state.alive
                    || (node_state.started && node_state.gossip.active_members() > 0)
                {
                    return;
                }
                self.nodes[node].started = true;
                self.schedule(SEED_RETRY_US, Event::Start { node });
                let seeds: Vec<GossipId> = (0..self.config.seeds.min(self.nodes.len()))
                    .filter(|seed| *seed != node)
                    .map(|seed| self.nodes[seed].id.clone())
                    .collect();
                for seed in seeds {
                    let _ = self.nodes[node].gossip.announce_to(seed);
                }
                self.execute(node);
            }
            Event::Packet { to, from, bytes } => {
                if !self.nodes[to].alive || !self.nodes[to].started {
                    return;
                }
                let sender = self.nodes[from].id.node_id.clone();
                if self.nodes[to]
                    .gossip
                    .handle_packet(&sender, &bytes)
                    .is_err()
                {
                    self.refused += 1;
                }
                self.execute(to);
            }
            Event::Timer { node, timer } => {
                if !self.nodes[node].alive {
                    return;
                }
                let _ = self.nodes[node].gossip.handle_timer(timer);
                self.execute(node);
            }
            Event::FetchRequest { to, from, version } => {
                if !self.nodes[to].alive || !self.nodes[to].started {
                    let (wait, peer) = (self.config.fetch_timeout_us, self.nodes[to].id.clone());
                    return self.schedule(
                        wait,
                        Event::FetchReply {
                            to: from,
                            peer,
                            reply: None,
                        },
                    );
                }
                let reply = self.nodes[to].gossip.serve_fetch(version);
                let size = reply.as_ref().map_or(0, |table| table.bytes.len() as u64);
                self.traffic.fetch_bytes += size;
                let transfer = size / self.config.bandwidth_bytes_per_us.max(1);
                let delay = self.latency() + transfer;
                let peer = self.nodes[to].id.clone();
                self.schedule(
                    delay,
                    Event::FetchReply {
                        to: from,
                        peer,
                        reply,
                    },
                );
            }
            Event::FetchReply { to, peer, reply } => {
                if !self.nodes[to].alive {
                    return;
                }
                self.nodes[to].gossip.handle_fetch_reply(&peer, reply);
                self.execute(to);
            }
        }
    }

    /// Carries out what node `index` asked for.
    fn execute(&mut self, index: usize) {
        let effects = self.nodes[index].gossip.take_effects();
        for (to, bytes) in effects.packets {
            self.traffic.packets += 1;
            self.traffic.packet_bytes += bytes.len() as u64;
            let Some(&target) = self.by_name.get(&to.node_id) else {
                continue;
            };
            if self.dropped() {
                continue;
            }
            let delay = self.latency();
            self.schedule(
                delay,
                Event::Packet {
                    to: target,
                    from: index,
                    bytes,
                },
            );
        }
        for (after, timer) in effects.timers {
            self.schedule(
                after.as_micros() as u64,
                Event::Timer { node: index, timer },
            );
        }
        for fetch in effects.fetches {
            self.traffic.fetches += 1;
            let target = self.by_name.get(&fetch.from.node_id).copied();
            let Some(target) = target.filter(|_| !self.dropped()) else {
                let wait = self.config.fetch_timeout_us;
                let failed = Event::FetchReply {
                    to: index,
                    peer: fetch.from,
                    reply: None,
                };
                self.schedule(wait, failed);
                continue;
            };
            let delay = self.latency();
            let version = fetch.version;
            self.schedule(
                delay,
                Event::FetchRequest {
                    to: target,
                    from: index,
                    version,
                },
            );
        }
    }
}
