//! The secrets and configs the leader delivered with the assignment set (SPEC §9), held in
//! memory only: they are taken out of each arriving set before it is kept or saved, so
//! `assignments.json` never holds them, and a restarted worker has none.
//!
//! After a restart the saved set's tasks are only re-attached (`ReplicaPlan::adopt_only`), and
//! a task that still runs kept its files in the runtime's tmpfs directory, so none is needed
//! then. Until a leader's set with files arrives, the worker reports assignment version 0 in
//! its heartbeats when its tasks reference any file (see [`HeldFiles::reported_version`]): the
//! leader answers a differing version with the full set, files included, where it would
//! otherwise only confirm the saved one. A task that must start without a file it references
//! (the leader could not open it) fails with `secret NAME version V not delivered`, and its
//! restart policy replaces it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::core::assignment::delivery::{needs_files, task_references, DeliveredFile, FileKey};
use crate::core::assignment::AssignmentSet;
use crate::core::model::Task;
use crate::core::secrets::SecretKind;
use crate::runtime::files::{TaskFile, TaskFileKind};

/// The delivered files of the held set, by key.
#[derive(Default)]
pub(super) struct HeldFiles {
    data: BTreeMap<FileKey, Arc<Vec<u8>>>,
    /// Whether a leader's set has delivered them since this process started.
    from_leader: bool,
}

impl HeldFiles {
    /// Takes the files of a set the leader sent (it replaced or confirmed `held`, which carries
    /// none itself): its files, and those held before that the set's tasks still need, since
    /// a version's data never changes. Anything no task of the set needs is dropped.
    pub(super) fn take(&mut self, incoming: Vec<DeliveredFile>, held: &AssignmentSet) {
        let mut next: BTreeMap<FileKey, Arc<Vec<u8>>> = incoming
            .into_iter()
            .map(|file| (file.key, Arc::new(file.data.0)))
            .collect();
        for (key, data) in std::mem::take(&mut self.data) {
            next.entry(key).or_insert(data);
        }
        let needed: std::collections::BTreeSet<FileKey> = held
            .tasks
            .iter()
            .filter(|task| needs_files(task))
            .flat_map(|task| task_references(task).map(|(key, _)| key))
            .collect();
        next.retain(|key, _| needed.contains(key));
        self.data = next;
        self.from_leader = true;
    }

    /// Whether a leader's set has delivered the files since this process started.
    pub(super) fn delivered_by_leader(&self) -> bool {
        self.from_leader
    }

    /// The version to report in a heartbeat for `held`: 0 (no set) while the files of its
    /// tasks have not come from a leader yet, so the leader sends the whole set.
    pub(super) fn reported_version(&self, held: &AssignmentSet) -> u64 {
        let any_referenced = held
            .tasks
            .iter()
            .filter(|task| needs_files(task))
            .any(|task| task_references(task).next().is_some());
        if any_referenced && !self.from_leader {
            0
        } else {
            held.version
        }
    }

    /// The files of `task` as its runtime writes them: one per `--secret` and `--config`,
    /// with the reference's target, owner and mode, and the first one not held, named as the
    /// task's start error: `secret NAME version V not delivered`. A file not held comes with
    /// no data: a replica that only re-attaches never writes it, yet the runtime sees that the
    /// task has files (the process runtime gives its health check their directories); one
    /// that would start the task fails it with the error instead.
    pub(super) fn for_task(&self, task: &Task) -> TaskFiles {
        let spec = &task.spec;
        let secrets = spec.secrets.iter().map(|reference| {
            (
                SecretKind::Secret,
                &reference.secret_id,
                reference.version,
                &reference.name,
                (&reference.target, &reference.uid, &reference.gid),
                reference.mode,
            )
        });
        let configs = spec.configs.iter().map(|reference| {
            (
                SecretKind::Config,
                &reference.config_id,
                reference.version,
                &reference.name,
                (&reference.target, &reference.uid, &reference.gid),
                reference.mode,
            )
        });
        let mut undelivered = None;
        let files = secrets
            .chain(configs)
            .map(|(kind, id, version, name, (target, uid, gid), mode)| {
                let key = FileKey {
                    kind,
                    id: id.clone(),
                    version,
                };
                let data = match self.data.get(&key) {
                    Some(data) => data.clone(),
                    None => {
                        undelivered.get_or_insert_with(|| {
                            format!("{kind} {name} version {version} not delivered")
                        });
                        Arc::new(Vec::new())
                    }
                };
                TaskFile {
                    kind: match kind {
                        SecretKind::Secret => TaskFileKind::Secret,
                        SecretKind::Config => TaskFileKind::Config,
                    },
                    target: target.clone(),
                    uid: uid.clone(),
                    gid: gid.clone(),
                    mode,
                    data,
                }
            })
            .collect();
        TaskFiles { files, undelivered }
    }
}

