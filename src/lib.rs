//! Flotilla: a Docker-Swarm-like container orchestrator built as an actor system.
//!
//! # Layout
//!
//! - [`client`]: the `flotilla` CLI's logic: control requests and Docker-style output.
//! - [`core`]: pure, I/O-free logic: the cluster model, the replicated store's apply function,
//!   the scheduler, the orchestrator's reconcile and restart backoff. No actix, tokio, clock or
//!   RNG: time arrives as a `now` argument, randomness as a seeded generator.
//! - [`consensus`]: the Raft replica driven around `raft::RawNode`, with its durable log on redb.
//! - [`net`]: the wire codec (pure over bytes), the cluster PKI and join tokens, and the QUIC
//!   transport with mutual TLS bridged to actix.
//! - [`actors`]: thin actix shells, one per file, each declaring the messages it handles.
//! - [`node`]: the daemon: state directory, bootstrapping (init, join, start), shutdown.
//! - [`runtime`]: the `ContainerRuntime` implementations (docker, process, sim).
//!
//! The binaries in `src/bin/` only parse arguments and start things.
#![deny(missing_docs)]

pub mod actors;
pub mod client;
pub mod consensus;
pub mod core;
pub mod net;
pub mod node;
pub mod runtime;
