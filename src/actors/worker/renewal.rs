//! Certificate renewal, the worker's side: past two thirds of its certificate's life the node
//! sends a request for a fresh key with every heartbeat until the leader's answer carries the
//! certificate; the new credentials then go to whoever composed the node (it writes them to
//! the state directory and swaps them into the endpoint, see [`CredentialsRenewed`]).
//!
//! Managers renew the same way: they heartbeat to the leader too (the leader to itself).

use std::time::SystemTime;

use actix::prelude::*;

use crate::net::tls::{self, Credentials, PeerIdentity, TlsError};

/// Sent by the worker (not handled by it): the node's certificate was renewed. The receiver
/// keeps the credentials and starts using them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CredentialsRenewed(pub Credentials);

/// The renewal state of the node's certificate.
pub(super) struct Renewal {
    current: Credentials,
    identity: PeerIdentity,
    /// The key and request sent while waiting for the certificate.
    pending: Option<(String, Vec<u8>)>,
    keeper: Recipient<CredentialsRenewed>,
}

impl Renewal {
    /// Renewal of `current`, whose successors go to `keeper`.
    pub(super) fn new(
        current: Credentials,
        keeper: Recipient<CredentialsRenewed>,
    ) -> Result<Self, TlsError> {
        let identity = current.identity()?;
        Ok(Self {
            current,
            identity,
            pending: None,
            keeper,
        })
    }

    /// The request to send with a heartbeat at `now`, if the certificate is due. Making the
    /// key takes well under a millisecond (ECDSA P-256), so it is made here.
    pub(super) fn request(&mut self, now: SystemTime) -> Option<Vec<u8>> {
        if !self.identity.renewal_due(now) {
            return None;
        }
        if self.pending.is_none() {
            match tls::generate_request() {
                Ok(request) => {
                    tracing::info!(
                        not_after_unix_s = self.identity.not_after_unix_s,
                        "certificate past two thirds of its life; asking for a renewal"
                    );
                    self.pending = Some(request);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot make a renewal request");
                    return None;
                }
            }
        }
        self.pending.as_ref().map(|(_, csr)| csr.clone())
    }

    /// The leader's answer to the pending request: checked (the same node, role and cluster,
    /// for the pending key) and handed to the keeper. Anything else is logged and dropped; the
    /// next heartbeat asks again.
    pub(super) fn accept(&mut self, cert_pem: String) {
        let Some((key_pem, _)) = self.pending.clone() else {
            return;
        };
        let renewed = Credentials {
            cert_pem,
            key_pem,
            ca_pem: self.current.ca_pem.clone(),
        };
        let checked = renewed.identity().and_then(|identity| {
            let same = (&identity.node_id, identity.role, &identity.cluster_id)
                == (
                    &self.identity.node_id,
                    self.identity.role,
                    &self.identity.cluster_id,
                );
            if same && renewed.certificate_matches_key()? {
                Ok(identity)
            } else {
                Err(TlsError::NoIdentity(
                    "the renewed certificate is not this node's or not for its key".into(),
                ))
            }
        });
        match checked {
            Ok(identity) => {
                tracing::info!(serial = %identity.serial, not_after_unix_s = identity.not_after_unix_s, "certificate renewed");
                self.identity = identity;
                self.current = renewed.clone();
                self.pending = None;
                self.keeper.do_send(CredentialsRenewed(renewed));
            }
            Err(error) => tracing::warn!(%error, "renewed certificate refused"),
        }
    }
}
