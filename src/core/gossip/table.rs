//! The routing table as gossip sees it: an opaque version and bytes. Only a small
//! announcement, `(version, origin)`, spreads by gossip; the bytes are fetched from a peer.

use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::identity::GossipId;

/// A table the managers decided: the Raft index it was decided at (higher wins) and its
/// bytes, which gossip never looks into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The Raft index the managers decided it at.
    pub version: u64,
    /// The encoded table (tens of KiB: fetched, never gossiped).
    pub bytes: Arc<[u8]>,
}

/// What spreads: a newer table exists, and `origin` had it first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableAnnouncement {
    /// The table's version.
    pub version: u64,
    /// The node that announced it (a manager), which has the bytes.
    pub origin: GossipId,
}

impl TableAnnouncement {
    /// The announcement's bytes as a foca custom broadcast.
    pub fn encode(&self) -> Vec<u8> {
        // A u64 and an identity always encode; an empty item would only be refused by foca.
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    /// An announcement from a broadcast item, which must hold exactly one.
    pub fn decode(item: &[u8]) -> Result<Self, AnnouncementError> {
        let config = bincode::config::standard().with_limit::<{ super::codec::MAX_PACKET_BYTES }>();
        let (announcement, used) = bincode::serde::decode_from_slice::<Self, _>(item, config)
            .map_err(|e| AnnouncementError(e.to_string()))?;
        if used != item.len() {
            return Err(AnnouncementError(format!(
                "{} bytes left over after the announcement",
                item.len() - used
            )));
        }
        Ok(announcement)
    }
}

/// A broadcast item that is not a table announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed table announcement: {0}")]
pub struct AnnouncementError(pub String);

/// The key foca queues an announcement under: a newer version replaces every older one in
/// the queue, so only the newest keeps spreading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableKey {
    /// The announced version.
    pub version: u64,
}

impl foca::Invalidates for TableKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.version >= other.version
    }
}

/// What the broadcast handler learned since the state machine last looked: the newest
/// announced version and the peers that can serve it.
#[derive(Debug, Default)]
pub(super) struct AnnouncementInbox {
    /// The newest version announced to (or by) this node.
    pub newest: Option<TableAnnouncement>,
    /// Who told this node about `newest` (a peer that will have it soon, if not yet).
    pub relays: Vec<GossipId>,
}

/// The most relays remembered for one version (fetch candidates besides the origin).
pub(super) const MAX_RELAYS: usize = 4;

/// foca's broadcast handler for table announcements. It shares an inbox with the state
/// machine, which foca gives no other way to reach.
pub(super) struct TableBroadcasts {
    pub inbox: Arc<Mutex<AnnouncementInbox>>,
}

impl foca::BroadcastHandler<GossipId> for TableBroadcasts {
    type Key = TableKey;
    type Error = AnnouncementError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&GossipId>,
    ) -> Result<Option<TableKey>, AnnouncementError> {
        let announcement = TableAnnouncement::decode(data)?;
        let mut inbox = self.inbox.lock();
        let known = inbox.newest.as_ref().map_or(0, |newest| newest.version);
        if announcement.version < known {
            return Ok(None);
        }
        if announcement.version == known {
            // Old news; but the sender has (or soon has) it too: one more place to fetch from.
            if let Some(sender) = sender {
                if inbox.relays.len() < MAX_RELAYS && !inbox.relays.contains(sender) {
                    inbox.relays.push(sender.clone());
                }
            }
            return Ok(None);
        }
        let key = TableKey {
            version: announcement.version,
        };
        inbox.relays = sender.into_iter().cloned().collect();
        inbox.newest = Some(announcement);
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use foca::{BroadcastHandler, Invalidates};

    use super::*;

    fn id(name: &str) -> GossipId {
        GossipId::new(name, "127.0.0.1:1".parse().expect("addr"), 0)
    }

    #[test]
    fn only_a_newer_version_is_rebroadcast() {
        let inbox = Arc::new(Mutex::new(AnnouncementInbox::default()));
        let mut handler = TableBroadcasts {
            inbox: inbox.clone(),
        };
        let item = |version| {
            TableAnnouncement {
                version,
                origin: id("m1"),
            }
            .encode()
        };
        let key = handler
            .receive_item(&item(5), Some(&id("a")))
            .expect("item");
        assert_eq!(key, Some(TableKey { version: 5 }));
        assert_eq!(handler.receive_item(&item(5), Some(&id("b"))), Ok(None));
        assert_eq!(handler.receive_item(&item(4), Some(&id("c"))), Ok(None));
        let seen = inbox.lock();
        assert_eq!(seen.newest.as_ref().map(|n| n.version), Some(5));
        assert_eq!(seen.relays, vec![id("a"), id("b")]);
    }

    #[test]
    fn a_newer_key_invalidates_older_ones_only() {
        let (old, new) = (TableKey { version: 3 }, TableKey { version: 4 });
        assert!(new.invalidates(&old));
        assert!(!old.invalidates(&new));
    }

    #[test]
    fn malformed_items_are_errors() {
        let mut handler = TableBroadcasts {
            inbox: Arc::default(),
        };
        assert!(handler.receive_item(&[0xFF; 3], None).is_err());
        let mut long = TableAnnouncement {
            version: 1,
            origin: id("m1"),
        }
        .encode();
        long.push(0);
        assert!(TableAnnouncement::decode(&long).is_err());
    }
}
