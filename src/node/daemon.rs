//! Bootstrapping a node: `init` (a new cluster), `join` (an existing one), `start` (again,
//! from the state directory), and running it until a signal says stop.
//!
//! This file holds what those share (options, the error type, the running node) and
//! re-exports the steps, each in a file of its own under `node/`, so callers keep one path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::raft::RaftActor;
use crate::actors::worker::WorkerActor;
use crate::consensus::store_machine::SharedStore;
use crate::net::tls;
use crate::net::token;
use crate::net::transport::{self, Transport};
use crate::node::state::{self, NodeSettings};
use crate::runtime::sim::SimRuntime;

pub use crate::node::hollow::hollow_nodes;
pub use crate::node::init::{init, InitSummary};
pub use crate::node::join::join;
pub use crate::node::role_restart::{restart_in_role, RoleRestarter};
pub use crate::node::shutdown::{wait_for_shutdown, wait_for_signal, SHUTDOWN_TASK_GRACE_MS};
pub use crate::node::start::start;

/// Default UDP address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4240";
/// Default Raft tick.
pub const DEFAULT_RAFT_TICK_MS: u64 = 100;
/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u64 = 1_000;

/// Failures of bootstrapping.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory is unusable.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// The state directory already holds a node (use `start`), or holds none (use init/join).
    #[error("{0}")]
    StateDir(String),
    /// The metrics endpoint could not be had.
    #[error(transparent)]
    Metrics(#[from] crate::node::metrics::MetricsError),
    /// Certificates could not be made or read.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The join token is not acceptable.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// The network failed.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// Raft could not start.
    #[error("raft: {0}")]
    Raft(String),
    /// The cluster refused or failed.
    #[error("{0}")]
    Cluster(String),
    /// The cluster's data key could not be made, kept or opened.
    #[error("data key: {0}")]
    Keys(String),
}

/// Options common to init, join and dev.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address others reach this node at (default: `listen`).
    pub advertise_addr: Option<SocketAddr>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Hostname to report (default: the machine's).
    pub hostname: Option<String>,
    /// `auto`, `docker` or `process`.
    pub runtime: String,
    /// Node labels.
    pub labels: Vec<(String, String)>,
    /// Allow chaos commands.
    pub enable_chaos: bool,
    /// Raft tick period.
    pub raft_tick_ms: u64,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// With `runtime` = `sim`: how long a simulated task takes to start.
    pub sim_task_start_ms: u64,
    /// `--metrics-listen`.
    pub metrics_listen: crate::node::metrics::MetricsListen,
}

/// A started node's actors.
pub struct RunningNode {
    /// The settings it runs with.
    pub settings: NodeSettings,
    /// The endpoint.
    pub transport: Transport,
    /// The Raft actor, on managers.
    pub raft: Option<Addr<RaftActor>>,
    /// The worker actor.
    pub worker: Addr<WorkerActor>,
    /// The applied store, on managers.
    pub store: Option<SharedStore>,
    /// The simulated runtime, when the node runs with `--runtime sim` (tests, hollow nodes).
    pub sim: Option<Arc<SimRuntime>>,
    /// The routing actor, which keeps the node's mesh on the newest table (not on hollow
    /// nodes).
    pub routing: Option<Addr<crate::actors::routing::RoutingActor>>,
    /// The gossip actor (`None` when switched off, see `FLOTILLA_GOSSIP`).
    pub gossip: Option<Addr<crate::actors::gossip::GossipActor>>,
}
