//! The gossip actor: one node's [`crate::core::gossip::Gossip`] over the node's mutual-TLS
//! QUIC transport (issue 17). It spreads the routing table the managers decided and the
//! members' liveness; see `docs/gossip.md`.
//!
//! The messages below are its seam with the routing actor (`actors/routing.rs`): the leader's
//! routing actor announces each table it decides, and the gossip actor hands every table it
//! learns back to the node's routing actor.
//!
//! The actor carries out the state machine's effects: packets become one-way
//! [`WireMessage::Gossip`] messages to the member's certificate, timers `run_later`, fetches
//! [`WireMessage::GossipFetch`] requests with [`FETCH_TIMEOUT`]. A node joins by asking each
//! manager address it knows who is there ([`WireMessage::GossipHello`]: a worker knows the
//! managers' addresses, not their node IDs) and announcing itself to the answers, again every
//! [`SEED_RETRY`] while it knows no active member.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::raft::StoreEvents;
use crate::actors::transport::{Request, SendMessage};
use crate::core::gossip::{
    Gossip, GossipConfig, GossipError, GossipEvent, GossipId, GossipView, Table,
};
use crate::core::store::Event;
use crate::net::message::Message as WireMessage;
use crate::net::transport::Expect;

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

/// Where the gossip actor hands learned tables from now on (the node's routing actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeTables(pub Recipient<TableLearned>);

/// A gossip packet that arrived from node `certificate_node_id` (its certificate's node ID).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InboundPacket {
    /// The node ID the sender's certificate names.
    pub certificate_node_id: String,
    /// The packet.
    pub bytes: Vec<u8>,
}

/// A peer asks for the table of `version` or newer: this node's, if it has one that new.
#[derive(Debug, Message)]
#[rtype(result = "Option<Table>")]
pub struct ServeFetch {
    /// The oldest version that will do.
    pub version: u64,
}

/// This node's gossip identity (the answer to a joining node's hello).
#[derive(Debug, Message)]
#[rtype(result = "GossipId")]
pub struct GetGossipIdentity;

/// This node's gossip view (`node inspect`).
#[derive(Debug, Message)]
#[rtype(result = "GossipView")]
pub struct GetGossipView;

/// Node `0` was removed from the cluster: refuse its packets and declare it down.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RemoveMember(pub String);

/// Messages the gossip actor's mailbox holds before senders are refused (inbound packets are
/// then dropped, which SWIM tolerates as it tolerates a lost datagram).
pub const GOSSIP_MAILBOX_MESSAGES: usize = 4096;
/// How long a table fetch may take before another peer is tried.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a hello to a seed (a manager address) may take.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(1);
/// While this node knows no active member, it asks its seeds who they are and announces
/// itself to them this often.
pub const SEED_RETRY: Duration = Duration::from_secs(1);

/// What the gossip actor needs from the node.
pub struct GossipWiring {
    /// One-way sends (gossip packets).
    pub sender: Recipient<SendMessage>,
    /// Requests (hellos and table fetches).
    pub requests: Recipient<Request>,
    /// Who gets the tables learned (the routing actor), if anyone yet.
    pub learned: Option<Recipient<TableLearned>>,
}

/// One node's gossip over the wire. See the module documentation.
pub struct GossipActor {
    gossip: Gossip,
    /// Addresses of the managers this node knows (its seeds), its own excluded.
    seeds: Vec<SocketAddr>,
    wiring: GossipWiring,
}

impl GossipActor {
    /// The gossip of `identity`, seeded with `seed`, joining through the managers at `seeds`.
    pub fn new(
        identity: GossipId,
        config: GossipConfig,
        seed: u64,
        seeds: Vec<SocketAddr>,
        wiring: GossipWiring,
    ) -> Self {
        let own = identity.addr;
        let mut seeds = seeds;
        seeds.retain(|addr| *addr != own);
        seeds.sort();
        seeds.dedup();
        Self {
            gossip: Gossip::new(identity, config, seed),
            seeds,
            wiring,
        }
    }

    /// Carries out what the state machine asked for.
    fn execute(&mut self, ctx: &mut Context<Self>) {
        let effects = self.gossip.take_effects();
        for (to, bytes) in effects.packets {
            self.wiring.sender.do_send(SendMessage {
                to: to.addr,
                expect: Expect::Node(to.node_id.to_string()),
                message: WireMessage::Gossip(bytes),
            });
        }
        for (after, timer) in effects.timers {
            ctx.run_later(after, move |actor, ctx| {
                if let Err(error) = actor.gossip.handle_timer(timer) {
                    tracing::debug!(%error, "gossip timer");
                }
                actor.execute(ctx);
            });
        }
        for fetch in effects.fetches {
            self.fetch(fetch.from, fetch.version, ctx);
        }
        for table in effects.learned {
            tracing::debug!(version = table.version, "routing table learned");
            if let Some(learned) = &self.wiring.learned {
                learned.do_send(TableLearned {
                    version: table.version,
                    bytes: table.bytes,
                });
            }
        }
        for event in effects.events {
            log_event(&event);
        }
    }

