//! The routing actor: keeps the node's ingress proxy ([`Mesh`]) on the newest routing table
//! (SPEC §8).
//!
//! On a manager it derives the table from its own store after every applied batch (the
//! batches already waiting in the mailbox are taken first, so a burst of changes costs one
//! derivation), and the leader announces each new table to gossip. Every node, worker or
//! manager, also takes the tables gossip brings. Whatever the source, the highest version
//! wins: versions are Raft indexes, the same on every manager.

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::gossip::{AnnounceTable, TableLearned};
use crate::actors::raft::{LeadershipChanged, RaftActor, StoreEvents, Subscribe};
use crate::consensus::store_machine::SharedStore;
use crate::core::routing::RoutingTable;
use crate::net::mesh::Mesh;

/// A manager's own source of tables: its store and Raft actor.
pub struct RoutingSource {
    /// The applied store.
    pub store: SharedStore,
    /// For store events and leadership.
    pub raft: Addr<RaftActor>,
}

/// Tell the routing actor where to announce the tables the leader decides.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AnnounceVia(pub Recipient<AnnounceTable>);

/// Keeps one node's mesh on the newest table. See the module documentation.
pub struct RoutingActor {
    mesh: Mesh,
    source: Option<RoutingSource>,
    gossip: Option<Recipient<AnnounceTable>>,
    leads: bool,
    /// The table this manager derived last (only a change of routes makes a new one).
    decided: Option<RoutingTable>,
    derive_queued: bool,
}

/// Derive the table from the store now (queued behind the batches already in the mailbox).
#[derive(Message)]
#[rtype(result = "()")]
struct Derive;

impl RoutingActor {
    /// The routing actor of a node whose ingress proxy is `mesh`; `source` on managers.
    pub fn new(mesh: Mesh, source: Option<RoutingSource>) -> Self {
        Self {
            mesh,
            source,
            gossip: None,
            leads: false,
            decided: None,
            derive_queued: false,
        }
    }

    fn queue_derive(&mut self, ctx: &mut Context<Self>) {
        if !std::mem::replace(&mut self.derive_queued, true) {
            ctx.notify(Derive);
        }
    }

    fn announce(&self) {
        let (Some(gossip), Some(table), true) = (&self.gossip, &self.decided, self.leads) else {
            return;
        };
        gossip.do_send(AnnounceTable {
            version: table.version,
            bytes: Arc::from(table.encode()),
        });
    }

    fn take(&self, table: RoutingTable, source: &str) {
        let version = table.version;
        if self.mesh.apply(table) {
            tracing::debug!(version, source, "routing table applied");
        }
    }
}

impl Actor for RoutingActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(source) = &self.source {
            source.raft.do_send(Subscribe {
                events: Some(ctx.address().recipient()),
                leadership: Some(ctx.address().recipient()),
            });
            self.queue_derive(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.mesh.close();
    }
}

impl Handler<StoreEvents> for RoutingActor {
    type Result = ();

    fn handle(&mut self, _: StoreEvents, ctx: &mut Context<Self>) {
        // Any batch may change a route (a task's state or endpoints, a service's ports); a
        // lossy one too. Deriving is cheap next to applying: only published services count.
        self.queue_derive(ctx);
    }
}

impl Handler<Derive> for RoutingActor {
    type Result = ();

    fn handle(&mut self, _: Derive, _: &mut Context<Self>) {
        self.derive_queued = false;
        let Some(source) = &self.source else {
            return;
        };
        let table = RoutingTable::from_store(&source.store.read());
        // The mesh may hold a newer table from gossip (this store lags); only a change of
        // routes is worth a new version, here or for the others.
        if !self.mesh.table().same_routes(&table) {
            self.take(table.clone(), "store");
        }
        if self
            .decided
            .as_ref()
            .is_none_or(|decided| !decided.same_routes(&table))
        {
            self.decided = Some(table);
            self.announce();
        }
    }
}

impl Handler<LeadershipChanged> for RoutingActor {
    type Result = ();

    fn handle(&mut self, leadership: LeadershipChanged, _: &mut Context<Self>) {
        let leads = leadership.is_leader && leadership.caught_up;
        if leads && !self.leads {
            self.leads = true;
            // A new leader tells everyone what it holds (gossip ignores it if known).
            self.announce();
        }
        self.leads = leads;
    }
}

impl Handler<AnnounceVia> for RoutingActor {
    type Result = ();

    fn handle(&mut self, AnnounceVia(gossip): AnnounceVia, _: &mut Context<Self>) {
        self.gossip = Some(gossip);
        self.announce();
    }
}

impl Handler<TableLearned> for RoutingActor {
    type Result = ();

    fn handle(&mut self, learned: TableLearned, _: &mut Context<Self>) {
        match RoutingTable::decode(&learned.bytes) {
            Ok(table) if table.version == learned.version => self.take(table, "gossip"),
            Ok(table) => tracing::warn!(
                announced = learned.version,
                decoded = table.version,
                "a gossiped routing table's version does not match its announcement; ignored"
            ),
            Err(error) => tracing::warn!(%error, "a gossiped routing table is ignored"),
        }
    }
}
