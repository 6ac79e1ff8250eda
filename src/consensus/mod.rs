//! The Raft member (one manager's place in the Raft group): a driver around `raft::RawNode`
//! with a durable redb log. (Not to be confused with a service replica: a task in `actors`.)
//!
//! - [`RaftMember`] owns a `RawNode` over [`RedbStorage`] and a [`StateMachine`]. It is pure of
//!   networking, clocks and actix: the Raft actor feeds it ticks, peer messages and proposals and
//!   acts on the [`ReadyOutput`] of [`RaftMember::handle_ready`].
//! - [`RedbStorage`] is the durable log, hard state, conf state and snapshot; every write is
//!   fsynced before it returns.
//! - [`SimDisk`] is a crashable in-memory disk for redb, used by the deterministic simulation
//!   (`tests/raft_sim.rs`).
//! - [`envelope`]: an envelope's sender must be its certificate's node and a current member.
//! - [`InvalidPeerMessage`]: why a peer message was refused before raft-rs saw it (raft-rs
//!   panics on some malformed messages; `validate.rs`).
//!
//! The design note is `docs/raft.md`.

pub mod envelope;
mod member;
mod output;
#[cfg(test)]
mod release_v3_tests;
mod sim_disk;
mod state_machine;
mod storage;
pub mod store_machine;
#[cfg(test)]
mod test_counter;
mod validate;

pub use member::{replay_committed, RaftMember};
pub use output::{
    AppliedConfChange, AppliedProposal, ApplyError, LeadershipState, MemberConfig, MemberError,
    MembershipChange, OutgoingMessage, ReadyOutput,
};
pub use sim_disk::{SimDisk, SimDiskBackend};
pub use state_machine::{EntryCommand, StateMachine, MAX_COMMAND_BYTES};
pub use storage::{ForcedCluster, RedbStorage, StorageError};
pub use validate::InvalidPeerMessage;
