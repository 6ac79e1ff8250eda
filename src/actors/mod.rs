//! Actix actors: thin shells (mailboxes, timers, I/O) over `core`, `consensus`, `net` and
//! `runtime`, one concern per file; an actor with several concerns is a folder.

pub mod control;
pub mod dispatcher;
pub mod environment;
pub mod gossip;
pub mod node;
pub mod orchestrator;
pub mod raft;
pub mod replica;
pub mod revocation;
pub mod routing;
pub mod scheduler;
pub mod service;
pub mod store_events;
pub mod transport;
pub mod worker;
