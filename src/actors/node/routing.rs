//! Routing: which actor each inbound wire message goes to, and what this node refuses
//! (manager traffic on a worker, leader traffic on a follower, chaos when disabled).

use actix::prelude::*;

use super::chaos::CHAOS_DISABLED;
use super::NodeActor;
use crate::actors::control::{Admit, Control};
use crate::actors::dispatcher::{NodeHeartbeat, NodeTaskStatuses};
use crate::actors::raft::StepRaft;
use crate::actors::worker::ApplyAssignments;
use crate::core::model::NodeRole;
use crate::net::control_proof::SignedControl;
use crate::net::message::{ErrorKind, Message as WireMessage, WireError};
use crate::net::tls::Role;
use crate::net::transport::Inbound;

pub use crate::net::admin::NOT_A_MANAGER;

impl NodeActor {
    fn not_leader(&self) -> WireMessage {
        WireMessage::NotLeader {
            leader_addr: self.leadership.as_ref().and_then(|l| l.leader_addr.clone()),
        }
    }

    /// A control command for the control actor (managers only).
    fn control(
        &self,
        signed: SignedControl,
        forwarded_by: Option<String>,
    ) -> ResponseFuture<Option<WireMessage>> {
        let Some(manager) = &self.manager else {
            let refusal = WireError::new(ErrorKind::NotManager, NOT_A_MANAGER);
            return Box::pin(async move { Some(WireMessage::Error(refusal)) });
        };
        let control = manager.control.clone();
        Box::pin(async move {
            let command = Control {
                signed,
                forwarded_by,
            };
            Some(match control.send(command).await {
                Ok(Ok(reply)) => WireMessage::AdminReply(reply),
                Ok(Err(error)) => WireMessage::Error(error),
                Err(e) => WireMessage::Error(WireError::new(ErrorKind::Internal, e.to_string())),
            })
        })
    }

    pub(super) fn route(&mut self, inbound: Inbound) -> ResponseFuture<Option<WireMessage>> {
        let error = |kind, text: &str| {
            let reply = Some(WireMessage::Error(WireError::new(kind, text)));
            Box::pin(async move { reply }) as ResponseFuture<Option<WireMessage>>
        };
        let ready = |reply: Option<WireMessage>| {
            Box::pin(async move { reply }) as ResponseFuture<Option<WireMessage>>
        };
        let from = inbound.from.clone();
        let remote = inbound.remote;
        let expects_reply = inbound.expects_reply;
        match inbound.message {
            WireMessage::Ping { nonce, payload } => {
                ready(Some(WireMessage::Pong { nonce, payload }))
            }
            WireMessage::Raft(envelope) => {
                let Some(manager) = &self.manager else {
                    return error(ErrorKind::NotManager, NOT_A_MANAGER);
                };
                // Queued at once, in arrival order (the ordered channel's order must survive).
                // Snapshots come as requests: the sender must learn they arrived.
                // Raft needs a manager certificate (`required_access`), so there is a sender.
                let Some(peer) = from else {
                    return error(
                        ErrorKind::Unauthenticated,
                        "raft traffic needs a certificate",
                    );
                };
                let raft = manager.raft.clone();
                let step = StepRaft {
                    envelope,
                    remote,
                    sender_node_id: peer.node_id,
                };
                if !expects_reply {
                    raft.do_send(step);
                    return ready(None);
                }
                Box::pin(async move {
                    let stepped = raft.send(step).await.is_ok();
                    stepped.then_some(WireMessage::Ack)
                })
            }
            WireMessage::Control(signed) => self.control(signed, None),
            // The transport let only managers forward; the forwarder is named by its
            // certificate. Either way the control actor checks the admin's proof.
            WireMessage::Forwarded(signed) => self.control(signed, from.map(|peer| peer.node_id)),
            WireMessage::Join(request) => {
                let Some(manager) = &self.manager else {
                    return error(ErrorKind::NotManager, NOT_A_MANAGER);
                };
                let control = manager.control.clone();
                Box::pin(async move {
                    Some(match control.send(Admit { request }).await {
                        Ok(Ok(accepted)) => WireMessage::JoinAccepted(accepted),
                        Ok(Err(error)) => WireMessage::Error(error),
                        Err(e) => {
                            WireMessage::Error(WireError::new(ErrorKind::Internal, e.to_string()))
                        }
                    })
                })
            }
            WireMessage::Heartbeat(heartbeat) => {
                let (Some(dispatcher), Some(peer)) = (&self.dispatcher, from) else {
                    return ready(Some(self.not_leader()));
                };
                let role = if peer.role == Role::Manager {
                    NodeRole::Manager
                } else {
                    NodeRole::Worker
                };
                let dispatcher = dispatcher.clone();
                Box::pin(async move {
                    let beat = NodeHeartbeat {
                        node_id: peer.node_id,
                        role,
                        heartbeat,
                    };
                    Some(match dispatcher.send(beat).await {
                        Ok(Ok(ack)) => WireMessage::HeartbeatAck(ack),
                        Ok(Err(error)) => WireMessage::Error(error),
                        Err(_) => WireMessage::NotLeader { leader_addr: None },
                    })
                })
            }
            WireMessage::TaskStatuses(updates) => {
                let (Some(dispatcher), Some(peer)) = (&self.dispatcher, from) else {
                    return ready(Some(self.not_leader()));
                };
                let dispatcher = dispatcher.clone();
                Box::pin(async move {
                    let report = NodeTaskStatuses {
                        node_id: peer.node_id,
                        updates,
                    };
                    Some(match dispatcher.send(report).await {
                        Ok(Ok(())) => WireMessage::Ack,
                        Ok(Err(error)) => WireMessage::Error(error),
                        Err(_) => WireMessage::NotLeader { leader_addr: None },
                    })
                })
            }
            WireMessage::Assignments(set) => {
                if let Some(worker) = &self.worker {
                    worker.do_send(ApplyAssignments(set));
                }
                ready(None)
            }
            WireMessage::Chaos(request) => {
                if !self.chaos_enabled {
                    return error(ErrorKind::Forbidden, CHAOS_DISABLED);
                }
                ready(Some(self.chaos(request)))
            }
            // A manager without the data key (just promoted) fetches it from another;
            // `required_access` let only managers send this.
            WireMessage::DataKeyFetch => {
                let Some(manager) = &self.manager else {
                    return error(ErrorKind::NotManager, NOT_A_MANAGER);
                };
                match manager.keyring.data_key() {
                    Some(key) => ready(Some(WireMessage::DataKey(
                        crate::core::secrets::Plaintext(key.expose_bytes().to_vec()),
                    ))),
                    None => error(ErrorKind::NotFound, "this manager holds no data key"),
                }
            }
            message @ (WireMessage::Gossip(_)
            | WireMessage::GossipFetch { .. }
            | WireMessage::GossipHello
            | WireMessage::GossipViewRequest) => self.route_gossip(from, message),
            other => {
                let text = format!("{} is not a request", other.kind_name());
                error(ErrorKind::BadRequest, &text)
            }
        }
    }
}
