//! The messages nodes and the CLI exchange, and who may send each of them.
//!
//! One enum travels on every stream; [`Message::required_access`] is the single place that
//! says which certificate a sender needs, so authorization cannot drift from the message list.

use serde::{Deserialize, Serialize};

// The set is a core type (its rules live beside it); it travels as is.
pub use crate::core::assignment::AssignmentSet;
use crate::core::store::TaskStatusUpdate;
use crate::net::admin::AdminReply;
pub use crate::net::control_proof::SignedControl;

/// Every message that crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Liveness probe and transport benchmark; answered by [`Message::Pong`] with the same data.
    Ping {
        /// Chosen by the sender, echoed back.
        nonce: u64,
        /// Opaque bytes, echoed back (lets benchmarks vary the frame size).
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The answer to [`Message::Ping`].
    Pong {
        /// The nonce of the ping.
        nonce: u64,
        /// The payload of the ping.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A node without a certificate asks to join the cluster (the only message it may send).
    Join(JoinRequest),
    /// A manager's answer to [`Message::Join`]: the new node's certificate.
    JoinAccepted(JoinAccepted),
    /// A Raft protocol message between managers, carried as raft-rs protobuf bytes.
    Raft(RaftEnvelope),
    /// An admin's control command (the `flotilla` CLI), signed with the admin key.
    Control(SignedControl),
    /// A control command a follower manager forwards to the leader on an admin's behalf: the
    /// admin's signed command exactly as it arrived (the leader verifies the proof again).
    Forwarded(SignedControl),
    /// The answer to a control command.
    AdminReply(AdminReply),
    /// A worker's liveness report to the leader; answered by [`Message::HeartbeatAck`].
    Heartbeat(Heartbeat),
    /// The leader's answer to a heartbeat.
    HeartbeatAck(HeartbeatAck),
    /// The leader pushes a worker's complete assignment set whenever it changes.
    Assignments(AssignmentSet),
    /// A worker's batch of task status changes; answered by [`Message::Ack`].
    TaskStatuses(Vec<TaskStatusUpdate>),
    /// The receiver is not the leader; try there (`None`: no leader known now).
    NotLeader {
        /// Advertised address of the leader, if known.
        leader_addr: Option<String>,
    },
    /// Chaos: stop an actor as if it had crashed (nodes started with `--enable-chaos` only).
    Chaos(ChaosRequest),
    /// A request was carried out and has nothing to return.
    Ack,
    /// The request failed; says why.
    Error(WireError),
    /// A gossip packet (SWIM, `core::gossip`), one-way. The gossip actor refuses it unless the
    /// sender it claims is the node of the certificate it came with.
    Gossip(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Asks a node for its routing table of `version` or newer; answered by
    /// [`Message::GossipTable`], or a `NotFound` error when it has none that new.
    GossipFetch {
        /// The oldest version that will do.
        version: u64,
    },
    /// The answer to [`Message::GossipFetch`]: a routing table the managers decided.
    GossipTable {
        /// Its version.
        version: u64,
        /// `RoutingTable::encode` of it (opaque to gossip).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Asks a node (a manager, the seed of a joining node) for its gossip identity;
    /// answered by [`Message::GossipIdentity`].
    GossipHello,
    /// The answer to [`Message::GossipHello`].
    GossipIdentity(crate::core::gossip::GossipId),
    /// Asks a node for its gossip view (`node inspect`); answered by
    /// [`Message::GossipViewReply`].
    GossipViewRequest,
    /// The answer to [`Message::GossipViewRequest`].
    GossipViewReply(crate::core::gossip::GossipView),
    /// A manager without the cluster's data key (a worker just promoted) asks another manager
    /// for it; answered by [`Message::DataKey`], or a `NotFound` error by a manager that holds
    /// none. Managers only: a worker never gets the key.
    DataKeyFetch,
    /// The answer to [`Message::DataKeyFetch`]: the data key's bytes, only ever inside two
    /// managers' mutually authenticated connection (its `Debug` shows only the size).
    DataKey(crate::core::secrets::Plaintext),
}

/// What a worker tells the leader every heartbeat period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node's own description (registered on first contact, updated on change).
    pub description: NodeDescription,
    /// The version of the last assignment set the worker applied.
    pub assignments_version: u64,
    /// The node the heartbeat is for: it must be the node of the sender's certificate (the
    /// dispatcher refuses any other with `Forbidden`).
    pub node_id: String,
    /// Past two thirds of its certificate's life: a certificate signing request (DER) for a
    /// fresh key, repeated on every heartbeat until the answer carries the certificate.
    #[serde(with = "serde_bytes")]
    pub renewal_csr_der: Option<Vec<u8>>,
}

pub use crate::core::model::NodeDescription;

/// The leader's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The period the worker must keep.
    pub period_ms: u64,
    /// Advertised addresses of the managers.
    pub manager_addrs: Vec<String>,
    /// The full assignment set, when the worker's version is stale.
    pub assignments: Option<AssignmentSet>,
    /// The node was promoted or demoted: its new credentials (it restarts with them).
    pub role_change: Option<RoleChange>,
    /// The renewed certificate (PEM) for the heartbeat's `renewal_csr_der`, once signed.
    pub renewed_cert_pem: Option<String>,
}

/// New credentials for a node whose role changed (`node promote` / `node demote`). They travel
/// only inside the node's own mutually authenticated connection.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    /// The new role.
    pub role: crate::net::tls::Role,
    /// A certificate for that role, its key and the CA.
    pub credentials: crate::net::tls::Credentials,
}

