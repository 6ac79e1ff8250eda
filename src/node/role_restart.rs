//! Promotion and demotion: the worker reports the leader's [`RoleChanged`] here, and this
//! node keeps the new credentials and role and restarts its process in that role.

use std::path::{Path, PathBuf};

use actix::prelude::*;

use crate::actors::worker::RoleChanged;
use crate::net::message::RoleChange;
use crate::net::tls::Role;
use crate::node::daemon::DaemonError;
use crate::node::state::{self, NodeSettings, CREDENTIALS_FILE, NODE_FILE, RAFT_FILE};

/// Receives the worker's [`RoleChanged`] and restarts the node in the new role (see
/// [`restart_in_role`]); given to the worker at construction by the composition root.
pub struct RoleRestarter {
    state_dir: PathBuf,
}

impl RoleRestarter {
    /// A restarter for the node whose state directory is `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        Self { state_dir }
    }
}

impl Actor for RoleRestarter {
    type Context = Context<Self>;
}

impl Handler<RoleChanged> for RoleRestarter {
    type Result = ();

    fn handle(&mut self, RoleChanged(change): RoleChanged, _: &mut Context<Self>) {
        // Only returns on failure; the worker's next heartbeat brings the change again.
        if let Err(error) = restart_in_role(&self.state_dir, change) {
            tracing::error!(%error, "cannot restart in the new role");
        }
    }
}

/// Writes the credentials and role of a promotion or demotion into the state directory and
/// replaces this process with `flotilla-node start` on it. Only returns on failure.
pub fn restart_in_role(state_dir: &Path, change: RoleChange) -> Result<(), DaemonError> {
    use std::os::unix::process::CommandExt;
    let node_file = state_dir.join(NODE_FILE);
    let mut settings: NodeSettings = state::read_toml(&node_file)?;
    if change.credentials.identity()?.node_id != settings.node_id {
        return Err(DaemonError::Cluster(
            "new credentials name another node".into(),
        ));
    }
    state::write_toml(&state_dir.join(CREDENTIALS_FILE), &change.credentials)?;
    if change.role == Role::Worker {
        // A demoted manager's Raft state is history; a later promotion starts afresh.
        let raft = state_dir.join(RAFT_FILE);
        if raft.exists() {
            std::fs::rename(&raft, state_dir.join("raft.redb.demoted")).map_err(|e| {
                DaemonError::StateDir(format!("cannot set aside {}: {e}", raft.display()))
            })?;
        }
    }
    settings.role = change.role;
    state::write_toml(&node_file, &settings)?;
    let program = std::env::current_exe()
        .map_err(|e| DaemonError::StateDir(format!("cannot find this program: {e}")))?;
    let mut command = std::process::Command::new(program);
    command.arg("start").arg("--state-dir").arg(state_dir);
    if std::env::args().any(|arg| arg == "--enable-chaos") {
        command.arg("--enable-chaos");
    }
    let error = command.exec();
    Err(DaemonError::StateDir(format!("cannot restart: {error}")))
}
