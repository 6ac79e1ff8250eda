//! The messages nodes and the CLI exchange, and who may send each of them.
//!
//! One enum travels on every stream; [`Message::required_access`] is the single place that
//! says which certificate a sender needs, so authorization cannot drift from the message list.

use serde::{Deserialize, Serialize};

/// Every message that crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Liveness probe and transport benchmark; answered by [`Message::Pong`] with the same data.
    Ping {
        /// Chosen by the sender, echoed back.
        nonce: u64,
        /// Opaque bytes, echoed back (lets benchmarks vary the frame size).
        payload: Vec<u8>,
    },
    /// The answer to [`Message::Ping`].
    Pong {
        /// The nonce of the ping.
        nonce: u64,
        /// The payload of the ping.
        payload: Vec<u8>,
    },
    /// A node without a certificate asks to join the cluster (the only message it may send).
    Join(JoinRequest),
    /// A manager's answer to [`Message::Join`]: the new node's certificate.
    JoinAccepted(JoinAccepted),
    /// A Raft protocol message between managers, carried as raft-rs protobuf bytes.
    Raft(RaftEnvelope),
    /// The request failed; says why.
    Error(WireError),
}

/// A joining node's request for a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The secret part of the join token; it decides the role the node gets.
    pub secret: String,
    /// A PKCS#10 certificate signing request (DER) for the key the node generated itself.
    pub csr_der: Vec<u8>,
    /// The node's hostname, shown by `node ls`.
    pub hostname: String,
    /// The address other nodes reach this node at.
    pub advertise_addr: String,
}

/// What a joining node receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinAccepted {
    /// The ID the cluster gave the node.
    pub node_id: String,
    /// The role the join secret granted.
    pub role: crate::net::tls::Role,
    /// The node's certificate (PEM), signed by the cluster CA.
    pub cert_pem: String,
    /// The cluster CA certificate (PEM).
    pub ca_pem: String,
    /// Addresses of the managers, for the node's configuration.
    pub manager_addrs: Vec<String>,
}

/// A raft-rs message between two managers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftEnvelope {
    /// Raft ID of the sender.
    pub from: u64,
    /// Raft ID of the receiver.
    pub to: u64,
    /// `raft::eraftpb::Message` encoded with protobuf.
    pub bytes: Vec<u8>,
}

/// Why a request failed, as sent to the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The class of failure, for programs.
    pub kind: ErrorKind,
    /// The explanation, for people.
    pub message: String,
}

/// The classes of failure a peer can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The sender has no certificate and sent something other than a join request.
    Unauthenticated,
    /// The sender's certificate does not grant this message.
    Forbidden,
    /// The request was understood but is invalid.
    BadRequest,
    /// The receiver is not a manager (control commands sent to a worker).
    NotManager,
    /// The managers have no quorum; nothing can change until they do.
    NoQuorum,
    /// The named object does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// The receiver could not answer in time.
    Timeout,
    /// The receiver failed for a reason of its own.
    Internal,
}

impl WireError {
    /// An error of `kind` with a human message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a sender's certificate must grant for a message to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Anyone, even without a certificate (joining).
    Anonymous,
    /// Any node of the cluster, worker or manager.
    Node,
    /// Managers only (Raft traffic, forwarded control commands).
    Manager,
    /// The admin client certificate (control commands).
    Admin,
}

impl Message {
    /// The access a sender needs for this message to be handled.
    pub fn required_access(&self) -> Access {
        match self {
            Message::Join(_) => Access::Anonymous,
            Message::Ping { .. }
            | Message::Pong { .. }
            | Message::JoinAccepted(_)
            | Message::Error(_) => Access::Node,
            Message::Raft(_) => Access::Manager,
        }
    }

    /// A short name for logs and errors; never includes payloads (they may be secret).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::Join(_) => "join",
            Message::JoinAccepted(_) => "join-accepted",
            Message::Raft(_) => "raft",
            Message::Error(_) => "error",
        }
    }
}
