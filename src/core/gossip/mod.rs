//! Gossip among nodes (issue 17): SWIM membership with `foca`, and the spread of the routing
//! table the managers decided.
//!
//! [`Gossip`] is a pure state machine in the manner of raft-rs' `RawNode`: packets, timers and
//! fetch replies go in; what to do comes out as [`Effects`] (packets to send, timers to set,
//! tables to fetch, tables learned), which the caller carries out. No socket, clock or global
//! generator: timers are durations, randomness comes from a seed.
//!
//! What spreads is small: member updates (alive, suspect, down) and table announcements
//! `(version, origin)`. The table's bytes (tens of KiB) are fetched from a peer that has them
//! (a relay that told this node, else the origin, else any member), retrying another on
//! failure. Managers decide the table; gossip only carries what they decided (`docs/gossip.md`).
//!
//! # Layout
//!
//! - [`identity`]: [`GossipId`], a member's identity (node ID, address, bump).
//! - [`codec`]: foca's wire format in bincode 2, and the header peek used to check senders.
//! - [`table`]: the opaque [`Table`], its announcements and foca's broadcast handler.
//! - [`effects`]: foca's runtime as plain values ([`Effects`], [`GossipTimer`]).
//! - [`config`]: timings and sizes ([`GossipConfig`]).
//! - [`view`]: [`GossipView`], what `node inspect` shows.
//! - [`sim`]: a seeded simulation of many nodes over a lossy network and a simulated clock.

pub mod codec;
pub mod config;
pub mod effects;
pub mod identity;
pub mod sim;
pub mod table;
pub mod view;

mod fetch;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;

use foca::{Foca, Identity, Member, State};
use parking_lot::Mutex;
use rand_pcg::rand_core::SeedableRng;
use rand_pcg::Pcg64Mcg;

pub use codec::{GossipCodec, MAX_PACKET_BYTES};
pub use config::GossipConfig;
pub use effects::{Effects, FetchRequest, GossipEvent, GossipTimer};
pub use identity::GossipId;
pub use table::{Table, TableAnnouncement};
pub use view::{GossipView, MemberState, MemberView};

use fetch::Fetcher;
use table::{AnnouncementInbox, TableBroadcasts};

/// Why a packet or call was refused. Nothing changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The packet's header does not decode.
    #[error("malformed gossip packet: {0}")]
    Malformed(String),
    /// The packet claims a sender other than the node its certificate names.
    #[error("gossip packet from node {certificate} claims to be from {claimed}")]
    ImpostorSender {
        /// The node ID of the certificate the packet came with.
        certificate: String,
        /// The node ID in the packet's header.
        claimed: String,
    },
    /// The sender's node was removed from the cluster (its certificate is revoked).
    #[error("gossip packet from removed node {0}")]
    RemovedSender(String),
    /// foca refused the packet or call (malformed updates, a packet from this node itself).
    #[error("gossip: {0}")]
    Protocol(String),
}

type Engine = Foca<GossipId, GossipCodec, Pcg64Mcg, TableBroadcasts>;

/// One node's gossip. See the module documentation.
pub struct Gossip {
    foca: Engine,
    config: GossipConfig,
    effects: Effects,
    inbox: Arc<Mutex<AnnouncementInbox>>,
    table: Option<Table>,
    fetcher: Fetcher,
    removed: HashSet<Arc<str>>,
    /// The cluster size foca's configuration was last derived for (a power of two).
    tuned_for: usize,
}

impl Gossip {
    /// The gossip of the node `identity`, its choices drawn from `seed`.
    pub fn new(identity: GossipId, config: GossipConfig, seed: u64) -> Self {
        let inbox = Arc::new(Mutex::new(AnnouncementInbox::default()));
        let handler = TableBroadcasts {
            inbox: inbox.clone(),
        };
        let foca = Foca::with_custom_broadcast(
            identity,
            config.foca_config(1),
            Pcg64Mcg::seed_from_u64(seed),
            GossipCodec,
            handler,
        );
        Self {
            foca,
            fetcher: Fetcher::new(seed ^ 0x9E37_79B9_7F4A_7C15),
            config,
            effects: Effects::default(),
            inbox,
            table: None,
            removed: HashSet::new(),
            tuned_for: 1,
        }
    }

