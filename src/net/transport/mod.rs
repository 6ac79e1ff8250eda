//! The QUIC transport: one endpoint per node, mutual TLS, one outgoing connection per peer.
//!
//! Requests use one bidirectional stream each (a frame out, a frame back, with a timeout);
//! one-way messages use one unidirectional stream each. Incoming messages are checked against
//! the sender's certificate role and then delivered to an actix [`Recipient`]. A malformed or
//! oversized frame closes the connection it came on and nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Recipient;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, VarInt};
use rustls::pki_types::CertificateDer;

use crate::net::fault::{FaultInjector, Verdict};
use crate::net::message::{Access, ErrorKind, Message, WireError};
use crate::net::stream::{read_frame, read_next_frame, write_frame, write_frame_open, StreamError};
use crate::net::tls::{self, Credentials, PeerIdentity, Role, TlsError};

/// Default time a request may take, connection set-up included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle connection lives (keep-alives keep live peers connected).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive period on every connection.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// Streams a peer may have open at once on one connection, per direction kind.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Largest UDP payload an endpoint accepts (an Ethernet MTU's worth). quinn sizes each
/// endpoint's receive buffer from it (x 32 datagrams per batch x 64 GRO segments): at the
/// default 65,527 bytes that is 128 MiB reserved and about 2 MiB touched per endpoint, which
/// is what a process of a thousand hollow nodes cannot afford. Path-MTU discovery never
/// probes above 1,452 bytes by default, so nothing sent is lost by the lower limit.
pub const MAX_UDP_PAYLOAD: u16 = 1_472;
/// How long an incoming stream may take to deliver its frame.
pub const INBOUND_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// First reconnect delay after a failed connect; doubles up to [`RECONNECT_BACKOFF_MAX`].
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Application close code: the peer sent a malformed or oversized frame.
pub const CLOSE_MALFORMED: u32 = 1;
/// Application close code: the peer is not authenticated for what it sent.
pub const CLOSE_UNAUTHENTICATED: u32 = 2;
/// Application close code: this node is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 3;

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

impl actix::Message for Inbound {
    /// The reply for a request; ignored for one-way messages.
    type Result = Option<Message>;
}

/// Failures of the transport, as its callers see them.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint could not be set up.
    #[error("cannot set up the endpoint: {0}")]
    Setup(String),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No connection to the peer could be made (or it is in reconnect backoff).
    #[error("cannot reach {addr}: {reason}")]
    Unreachable {
        /// The peer address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The peer did not answer in time.
    #[error("no answer from {addr} within {timeout_ms} ms")]
    Timeout {
        /// The peer address.
        addr: SocketAddr,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// The stream or connection failed mid-request.
    #[error("connection to {addr} failed: {reason}")]
    Connection {
        /// The peer address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The peer answered with an error.
    #[error("{0}")]
    Remote(WireError),
    /// Fault injection dropped the message.
    #[error("message to {addr} dropped by fault injection")]
    Dropped {
        /// The peer address.
        addr: SocketAddr,
    },
}

/// Everything needed to start a node's endpoint.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The UDP address to listen on.
    pub listen: SocketAddr,
    /// This node's certificate, key and CA.
    pub credentials: Credentials,
}

#[derive(Default)]
struct PeerSlot {
    connection: Option<Connection>,
    consecutive_failures: u32,
    retry_at: Option<Instant>,
}

struct Inner {
    endpoint: Endpoint,
    identity: PeerIdentity,
    peers: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<PeerSlot>>>>,
    faults: Arc<FaultInjector>,
}

/// A node's QUIC endpoint; clones share it.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

fn quic_transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config.max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS));
    config.max_concurrent_uni_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS));
    config.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    // IDLE_TIMEOUT fits a VarInt of milliseconds by construction.
    config.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    config
}

/// A quinn endpoint on `addr` with this project's endpoint settings ([`MAX_UDP_PAYLOAD`]).
/// An endpoint configuration that survives a restart of the node: the stateless-reset key and
/// the key that makes connection IDs recognizable are derived from the node's private key. A
/// peer still holding a connection to the previous process then gets a stateless reset for
/// its next packet (a keep-alive at the latest) and reconnects, instead of writing into the
/// dead connection until its idle timeout (a restarted manager heard nothing from the leader
/// for ~9 s). Without a secret (the CLI's one-shot endpoints) the keys are random.
fn endpoint_config(secret: Option<&[u8]>) -> quinn::EndpointConfig {
    let Some(secret) = secret else {
        return quinn::EndpointConfig::default();
    };
    let derive = |label: &[u8]| {
        let mut input = label.to_vec();
        input.extend_from_slice(secret);
        ring::digest::digest(&ring::digest::SHA256, &input)
    };
    let reset = derive(b"flotilla quic stateless reset v1\0");
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset.as_ref(),
    )));
    let cid = derive(b"flotilla quic connection ids v1\0");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

