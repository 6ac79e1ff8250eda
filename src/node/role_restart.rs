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

/// Deletes every copy of the Raft log, snapshots and CA key from `state_dir` (a demoted
/// manager, or a worker that finds some left over) and makes the deletion durable. They are
/// all in [`RAFT_FILE`] (redb keeps log, hard state and snapshots in that one file) and, from
/// the previous release's demotion, `raft.redb.demoted`; any other `raft.redb*` file (a
/// leftover of either) goes too. Returns the files deleted.
pub fn wipe_manager_state(state_dir: &Path) -> Result<Vec<PathBuf>, DaemonError> {
    let error = |what: &str, e: std::io::Error| {
        DaemonError::StateDir(format!("cannot {what} {}: {e}", state_dir.display()))
    };
    let mut deleted = Vec::new();
    let entries = match std::fs::read_dir(state_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(deleted),
        Err(e) => return Err(error("read", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| error("read", e))?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(RAFT_FILE) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map_err(|e| error("read", e))?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| error(&format!("delete {} in", path.display()), e))?;
        deleted.push(path);
    }
    if !deleted.is_empty() {
        std::fs::File::open(state_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| error("sync", e))?;
        tracing::info!(
            files = deleted.len(),
            "deleted the Raft log, snapshots and CA key of a former manager"
        );
    }
    Ok(deleted)
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
    if change.role == Role::Worker {
        // Only managers hold the CA key: a demoted manager's Raft state (log, snapshots, the
        // cluster record with the key) goes first, before anything says "worker" (a crash
        // after it leaves a manager without Raft state, whose revoked certificate keeps worker
        // rights: its next heartbeat brings the change again); a later promotion starts afresh.
        wipe_manager_state(state_dir)?;
        // A worker never holds the data key.
        crate::node::keys::wipe(state_dir)?;
    }
    state::write_toml(&state_dir.join(CREDENTIALS_FILE), &change.credentials)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wipe_deletes_every_raft_file_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [RAFT_FILE, "raft.redb.demoted", CREDENTIALS_FILE, NODE_FILE] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        let deleted = wipe_manager_state(dir.path()).expect("wiped");
        assert_eq!(deleted.len(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![CREDENTIALS_FILE.to_string(), NODE_FILE.to_string()]
        );
        assert!(wipe_manager_state(dir.path()).expect("again").is_empty());
    }
}
