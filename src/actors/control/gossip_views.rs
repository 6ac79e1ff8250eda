//! `node inspect`'s gossip part: the leader asks each node for its gossip view over the wire,
//! all at once, each with [`GOSSIP_VIEW_TIMEOUT`]; a node that does not answer in time is
//! shown as unavailable rather than holding up the answer.

use std::net::SocketAddr;
use std::time::Duration;

use super::errors::core;
use super::routing::RequestContext;
use crate::actors::transport::Request;
use crate::net::admin::{AdminReply, NodeGossip};
use crate::net::message::{Message as WireMessage, WireError};
use crate::net::transport::Expect;

/// How long the leader waits for one node's gossip view.
pub const GOSSIP_VIEW_TIMEOUT: Duration = Duration::from_secs(1);

/// The gossip views of `nodes` (names, IDs or unique prefixes), in that order.
pub(super) async fn node_gossip(
    context: &RequestContext,
    nodes: &[String],
) -> Result<AdminReply, WireError> {
    let targets: Vec<(String, Option<SocketAddr>)> = {
        let store = context.store.read();
        nodes
            .iter()
            .map(|query| {
                store
                    .resolve_node(query)
                    .map(|node| (node.id.clone(), node.addr.parse().ok()))
                    .map_err(core)
            })
            .collect::<Result<_, _>>()?
    };
    let asks = targets.into_iter().map(|(node_id, addr)| {
        let transport = context.transport.clone();
        async move {
            let view = match addr {
                Some(addr) => ask(transport, addr, &node_id).await,
                None => None,
            };
            NodeGossip { node_id, view }
        }
    });
    Ok(AdminReply::NodeGossip(
        futures::future::join_all(asks).await,
    ))
}

async fn ask(
    transport: actix::Recipient<Request>,
    addr: SocketAddr,
    node_id: &str,
) -> Option<crate::core::gossip::GossipView> {
    let request = Request {
        to: addr,
        expect: Expect::Node(node_id.to_string()),
        message: WireMessage::GossipViewRequest,
        timeout: GOSSIP_VIEW_TIMEOUT,
    };
    match transport.send(request).await {
        Ok(Ok(WireMessage::GossipViewReply(view))) => Some(view),
        Ok(Ok(other)) => {
            tracing::debug!(node_id, reply = other.kind_name(), "no gossip view");
            None
        }
        Ok(Err(error)) => {
            tracing::debug!(node_id, %error, "no gossip view");
            None
        }
        Err(_) => None,
    }
}
