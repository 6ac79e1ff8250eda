//! What travels between simulated nodes. Plain data, serializable so the trace digest can
//! cover every delivered message.

use flotilla::core::assignment::AssignmentSet;
use flotilla::core::model::Availability;
use flotilla::core::store::TaskStatusUpdate;
use serde::Serialize;

/// An admin write, as the client asks for it (by name, as the CLI does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AdminOp {
    /// `node join`: registers a worker (status unknown until its first heartbeat).
    Join {
        node_id: String,
    },
    ServiceCreate {
        name: String,
        replicas: u64,
    },
    ServiceScale {
        name: String,
        replicas: u64,
    },
    ServiceRemove {
        name: String,
    },
    /// `service update --image IMAGE`: a rolling update under the given order and
    /// parallelism (the replica count stays).
    ServiceUpdate {
        name: String,
        image: String,
        start_first: bool,
        parallelism: u64,
    },
    NodeAvailability {
        node_id: String,
        availability: Availability,
    },
    NodeRemove {
        node_id: String,
    },
}

/// How a manager answered an admin write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AdminOutcome {
    /// Committed and applied: acknowledged.
    Done,
    /// Refused before or at apply: it changed nothing.
    Rejected(String),
    /// Not the leader: it changed nothing; try `leader`.
    NotLeader { leader: Option<u64> },
    /// Leadership changed while it waited: it may or may not commit.
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub enum Payload {
    /// A Raft message between managers (protobuf bytes).
    Raft {
        bytes: Vec<u8>,
        carries_snapshot: bool,
    },
    /// Worker → manager: I am alive, and this is the assignment version I hold.
    Heartbeat {
        node_id: String,
        sequence: u64,
        assignments_version: u64,
    },
    /// Leader → worker: the heartbeat's answer, with the full set when the worker's is stale.
    HeartbeatAck {
        sequence: u64,
        assignments: Option<AssignmentSet>,
    },
    /// Manager → worker: not the leader; try `leader` (a raft id) if known.
    NotLeader { sequence: u64, leader: Option<u64> },
    /// Leader → worker: the heartbeat was refused; `removed` once a caught-up leader has no
    /// record of a node that was admitted (it was removed), otherwise try again later.
    Refused { sequence: u64, removed: bool },
    /// Leader → worker: the assignment set changed.
    Assignments(AssignmentSet),
    /// Worker → manager: task status changes.
    Statuses {
        node_id: String,
        batch: u64,
        updates: Vec<TaskStatusUpdate>,
    },
    /// Manager → worker: the batch committed (`ok`) or not (resend).
    StatusesAck {
        batch: u64,
        ok: bool,
        leader: Option<u64>,
    },
    /// Admin → manager.
    AdminRequest { op_id: u64, op: AdminOp },
    /// Manager → admin.
    AdminReply { op_id: u64, outcome: AdminOutcome },
}
