//! Flotilla: a Docker-Swarm-like container orchestrator built as an actor system.
//!
//! # Layout
//!
//! The layers, each using only those below it (`docs/architecture.md` draws them):
//!
//! ```text
//! bin -> client | node (composition root) -> actors -> net | consensus -> core | runtime
//! ```
//!
//! - [`client`]: the `flotilla` CLI's logic: admin requests, Docker-style output, progress, and
//!   the `service update` flags applied to a spec (`client::update`).
//! - [`node`]: the composition root: state directory, init / join / start / hollow nodes,
//!   wiring the actors together, the clock and seed they get, shutdown and role restarts.
//! - [`actors`]: thin actix shells (mailboxes, timers, I/O), one concern per file, each
//!   declaring the messages it handles; the rules they apply are in `core`.
//! - [`net`]: the wire codec (pure over bytes), the admin protocol, the cluster PKI and join
//!   tokens, and the QUIC transport with mutual TLS (no actix: `actors::transport` bridges it).
//! - [`consensus`]: the Raft member driven around `raft::RawNode`, its durable log on redb,
//!   and the store as its state machine.
//! - [`core`]: pure, I/O-free logic: the cluster model, the store's apply function and its
//!   event batches, the write planner, node sessions, assignment sets, the scheduler, the
//!   orchestrator's reconcile and restart backoff. No actix, tokio, clock or global RNG: time
//!   arrives as a `now` argument, randomness as a seeded generator.
//! - [`runtime`]: the `ContainerRuntime` implementations (docker, process, sim), and a
//!   wrapper that measures any of them.
//! - [`metrics`]: a node's latency histograms and error counters (a leaf: only
//!   `prometheus-client`), handed to whatever observes; `node::metrics` serves them.
//!
//! The binaries in `src/bin/` only parse arguments and start things.
#![deny(missing_docs)]

pub mod actors;
pub mod client;
pub mod consensus;
pub mod core;
pub mod metrics;
pub mod net;
pub mod node;
pub mod runtime;
