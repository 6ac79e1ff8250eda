//! Bringing up a manager's Raft replica over its redb storage in the state directory.

use std::path::Path;

use crate::consensus::store_machine::{raft_id_of, EventQueue, SharedStore, StoreMachine};
use crate::consensus::{MemberConfig, RaftMember, RedbStorage};
use crate::node::daemon::DaemonError;
use crate::node::state::RAFT_FILE;

/// A manager's replica with the store it applies to and the events of that store.
pub(crate) type ManagerStart = (RaftMember<StoreMachine>, SharedStore, EventQueue);

/// Opens the Raft database with owner-only permissions: it holds the CA key and join secrets.
fn open_raft_storage(state_dir: &Path) -> Result<RedbStorage, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let path = state_dir.join(RAFT_FILE);
    let storage = RedbStorage::open(&path).map_err(|e| DaemonError::Raft(e.to_string()))?;
    for (target, mode) in [(path.as_path(), 0o600), (state_dir, 0o700)] {
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            DaemonError::StateDir(format!("cannot restrict {}: {e}", target.display()))
        })?;
    }
    Ok(storage)
}

/// How a manager's Raft replica comes up.
pub(crate) enum RaftStart {
    /// A new cluster with this manager as its only voter (`init`).
    Bootstrap,
    /// Empty storage; the leader adds this manager and sends a snapshot (`join`).
    Join,
    /// From the state directory (`start`). Empty storage means a promoted worker: it joins.
    Restart,
    /// From the state directory, as the only member of the Raft group
    /// (`start --force-new-cluster`): a survivor of a cluster that lost its quorum.
    ForceNewCluster,
}

/// Opens the storage and starts the replica the way `how` says.
pub(crate) fn start_replica(
    state_dir: &Path,
    node_id: &str,
    how: RaftStart,
) -> Result<ManagerStart, DaemonError> {
    let mut storage = open_raft_storage(state_dir)?;
    let store = SharedStore::default();
    let events = EventQueue::default();
    let raft_id = raft_id_of(node_id);
    let config = replica_config(raft_id);
    let machine = StoreMachine::new(store.clone(), events.clone());
    if matches!(how, RaftStart::ForceNewCluster) {
        if storage.is_empty() {
            return Err(DaemonError::StateDir(format!(
                "{} holds no Raft state: --force-new-cluster needs a manager that was part of \
                 the cluster",
                state_dir.display()
            )));
        }
        let forced = storage
            .force_new_cluster(raft_id)
            .map_err(|e| DaemonError::Raft(e.to_string()))?;
        tracing::warn!(
            removed = ?forced.removed,
            commit_index = forced.commit_index,
            "forcing a new cluster: this manager is now the only member of the Raft group"
        );
    }
    let replica = match how {
        RaftStart::Bootstrap => RaftMember::bootstrap(config, storage, machine, &[raft_id]),
        RaftStart::ForceNewCluster => RaftMember::restart(config, storage, machine),
        RaftStart::Restart if !storage.is_empty() => RaftMember::restart(config, storage, machine),
        RaftStart::Join | RaftStart::Restart => RaftMember::join(config, storage, machine),
    }
    .map_err(|e| DaemonError::Raft(e.to_string()))?;
    Ok((replica, store, events))
}

/// The replica configuration of a manager (the same on every start, so a reopen matches).
pub(crate) fn replica_config(raft_id: u64) -> MemberConfig {
    MemberConfig::new(raft_id)
}
