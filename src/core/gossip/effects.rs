//! foca's runtime, turned into plain values: what the state machine wants done (packets to
//! send, timers to set, tables to fetch, tables learned, membership news), which the caller
//! (the gossip actor, or the simulation) carries out.

use std::time::Duration;

use foca::{Notification, Timer};

use super::identity::GossipId;
use super::table::Table;

/// A timer the caller sets, and hands back to [`super::Gossip::handle_timer`] when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipTimer {
    /// One of foca's own (probes, suspicion, periodic gossip and announce).
    Foca(Timer<GossipId>),
    /// Try fetching the newest announced table again (the last attempt failed).
    FetchRetry,
}

/// Ask `from` for the table of `version` or newer; the answer goes to
/// [`super::Gossip::handle_fetch_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The peer asked.
    pub from: GossipId,
    /// The oldest version that will do.
    pub version: u64,
}

/// Membership news, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipEvent {
    /// A member became active.
    MemberUp(GossipId),
    /// A member was declared down.
    MemberDown(GossipId),
    /// A member came back under a newer identity.
    Renamed {
        /// Its old identity.
        from: GossipId,
        /// Its new identity.
        to: GossipId,
    },
    /// This node knows no active member any more.
    Idle,
    /// The cluster declared this node down (it rejoins under a new identity if it can).
    Defunct,
    /// This node rejoined under a new identity.
    Rejoined(GossipId),
}

/// Everything the state machine asked for since the caller last took it.
#[derive(Debug, Default)]
pub struct Effects {
    /// Packets to send, in order: `(to, bytes)`.
    pub packets: Vec<(GossipId, Vec<u8>)>,
    /// Timers to set: fire `timer` after the duration.
    pub timers: Vec<(Duration, GossipTimer)>,
    /// Table fetches to start.
    pub fetches: Vec<FetchRequest>,
    /// Tables adopted (announced here or fetched), oldest first.
    pub learned: Vec<Table>,
    /// Membership news.
    pub events: Vec<GossipEvent>,
}

impl Effects {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
            && self.timers.is_empty()
            && self.fetches.is_empty()
            && self.learned.is_empty()
            && self.events.is_empty()
    }
}

impl foca::Runtime<GossipId> for Effects {
    fn notify(&mut self, notification: Notification<'_, GossipId>) {
        let event = match notification {
            Notification::MemberUp(id) => GossipEvent::MemberUp(id.clone()),
            Notification::MemberDown(id) => GossipEvent::MemberDown(id.clone()),
            Notification::Rename(from, to) => GossipEvent::Renamed {
                from: from.clone(),
                to: to.clone(),
            },
            Notification::Idle => GossipEvent::Idle,
            Notification::Defunct => GossipEvent::Defunct,
            Notification::Rejoin(id) => GossipEvent::Rejoined(id.clone()),
            Notification::Active => return,
        };
        self.events.push(event);
    }

    fn send_to(&mut self, to: GossipId, data: &[u8]) {
        self.packets.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<GossipId>, after: Duration) {
        self.timers.push((after, GossipTimer::Foca(event)));
    }
}