    fn fetch(&mut self, from: GossipId, version: u64, ctx: &mut Context<Self>) {
        let request = self.wiring.requests.send(Request {
            to: from.addr,
            expect: Expect::Node(from.node_id.to_string()),
            message: WireMessage::GossipFetch { version },
            timeout: FETCH_TIMEOUT,
        });
        let answer = async move {
            match request.await {
                Ok(Ok(WireMessage::GossipTable { version, bytes })) => Some(Table {
                    version,
                    bytes: bytes.into(),
                }),
                Ok(Ok(other)) => {
                    tracing::debug!(reply = other.kind_name(), "table fetch not answered");
                    None
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, "table fetch failed");
                    None
                }
                Err(_) => None,
            }
        };
        ctx.spawn(answer.into_actor(self).map(move |reply, actor, ctx| {
            actor.gossip.handle_fetch_reply(&from, reply);
            actor.execute(ctx);
        }));
    }

    /// While no member is active: asks every seed who it is, and announces to those that say.
    fn seek_seeds(&mut self, ctx: &mut Context<Self>) {
        if self.gossip.active_members() > 0 {
            return;
        }
        for addr in self.seeds.clone() {
            let hello = self.wiring.requests.send(Request {
                to: addr,
                expect: Expect::Any,
                message: WireMessage::GossipHello,
                timeout: HELLO_TIMEOUT,
            });
            let answer = async move {
                match hello.await {
                    Ok(Ok(WireMessage::GossipIdentity(identity))) => Some(identity),
                    Ok(Ok(other)) => {
                        tracing::debug!(%addr, reply = other.kind_name(), "gossip seed did not say who it is");
                        None
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%addr, %error, "gossip seed unreachable");
                        None
                    }
                    Err(_) => None,
                }
            };
            ctx.spawn(answer.into_actor(self).map(move |identity, actor, ctx| {
                let Some(identity) = identity else { return };
                // Its real address is the one it answered at; the identity says the rest.
                let identity = GossipId { addr, ..identity };
                if let Err(error) = actor.gossip.announce_to(identity) {
                    tracing::debug!(%addr, %error, "gossip announce");
                }
                actor.execute(ctx);
            }));
        }
    }
}

fn log_event(event: &GossipEvent) {
    match event {
        GossipEvent::MemberUp(id) => tracing::info!(member = ?id, "gossip: member up"),
        GossipEvent::MemberDown(id) => tracing::info!(member = ?id, "gossip: member down"),
        GossipEvent::Renamed { from, to } => {
            tracing::info!(from = ?from, to = ?to, "gossip: member rejoined")
        }
        GossipEvent::Idle => tracing::info!("gossip: no active member"),
        GossipEvent::Defunct => tracing::warn!("gossip: this node was declared down"),
        GossipEvent::Rejoined(id) => tracing::info!(identity = ?id, "gossip: rejoined"),
    }
}

impl Actor for GossipActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(GOSSIP_MAILBOX_MESSAGES);
        self.seek_seeds(ctx);
        ctx.run_interval(SEED_RETRY, |actor, ctx| actor.seek_seeds(ctx));
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) -> Running {
        // The others learn at once instead of after a suspicion timeout.
        if let Err(error) = self.gossip.leave() {
            tracing::debug!(%error, "gossip leave");
        }
        self.execute(ctx);
        Running::Stop
    }
}

impl Handler<AnnounceTable> for GossipActor {
    type Result = ();

    fn handle(&mut self, table: AnnounceTable, ctx: &mut Context<Self>) {
        self.gossip.announce_table(table.version, table.bytes);
        self.execute(ctx);
    }
}

impl Handler<SubscribeTables> for GossipActor {
    type Result = ();

    fn handle(&mut self, SubscribeTables(learned): SubscribeTables, _: &mut Context<Self>) {
        // The newest table so far, so a late subscriber starts from it.
        if let Some(table) = self.gossip.latest_table() {
            learned.do_send(TableLearned {
                version: table.version,
                bytes: table.bytes.clone(),
            });
        }
        self.wiring.learned = Some(learned);
    }
}

impl Handler<InboundPacket> for GossipActor {
    type Result = ();

    fn handle(&mut self, packet: InboundPacket, ctx: &mut Context<Self>) {
        match self
            .gossip
            .handle_packet(&packet.certificate_node_id, &packet.bytes)
        {
            Ok(()) => {}
            Err(error @ GossipError::Protocol(_)) => {
                tracing::debug!(from = %packet.certificate_node_id, %error, "gossip packet")
            }
            Err(error) => {
                tracing::warn!(from = %packet.certificate_node_id, %error, "gossip packet refused")
            }
        }
        self.execute(ctx);
    }
}

impl Handler<ServeFetch> for GossipActor {
    type Result = Option<Table>;

    fn handle(&mut self, fetch: ServeFetch, _: &mut Context<Self>) -> Option<Table> {
        self.gossip.serve_fetch(fetch.version)
    }
}

impl Handler<GetGossipIdentity> for GossipActor {
    type Result = MessageResult<GetGossipIdentity>;

    fn handle(&mut self, _: GetGossipIdentity, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.gossip.identity().clone())
    }
}

impl Handler<GetGossipView> for GossipActor {
    type Result = MessageResult<GetGossipView>;

    fn handle(&mut self, _: GetGossipView, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.gossip.view())
    }
}

impl Handler<RemoveMember> for GossipActor {
    type Result = ();

    fn handle(&mut self, RemoveMember(node_id): RemoveMember, ctx: &mut Context<Self>) {
        self.gossip.remove_member(&node_id);
        self.execute(ctx);
    }
}

/// On managers: nodes removed from the store (`node rm`) are removed from gossip too, and the
/// managers' verdict (down, at the highest incarnation) spreads to everyone else.
impl Handler<StoreEvents> for GossipActor {
    type Result = ();

    fn handle(&mut self, StoreEvents(batch): StoreEvents, ctx: &mut Context<Self>) {
        if batch.lossy {
            tracing::debug!("gossip missed store events; removals catch up on the next ones");
        }
        for indexed in &batch.events {
            if let Event::NodeRemoved { node_id } = &indexed.event {
                tracing::info!(node_id, "removed from the cluster: removed from gossip");
                self.gossip.remove_member(node_id);
            }
        }
        self.execute(ctx);
    }
}
