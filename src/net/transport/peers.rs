//! Judging and closing peers: the revocation check a manager applies to every new peer, the
//! register of live connections it closes when a revocation applies, and hot-swapping renewed
//! credentials into the endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, VarInt};

use super::endpoint::{client_config, connection_identity, quic_transport_config};
use super::{RevocationCheck, Transport, TransportError, CLOSE_REVOKED};
use crate::core::store::CertificateStanding;
use crate::net::tls::{Credentials, PeerIdentity};

impl Transport {
    /// From now on, judge every new peer by `check` (managers: the store's revocation list);
    /// connections already open are judged again by [`Transport::close_revoked`].
    pub fn set_revocation_check(&self, check: RevocationCheck) {
        if let Ok(mut slot) = self.inner.revocation_check.lock() {
            *slot = Some(check);
        }
    }

    /// How the revocation check in force regards `peer` (good when there is none).
    pub fn standing(&self, peer: &PeerIdentity) -> CertificateStanding {
        let check = self
            .inner
            .revocation_check
            .lock()
            .ok()
            .and_then(|slot| slot.clone());
        match check {
            Some(check) => check(peer),
            None => CertificateStanding::Good,
        }
    }

    /// Closes (with [`CLOSE_REVOKED`]) every connection whose peer matches `predicate`.
    pub fn close_peers(&self, predicate: impl Fn(&PeerIdentity) -> bool) -> usize {
        let cluster_id = &self.inner.identity.cluster_id;
        let Ok(mut live) = self.inner.live.lock() else {
            return 0;
        };
        live.retain(|_, connection| connection.close_reason().is_none());
        let mut closed = 0;
        for connection in live.values() {
            let Ok(Some(peer)) = connection_identity(connection, cluster_id) else {
                continue;
            };
            if predicate(&peer) {
                tracing::warn!(node = %peer.node_id, role = %peer.role, remote = %connection.remote_address(), "closing the connection of a revoked certificate");
                connection.close(VarInt::from_u32(CLOSE_REVOKED), b"certificate revoked");
                closed += 1;
            }
        }
        closed
    }

    /// Closes every connection whose peer's certificate is no longer good (the revocation list
    /// changed): the peer reconnects and is judged afresh.
    pub fn close_revoked(&self) -> usize {
        self.close_peers(|peer| self.standing(peer) != CertificateStanding::Good)
    }

    /// Uses `credentials` (a renewed certificate of the same node and role) for every new
    /// connection, in both directions; connections already open keep the old one.
    pub fn reload_credentials(&self, credentials: &Credentials) -> Result<(), TransportError> {
        let identity = credentials.identity()?;
        let own = &self.inner.identity;
        if (&identity.node_id, identity.role, &identity.cluster_id)
            != (&own.node_id, own.role, &own.cluster_id)
        {
            return Err(TransportError::Setup(
                "renewed credentials name another node, role or cluster".into(),
            ));
        }
        let server_crypto = QuicServerConfig::try_from(credentials.server_config()?)
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(Arc::new(quic_transport_config()));
        let client = client_config(credentials.client_config()?)?;
        self.inner.endpoint.set_server_config(Some(server_config));
        if let Ok(mut slot) = self.inner.client_config.lock() {
            *slot = client;
        }
        Ok(())
    }

    pub(super) fn register_live(&self, connection: &Connection) {
        if let Ok(mut live) = self.inner.live.lock() {
            live.retain(|_, c| c.close_reason().is_none());
            live.insert(connection.stable_id(), connection.clone());
        }
    }

    pub(super) fn forget_live(&self, connection: &Connection) {
        if let Ok(mut live) = self.inner.live.lock() {
            live.remove(&connection.stable_id());
        }
    }

    /// [`TransportError::Revoked`] when the peer closed `connection` for that reason.
    pub(super) fn revoked_or(
        &self,
        addr: SocketAddr,
        connection: &Connection,
        error: TransportError,
    ) -> TransportError {
        match connection.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(close))
                if close.error_code == VarInt::from_u32(CLOSE_REVOKED) =>
            {
                TransportError::Revoked { addr }
            }
            _ => error,
        }
    }
}
