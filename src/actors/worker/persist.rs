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

/// Saves `set` atomically, with mode 0600 like every file of the state directory. Its files
/// (secret plaintext) are never saved: they are left out here whatever the caller holds.
pub fn save_assignments(state_dir: &Path, set: &AssignmentSet) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&set.without_files())?;
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
            files: Vec::new(),
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
    fn a_saved_set_holds_its_tasks_but_never_their_secrets_or_configs() {
        use crate::core::assignment::delivery::{DeliveredFile, FileKey};
        use crate::core::model::{Service, Task};
        use crate::core::mounts::SecretReference;
        use crate::core::secrets::{Plaintext, SecretKind};
        use crate::core::spec::ServiceSpec;

        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = ServiceSpec::new("web", "busybox");
        spec.secrets = vec![SecretReference {
            name: "db_pass".into(),
            secret_id: "x1".into(),
            version: 1,
            target: "db_pass".into(),
            uid: String::new(),
            gid: String::new(),
            mode: 0o400,
        }];
        let task = Task::new(
            "t1".into(),
            &Service::new("s1".into(), spec),
            Some(1),
            Some("n1".into()),
        );
        let file = |kind, id: &str, data: &[u8]| DeliveredFile {
            key: FileKey {
                kind,
                id: id.into(),
                version: 1,
            },
            data: Plaintext(data.to_vec()),
        };
        let set = AssignmentSet {
            version: 42,
            tasks: vec![task],
            node_id: "n1".into(),
            sequence: 7,
            files: vec![
                file(SecretKind::Secret, "x1", b"hunter2-plaintext"),
                file(SecretKind::Config, "c1", b"config-plaintext"),
            ],
        };
        save_assignments(dir.path(), &set).expect("saved");
        let written = std::fs::read(dir.path().join(ASSIGNMENTS_FILE)).expect("read");
        let text = String::from_utf8_lossy(&written);
        for plaintext in ["hunter2-plaintext", "config-plaintext"] {
            assert!(!text.contains(plaintext), "{plaintext} saved: {text}");
        }
        // serde_json writes bytes as arrays of numbers: look for those too.
        let as_numbers = serde_json::to_string(&b"hunter2-plaintext".to_vec()).expect("json");
        let as_numbers = as_numbers.trim_matches(|c| c == '[' || c == ']');
        assert!(!text.contains(as_numbers), "secret bytes saved: {text}");
        // The tasks (and their references) are kept; the files come again from the leader.
        let loaded = load_assignments(dir.path()).expect("loads");
        assert_eq!(loaded.tasks, set.tasks);
        assert!(loaded.files.is_empty());
        assert_eq!(loaded, set.without_files());
    }

    #[test]
    fn a_missing_or_corrupt_file_loads_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_assignments(dir.path()), None);
        std::fs::write(dir.path().join(ASSIGNMENTS_FILE), b"{not json").expect("write");
        assert_eq!(load_assignments(dir.path()), None);
    }
}
