//! Serving what arrives: accepting connections, reading their streams, checking each message
//! against the sender's certificate role and handing it to the node's [`InboundHandler`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, VarInt};

use super::endpoint::connection_identity;
use super::{
    permits, Transport, CLOSE_MALFORMED, CLOSE_REVOKED, CLOSE_UNAUTHENTICATED,
    INBOUND_FRAME_TIMEOUT,
};
use crate::core::store::CertificateStanding;
use crate::net::fault::Verdict;
use crate::net::message::{ErrorKind, Message, WireError};
use crate::net::stream::{read_frame, read_next_frame, write_frame, StreamError};
use crate::net::tls::{PeerIdentity, Role};

/// A message that arrived, with who sent it.
#[derive(Debug)]
pub struct Inbound {
    /// The verified sender, or `None` for a peer without a certificate (joining).
    pub from: Option<PeerIdentity>,
    /// The sender's socket address.
    pub remote: SocketAddr,
    /// The message.
    pub message: Message,
    /// Whether the sender waits for a reply (a request) or not (one-way).
    pub expects_reply: bool,
}

/// The handler could not take a message (its receiver is gone or timed out); the requester
/// gets an `Internal` error carrying this text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

/// What [`InboundHandler::deliver`] returns: the reply for a request (ignored for one-way
/// messages), once the handler has produced it.
pub type DeliveryFuture =
    Pin<Box<dyn Future<Output = Result<Option<Message>, DeliveryError>> + Send>>;

/// Where a [`Transport`] hands the messages it admitted. The future is awaited before the
/// stream reads its next frame, so a slow handler slows its senders (back-pressure) instead of
/// queueing without bound; frames of one stream are delivered in order.
pub trait InboundHandler: Send + Sync + 'static {
    /// Hands `inbound` over; resolves to the reply for a request.
    fn deliver(&self, inbound: Inbound) -> DeliveryFuture;
}

pub(super) async fn accept_loop(transport: Transport, inbound: Arc<dyn InboundHandler>) {
    while let Some(incoming) = transport.inner.endpoint.accept().await {
        let transport = transport.clone();
        let inbound = inbound.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(connection) => serve_connection(transport, connection, inbound).await,
                Err(error) => tracing::debug!(%error, "handshake failed"),
            }
        });
    }
}

async fn serve_connection(
    transport: Transport,
    connection: Connection,
    inbound: Arc<dyn InboundHandler>,
) {
    let peer = match connection_identity(&connection, &transport.identity().cluster_id) {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(remote = %connection.remote_address(), %error, "peer certificate has no identity");
            connection.close(VarInt::from_u32(CLOSE_UNAUTHENTICATED), b"no identity");
            return;
        }
    };
    // Judged before any stream is read; a demoted manager's old certificate keeps only
    // worker rights (it may still heartbeat, to fetch its worker certificate).
    let mut access_role = peer.as_ref().map(|p| p.role);
    if let Some(identity) = &peer {
        match transport.standing(identity) {
            CertificateStanding::Good => {}
            CertificateStanding::ManagerRightsRevoked => access_role = Some(Role::Worker),
            CertificateStanding::Revoked => {
                tracing::warn!(node = %identity.node_id, remote = %connection.remote_address(), "refused a revoked certificate");
                connection.close(VarInt::from_u32(CLOSE_REVOKED), b"certificate revoked");
                return;
            }
        }
    }
    transport.register_live(&connection);
    let context = Arc::new(ConnectionContext {
        transport: transport.clone(),
        connection: connection.clone(),
        peer,
        access_role,
        inbound,
    });
    let uni = tokio::spawn(serve_uni_streams(context.clone()));
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(serve_request(context.clone(), send, recv));
    }
    uni.abort();
    transport.forget_live(&connection);
}

struct ConnectionContext {
    transport: Transport,
    connection: Connection,
    peer: Option<PeerIdentity>,
    /// The role whose rights the peer has: its certificate's, or less if revoked.
    access_role: Option<Role>,
    inbound: Arc<dyn InboundHandler>,
}