/// What [`HeldFiles::for_task`] found for one task.
#[derive(Debug)]
pub(super) struct TaskFiles {
    /// Its files, in reference order (secrets, then configs).
    pub files: Vec<TaskFile>,
    /// The error its start fails with when a file was not delivered.
    pub undelivered: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Service, TaskState};
    use crate::core::mounts::{ConfigReference, SecretReference};
    use crate::core::secrets::Plaintext;
    use crate::core::spec::ServiceSpec;

    fn task(id: &str, secrets: &[(&str, u64)], configs: &[(&str, u64)]) -> Task {
        let mut spec = ServiceSpec::new("web", "busybox");
        spec.secrets = secrets
            .iter()
            .map(|(id, version)| SecretReference {
                name: format!("{id}-name"),
                secret_id: id.to_string(),
                version: *version,
                target: format!("{id}-file"),
                uid: "33".into(),
                gid: "34".into(),
                mode: 0o400,
            })
            .collect();
        spec.configs = configs
            .iter()
            .map(|(id, version)| ConfigReference {
                name: format!("{id}-name"),
                config_id: id.to_string(),
                version: *version,
                target: format!("/etc/{id}.conf"),
                uid: String::new(),
                gid: String::new(),
                mode: 0o444,
            })
            .collect();
        let service = Service::new("svc".into(), spec);
        Task::new(id.into(), &service, Some(1), Some("n1".into()))
    }

    fn file(kind: SecretKind, id: &str, version: u64, data: &[u8]) -> DeliveredFile {
        DeliveredFile {
            key: FileKey {
                kind,
                id: id.into(),
                version,
            },
            data: Plaintext(data.to_vec()),
        }
    }

    fn set(tasks: Vec<Task>) -> AssignmentSet {
        AssignmentSet {
            version: 9,
            tasks,
            node_id: "n1".into(),
            sequence: 3,
            files: Vec::new(),
        }
    }

    #[test]
    fn a_tasks_files_carry_its_references_target_owner_mode_and_the_delivered_data() {
        let held_set = set(vec![task("t1", &[("s1", 2)], &[("c1", 1)])]);
        let mut held = HeldFiles::default();
        held.take(
            vec![
                file(SecretKind::Secret, "s1", 2, b"pw-v2"),
                file(SecretKind::Config, "c1", 1, b"conf"),
            ],
            &held_set,
        );
        let found = held.for_task(&held_set.tasks[0]);
        assert_eq!(found.undelivered, None);
        let files = found.files;
        /// Kind, target, uid, gid, mode, data.
        type Seen<'a> = (TaskFileKind, &'a str, &'a str, &'a str, u32, &'a [u8]);
        let seen: Vec<Seen> = files
            .iter()
            .map(|file| {
                (
                    file.kind,
                    file.target.as_str(),
                    file.uid.as_str(),
                    file.gid.as_str(),
                    file.mode,
                    file.data.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    TaskFileKind::Secret,
                    "s1-file",
                    "33",
                    "34",
                    0o400,
                    b"pw-v2".as_slice()
                ),
                (
                    TaskFileKind::Config,
                    "/etc/c1.conf",
                    "",
                    "",
                    0o444,
                    b"conf".as_slice()
                ),
            ]
        );
        let plain = held.for_task(&task("plain", &[], &[]));
        assert!(plain.files.is_empty() && plain.undelivered.is_none());
    }

    #[test]
    fn a_version_not_delivered_is_named_and_another_version_does_not_stand_in() {
        let held_set = set(vec![
            task("t1", &[("s1", 1)], &[]),
            task("t2", &[("s1", 2)], &[("c1", 1)]),
        ]);
        let mut held = HeldFiles::default();
        held.take(vec![file(SecretKind::Secret, "s1", 1, b"pw-v1")], &held_set);
        assert_eq!(held.for_task(&held_set.tasks[0]).undelivered, None);
        let second = held.for_task(&held_set.tasks[1]);
        assert_eq!(
            second.undelivered.as_deref(),
            Some("secret s1-name version 2 not delivered")
        );
        // Both files are named for the runtime, neither with data: v1 does not stand in.
        assert_eq!(second.files.len(), 2);
        assert!(second.files.iter().all(|file| file.data.is_empty()));
        let only_config_missing = task("t3", &[("s1", 1)], &[("c1", 1)]);
        assert_eq!(
            held.for_task(&only_config_missing).undelivered.as_deref(),
            Some("config c1-name version 1 not delivered")
        );
    }

    #[test]
    fn files_no_task_needs_any_more_are_dropped_and_held_ones_kept_while_needed() {
        let first = set(vec![
            task("t1", &[("s1", 1)], &[]),
            task("t2", &[("s2", 1)], &[]),
        ]);
        let mut held = HeldFiles::default();
        held.take(
            vec![
                file(SecretKind::Secret, "s1", 1, b"one"),
                file(SecretKind::Secret, "s2", 1, b"two"),
            ],
            &first,
        );
        // The next set: t1 is being stopped, t2 still runs, and the leader (now without its
        // key) sent nothing: s2 is kept for t2, s1 is gone with t1.
        let mut stopping = first.tasks[0].clone();
        stopping.desired_state = TaskState::Shutdown;
        let second = set(vec![stopping.clone(), first.tasks[1].clone()]);
        held.take(Vec::new(), &second);
        assert_eq!(held.for_task(&second.tasks[1]).undelivered, None);
        assert!(held.for_task(&stopping).undelivered.is_some());
        assert_eq!(held.data.len(), 1);
    }

    #[test]
    fn a_restarted_worker_reports_no_version_until_a_leader_delivers_its_files() {
        let with_secret = set(vec![task("t1", &[("s1", 1)], &[])]);
        let without = set(vec![task("t2", &[], &[])]);
        let mut held = HeldFiles::default();
        assert_eq!(held.reported_version(&with_secret), 0);
        assert_eq!(
            held.reported_version(&without),
            9,
            "no files, nothing to ask"
        );
        let mut finished = with_secret.clone();
        finished.tasks[0].status.state = TaskState::Complete;
        assert_eq!(held.reported_version(&finished), 9);
        held.take(Vec::new(), &with_secret);
        assert_eq!(held.reported_version(&with_secret), 9, "the leader spoke");
    }
}
