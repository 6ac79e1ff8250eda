//! Traffic with the other managers: ordered per-peer channels for Raft messages, snapshots on
//! requests that learn whether they arrived, and peer messages stepped into the member.

use super::*;
use crate::consensus::envelope::{check_envelope, EnvelopeContext, EnvelopeRefusal};
use crate::net::tls::Role;
use crate::net::transport::Expect;

impl RaftActor {
    /// The address of a manager: known peers first (this node, and managers being added,
    /// whose address the admission gave), then the manager's record in the store (the advertise
    /// address it registered at join), and only for a manager the store does not hold yet (a
    /// manager that just joined has no store until the leader's snapshot) the address its
    /// certified messages came from.
    pub(super) fn peer_addr(&mut self, raft_id: u64) -> Option<SocketAddr> {
        if let Some(addr) = self.peer_addrs.get(&raft_id) {
            return Some(*addr);
        }
        if let Some(addr) = self.recorded_addr(raft_id) {
            self.peer_addrs.insert(raft_id, addr);
            self.learned_addrs.remove(&raft_id);
            return Some(addr);
        }
        self.learned_addrs.get(&raft_id).copied()
    }

    /// The advertise address in the store's record of the manager with this Raft ID.
    fn recorded_addr(&self, raft_id: u64) -> Option<SocketAddr> {
        let store = self.store.read();
        store
            .nodes()
            .values()
            .filter(|node| node.role == NodeRole::Manager)
            .find(|node| raft_id_of(&node.id) == raft_id)
            .and_then(|node| node.addr.parse().ok())
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
            self.outboxes.insert(
                to,
                (
                    addr,
                    self.transport
                        .ordered_sender(addr, Expect::Role(Role::Manager)),
                ),
            );
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
            expect: Expect::Role(Role::Manager),
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

impl RaftActor {
    /// The certificate check of an envelope (see `consensus::envelope`).
    fn check_envelope(&mut self, message: &StepRaft) -> Result<(), EnvelopeRefusal> {
        let own_id = self.member().id();
        let member = self.member();
        let context = EnvelopeContext {
            own_id,
            certified_sender: raft_id_of(&message.sender_node_id),
            voters: member.voters(),
            learners: member.learners(),
        };
        check_envelope(&context, message.envelope.from, message.envelope.to)
    }

    /// A refused envelope means a faulty or hostile manager: warned about at the 1st, 2nd,
    /// 4th, 8th... refusal so a peer sending them in a loop cannot flood the log.
    fn log_refused_envelope(&mut self, message: &StepRaft, refusal: &EnvelopeRefusal) {
        self.refused_envelopes += 1;
        let refused = self.refused_envelopes;
        let (from, to) = (message.envelope.from, message.envelope.to);
        let sender = message.sender_node_id.as_str();
        if refused.is_power_of_two() {
            tracing::warn!(sender, from, to, kind = refusal.kind(), %refusal, refused, "raft envelope dropped");
        } else {
            tracing::debug!(sender, from, to, kind = refusal.kind(), %refusal, refused, "raft envelope dropped");
        }
    }
}

impl Handler<StepRaft> for RaftActor {
    type Result = ();

    fn handle(&mut self, message: StepRaft, ctx: &mut Context<Self>) {
        if let Err(refusal) = self.check_envelope(&message) {
            self.log_refused_envelope(&message, &refusal);
            return;
        }
        let from = message.envelope.from;
        if !self.peer_addrs.contains_key(&from) && self.recorded_addr(from).is_none() {
            self.learned_addrs.insert(from, message.remote);
        }
        tracing::trace!(from, bytes = message.envelope.bytes.len(), "raft message");
        if let Err(error) = self.member().step_from(from, &message.envelope.bytes) {
            tracing::debug!(%error, from, "raft message refused");
        }
        self.schedule_drive(ctx);
    }
}