impl ConnectionContext {
    fn close_malformed(&self, error: &StreamError) {
        if matches!(error, StreamError::Codec(_)) {
            tracing::warn!(remote = %self.connection.remote_address(), %error, "closing connection");
            self.connection
                .close(VarInt::from_u32(CLOSE_MALFORMED), b"malformed frame");
        }
    }

    /// Applies incoming faults and authorization; `Err` carries the reply for a refusal.
    async fn admit(&self, message: &Message) -> Result<bool, WireError> {
        match self
            .transport
            .inner
            .faults
            .verdict(self.peer.as_ref().map(|p| p.node_id.as_str()))
        {
            Verdict::Drop => return Ok(false),
            Verdict::DelayBy(delay) => tokio::time::sleep(delay).await,
            Verdict::Deliver => {}
        }
        let role = self.access_role;
        let access = message.required_access();
        if permits(role, access) {
            return Ok(true);
        }
        Err(match role {
            None => WireError::new(
                ErrorKind::Unauthenticated,
                "a client certificate signed by the cluster CA is required",
            ),
            Some(role) => WireError::new(
                ErrorKind::Forbidden,
                format!(
                    "a {role} certificate may not send {} messages",
                    message.kind_name()
                ),
            ),
        })
    }

    fn inbound(&self, message: Message, expects_reply: bool) -> Inbound {
        Inbound {
            from: self.peer.clone(),
            remote: self.connection.remote_address(),
            message,
            expects_reply,
        }
    }
}

async fn serve_request(
    context: Arc<ConnectionContext>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let message = match tokio::time::timeout(INBOUND_FRAME_TIMEOUT, read_frame(&mut recv)).await {
        Ok(Ok(message)) => message,
        Ok(Err(error)) => return context.close_malformed(&error),
        Err(_) => return,
    };
    let reply = match context.admit(&message).await {
        Ok(false) => return,
        Ok(true) => match context
            .inbound
            .deliver(context.inbound(message, true))
            .await
        {
            Ok(Some(reply)) => reply,
            Ok(None) => Message::Error(WireError::new(ErrorKind::Internal, "no reply")),
            Err(error) => Message::Error(WireError::new(ErrorKind::Internal, error.to_string())),
        },
        Err(refusal) => {
            let unauthenticated = refusal.kind == ErrorKind::Unauthenticated;
            let _ = write_frame(&mut send, &Message::Error(refusal)).await;
            if unauthenticated {
                // Let the refusal reach the peer before the connection goes.
                let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
                context
                    .connection
                    .close(VarInt::from_u32(CLOSE_UNAUTHENTICATED), b"unauthenticated");
            }
            return;
        }
    };
    let _ = write_frame(&mut send, &reply).await;
}

async fn serve_uni_streams(context: Arc<ConnectionContext>) {
    while let Ok(mut recv) = context.connection.accept_uni().await {
        let context = context.clone();
        // A unidirectional stream carries one frame (one-way messages) or many in order (an
        // ordered channel); frames of one stream are delivered one after the other.
        tokio::spawn(async move {
            loop {
                let message = match read_next_frame(&mut recv).await {
                    Ok(Some(message)) => message,
                    Ok(None) => return,
                    Err(error) => return context.close_malformed(&error),
                };
                match context.admit(&message).await {
                    Ok(true) => {
                        let _ = context
                            .inbound
                            .deliver(context.inbound(message, false))
                            .await;
                    }
                    Ok(false) => {}
                    Err(refusal) => {
                        tracing::debug!(%refusal, "one-way message refused");
                        if refusal.kind == ErrorKind::Unauthenticated {
                            context
                                .connection
                                .close(VarInt::from_u32(CLOSE_UNAUTHENTICATED), b"unauthenticated");
                            return;
                        }
                    }
                }
            }
        });
    }
}
