//! The certificate revocation list kept in the replicated store.
//!
//! Two kinds of entry, both by node ID (node IDs are never reused):
//! - a removed node (`node rm`): every certificate naming it is refused;
//! - a demoted manager (`node demote`): its *manager* certificates issued before the
//!   revocation's Raft index are refused manager rights. The issue index travels in each
//!   certificate's serial, so a later re-promotion's certificate (signed after that index) is
//!   good, and no clock is compared.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What a [`Revocation`] command revokes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationScope {
    /// Every certificate of the node (it was removed).
    AllCertificates,
    /// The node's manager certificates issued before this command's index (it was demoted).
    ManagerCertificates,
}

/// One revocation, as proposed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The node whose certificates are revoked.
    pub node_id: String,
    /// Which of them.
    pub scope: RevocationScope,
}

/// How the cluster regards one certificate now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateStanding {
    /// Not revoked.
    Good,
    /// A demoted manager's old manager certificate: worth no more than a worker's (the node
    /// may still heartbeat, to fetch its worker certificate, but sends no manager traffic).
    ManagerRightsRevoked,
    /// Refused altogether.
    Revoked,
}

/// The revocation list.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationList {
    /// Removed nodes: all their certificates are refused.
    removed_nodes: BTreeSet<String>,
    /// Demoted managers: their manager certificates issued before this index are refused.
    manager_certificates_before: BTreeMap<String, u64>,
}

impl RevocationList {
    /// Records `revocation`, applied at Raft `index`.
    pub(super) fn record(&mut self, revocation: &Revocation, index: u64) {
        match revocation.scope {
            RevocationScope::AllCertificates => {
                self.removed_nodes.insert(revocation.node_id.clone());
            }
            RevocationScope::ManagerCertificates => {
                let before = self
                    .manager_certificates_before
                    .entry(revocation.node_id.clone())
                    .or_default();
                *before = (*before).max(index);
            }
        }
    }

    /// The standing of a certificate naming `node_id`, for a manager certificate or not,
    /// signed when the store was at `issued_index`.
    pub fn standing(
        &self,
        node_id: &str,
        manager_certificate: bool,
        issued_index: u64,
    ) -> CertificateStanding {
        if self.removed_nodes.contains(node_id) {
            return CertificateStanding::Revoked;
        }
        match self.manager_certificates_before.get(node_id) {
            Some(before) if manager_certificate && issued_index < *before => {
                CertificateStanding::ManagerRightsRevoked
            }
            _ => CertificateStanding::Good,
        }
    }

    /// Whether the node was removed (none of its certificates is good).
    pub fn is_removed(&self, node_id: &str) -> bool {
        self.removed_nodes.contains(node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_node_is_refused_whatever_its_certificate() {
        let mut list = RevocationList::default();
        list.record(
            &Revocation {
                node_id: "w1".into(),
                scope: RevocationScope::AllCertificates,
            },
            10,
        );
        assert_eq!(list.standing("w1", false, 99), CertificateStanding::Revoked);
        assert_eq!(list.standing("w1", true, 0), CertificateStanding::Revoked);
        assert_eq!(list.standing("w2", false, 0), CertificateStanding::Good);
    }

    #[test]
    fn a_demotion_revokes_older_manager_certificates_only() {
        let mut list = RevocationList::default();
        let demote = Revocation {
            node_id: "m2".into(),
            scope: RevocationScope::ManagerCertificates,
        };
        list.record(&demote, 20);
        assert_eq!(
            list.standing("m2", true, 19),
            CertificateStanding::ManagerRightsRevoked
        );
        // The worker certificate of the demotion, and a re-promotion's manager certificate.
        assert_eq!(list.standing("m2", false, 19), CertificateStanding::Good);
        assert_eq!(list.standing("m2", true, 21), CertificateStanding::Good);
        // A second demotion moves the bound forward, never back.
        list.record(&demote, 40);
        list.record(&demote, 30);
        assert_eq!(
            list.standing("m2", true, 35),
            CertificateStanding::ManagerRightsRevoked
        );
    }
}