fn bind_endpoint(
    addr: SocketAddr,
    server_config: Option<quinn::ServerConfig>,
    reset_secret: Option<&[u8]>,
) -> Result<Endpoint, TransportError> {
    let setup = |e: &dyn std::fmt::Display| TransportError::Setup(format!("bind {addr}: {e}"));
    let mut endpoint_config = endpoint_config(reset_secret);
    endpoint_config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .map_err(|e| setup(&e))?;
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| setup(&e))?;
    let runtime = quinn::default_runtime().ok_or_else(|| setup(&"no async runtime"))?;
    Endpoint::new(endpoint_config, server_config, socket, runtime).map_err(|e| setup(&e))
}

fn client_config(
    rustls_config: rustls::ClientConfig,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(rustls_config)
        .map_err(|e| TransportError::Setup(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(quic_transport_config()));
    Ok(config)
}

/// The verified identity of the peer on a connection; `Ok(None)` if it showed no certificate.
fn connection_identity(connection: &Connection) -> Result<Option<PeerIdentity>, TlsError> {
    let Some(any) = connection.peer_identity() else {
        return Ok(None);
    };
    let Ok(chain) = any.downcast::<Vec<CertificateDer<'static>>>() else {
        return Ok(None);
    };
    match chain.first() {
        Some(leaf) => tls::identity_from_der(leaf).map(Some),
        None => Ok(None),
    }
}

/// Whether a sender with `role` (or none) may send a message needing `access`.
pub fn permits(role: Option<Role>, access: Access) -> bool {
    match access {
        Access::Anonymous => true,
        Access::Node => matches!(role, Some(Role::Manager | Role::Worker)),
        Access::Manager => role == Some(Role::Manager),
        Access::Admin => role == Some(Role::Admin),
    }
}

