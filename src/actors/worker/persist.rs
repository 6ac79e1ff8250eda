//! The worker's copy of its assignment set on disk (`<state-dir>/assignments.json`).
//!
//! The last set the leader sent survives restarts, so replicas re-attach to their containers
//! at once instead of waiting for the leader. The save runs off the actor's thread (it waits
//! for the disk, and heartbeats must not wait with it); sets that arrive meanwhile are
//! coalesced into one more save of the latest.

use std::io::Write;
use std::path::Path;

use actix::prelude::*;

use super::WorkerActor;
use crate::core::assignment::AssignmentSet;
use crate::runtime::RuntimeKind;

/// The file name inside the state directory.
pub const ASSIGNMENTS_FILE: &str = "assignments.json";

/// The saved set, if there is a readable one.
pub fn load_assignments(state_dir: &Path) -> Option<AssignmentSet> {
    let text = std::fs::read(state_dir.join(ASSIGNMENTS_FILE)).ok()?;
    match serde_json::from_slice(&text) {
        Ok(set) => Some(set),
        Err(error) => {
            tracing::warn!(%error, "ignoring an unreadable assignment set");
            None
        }
    }
}

/// Saves `set` atomically, with mode 0600 like every file of the state directory.
pub fn save_assignments(state_dir: &Path, set: &AssignmentSet) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(set)?;
    write_atomically(&state_dir.join(ASSIGNMENTS_FILE), &bytes)
}

/// Writes through a temporary file (mode 0600), an fsync and a rename, then fsyncs the
/// directory so the rename itself survives a crash: a reader never finds half a file. The
/// node's state files (`node::state::write_private`) use it too.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}

impl WorkerActor {
    /// Saves the assignment set in the background. Skipped for the sim runtime, whose
    /// containers die with the process, so there is nothing to re-attach after a restart.
    pub(super) fn persist(&mut self, ctx: &mut Context<Self>) {
        if self
            .runtime
            .as_ref()
            .is_some_and(|runtime| runtime.kind() == RuntimeKind::Sim)
        {
            return;
        }
        if self.saving {
            self.save_again = true;
            return;
        }
        self.saving = true;
        self.save_again = false;
        let (state_dir, set) = (self.state_dir.clone(), self.assignments.clone());
        actix_rt::task::spawn_blocking(move || save_assignments(&state_dir, &set))
            .into_actor(self)
            .map(|result, actor, ctx| {
                actor.saving = false;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "cannot save the assignment set"),
                    Err(error) => tracing::warn!(%error, "assignment save task failed"),
                }
                if actor.save_again {
                    actor.persist(ctx);
                }
            })
            .spawn(ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_saved_set_loads_back_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = AssignmentSet {
            version: 42,
            tasks: Vec::new(),
            node_id: "n1".into(),
            sequence: 7,
        };
        save_assignments(dir.path(), &set).expect("saved");
        assert_eq!(load_assignments(dir.path()), Some(set));
        let mode = std::fs::metadata(dir.path().join(ASSIGNMENTS_FILE))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_or_corrupt_file_loads_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_assignments(dir.path()), None);
        std::fs::write(dir.path().join(ASSIGNMENTS_FILE), b"{not json").expect("write");
        assert_eq!(load_assignments(dir.path()), None);
    }
}
