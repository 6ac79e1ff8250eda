//! Revocation enforcement on a manager: the transport judges every new peer by the store's
//! revocation list, and this actor closes the live connections of certificates that a newly
//! applied revocation catches (`node rm`, `node demote`).

use actix::prelude::*;

use crate::actors::raft::{RaftActor, StoreEvents, Subscribe};
use crate::consensus::store_machine::SharedStore;
use crate::core::store::Event;
use crate::net::tls::Role;
use crate::net::transport::{RevocationCheck, Transport};

/// The check a manager's transport applies to each peer: the store's revocation list.
pub fn store_revocation_check(store: SharedStore) -> RevocationCheck {
    std::sync::Arc::new(move |peer| {
        store.read_now().revocations().standing(
            &peer.node_id,
            peer.role == Role::Manager,
            peer.issued_index,
        )
    })
}

/// Watches the store for revocations and closes the connections they catch.
pub struct RevocationEnforcer {
    raft: Addr<RaftActor>,
    transport: Transport,
}

impl RevocationEnforcer {
    /// An enforcer for this manager's `transport`, fed by `raft`'s store events.
    pub fn new(raft: Addr<RaftActor>, transport: Transport) -> Self {
        Self { raft, transport }
    }
}

impl Actor for RevocationEnforcer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.raft.do_send(Subscribe {
            events: Some(ctx.address().recipient()),
            leadership: None,
        });
        // Revocations applied while this node was down: judge whoever is connected already.
        self.transport.close_revoked();
    }
}

impl Handler<StoreEvents> for RevocationEnforcer {
    type Result = ();

    fn handle(&mut self, StoreEvents(batch): StoreEvents, _: &mut Context<Self>) {
        let revoked = batch.lossy
            || batch
                .events
                .iter()
                .any(|indexed| matches!(indexed.event, Event::CertificatesRevoked { .. }));
        if revoked {
            let closed = self.transport.close_revoked();
            tracing::info!(
                closed,
                "revocation applied; connections of revoked certificates closed"
            );
        }
    }
}
