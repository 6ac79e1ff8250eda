//! Actix actors: thin shells over `core`, `consensus`, `net` and `runtime`, one per file.

pub mod transport;
