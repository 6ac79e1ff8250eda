//! New credentials for a node whose role in the store differs from its certificate's (it was
//! promoted or demoted). Signing makes a key pair, so it runs on the blocking pool, not in the
//! heartbeat handler: the heartbeat that finds the change starts it, and a later heartbeat of
//! the node carries the result. Credentials are kept per node and role until the node
//! heartbeats in its new role.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;

use super::DispatcherActor;
use crate::core::model::{Node, NodeRole};
use crate::core::store::Store;
use crate::net::message::RoleChange;
use crate::net::tls::{ClusterCa, Role};

/// Credentials issued for role changes, by node, until the node takes them up; renewed
/// certificates likewise, by node and request digest.
#[derive(Default)]
pub(super) struct RoleChanges {
    issued: HashMap<String, RoleChange>,
    /// Nodes whose credentials are being signed.
    signing: HashSet<String>,
    /// Renewals signed: the SHA-256 of the request and the certificate, by node.
    renewed: HashMap<String, ([u8; 32], String)>,
    /// Nodes whose renewal is being signed.
    renewing: HashSet<String>,
}

impl RoleChanges {
    /// `node_id` left the cluster.
    pub(super) fn forget(&mut self, node_id: &str) {
        self.issued.remove(node_id);
        self.renewed.remove(node_id);
    }
}

fn wire_role(role: NodeRole) -> Role {
    match role {
        NodeRole::Manager => Role::Manager,
        NodeRole::Worker => Role::Worker,
    }
}

impl DispatcherActor {
    /// The role change to answer `node`'s heartbeat with, when its certificate says
    /// `certificate_role` and the store says otherwise; starts signing when none is ready.
    pub(super) fn role_change_for(
        &mut self,
        ctx: &mut Context<Self>,
        store: &Store,
        node: &Node,
        certificate_role: NodeRole,
    ) -> Option<RoleChange> {
        let changes = &mut self.role_changes;
        if certificate_role == node.role {
            changes.issued.remove(&node.id);
            return None;
        }
        let role = wire_role(node.role);
        if let Some(change) = changes.issued.get(&node.id).filter(|c| c.role == role) {
            return Some(change.clone());
        }
        let cluster = store.cluster()?;
        if !changes.signing.insert(node.id.clone()) {
            return None;
        }
        let (ca_cert_pem, ca_key_pem) = (cluster.ca_cert_pem.clone(), cluster.ca_key_pem.clone());
        let node_id = node.id.clone();
        let signer_id = node_id.clone();
        let issued_index = store.applied_index();
        tokio::task::spawn_blocking(move || {
            let ca = ClusterCa::load(&ca_cert_pem, &ca_key_pem).map_err(|e| e.to_string())?;
            ca.issue(&signer_id, role, issued_index).map_err(|e| e.to_string())
        })
        .into_actor(self)
        .map(move |signed, actor, _| {
            actor.role_changes.signing.remove(&node_id);
            match signed {
                Ok(Ok(credentials)) => {
                    actor
                        .role_changes
                        .issued
                        .insert(node_id, RoleChange { role, credentials });
                }
                Ok(Err(error)) => {
                    tracing::warn!(node = %node_id, %error, "cannot issue credentials for a role change")
                }
                Err(error) => {
                    tracing::warn!(node = %node_id, %error, "credential signing did not finish")
                }
            }
        })
        .spawn(ctx);
        None
    }

    /// The renewed certificate to answer `node`'s heartbeat with, when it sent a renewal
    /// request `csr_der` and its certificate role is the store's (a role change answers
    /// otherwise). Signed on the blocking pool like role changes: the heartbeat that brings the
    /// request starts it, a later one (repeating the same request) carries the certificate.
    pub(super) fn renewal_for(
        &mut self,
        ctx: &mut Context<Self>,
        store: &Store,
        node: &Node,
        certificate_role: NodeRole,
        csr_der: Option<&[u8]>,
    ) -> Option<String> {
        let changes = &mut self.role_changes;
        let Some(csr_der) = csr_der else {
            changes.renewed.remove(&node.id);
            return None;
        };
        if certificate_role != node.role {
            return None;
        }
        let digest = crate::net::tls::certificate_digest(csr_der);
        if let Some((signed_for, cert_pem)) = changes.renewed.get(&node.id) {
            if *signed_for == digest {
                return Some(cert_pem.clone());
            }
        }
        let cluster = store.cluster()?;
        if !changes.renewing.insert(node.id.clone()) {
            return None;
        }
        let (ca_cert_pem, ca_key_pem) = (cluster.ca_cert_pem.clone(), cluster.ca_key_pem.clone());
        let (node_id, role, issued_index) =
            (node.id.clone(), wire_role(node.role), store.applied_index());
        let (signer_id, csr_der) = (node_id.clone(), csr_der.to_vec());
        tokio::task::spawn_blocking(move || {
            let ca = ClusterCa::load(&ca_cert_pem, &ca_key_pem).map_err(|e| e.to_string())?;
            ca.sign_request(&csr_der, &signer_id, role, issued_index)
                .map_err(|e| e.to_string())
        })
        .into_actor(self)
        .map(move |signed, actor, _| {
            actor.role_changes.renewing.remove(&node_id);
            match signed {
                Ok(Ok(cert_pem)) => {
                    tracing::info!(node = %node_id, "certificate renewed");
                    actor
                        .role_changes
                        .renewed
                        .insert(node_id, (digest, cert_pem));
                }
                Ok(Err(error)) => {
                    tracing::warn!(node = %node_id, %error, "cannot sign a certificate renewal")
                }
                Err(error) => {
                    tracing::warn!(node = %node_id, %error, "renewal signing did not finish")
                }
            }
        })
        .spawn(ctx);
        None
    }
}
