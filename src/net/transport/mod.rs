//! The QUIC transport: one endpoint per node, mutual TLS, one outgoing connection per peer.
//!
//! Requests use one bidirectional stream each (a frame out, a frame back, with a timeout);
//! one-way messages use one unidirectional stream each. Incoming messages are checked against
//! the sender's certificate role and then handed to an [`InboundHandler`] (the actor bridge
//! lives in `actors::transport`, so this module knows nothing of actors). A malformed or
//! oversized frame closes the connection it came on and nothing else.
//!
//! Files: this one holds the endpoint handle, its connections and the request / one-way
//! sends; `endpoint` builds quinn endpoints (and the joining node's one-shot request);
//! `ordered` is the long-lived ordered channel Raft uses; `inbound` accepts connections and
//! serves what arrives on them; `limits` holds what a peer may cost (timeouts, budgets, the
//! certificate-less connection count).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, VarInt};

use crate::core::store::CertificateStanding;
use crate::net::fault::{FaultInjector, Verdict};
use crate::net::message::{Access, Message, WireError};
use crate::net::stream::{read_frame, write_frame};
use crate::net::tls::{self, Credentials, PeerIdentity, Role, TlsError};

mod endpoint;
mod inbound;
mod limits;
mod ordered;
mod peers;

pub use endpoint::{request_with, request_within, CLOSE_FLUSH_MAX};
pub use inbound::{DeliveryError, DeliveryFuture, Inbound, InboundHandler};
pub use limits::{
    InboundLimits, CONNECTION_BUFFER_BYTES, FRAME_TIMEOUT, MAX_UNAUTHENTICATED_CONNECTIONS,
    STREAM_IDLE_TIMEOUT, UNAUTHENTICATED_DEADLINE, UNAUTHENTICATED_MAX_FRAME_BYTES,
};
pub use ordered::{OrderedSender, ORDERED_QUEUE_MESSAGES};

use endpoint::{bind_endpoint, client_config, connection_identity, quic_transport_config};

/// Default time a request may take, connection set-up included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle connection lives (keep-alives keep live peers connected).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive period on every connection.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// Streams a peer may have open at once on one connection, per direction kind (see
/// `docs/wire.md`, "Limits on what peers send").
pub const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Bytes one stream may have in flight towards this node before the reader takes them.
pub const STREAM_RECEIVE_WINDOW_BYTES: u32 = 1024 * 1024;
/// Bytes one connection may have in flight towards this node, over all its streams.
pub const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// Bytes this node buffers for sending on one connection before writers wait.
pub const SEND_WINDOW_BYTES: u64 = 8 * 1024 * 1024;
/// Largest UDP payload an endpoint accepts (an Ethernet MTU's worth). quinn sizes each
/// endpoint's receive buffer from it (x 32 datagrams per batch x 64 GRO segments): at the
/// default 65,527 bytes that is 128 MiB reserved and about 2 MiB touched per endpoint, which
/// is what a process of a thousand hollow nodes cannot afford. Path-MTU discovery never
/// probes above 1,452 bytes by default, so nothing sent is lost by the lower limit.
pub const MAX_UDP_PAYLOAD: u16 = 1_472;
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
/// Application close code: too many certificate-less connections at once; try again later.
pub const CLOSE_BUSY: u32 = 4;
/// Stream reset / stop code: the stream's next frame did not start or finish in time.
pub const STREAM_TIMED_OUT: u32 = 5;
/// Application close code: the peer's certificate is revoked (`node rm` / `node demote`).
pub const CLOSE_REVOKED: u32 = 6;

/// How a manager judges a peer's certificate against the cluster's revocation list (set by
/// the composition root on managers, see [`Transport::set_revocation_check`]).
pub type RevocationCheck = Arc<dyn Fn(&PeerIdentity) -> CertificateStanding + Send + Sync>;

