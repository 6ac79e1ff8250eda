//! `flotilla-node start`: a node that `init` or `join` created, again from its state directory.

use std::path::Path;

use crate::net::tls::{Credentials, Role};
use crate::node::compose::run;
use crate::node::daemon::{DaemonError, RunningNode};
use crate::node::raft_start::{start_replica, RaftStart};
use crate::node::state::{self, NodeSettings, CREDENTIALS_FILE, NODE_FILE};

/// Starts a node that `init` or `join` created, from its state directory. With
/// `force_new_cluster` (managers only) the node comes up as the only member of its Raft group
/// with all state kept (see `docs/operations.md`).
pub async fn start(
    state_dir: &Path,
    enable_chaos: bool,
    force_new_cluster: bool,
) -> Result<RunningNode, DaemonError> {
    if !state_dir.join(NODE_FILE).exists() {
        return Err(DaemonError::StateDir(format!(
            "{} holds no node; create one with `flotilla-node init` or `join`",
            state_dir.display()
        )));
    }
    let settings: NodeSettings = state::read_toml(&state_dir.join(NODE_FILE))?;
    let credentials: Credentials = state::read_toml(&state_dir.join(CREDENTIALS_FILE))?;
    if force_new_cluster && settings.role != Role::Manager {
        return Err(DaemonError::StateDir(format!(
            "--force-new-cluster needs a manager; {} holds a {}",
            state_dir.display(),
            settings.role
        )));
    }
    let how = if force_new_cluster {
        RaftStart::ForceNewCluster
    } else {
        RaftStart::Restart
    };
    let manager_parts = if settings.role == Role::Manager {
        Some(start_replica(state_dir, &settings.node_id, how)?)
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
