//! New credentials for a node whose role in the store differs from its certificate's (it was
//! promoted or demoted). Signing makes a key pair: it is done once per node and role and kept
//! until the node heartbeats in its new role, not on every heartbeat until then.

use std::collections::HashMap;

use crate::core::model::{Node, NodeRole};
use crate::core::store::Store;
use crate::net::message::RoleChange;
use crate::net::tls::{ClusterCa, Role};

/// Credentials issued for role changes, by node, until the node takes them up.
#[derive(Default)]
pub(super) struct RoleChanges {
    issued: HashMap<String, RoleChange>,
}

impl RoleChanges {
    /// The role change to answer `node`'s heartbeat with, when its certificate says
    /// `certificate_role` and the store says otherwise.
    pub(super) fn for_heartbeat(
        &mut self,
        store: &Store,
        node: &Node,
        certificate_role: NodeRole,
    ) -> Option<RoleChange> {
        if certificate_role == node.role {
            self.issued.remove(&node.id);
            return None;
        }
        let role = wire_role(node.role);
        if let Some(change) = self.issued.get(&node.id).filter(|c| c.role == role) {
            return Some(change.clone());
        }
        let change = issue(store, node, role)?;
        self.issued.insert(node.id.clone(), change.clone());
        Some(change)
    }

    /// `node_id` left the cluster.
    pub(super) fn forget(&mut self, node_id: &str) {
        self.issued.remove(node_id);
    }
}

fn wire_role(role: NodeRole) -> Role {
    match role {
        NodeRole::Manager => Role::Manager,
        NodeRole::Worker => Role::Worker,
    }
}

fn issue(store: &Store, node: &Node, role: Role) -> Option<RoleChange> {
    let cluster = store.cluster()?;
    let ca = ClusterCa::load(&cluster.ca_cert_pem, &cluster.ca_key_pem).ok()?;
    match ca.issue(&node.id, role) {
        Ok(credentials) => Some(RoleChange { role, credentials }),
        Err(error) => {
            tracing::warn!(node = %node.id, %error, "cannot issue credentials for a role change");
            None
        }
    }
}