impl Transport {
    /// Binds the endpoint and starts accepting; incoming messages go to `inbound`.
    /// Must run inside the actix System (the endpoint's driver lives on the current arbiter).
    pub fn bind(
        config: TransportConfig,
        inbound: Recipient<Inbound>,
    ) -> Result<Self, TransportError> {
        let identity = config.credentials.identity()?;
        let server_crypto = QuicServerConfig::try_from(config.credentials.server_config()?)
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(Arc::new(quic_transport_config()));
        let mut endpoint = bind_endpoint(
            config.listen,
            Some(server_config),
            Some(config.credentials.key_pem.as_bytes()),
        )?;
        endpoint.set_default_client_config(client_config(config.credentials.client_config()?)?);
        let transport = Self {
            inner: Arc::new(Inner {
                endpoint,
                identity,
                peers: Mutex::new(HashMap::new()),
                faults: Arc::new(FaultInjector::default()),
            }),
        };
        tokio::spawn(accept_loop(transport.clone(), inbound));
        Ok(transport)
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|e| TransportError::Setup(e.to_string()))
    }

    /// This node's own identity.
    pub fn identity(&self) -> &PeerIdentity {
        &self.inner.identity
    }

    /// The fault rules in force at this node.
    pub fn faults(&self) -> &Arc<FaultInjector> {
        &self.inner.faults
    }

    /// Sends `message` to `addr` and waits for the reply, up to `timeout`.
    pub async fn request(
        &self,
        addr: SocketAddr,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        let exchange = async {
            let connection = self.connection(addr).await?;
            self.apply_outgoing_fault(addr, &connection).await?;
            let (mut send, mut recv) = connection
                .open_bi()
                .await
                .map_err(|e| self.connection_failed(addr, e))?;
            write_frame(&mut send, &message)
                .await
                .map_err(|e| self.connection_failed(addr, e))?;
            read_frame(&mut recv)
                .await
                .map_err(|e| self.connection_failed(addr, e))
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                addr,
                timeout_ms: timeout.as_millis() as u64,
            })??;
        match reply {
            Message::Error(error) => Err(TransportError::Remote(error)),
            other => Ok(other),
        }
    }

    /// Sends `message` to `addr` without waiting for any answer.
    pub async fn send(&self, addr: SocketAddr, message: Message) -> Result<(), TransportError> {
        let connection = self.connection(addr).await?;
        self.apply_outgoing_fault(addr, &connection).await?;
        let mut send = connection
            .open_uni()
            .await
            .map_err(|e| self.connection_failed(addr, e))?;
        write_frame(&mut send, &message)
            .await
            .map_err(|e| self.connection_failed(addr, e))
    }

    /// An ordered channel to `addr`: messages sent on it arrive in the order sent, as frames
    /// of one long-lived unidirectional stream (reopened after a failure). Raft needs this:
    /// appends that overtake each other are rejected and stall the follower until the next
    /// heartbeat. The queue holds [`ORDERED_QUEUE_MESSAGES`]; beyond that, messages are dropped
    /// (Raft retransmits).
    pub fn ordered_sender(&self, addr: SocketAddr) -> OrderedSender {
        let (sender, receiver) = tokio::sync::mpsc::channel(ORDERED_QUEUE_MESSAGES);
        tokio::spawn(ordered_writer(self.clone(), addr, receiver));
        OrderedSender { sender }
    }

    /// Closes every connection and waits (briefly) for the peers to be told.
    pub async fn shutdown(&self) {
        self.inner
            .endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(3), self.inner.endpoint.wait_idle()).await;
    }

    async fn apply_outgoing_fault(
        &self,
        addr: SocketAddr,
        connection: &Connection,
    ) -> Result<(), TransportError> {
        let peer = connection_identity(connection).ok().flatten();
        match self
            .inner
            .faults
            .verdict(peer.as_ref().map(|p| p.node_id.as_str()))
        {
            Verdict::Deliver => Ok(()),
            Verdict::DelayBy(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Verdict::Drop => Err(TransportError::Dropped { addr }),
        }
    }

    fn connection_failed(&self, addr: SocketAddr, error: impl std::fmt::Display) -> TransportError {
        TransportError::Connection {
            addr,
            reason: error.to_string(),
        }
    }

    /// The live connection to `addr`, connecting if needed (at most one connect in flight per
    /// peer; failed connects back off exponentially).
    async fn connection(&self, addr: SocketAddr) -> Result<Connection, TransportError> {
        let slot = {
            let mut peers = self
                .inner
                .peers
                .lock()
                .map_err(|_| TransportError::Setup("peer table poisoned".into()))?;
            peers.entry(addr).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(connection) = &slot.connection {
            if connection.close_reason().is_none() {
                return Ok(connection.clone());
            }
            slot.connection = None;
        }
        if let Some(retry_at) = slot.retry_at {
            if Instant::now() < retry_at {
                return Err(TransportError::Unreachable {
                    addr,
                    reason: "reconnect backoff after a failed connect".into(),
                });
            }
        }
        let attempt = async {
            self.inner
                .endpoint
                .connect(addr, tls::SERVER_NAME)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(DEFAULT_REQUEST_TIMEOUT, attempt).await {
            Ok(Ok(connection)) => {
                slot.connection = Some(connection.clone());
                slot.consecutive_failures = 0;
                slot.retry_at = None;
                Ok(connection)
            }
            outcome => {
                let reason = match outcome {
                    Ok(Err(reason)) => reason,
                    _ => "connect timed out".to_string(),
                };
                let exponent = slot.consecutive_failures.min(16);
                let backoff = RECONNECT_BACKOFF_MIN
                    .saturating_mul(1u32 << exponent)
                    .min(RECONNECT_BACKOFF_MAX);
                slot.consecutive_failures += 1;
                slot.retry_at = Some(Instant::now() + backoff);
                Err(TransportError::Unreachable { addr, reason })
            }
        }
    }
}

/// Messages queued on one ordered channel before new ones are dropped.
pub const ORDERED_QUEUE_MESSAGES: usize = 4096;

/// The sending half of an ordered channel (see [`Transport::ordered_sender`]).
#[derive(Clone)]
pub struct OrderedSender {
    sender: tokio::sync::mpsc::Sender<Message>,
}

impl OrderedSender {
    /// Queues `message`; `false` if the queue is full or the channel is gone (dropped).
    pub fn send(&self, message: Message) -> bool {
        self.sender.try_send(message).is_ok()
    }

    /// Whether the writer behind the channel has ended.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

async fn ordered_writer(
    transport: Transport,
    addr: SocketAddr,
    mut queue: tokio::sync::mpsc::Receiver<Message>,
) {
    let mut stream: Option<(Connection, quinn::SendStream)> = None;
    while let Some(message) = queue.recv().await {
        // A connection found lost (closed, reset, timed out) is replaced before the write, and
        // a write that fails on a connection that looked alive is tried once more on a new
        // one: a vote answer lost this way would cost Raft a whole election timeout.
        for attempt in 0..2 {
            if stream
                .as_ref()
                .is_some_and(|(connection, _)| connection.close_reason().is_some())
            {
                stream = None;
            }
            if stream.is_none() {
                match open_ordered_stream(&transport, addr).await {
                    Ok(opened) => stream = Some(opened),
                    Err(error) => {
                        tracing::debug!(%addr, %error, "ordered channel: message dropped");
                        break;
                    }
                }
            }
            let Some((connection, send)) = stream.as_mut() else {
                break;
            };
            if transport
                .apply_outgoing_fault(addr, connection)
                .await
                .is_err()
            {
                break;
            }
            match write_frame_open(send, &message).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::debug!(%addr, %error, attempt, "ordered channel: stream failed; reopening");
                    stream = None;
                }
            }
        }
    }
}

async fn open_ordered_stream(
    transport: &Transport,
    addr: SocketAddr,
) -> Result<(Connection, quinn::SendStream), TransportError> {
    let connection = transport.connection(addr).await?;
    let send = connection
        .open_uni()
        .await
        .map_err(|e| transport.connection_failed(addr, e))?;
    Ok((connection, send))
}

/// Sends one request from a node that has no endpoint of its own yet (joining): a temporary
/// client endpoint on `bind` with the given TLS client configuration.
pub async fn request_with(
    bind: SocketAddr,
    rustls_config: rustls::ClientConfig,
    addr: SocketAddr,
    message: Message,
    timeout: Duration,
) -> Result<Message, TransportError> {
    let mut endpoint = bind_endpoint(bind, None, None)?;
    endpoint.set_default_client_config(client_config(rustls_config)?);
    let exchange = async {
        let connection = endpoint
            .connect(addr, tls::SERVER_NAME)
            .map_err(|e| TransportError::Unreachable {
                addr,
                reason: e.to_string(),
            })?
            .await
            .map_err(|e| TransportError::Unreachable {
                addr,
                reason: e.to_string(),
            })?;
        let failed = |e: StreamError| TransportError::Connection {
            addr,
            reason: e.to_string(),
        };
        let (mut send, mut recv) =
            connection
                .open_bi()
                .await
                .map_err(|e| TransportError::Connection {
                    addr,
                    reason: e.to_string(),
                })?;
        write_frame(&mut send, &message).await.map_err(failed)?;
        let reply = read_frame(&mut recv).await.map_err(failed)?;
        Ok((connection, reply))
    };
    let outcome = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((connection, reply))) => {
            close_and_flush(&connection).await;
            Ok(Ok(reply))
        }
        failed => {
            endpoint.close(VarInt::from_u32(0), b"done");
            let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
            failed.map(|result| result.map(|(_, reply)| reply))
        }
    };
    match outcome {
        Err(_) => Err(TransportError::Timeout {
            addr,
            timeout_ms: timeout.as_millis() as u64,
        }),
        Ok(Err(error)) => Err(error),
        Ok(Ok(Message::Error(error))) => Err(TransportError::Remote(error)),
        Ok(Ok(reply)) => Ok(reply),
    }
}

