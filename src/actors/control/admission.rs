//! Joins: a node presents a join secret and a certificate request; the leader signs its
//! certificate, registers it and, for a manager, adds it as a Raft learner.

use std::net::SocketAddr;

use super::errors::{core, mailbox, wire_error};
use super::routing::{RequestContext, FORWARD_TIMEOUT};
use crate::actors::raft::{ChangeMembership, LinearizableRead, Propose};
use crate::actors::transport::Request;
use crate::consensus::store_machine::raft_id_of;
use crate::consensus::MembershipChange;
use crate::core::model::{Node, NodeRole, NodeStatus};
use crate::core::secrets::Plaintext;
use crate::core::store::Command;
use crate::core::{ids, CoreError};
use crate::net::message::{
    ErrorKind, JoinAccepted, JoinRequest, Message as WireMessage, WireError,
};
use crate::net::tls::{ClusterCa, Role};
use crate::net::token;

/// Admits `request` on this manager, the leader: checks the secret, signs the certificate,
/// registers the node and, for a manager, adds it as a Raft learner.
pub(super) async fn admit_on_leader(
    context: &RequestContext,
    request: JoinRequest,
) -> Result<JoinAccepted, WireError> {
    let (store, raft) = (&context.store, &context.raft);
    raft.send(LinearizableRead)
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
    let (role, ca, managers, issued_index) = {
        let store = store.read();
        let cluster = store
            .cluster()
            .ok_or_else(|| core(CoreError::NotInitialized))?;
        let role = token::role_for_secret(
            &request.secret,
            &cluster.worker_join_secret,
            &cluster.manager_join_secret,
        )
        .map_err(|e| WireError::new(ErrorKind::Forbidden, e.to_string()))?;
        let ca = ClusterCa::load(&cluster.ca_cert_pem, &cluster.ca_key_pem)
            .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?;
        let managers: Vec<String> = store
            .nodes()
            .values()
            .filter(|node| node.role == NodeRole::Manager)
            .map(|node| node.addr.clone())
            .collect();
        (role, ca, managers, store.applied_index())
    };
    let addr: SocketAddr = request.advertise_addr.parse().map_err(|_| {
        WireError::new(
            ErrorKind::BadRequest,
            format!(
                "advertise address {:?} is not host:port",
                request.advertise_addr
            ),
        )
    })?;
    let node_id = ids::new_id(&mut *context.ids.borrow_mut());
    let cert_pem = ca
        .sign_request(&request.csr_der, &node_id, role, issued_index)
        .map_err(|e| WireError::new(ErrorKind::BadRequest, e.to_string()))?;
    let node_role = if role == Role::Manager {
        NodeRole::Manager
    } else {
        NodeRole::Worker
    };
    let node = Node {
        id: node_id.clone(),
        hostname: request.hostname.clone(),
        role: node_role,
        status: NodeStatus::Unknown,
        availability: crate::core::model::Availability::Active,
        labels: Default::default(),
        addr: request.advertise_addr.clone(),
        engine_version: String::new(),
        resources: Default::default(),
        meta: Default::default(),
    };
    raft.send(Propose {
        command: Command::UpsertNode(node),
    })
    .await
    .map_err(mailbox)?
    .map_err(wire_error)?;
    if node_role == NodeRole::Manager {
        // A learner first: it gets the snapshot and the log without counting toward the
        // quorum. The dispatcher makes it a voter once it has caught up (`ensure_voter`), so
        // adding a manager never leaves the group waiting on one that is still starting.
        raft.send(ChangeMembership {
            change: MembershipChange::AddLearner(raft_id_of(&node_id)),
            addr: Some(addr),
        })
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
    }
    tracing::info!(node = %node_id, role = %role, "node joined");
    // Only a manager seals and opens secrets: a worker never receives the data key.
    let data_key = (role == Role::Manager)
        .then(|| context.keyring.data_key())
        .flatten()
        .map(|key| Plaintext(key.expose_bytes().to_vec()));
    if role == Role::Manager && data_key.is_none() {
        tracing::warn!(
            node = %node_id,
            "this leader holds no data key (its state directory predates secrets): the new manager gets none"
        );
    }
    Ok(JoinAccepted {
        node_id,
        role,
        cert_pem,
        ca_pem: ca.cert_pem().to_string(),
        manager_addrs: managers,
        data_key,
    })
}

/// Sends a join to the leader: only the leader can add the node, and it sees the join as if
/// it came directly.
pub(super) async fn forward_join(
    context: &RequestContext,
    leader: SocketAddr,
    request: JoinRequest,
) -> Result<JoinAccepted, WireError> {
    let reply = context
        .transport
        .send(Request {
            to: leader,
            expect: crate::net::transport::Expect::Role(crate::net::tls::Role::Manager),
            message: WireMessage::Join(request),
            timeout: FORWARD_TIMEOUT,
        })
        .await
        .map_err(mailbox)?;
    match reply {
        Ok(WireMessage::JoinAccepted(accepted)) => Ok(accepted),
        Ok(other) => Err(WireError::new(
            ErrorKind::Internal,
            format!("unexpected {} from the leader", other.kind_name()),
        )),
        Err(crate::net::transport::TransportError::Remote(error)) => Err(error),
        Err(error) => Err(WireError::new(ErrorKind::NoQuorum, error.to_string())),
    }
}
