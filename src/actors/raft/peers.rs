//! Traffic with the other managers: ordered per-peer channels for Raft messages, snapshots on
//! requests that learn whether they arrived, and peer messages stepped into the member.

use super::*;

impl RaftActor {
    /// The address of a manager: known peers first, then the managers in the store.
    pub(super) fn peer_addr(&mut self, raft_id: u64) -> Option<SocketAddr> {
        if let Some(addr) = self.peer_addrs.get(&raft_id) {
            return Some(*addr);
        }
        let store = self.store.read();
        let found = store
            .nodes()
            .values()
            .filter(|node| node.role == NodeRole::Manager)
            .find(|node| raft_id_of(&node.id) == raft_id)
            .and_then(|node| node.addr.parse().ok());
        drop(store);
        if let Some(addr) = found {
            self.peer_addrs.insert(raft_id, addr);
        }
        found
    }

    pub(super) fn send_to_peer(&mut self, to: u64, bytes: Vec<u8>) {
        let Some(addr) = self.peer_addr(to) else {
            tracing::debug!(to, "no address for raft peer; message dropped");
            return;
        };
        let stale = self
            .outboxes
            .get(&to)
            .is_none_or(|(known, outbox)| *known != addr || outbox.is_closed());
        if stale {
            self.outboxes
                .insert(to, (addr, self.transport.ordered_sender(addr)));
        }
        let envelope = RaftEnvelope {
            from: self.member().id(),
            to,
            bytes,
        };
        if let Some((_, outbox)) = self.outboxes.get(&to) {
            if !outbox.send(WireMessage::Raft(envelope)) {
                self.member().report_unreachable(to);
            }
        }
    }

    /// A snapshot goes as a request so its delivery is known: raft sends the follower nothing
    /// new until it hears how the snapshot fared.
    pub(super) fn send_snapshot(&mut self, ctx: &mut Context<Self>, to: u64, bytes: Vec<u8>) {
        let Some(addr) = self.peer_addr(to) else {
            self.member().report_snapshot(to, false);
            return;
        };
        let request = Request {
            to: addr,
            message: WireMessage::Raft(RaftEnvelope {
                from: self.member().id(),
                to,
                bytes,
            }),
            timeout: SNAPSHOT_SEND_TIMEOUT,
        };
        self.requests
            .send(request)
            .into_actor(self)
            .map(move |result, actor, ctx| {
                let delivered = matches!(result, Ok(Ok(WireMessage::Ack)));
                actor.member().report_snapshot(to, delivered);
                actor.schedule_drive(ctx);
            })
            .spawn(ctx);
    }
}

impl Handler<StepRaft> for RaftActor {
    type Result = ();

    fn handle(&mut self, message: StepRaft, ctx: &mut Context<Self>) {
        if message.envelope.to != self.member().id() {
            tracing::debug!(
                to = message.envelope.to,
                "raft message for another member dropped"
            );
            return;
        }
        self.peer_addrs
            .entry(message.envelope.from)
            .or_insert(message.remote);
        tracing::trace!(
            from = message.envelope.from,
            bytes = message.envelope.bytes.len(),
            "raft message"
        );
        if let Err(error) = self.member().step(&message.envelope.bytes) {
            tracing::debug!(%error, from = message.envelope.from, "raft message refused");
        }
        self.schedule_drive(ctx);
    }
}