/// Longest wait for a closing connection's CONNECTION_CLOSE to leave (see [`close_and_flush`]).
pub const CLOSE_FLUSH_MAX: Duration = Duration::from_millis(50);

/// Closes `connection` and waits until its CONNECTION_CLOSE has been handed to the socket (the
/// connection's sent-datagram count moves), so the peer frees the connection at once instead of
/// after its idle timeout. Not `Endpoint::wait_idle`: that also waits out the draining period
/// (3 PTO, about 85 ms on loopback because of the peer's 25 ms `max_ack_delay`), which every
/// CLI command would pay after it already has its answer.
async fn close_and_flush(connection: &Connection) {
    let sent_before = connection.stats().udp_tx.datagrams;
    connection.close(VarInt::from_u32(0), b"done");
    let deadline = Instant::now() + CLOSE_FLUSH_MAX;
    while connection.stats().udp_tx.datagrams == sent_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn accept_loop(transport: Transport, inbound: Recipient<Inbound>) {
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
    inbound: Recipient<Inbound>,
) {
    let peer = match connection_identity(&connection) {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(remote = %connection.remote_address(), %error, "peer certificate has no identity");
            connection.close(VarInt::from_u32(CLOSE_UNAUTHENTICATED), b"no identity");
            return;
        }
    };
    let context = Arc::new(ConnectionContext {
        transport,
        connection: connection.clone(),
        peer,
        inbound,
    });
    let uni = tokio::spawn(serve_uni_streams(context.clone()));
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(serve_request(context.clone(), send, recv));
    }
    uni.abort();
}

struct ConnectionContext {
    transport: Transport,
    connection: Connection,
    peer: Option<PeerIdentity>,
    inbound: Recipient<Inbound>,
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
        let role = self.peer.as_ref().map(|p| p.role);
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
        Ok(true) => match context.inbound.send(context.inbound(message, true)).await {
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
                        let _ = context.inbound.send(context.inbound(message, false)).await;
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
