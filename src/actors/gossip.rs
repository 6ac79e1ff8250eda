//! The gossip actor: one node's [`crate::core::gossip::Gossip`] over the node's mutual-TLS
//! QUIC transport (issue 17). It spreads the routing table the managers decided and the
//! members' liveness; see `docs/gossip.md`.
//!
//! The messages below are its seam with the routing actor (`actors/routing.rs`): the leader's
//! routing actor announces each table it decides, and the gossip actor hands every table it
//! learns back to the node's routing actor.

use std::sync::Arc;

use actix::prelude::*;

/// The managers decided routing table `version` (the encoded [`crate::core::routing::RoutingTable`]):
/// adopt it and spread it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AnnounceTable {
    /// The table's version (the Raft index it was derived at).
    pub version: u64,
    /// `RoutingTable::encode` of it.
    pub bytes: Arc<[u8]>,
}

/// A routing table this node learned through gossip, for its routing actor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TableLearned {
    /// The table's version.
    pub version: u64,
    /// `RoutingTable::encode` of it (decoded, and checked, by the receiver).
    pub bytes: Arc<[u8]>,
}
