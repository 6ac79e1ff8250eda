//! Gossip traffic: packets, table fetches, hellos and view requests, to the gossip actor.

use actix::prelude::*;

use super::NodeActor;
use crate::actors::gossip::{GetGossipIdentity, GetGossipView, InboundPacket, ServeFetch};
use crate::net::message::{ErrorKind, Message as WireMessage, WireError};
use crate::net::tls::PeerIdentity;

/// The refusal when the gossip actor is not (or no longer) running.
const GOSSIP_NOT_RUNNING: &str = "gossip is not running on this node";

impl NodeActor {
    /// Routes one gossip message (`required_access` let only cluster nodes send them).
    pub(super) fn route_gossip(
        &self,
        from: Option<PeerIdentity>,
        message: WireMessage,
    ) -> ResponseFuture<Option<WireMessage>> {
        let refuse = |kind, text: &str| {
            let reply = Some(WireMessage::Error(WireError::new(kind, text)));
            Box::pin(async move { reply }) as ResponseFuture<Option<WireMessage>>
        };
        let Some(gossip) = self.gossip.clone() else {
            return refuse(ErrorKind::Internal, GOSSIP_NOT_RUNNING);
        };
        let Some(peer) = from else {
            return refuse(ErrorKind::Unauthenticated, "gossip needs a certificate");
        };
        match message {
            WireMessage::Gossip(bytes) => {
                // Never waits: a full mailbox drops the packet, as a network would.
                let packet = InboundPacket {
                    certificate_node_id: peer.node_id,
                    bytes,
                };
                if let Err(error) = gossip.try_send(packet) {
                    tracing::debug!(%error, "gossip packet dropped");
                }
                Box::pin(async { None })
            }
            WireMessage::GossipFetch { version } => Box::pin(async move {
                Some(match gossip.send(ServeFetch { version }).await {
                    Ok(Some(table)) => WireMessage::GossipTable {
                        version: table.version,
                        bytes: table.bytes.to_vec(),
                    },
                    Ok(None) => WireMessage::Error(WireError::new(
                        ErrorKind::NotFound,
                        format!("no routing table of version {version} or newer here"),
                    )),
                    Err(error) => {
                        WireMessage::Error(WireError::new(ErrorKind::Internal, error.to_string()))
                    }
                })
            }),
            WireMessage::GossipHello => Box::pin(async move {
                Some(match gossip.send(GetGossipIdentity).await {
                    Ok(identity) => WireMessage::GossipIdentity(identity),
                    Err(error) => {
                        WireMessage::Error(WireError::new(ErrorKind::Internal, error.to_string()))
                    }
                })
            }),
            WireMessage::GossipViewRequest => Box::pin(async move {
                Some(match gossip.send(GetGossipView).await {
                    Ok(view) => WireMessage::GossipViewReply(view),
                    Err(error) => {
                        WireMessage::Error(WireError::new(ErrorKind::Internal, error.to_string()))
                    }
                })
            }),
            other => {
                let text = format!("{} is not a gossip request", other.kind_name());
                refuse(ErrorKind::BadRequest, &text)
            }
        }
    }
}
