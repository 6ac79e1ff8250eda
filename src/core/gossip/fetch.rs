//! Which peer to fetch a newer table from, one attempt at a time: first a relay that told this
//! node (it is likely to have it by now, and that spreads the load), then the origin, then any
//! other member; never the same peer twice for one version until all were tried.

use std::collections::HashSet;
use std::sync::Arc;

use rand_pcg::rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::effects::FetchRequest;
use super::identity::GossipId;
use super::table::TableAnnouncement;

/// The fetch state of one node.
pub(super) struct Fetcher {
    rng: Pcg64Mcg,
    /// The version pursued, and the peers already asked for it.
    version: u64,
    tried: HashSet<Arc<str>>,
    /// The attempt awaiting its answer: the peer and the version asked for.
    in_flight: Option<(GossipId, u64)>,
    /// A failed attempt's retry timer is pending.
    waiting: bool,
}

impl Fetcher {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            rng: Pcg64Mcg::seed_from_u64(seed),
            version: 0,
            tried: HashSet::new(),
            in_flight: None,
            waiting: false,
        }
    }

    /// The next attempt for `newest`, if one should start now.
    pub(super) fn next<'a>(
        &mut self,
        newest: &TableAnnouncement,
        relays: &[GossipId],
        members: impl Iterator<Item = &'a GossipId>,
    ) -> Option<FetchRequest> {
        if newest.version != self.version {
            self.version = newest.version;
            self.tried.clear();
            self.waiting = false;
        }
        if self.in_flight.is_some() || self.waiting {
            return None;
        }
        let peer = self.choose(newest, relays, members)?;
        self.tried.insert(peer.node_id.clone());
        self.in_flight = Some((peer.clone(), newest.version));
        Some(FetchRequest {
            from: peer,
            version: newest.version,
        })
    }

    fn choose<'a>(
        &mut self,
        newest: &TableAnnouncement,
        relays: &[GossipId],
        members: impl Iterator<Item = &'a GossipId>,
    ) -> Option<GossipId> {
        let untried = |id: &&GossipId| !self.tried.contains(&id.node_id);
        let fresh_relays: Vec<&GossipId> = relays.iter().filter(untried).collect();
        if let Some(relay) = pick(&mut self.rng, &fresh_relays) {
            return Some(relay);
        }
        if !self.tried.contains(&newest.origin.node_id) {
            return Some(newest.origin.clone());
        }
        let others: Vec<&GossipId> = members.filter(untried).collect();
        if let Some(member) = pick(&mut self.rng, &others) {
            return Some(member);
        }
        // Everyone was asked: start the round again from the origin.
        self.tried.clear();
        Some(newest.origin.clone())
    }

    /// The version asked of `from`, if an attempt to it is awaiting its answer.
    pub(super) fn in_flight_version(&self, from: &GossipId) -> Option<u64> {
        self.in_flight
            .as_ref()
            .filter(|(peer, _)| peer.node_id == from.node_id)
            .map(|(_, version)| *version)
    }

    /// The attempt succeeded (or is moot): nothing is pending.
    pub(super) fn finished(&mut self) {
        self.in_flight = None;
        self.waiting = false;
    }

    /// The attempt failed: the next waits for the retry timer.
    pub(super) fn failed(&mut self) {
        self.in_flight = None;
        self.waiting = true;
    }

    /// The retry timer fired.
    pub(super) fn retry_due(&mut self) {
        self.waiting = false;
    }
}

fn pick(rng: &mut Pcg64Mcg, among: &[&GossipId]) -> Option<GossipId> {
    if among.is_empty() {
        return None;
    }
    let index = (rng.next_u64() % among.len() as u64) as usize;
    among.get(index).map(|id| (*id).clone())
}