impl std::fmt::Debug for RoleChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleChange")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Chaos commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChaosRequest {
    /// Stop one actor: `replica` (ID = task ID), `service` (name or ID), `worker`,
    /// `dispatcher`, `scheduler`, `orchestrator`, `raft`.
    KillActor {
        /// Which kind of actor.
        kind: ChaosKind,
        /// Which one, where the kind needs it.
        id: Option<String>,
    },
    /// Cut, delay or drop traffic between the receiving node and another node.
    SetFault {
        /// The other node's ID.
        peer_node_id: String,
        /// The rule, or `None` to clear it.
        rule: Option<crate::net::fault::FaultRule>,
    },
}

/// The kinds of actor `chaos kill-actor` can stop, parsed once where the words come in (the
/// CLI), so nodes match on the kind instead of comparing strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChaosKind {
    /// One replica actor on a worker (ID = task ID).
    Replica,
    /// One service actor of the leader's orchestrator (ID = service name or ID).
    Service,
    /// The worker actor.
    Worker,
    /// The dispatcher (leader only).
    Dispatcher,
    /// The scheduler (leader only).
    Scheduler,
    /// The orchestrator (leader only).
    Orchestrator,
    /// The Raft actor (managers).
    Raft,
}

/// A word that names no [`ChaosKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown actor kind {found:?} (valid kinds: {})", ChaosKind::NAMES.join(", "))]
pub struct UnknownChaosKind {
    /// The word given.
    pub found: String,
}

impl ChaosKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [ChaosKind; 7] = [
        ChaosKind::Replica,
        ChaosKind::Service,
        ChaosKind::Worker,
        ChaosKind::Dispatcher,
        ChaosKind::Scheduler,
        ChaosKind::Orchestrator,
        ChaosKind::Raft,
    ];

    /// The words of [`ChaosKind::ALL`], as the CLI accepts them.
    pub const NAMES: [&'static str; 7] = [
        "replica",
        "service",
        "worker",
        "dispatcher",
        "scheduler",
        "orchestrator",
        "raft",
    ];

    /// The word for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ChaosKind::Replica => "replica",
            ChaosKind::Service => "service",
            ChaosKind::Worker => "worker",
            ChaosKind::Dispatcher => "dispatcher",
            ChaosKind::Scheduler => "scheduler",
            ChaosKind::Orchestrator => "orchestrator",
            ChaosKind::Raft => "raft",
        }
    }
}