/// Failures of the transport, as its callers see them.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint could not be set up.
    #[error("cannot set up the endpoint: {0}")]
    Setup(String),
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The server's certificate (valid for the cluster) names another role than the one the
    /// client needs; nothing was sent.
    #[error("the server at {addr} is {}, not a {}", found.map_or("a peer without a role".to_string(), |role| format!("a {role}")), expected.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(" or "))]
    WrongServerRole {
        /// The server address.
        addr: SocketAddr,
        /// The roles the client accepts.
        expected: Vec<Role>,
        /// The role its certificate names (`None`: none could be read).
        found: Option<Role>,
    },
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
    /// The peer closed the connection because this node's certificate is revoked.
    #[error(
        "{addr} refused this node's certificate: it was revoked (the node was removed or demoted)"
    )]
    Revoked {
        /// The peer address.
        addr: SocketAddr,
    },
    /// The server's certificate is not of the peer the message is for (see [`Expect`]); the
    /// message was not sent on that connection.
    #[error("{addr} is not the expected peer: expected {expected}, its certificate is of {found}")]
    WrongPeer {
        /// The peer address.
        addr: SocketAddr,
        /// Who the message is for.
        expected: String,
        /// Who the certificate names.
        found: String,
    },
    /// Fault injection dropped the message.
    #[error("message to {addr} dropped by fault injection")]
    Dropped {
        /// The peer address.
        addr: SocketAddr,
    },
}

/// Whom an outgoing message is for, checked against the server's certificate right after a
/// connection is made and on every reuse: a worker certificate can never pose as a manager,
/// and a node's assignment set reaches only that node, whatever address it was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Any certificate of the cluster (pings, benchmarks).
    Any,
    /// A certificate of this role (workers and managers talking to the leader, Raft).
    Role(Role),
    /// The certificate of this node (the dispatcher's push of a node's assignment set).
    Node(String),
}

impl Expect {
    /// Whether a server showing `identity` (or no certificate) is the expected peer.
    pub fn admits(&self, identity: Option<&PeerIdentity>) -> bool {
        match (self, identity) {
            (Expect::Any, _) => true,
            (_, None) => false,
            (Expect::Role(role), Some(identity)) => identity.role == *role,
            (Expect::Node(node_id), Some(identity)) => {
                identity.node_id == *node_id && identity.role != Role::Admin
            }
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Any => f.write_str("any node"),
            Expect::Role(role) => write!(f, "a {role} certificate"),
            Expect::Node(node_id) => write!(f, "node {node_id}"),
        }
    }
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
    revocation_check: Mutex<Option<RevocationCheck>>,
    /// The client configuration of new outgoing connections (replaced on renewal; quinn keeps
    /// an endpoint's default client configuration per handle, so it is not used).
    client_config: Mutex<quinn::ClientConfig>,
    /// Every established connection, both directions, by `stable_id` (for [`Transport::close_peers`]).
    live: Mutex<HashMap<usize, Connection>>,
    peers: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<PeerSlot>>>>,
    faults: Arc<FaultInjector>,
    limits: InboundLimits,
    unauthenticated: limits::UnauthenticatedCount,
}

