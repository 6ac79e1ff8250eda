//! `flotilla-node start`: a node that `init` or `join` created, again from its state directory.

use std::path::Path;

use crate::net::tls::{Credentials, Role};
use crate::node::compose::run;
use crate::node::daemon::{DaemonError, RunningNode};
use crate::node::raft_start::{start_replica, RaftStart};
use crate::node::state::{self, NodeSettings, CREDENTIALS_FILE, NODE_FILE};

/// Starts a node that `init` or `join` created, from its state directory.
pub async fn start(state_dir: &Path, enable_chaos: bool) -> Result<RunningNode, DaemonError> {
    if !state_dir.join(NODE_FILE).exists() {
        return Err(DaemonError::StateDir(format!(
            "{} holds no node; create one with `flotilla-node init` or `join`",
            state_dir.display()
        )));
    }
    let settings: NodeSettings = state::read_toml(&state_dir.join(NODE_FILE))?;
    let credentials: Credentials = state::read_toml(&state_dir.join(CREDENTIALS_FILE))?;
    if settings.role == Role::Worker {
        // Left over by a demotion that stopped half-way, or by the previous release (which
        // kept `raft.redb.demoted`): a worker holds no Raft state and no CA key.
        crate::node::role_restart::wipe_manager_state(state_dir)?;
    }
    let manager_parts = if settings.role == Role::Manager {
        Some(start_replica(
            state_dir,
            &settings.node_id,
            RaftStart::Restart,
        )?)
    } else {
        None
    };
    run(
        settings,
        state_dir,
        credentials,
        manager_parts,
        enable_chaos,
    )
    .await
}
