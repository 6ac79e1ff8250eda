//! The node daemon, the composition root: state directory, start-up of a manager or worker,
//! and shutdown. Only this layer knows every other one; nothing below imports it.
//!
//! - [`daemon`]: what the steps share (options, error, running node), and every step re-exported.
//! - [`init`], [`join`], [`start`]: the three ways a node comes up; [`hollow`]: many at once.
//! - `compose`: creating and wiring one node's actors; `raft_start`: its Raft replica;
//!   `gossip_start`: its gossip actor.
//! - `settings`: a new node's settings from its options and machine.
//! - [`shutdown`]: signals and a clean stop; [`role_restart`]: promotion and demotion.
//! - [`state`]: the state directory's files; [`keys`]: the data key's files; [`locked`]: an
//!   autolocked manager waiting for its unlock key; `key_keeper`: rewraps on autolock changes;
//!   [`allocator`]: the process's allocator tuning; [`metrics`]: the Prometheus endpoint.

pub mod allocator;
mod compose;
pub mod credential_keeper;
pub mod daemon;
mod gossip_start;
pub mod hollow;
pub mod init;
pub mod join;
mod key_keeper;
pub mod keys;
pub mod locked;
pub mod metrics;
mod raft_start;
pub mod role_restart;
mod settings;
pub mod shutdown;
pub mod start;
pub mod state;
