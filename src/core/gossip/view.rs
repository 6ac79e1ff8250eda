//! What `node inspect` shows of a node's gossip: the members it knows and their state, whom
//! it suspects, and the table version it has.

use serde::{Deserialize, Serialize};

/// A member's state as one node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// A probe failed; declared down unless it refutes in time.
    Suspect,
    /// Declared down.
    Down,
}

impl From<foca::State> for MemberState {
    fn from(state: foca::State) -> Self {
        match state {
            foca::State::Alive => MemberState::Alive,
            foca::State::Suspect => MemberState::Suspect,
            foca::State::Down => MemberState::Down,
        }
    }
}

/// One member in a [`GossipView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member's node ID.
    pub node_id: String,
    /// Its advertise address.
    pub addr: String,
    /// Its state.
    pub state: MemberState,
}

/// A node's gossip view (`node inspect` shows it under `gossip`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipView {
    /// The node itself.
    pub node_id: String,
    /// Every member it knows of, by node ID (itself excluded).
    pub members: Vec<MemberView>,
    /// The node IDs of the members it suspects.
    pub suspected: Vec<String>,
    /// The version of the table it has, if any.
    pub table_version: Option<u64>,
    /// The newest version it has heard of (ahead of `table_version` while it fetches).
    pub announced_version: Option<u64>,
}