impl std::fmt::Display for ChaosKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChaosKind {
    type Err = UnknownChaosKind;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        ChaosKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == word)
            .ok_or_else(|| UnknownChaosKind {
                found: word.to_string(),
            })
    }
}

/// A joining node's request for a certificate. Its `Debug` leaves out the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("hostname", &self.hostname)
            .field("advertise_addr", &self.advertise_addr)
            .finish_non_exhaustive()
    }
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
    /// The cluster's data key (SPEC §9), for a manager only, never a worker; `None` also when
    /// the leader holds none (a state directory older than secrets). Its `Debug` shows only
    /// the size.
    #[serde(default)]
    pub data_key: Option<crate::core::secrets::Plaintext>,
}

/// A raft-rs message between two managers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftEnvelope {
    /// Raft ID of the sender.
    pub from: u64,
    /// Raft ID of the receiver.
    pub to: u64,
    /// `raft::eraftpb::Message` encoded with protobuf (as one byte string on the wire, not a
    /// sequence of numbers: megabytes of entries are copied, not encoded byte by byte).
    #[serde(with = "serde_bytes")]
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
            | Message::Heartbeat(_)
            | Message::HeartbeatAck(_)
            | Message::TaskStatuses(_)
            | Message::AdminReply(_)
            | Message::NotLeader { .. }
            | Message::Ack
            | Message::Error(_) => Access::Node,
            // Any node gossips; the packet's claimed sender is checked against the
            // certificate by the gossip state machine.
            Message::Gossip(_)
            | Message::GossipFetch { .. }
            | Message::GossipTable { .. }
            | Message::GossipHello
            | Message::GossipIdentity(_)
            | Message::GossipViewRequest
            | Message::GossipViewReply(_) => Access::Node,
            // Assignments come from the leader only: a worker must not push them to a peer.
            Message::Raft(_) | Message::Forwarded(_) | Message::Assignments(_) => Access::Manager,
            Message::DataKeyFetch | Message::DataKey(_) => Access::Manager,
            Message::Control(_) | Message::Chaos(_) => Access::Admin,
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
            Message::Control(_) => "control",
            Message::Forwarded(_) => "forwarded control",
            Message::AdminReply(_) => "control reply",
            Message::Heartbeat(_) => "heartbeat",
            Message::HeartbeatAck(_) => "heartbeat ack",
            Message::Assignments(_) => "assignments",
            Message::TaskStatuses(_) => "task statuses",
            Message::NotLeader { .. } => "not leader",
            Message::Chaos(_) => "chaos",
            Message::Ack => "ack",
            Message::Error(_) => "error",
            Message::Gossip(_) => "gossip",
            Message::GossipFetch { .. } => "gossip fetch",
            Message::GossipTable { .. } => "gossip table",
            Message::GossipHello => "gossip hello",
            Message::GossipIdentity(_) => "gossip identity",
            Message::GossipViewRequest => "gossip view request",
            Message::GossipViewReply(_) => "gossip view",
            Message::DataKeyFetch => "data key fetch",
            Message::DataKey(_) => "data key",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chaos_kind_parses_from_its_own_word() {
        for (kind, name) in ChaosKind::ALL.into_iter().zip(ChaosKind::NAMES) {
            assert_eq!(kind.as_str(), name);
            assert_eq!(name.parse::<ChaosKind>(), Ok(kind));
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn an_unknown_chaos_kind_names_the_valid_ones() {
        let error = "tracer".parse::<ChaosKind>().expect_err("not a kind");
        assert_eq!(
            error.to_string(),
            "unknown actor kind \"tracer\" (valid kinds: replica, service, worker, dispatcher, \
             scheduler, orchestrator, raft)"
        );
        assert!("Worker".parse::<ChaosKind>().is_err(), "words are exact");
    }
}
