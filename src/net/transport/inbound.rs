//! Serving what arrives: accepting connections, reading their streams, checking each message
//! against the sender's certificate role and handing it to the node's [`InboundHandler`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, VarInt};
use tokio::sync::Semaphore;

use super::endpoint::connection_identity;
use super::limits::UNAUTHENTICATED_MAX_FRAME_BYTES;
use super::{
    permits, Transport, CLOSE_BUSY, CLOSE_MALFORMED, CLOSE_REVOKED, CLOSE_UNAUTHENTICATED,
    STREAM_TIMED_OUT,
};
use crate::core::store::CertificateStanding;
use crate::net::codec::MAX_FRAME_BYTES;
use crate::net::fault::Verdict;
use crate::net::message::{ErrorKind, Message, WireError};
use crate::net::stream::{
    read_next_frame_bounded, write_frame, BoundedFrame, ReadBounds, StreamError,
};
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
                Ok(connection) if presents_certificate(&connection) => {
                    serve_connection(transport, connection, inbound).await
                }
                Ok(connection) => serve_unauthenticated(transport, connection, inbound).await,
                Err(error) => tracing::debug!(%error, "handshake failed"),
            }
        });
    }
}

/// Whether the peer showed a certificate in the handshake (verified by rustls; its identity
/// is read in [`serve_connection`]).
fn presents_certificate(connection: &Connection) -> bool {
    connection
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .is_some_and(|chain| !chain.is_empty())
}

/// A certificate-less (joining) connection: at most `max_unauthenticated_connections` at once
/// (the one past it is closed right after its handshake), and each lives at most
/// `unauthenticated_deadline`, whatever it does.
async fn serve_unauthenticated(
    transport: Transport,
    connection: Connection,
    inbound: Arc<dyn InboundHandler>,
) {
    let limits = transport.inner.limits.clone();
    let Some(_slot) = transport
        .inner
        .unauthenticated
        .admit(limits.max_unauthenticated_connections)
    else {
        tracing::debug!(remote = %connection.remote_address(), "too many certificate-less connections");
        connection.close(
            VarInt::from_u32(CLOSE_BUSY),
            b"too many unauthenticated connections",
        );
        return;
    };
    let serving = serve_connection(transport, connection.clone(), inbound);
    if tokio::time::timeout(limits.unauthenticated_deadline, serving)
        .await
        .is_err()
    {
        connection.close(
            VarInt::from_u32(CLOSE_UNAUTHENTICATED),
            b"unauthenticated deadline",
        );
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
    let context = Arc::new(ConnectionContext::new(
        transport.clone(),
        connection.clone(),
        peer,
        access_role,
        inbound,
    ));
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
    /// The limits every stream of this connection reads under (one shared byte budget).
    bounds: ReadBounds,
    /// A certificate-less connection has opened its one request stream.
    opened_request: AtomicBool,
}

impl ConnectionContext {
    fn new(
        transport: Transport,
        connection: Connection,
        peer: Option<PeerIdentity>,
        access_role: Option<Role>,
        inbound: Arc<dyn InboundHandler>,
    ) -> Self {
        let limits = &transport.inner.limits;
        let (max_frame_bytes, budget_bytes) = match peer {
            Some(_) => (MAX_FRAME_BYTES, limits.connection_buffer_bytes),
            None => (
                UNAUTHENTICATED_MAX_FRAME_BYTES,
                UNAUTHENTICATED_MAX_FRAME_BYTES,
            ),
        };
        let bounds = ReadBounds {
            idle_timeout: limits.stream_idle_timeout,
            frame_timeout: limits.frame_timeout,
            max_frame_bytes,
            budget: Arc::new(Semaphore::new(budget_bytes)),
        };
        Self {
            transport,
            connection,
            peer,
            access_role,
            inbound,
            bounds,
            opened_request: AtomicBool::new(false),
        }
    }

    /// Ends what a failed read leaves: a peer that sent what is not a frame it may send loses
    /// its connection; a stream that timed out is reset (its peer learns at once) and the
    /// connection lives on.
    fn read_failed(
        &self,
        error: &StreamError,
        send: Option<&mut quinn::SendStream>,
        recv: &mut quinn::RecvStream,
    ) {
        if error.is_malformed() {
            tracing::warn!(remote = %self.connection.remote_address(), %error, "closing connection");
            self.connection
                .close(VarInt::from_u32(CLOSE_MALFORMED), b"malformed frame");
        } else if error.is_timeout() {
            tracing::debug!(remote = %self.connection.remote_address(), %error, "resetting stream");
            let _ = recv.stop(VarInt::from_u32(STREAM_TIMED_OUT));
            if let Some(send) = send {
                let _ = send.reset(VarInt::from_u32(STREAM_TIMED_OUT));
            }
        }
    }

    /// A certificate-less peer may open one request stream and no one-way stream; `false`
    /// (and the connection closed) for anything past that.
    fn may_open_stream(&self, request: bool) -> bool {
        if self.peer.is_some() {
            return true;
        }
        if request && !self.opened_request.swap(true, Ordering::AcqRel) {
            return true;
        }
        self.connection.close(
            VarInt::from_u32(CLOSE_UNAUTHENTICATED),
            b"unauthenticated peers may open one request stream",
        );
        false
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
    if !context.may_open_stream(true) {
        return;
    }
    // A request stream carries one frame; the frame's budget is held until it is answered.
    let frame = match read_next_frame_bounded(&mut recv, &context.bounds).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return,
        Err(error) => return context.read_failed(&error, Some(&mut send), &mut recv),
    };
    let BoundedFrame { message, held } = frame;
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
    drop(held);
    let _ = write_frame(&mut send, &reply).await;
}

async fn serve_uni_streams(context: Arc<ConnectionContext>) {
    while let Ok(mut recv) = context.connection.accept_uni().await {
        if !context.may_open_stream(false) {
            return;
        }
        let context = context.clone();
        // A unidirectional stream carries one frame (one-way messages) or many in order (an
        // ordered channel); frames of one stream are delivered one after the other. The idle
        // timeout runs between frames, the frame timeout from a frame's first byte.
        tokio::spawn(async move {
            loop {
                let frame = match read_next_frame_bounded(&mut recv, &context.bounds).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return,
                    Err(error) => return context.read_failed(&error, None, &mut recv),
                };
                let BoundedFrame { message, held } = frame;
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
                drop(held);
            }
        });
    }
}
