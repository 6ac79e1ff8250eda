//! The Raft replica: a driver around `raft::RawNode` with a durable redb log.