/// A node's QUIC endpoint; clones share it.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
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
    /// Must run inside a tokio runtime (the endpoint's driver is spawned on it).
    pub fn bind(
        config: TransportConfig,
        inbound: impl InboundHandler,
    ) -> Result<Self, TransportError> {
        Self::bind_with_limits(config, InboundLimits::default(), inbound)
    }

    /// [`Transport::bind`] with other limits on what peers send (tests shorten timeouts).
    pub fn bind_with_limits(
        config: TransportConfig,
        limits: InboundLimits,
        inbound: impl InboundHandler,
    ) -> Result<Self, TransportError> {
        if limits.connection_buffer_bytes < crate::net::codec::MAX_FRAME_BYTES {
            return Err(TransportError::Setup(format!(
                "connection_buffer_bytes {} is below the largest frame ({} bytes)",
                limits.connection_buffer_bytes,
                crate::net::codec::MAX_FRAME_BYTES
            )));
        }
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
        let client = client_config(config.credentials.client_config()?)?;
        endpoint.set_default_client_config(client.clone());
        let transport = Self {
            inner: Arc::new(Inner {
                endpoint,
                identity,
                revocation_check: Mutex::new(None),
                client_config: Mutex::new(client),
                live: Mutex::new(HashMap::new()),
                peers: Mutex::new(HashMap::new()),
                faults: Arc::new(FaultInjector::default()),
                limits,
                unauthenticated: limits::UnauthenticatedCount::default(),
            }),
        };
        tokio::spawn(inbound::accept_loop(transport.clone(), Arc::new(inbound)));
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
        self.request_expecting(addr, Expect::Any, message, timeout)
            .await
    }

    /// [`request`](Self::request) to the peer `expect` names: a server with another
    /// certificate gets nothing ([`TransportError::WrongPeer`]).
    pub async fn request_expecting(
        &self,
        addr: SocketAddr,
        expect: Expect,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        let exchange = async {
            let connection = self.connection_expecting(addr, &expect).await?;
            self.apply_outgoing_fault(addr, &connection).await?;
            let failed = |e: &dyn std::fmt::Display| {
                self.revoked_or(addr, &connection, self.connection_failed(addr, e))
            };
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| failed(&e))?;
            write_frame(&mut send, &message)
                .await
                .map_err(|e| failed(&e))?;
            read_frame(&mut recv).await.map_err(|e| failed(&e))
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
        self.send_expecting(addr, Expect::Any, message).await
    }

    /// [`send`](Self::send) to the peer `expect` names: a server with another certificate gets
    /// nothing ([`TransportError::WrongPeer`]).
    pub async fn send_expecting(
        &self,
        addr: SocketAddr,
        expect: Expect,
        message: Message,
    ) -> Result<(), TransportError> {
        let connection = self.connection_expecting(addr, &expect).await?;
        self.apply_outgoing_fault(addr, &connection).await?;
        let mut send = connection
            .open_uni()
            .await
            .map_err(|e| self.connection_failed(addr, e))?;
        write_frame(&mut send, &message)
            .await
            .map_err(|e| self.connection_failed(addr, e))
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
        let peer = connection_identity(connection, &self.inner.identity.cluster_id)
            .ok()
            .flatten();
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

    /// [`connection`](Self::connection), if the server's certificate is the one `expect`
    /// names; checked on every use, so a connection cached for one purpose is not taken for
    /// another peer's message.
    async fn connection_expecting(
        &self,
        addr: SocketAddr,
        expect: &Expect,
    ) -> Result<Connection, TransportError> {
        let connection = self.connection(addr).await?;
        if *expect == Expect::Any {
            return Ok(connection);
        }
        let identity = connection_identity(&connection, &self.inner.identity.cluster_id)
            .ok()
            .flatten();
        if expect.admits(identity.as_ref()) {
            return Ok(connection);
        }
        let found = match identity {
            Some(identity) => format!("{} {}", identity.role, identity.node_id),
            None => "no valid certificate".to_string(),
        };
        tracing::warn!(%addr, expected = %expect, %found, "server is not the expected peer; message not sent");
        Err(TransportError::WrongPeer {
            addr,
            expected: expect.to_string(),
            found,
        })
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
        let client = self
            .inner
            .client_config
            .lock()
            .map_err(|_| TransportError::Setup("client configuration poisoned".into()))?
            .clone();
        let attempt = async {
            self.inner
                .endpoint
                .connect_with(client, addr, tls::SERVER_NAME)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(DEFAULT_REQUEST_TIMEOUT, attempt).await {
            Ok(Ok(connection)) => {
                // The server must name this node's cluster (a certificate of the same CA
                // always does; this also refuses one without an identity URI).
                if let Err(error) =
                    connection_identity(&connection, &self.inner.identity.cluster_id)
                {
                    connection.close(VarInt::from_u32(CLOSE_UNAUTHENTICATED), b"no identity");
                    return Err(TransportError::Unreachable {
                        addr,
                        reason: error.to_string(),
                    });
                }
                self.register_live(&connection);
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
