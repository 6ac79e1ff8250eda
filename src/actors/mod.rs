//! Actix actors: thin shells over `core`, `consensus`, `net` and `runtime`, one per file.

pub mod control;
pub mod dispatcher;
pub mod node;
pub mod raft;
pub mod transport;
pub mod worker;
