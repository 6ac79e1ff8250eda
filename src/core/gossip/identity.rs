//! Who a gossip member is: the node ID of its certificate, the address it is reached at, and a
//! bump that lets a restarted (or wrongly declared down) node come back under a new identity.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A gossip member's identity (foca's `Identity`).
///
/// Two identities are the same member when their node IDs are equal (foca's `Addr`): a member
/// appears once in a view whatever its address or bump. Of two identities of one node, the
/// higher bump wins; a node starts with a bump that grows with its start time, and bumps it
/// again (foca's `renew`) when the cluster declared it down while it was alive.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GossipId {
    /// The node ID, as its certificate names it (checked on every packet received).
    pub node_id: Arc<str>,
    /// The node's advertise address (its QUIC endpoint).
    pub addr: SocketAddr,
    /// Larger for a later incarnation of the same node.
    pub bump: u64,
}

impl GossipId {
    /// The identity of node `node_id` at `addr` with `bump`.
    pub fn new(node_id: &str, addr: SocketAddr, bump: u64) -> Self {
        Self {
            node_id: Arc::from(node_id),
            addr,
            bump,
        }
    }
}

impl fmt::Debug for GossipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.node_id, self.addr, self.bump)
    }
}

impl foca::Identity for GossipId {
    /// The node ID: one member per node (an `Arc`, so foca's many lookups copy no string).
    type Addr = Arc<str>;

    fn renew(&self) -> Option<Self> {
        let bump = self.bump.checked_add(1)?;
        Some(Self {
            node_id: self.node_id.clone(),
            addr: self.addr,
            bump,
        })
    }

    fn addr(&self) -> Arc<str> {
        self.node_id.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // The later incarnation wins; between two identities of one bump (a node restarted
        // within the same millisecond at another address) the larger address decides, so
        // every member picks the same one.
        (self.bump, self.addr) > (adversary.bump, adversary.addr)
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_renewed_identity_is_the_same_member_and_wins() {
        let first = GossipId::new("n1", addr(1), 7);
        let renewed = first.renew().expect("renews");
        assert_eq!(first.addr(), renewed.addr(), "same member");
        assert_ne!(first, renewed);
        assert!(renewed.win_addr_conflict(&first));
        assert!(!first.win_addr_conflict(&renewed));
        assert!(GossipId::new("n1", addr(1), u64::MAX).renew().is_none());
    }

    #[test]
    fn a_tie_on_bump_is_decided_by_address_the_same_way_everywhere() {
        let a = GossipId::new("n1", addr(1), 3);
        let b = GossipId::new("n1", addr(2), 3);
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
        assert_eq!(format!("{a:?}"), "n1@127.0.0.1:1#3");
    }
}