    /// This node's identity (it changes when the node rejoins after being declared down).
    pub fn identity(&self) -> &GossipId {
        self.foca.identity()
    }

    /// Everything asked for since the last call, to be carried out by the caller.
    pub fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.effects)
    }

    /// Joins the cluster `seed` belongs to (a manager this node knows of).
    pub fn announce_to(&mut self, seed: GossipId) -> Result<(), GossipError> {
        if seed.node_id == self.identity().node_id {
            return Ok(());
        }
        self.foca
            .announce(seed, &mut self.effects)
            .map_err(protocol)
    }

    /// A packet that came with the certificate of node `certificate_node_id`. Its claimed
    /// sender must be that node, and not a removed one; otherwise it is refused untouched.
    pub fn handle_packet(
        &mut self,
        certificate_node_id: &str,
        packet: &[u8],
    ) -> Result<(), GossipError> {
        let header =
            codec::peek_header(packet).map_err(|e| GossipError::Malformed(e.to_string()))?;
        if *header.src.node_id != *certificate_node_id {
            return Err(GossipError::ImpostorSender {
                certificate: certificate_node_id.to_string(),
                claimed: header.src.node_id.to_string(),
            });
        }
        if self.removed.contains(&header.src.node_id) {
            return Err(GossipError::RemovedSender(header.src.node_id.to_string()));
        }
        let result = self
            .foca
            .handle_data(packet, &mut self.effects)
            .map_err(protocol);
        // Members other nodes vouch for may include removed ones: this node keeps them down.
        self.enforce_removals();
        self.after_change();
        result
    }

    /// A timer set from [`Effects::timers`] fired.
    pub fn handle_timer(&mut self, timer: GossipTimer) -> Result<(), GossipError> {
        let result = match timer {
            GossipTimer::Foca(timer) => self
                .foca
                .handle_timer(timer, &mut self.effects)
                .map_err(protocol),
            GossipTimer::FetchRetry => {
                self.fetcher.retry_due();
                Ok(())
            }
        };
        self.after_change();
        result
    }

    /// The managers decided table `version`: adopt it and announce it. `false` when this
    /// node already has that version or a newer one (nothing changes).
    pub fn announce_table(&mut self, version: u64, bytes: Arc<[u8]>) -> bool {
        if self.table_version().is_some_and(|have| have >= version) {
            return false;
        }
        let announcement = TableAnnouncement {
            version,
            origin: self.identity().clone(),
        };
        // Queued before the table is adopted (the handler takes only news); not queued when
        // a newer announcement already spreads, which then wins anyway.
        match self.foca.add_broadcast(&announcement.encode()) {
            Ok(true) => {}
            Ok(false) => tracing::debug!(version, "a newer table announcement spreads already"),
            Err(error) => tracing::debug!(%error, version, "table announcement not queued"),
        }
        self.adopt(Table { version, bytes });
        // Push it out now rather than with the next round of gossip.
        if let Err(error) = self.foca.broadcast(&mut self.effects) {
            tracing::debug!(%error, "table broadcast failed");
        }
        self.after_change();
        true
    }

    /// A peer asks for the table of `version` or newer: this node's, if it is that new.
    pub fn serve_fetch(&self, version: u64) -> Option<Table> {
        self.table
            .as_ref()
            .filter(|table| table.version >= version)
            .cloned()
    }

    /// The answer to a [`FetchRequest`] made of `from` (`None`: it failed or had no table
    /// that new). A newer table is adopted; otherwise another peer is tried after a while.
    pub fn handle_fetch_reply(&mut self, from: &GossipId, reply: Option<Table>) {
        let wanted = self.fetcher.in_flight_version(from);
        match (reply, wanted) {
            (Some(table), Some(version)) if table.version >= version => {
                self.fetcher.finished();
                if self.table_version().is_none_or(|have| table.version > have) {
                    self.adopt(table);
                }
            }
            (_, Some(_)) => {
                self.fetcher.failed();
                self.effects
                    .timers
                    .push((self.config.fetch_retry, GossipTimer::FetchRetry));
            }
            // A late answer to an abandoned attempt.
            (_, None) => {}
        }
        self.after_change();
    }

    /// Node `node_id` was removed from the cluster (a manager learned it from its store): its
    /// packets are refused from now on and it is declared down to everyone.
    pub fn remove_member(&mut self, node_id: &str) {
        if self.removed.insert(Arc::from(node_id)) {
            self.enforce_removals();
            self.after_change();
        }
    }

    /// The newest table this node has.
    pub fn latest_table(&self) -> Option<&Table> {
        self.table.as_ref()
    }

    /// The version of [`Gossip::latest_table`].
    pub fn table_version(&self) -> Option<u64> {
        self.table.as_ref().map(|table| table.version)
    }

    /// Active members (alive or suspect), this node excluded.
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }

    /// Whether `node_id` is active in this node's view.
    pub fn state_of(&self, node_id: &str) -> Option<MemberState> {
        self.foca
            .iter_membership_state()
            .find(|member| *member.id().node_id == *node_id)
            .map(|member| member.state().into())
    }

    /// What `node inspect` shows.
    pub fn view(&self) -> GossipView {
        let mut members: Vec<MemberView> = self
            .foca
            .iter_membership_state()
            .map(|member| MemberView {
                node_id: member.id().node_id.to_string(),
                addr: member.id().addr.to_string(),
                state: member.state().into(),
            })
            .collect();
        members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let suspected = members
            .iter()
            .filter(|member| member.state == MemberState::Suspect)
            .map(|member| member.node_id.clone())
            .collect();
        GossipView {
            node_id: self.identity().node_id.to_string(),
            members,
            suspected,
            table_version: self.table_version(),
            announced_version: self.inbox.lock().newest.as_ref().map(|n| n.version),
        }
    }

    /// Leaves the cluster on purpose (shutdown): the others learn it at once.
    pub fn leave(&mut self) -> Result<(), GossipError> {
        self.foca.leave_cluster(&mut self.effects).map_err(protocol)
    }

    fn adopt(&mut self, table: Table) {
        {
            // What this node has is news it will not take again from an announcement.
            let mut inbox = self.inbox.lock();
            if inbox
                .newest
                .as_ref()
                .is_none_or(|n| n.version < table.version)
            {
                inbox.newest = Some(TableAnnouncement {
                    version: table.version,
                    origin: self.foca.identity().clone(),
                });
                inbox.relays.clear();
            }
        }
        self.effects.learned.push(table.clone());
        self.table = Some(table);
    }

    /// Declares every removed node this view still counts as active down, with the highest
    /// incarnation, so that no refutation brings it back.
    fn enforce_removals(&mut self) {
        if self.removed.is_empty() {
            return;
        }
        let doomed: Vec<GossipId> = self
            .foca
            .iter_members()
            .filter(|member| self.removed.contains(&member.id().node_id))
            .map(|member| member.id().clone())
            .collect();
        if doomed.is_empty() {
            return;
        }
        let updates = doomed
            .into_iter()
            .map(|id| Member::new(id, foca::Incarnation::MAX, State::Down));
        if let Err(error) = self.foca.apply_many(updates, true, &mut self.effects) {
            tracing::debug!(%error, "declaring removed members down failed");
        }
    }

    /// After anything that may have changed the view or the announced version: retune foca
    /// for the cluster size and start a fetch if a newer table is known.
    fn after_change(&mut self) {
        self.retune();
        let newest = self.inbox.lock().newest.clone();
        let Some(newest) = newest else {
            return;
        };
        if self
            .table_version()
            .is_some_and(|have| have >= newest.version)
        {
            self.fetcher.finished();
            return;
        }
        let relays = self.inbox.lock().relays.clone();
        let own = self.foca.identity().addr();
        let candidates = self
            .foca
            .iter_members()
            .map(|member| member.id())
            .filter(|id| !self.removed.contains(&id.node_id) && id.addr() != own);
        if let Some(request) = self.fetcher.next(&newest, &relays, candidates) {
            self.effects.fetches.push(request);
        }
    }

    fn retune(&mut self) {
        let size = (self.foca.num_members() + 1).next_power_of_two();
        if size == self.tuned_for {
            return;
        }
        self.tuned_for = size;
        if let Err(error) = self.foca.set_config(self.config.foca_config(size)) {
            tracing::debug!(%error, size, "gossip configuration not replaced");
        }
    }
}

fn protocol(error: foca::Error) -> GossipError {
    GossipError::Protocol(error.to_string())
}
