//! The secrets and configs a node's assignment set carries (SPEC §9): the plaintext of exactly
//! the versions its tasks reference, opened by the leader for that node only.
//!
//! The leader picks them ([`files_for`]) from the tasks it is about to send, so they follow
//! from the tasks and the set's version (a digest of the tasks) needs no part of them: a
//! version's data never changes, and `secret rotate` moves services to a new version, which
//! means new tasks. The worker keeps them in memory only, by [`FileKey`]
//! (`actors::worker::files`), and builds each task's files from its references.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::model::Task;
use crate::core::secrets::{seal_context, DataKey, Plaintext, SecretData, SecretKind};
use crate::core::store::Store;

/// Most plaintext bytes one set carries. A frame holds at most 16 MiB (`net::codec`); the
/// files stop at half of it, so the tasks always fit beside them. What does not fit is left
/// out (and its tasks fail to start, clearly) rather than the whole set failing to encode.
pub const DELIVERY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Which data a file is: one version of one secret or config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// Secret or config.
    pub kind: SecretKind,
    /// The object's ID.
    pub id: String,
    /// The version the referencing tasks see.
    pub version: u64,
}

/// One delivered version's plaintext. Its `Debug` shows only the size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredFile {
    /// Which data it is.
    pub key: FileKey,
    /// The plaintext (a secret opened by the leader, or a config as stored).
    pub data: Plaintext,
}

/// Every `(key, name)` the task's spec references: its secrets, then its configs.
pub fn task_references(task: &Task) -> impl Iterator<Item = (FileKey, &str)> {
    let secrets = task.spec.secrets.iter().map(|reference| {
        (
            FileKey {
                kind: SecretKind::Secret,
                id: reference.secret_id.clone(),
                version: reference.version,
            },
            reference.name.as_str(),
        )
    });
    let configs = task.spec.configs.iter().map(|reference| {
        (
            FileKey {
                kind: SecretKind::Config,
                id: reference.config_id.clone(),
                version: reference.version,
            },
            reference.name.as_str(),
        )
    });
    secrets.chain(configs)
}

/// Whether the node needs the files of `task`: it may still run it (the managers do not
/// want it finished, and it has not finished).
pub fn needs_files(task: &Task) -> bool {
    !task.desired_state.is_terminal() && !task.status.state.is_terminal()
}

/// Why a referenced version was left out of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftOutReason {
    /// This manager holds no data key (it is locked, or was never given one).
    NoDataKey,
    /// The sealed data does not open with the data key and the version's context.
    DoesNotOpen,
    /// The store has no such object or version (removed since the task was made).
    Missing,
    /// The store holds the data in the wrong form (a plain secret, a sealed config).
    WrongForm,
    /// The set's files would exceed [`DELIVERY_BYTES_MAX`].
    TooLarge,
}

impl fmt::Display for LeftOutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeftOutReason::NoDataKey => "this manager holds no data key",
            LeftOutReason::DoesNotOpen => "its data does not open with the data key",
            LeftOutReason::Missing => "the store has no such version",
            LeftOutReason::WrongForm => "the store holds its data in the wrong form",
            LeftOutReason::TooLarge => {
                "the node's files would exceed the limit of one assignment set"
            }
        })
    }
}

/// A referenced version the set does not carry, for the leader's log (never its bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// Which data.
    pub key: FileKey,
    /// The name a task references it by.
    pub name: String,
    /// Why.
    pub reason: LeftOutReason,
}

/// What [`files_for`] found: the files to send and what it could not send.
#[derive(Debug, Default)]
pub struct Delivery {
    /// One file per referenced version, in key order.
    pub files: Vec<DeliveredFile>,
    /// The referenced versions left out.
    pub left_out: Vec<LeftOut>,
}

/// The files the node running `tasks` needs: the plaintext of each version those of them that
/// may still run reference (each once), secrets opened with `data_key`, configs as stored.
pub fn files_for<'t>(
    store: &Store,
    tasks: impl IntoIterator<Item = &'t Task>,
    data_key: Option<&DataKey>,
) -> Delivery {
    let mut wanted: BTreeMap<FileKey, &str> = BTreeMap::new();
    for task in tasks.into_iter().filter(|task| needs_files(task)) {
        for (key, name) in task_references(task) {
            wanted.entry(key).or_insert(name);
        }
    }
    let mut delivery = Delivery::default();
    let mut bytes = 0usize;
    for (key, name) in wanted {
        match open(store, &key, data_key) {
            Ok(data) if bytes.saturating_add(data.len()) > DELIVERY_BYTES_MAX => {
                delivery.left_out.push(LeftOut {
                    key,
                    name: name.to_string(),
                    reason: LeftOutReason::TooLarge,
                });
            }
            Ok(data) => {
                bytes += data.len();
                delivery.files.push(DeliveredFile {
                    key,
                    data: Plaintext(data),
                });
            }
            Err(reason) => delivery.left_out.push(LeftOut {
                key,
                name: name.to_string(),
                reason,
            }),
        }
    }
    delivery
}

fn open(
    store: &Store,
    key: &FileKey,
    data_key: Option<&DataKey>,
) -> Result<Vec<u8>, LeftOutReason> {
    let version = store
        .secret(key.kind, &key.id)
        .and_then(|object| object.version(key.version))
        .ok_or(LeftOutReason::Missing)?;
    match (key.kind, &version.data) {
        (SecretKind::Config, SecretData::Plain(data)) => Ok(data.clone()),
        (SecretKind::Secret, SecretData::Sealed(sealed)) => data_key
            .ok_or(LeftOutReason::NoDataKey)?
            .open(sealed, &seal_context(&key.id, key.version))
            .map_err(|_| LeftOutReason::DoesNotOpen),
        _ => Err(LeftOutReason::WrongForm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::TaskState;
    use crate::core::mounts::{ConfigReference, SecretReference};
    use crate::core::secrets::{SecretObject, SecretVersion};
    use crate::core::store::Command;
    use crate::core::testkit::{self, Harness};

    fn version(number: u64, data: SecretData, size: usize) -> SecretVersion {
        SecretVersion {
            version: number,
            data,
            size: size as u64,
            created_at_ms: 1,
        }
    }

    fn sealed(key: &DataKey, id: &str, number: u64, plaintext: &[u8]) -> SecretVersion {
        let sealed = key
            .seal(plaintext, &seal_context(id, number))
            .expect("seals");
        version(number, SecretData::Sealed(sealed), plaintext.len())
    }

    fn object(kind: SecretKind, id: &str, name: &str, first: SecretVersion) -> SecretObject {
        SecretObject {
            id: id.into(),
            kind,
            name: name.into(),
            labels: Default::default(),
            versions: vec![first],
            meta: Default::default(),
        }
    }

    fn secret_reference(id: &str, name: &str, version: u64) -> SecretReference {
        SecretReference {
            name: name.into(),
            secret_id: id.into(),
            version,
            target: name.into(),
            uid: String::new(),
            gid: String::new(),
            mode: 0o400,
        }
    }

    fn config_reference(id: &str, name: &str, version: u64) -> ConfigReference {
        ConfigReference {
            name: name.into(),
            config_id: id.into(),
            version,
            target: format!("/etc/{name}"),
            uid: String::new(),
            gid: String::new(),
            mode: 0o444,
        }
    }

    fn key(kind: SecretKind, id: &str, version: u64) -> FileKey {
        FileKey {
            kind,
            id: id.into(),
            version,
        }
    }

    fn delivered(delivery: &Delivery) -> Vec<(FileKey, &[u8])> {
        delivery
            .files
            .iter()
            .map(|file| (file.key.clone(), file.data.0.as_slice()))
            .collect()
    }

    /// A store with secret x1 (versions 1 and 2), secret x2, config c1, and services `web`
    /// (x1 v1, c1) and `api` (x2); `web` is rotated to x1 v2 for its newer tasks.
    struct Fixture {
        harness: Harness,
        data_key: DataKey,
    }

    impl Fixture {
        fn new() -> Fixture {
            let data_key = DataKey::generate().expect("key");
            let mut harness = Harness::with_nodes(vec![testkit::node("n1"), testkit::node("n2")]);
            harness.apply(Command::CreateSecret(object(
                SecretKind::Secret,
                "x1",
                "db_pass",
                sealed(&data_key, "x1", 1, b"first-pass"),
            )));
            harness.apply(Command::RotateSecret {
                kind: SecretKind::Secret,
                id: "x1".into(),
                version: sealed(&data_key, "x1", 2, b"second-pass"),
            });
            harness.apply(Command::CreateSecret(object(
                SecretKind::Secret,
                "x2",
                "api_token",
                sealed(&data_key, "x2", 1, b"api-token"),
            )));
            harness.apply(Command::CreateSecret(object(
                SecretKind::Config,
                "c1",
                "nginx.conf",
                version(1, SecretData::Plain(b"listen 80;".to_vec()), 10),
            )));
            Fixture { harness, data_key }
        }

        /// Tasks of a service referencing `secrets` and `configs`, placed as given.
        fn tasks(
            &mut self,
            service_id: &str,
            secrets: Vec<SecretReference>,
            configs: Vec<ConfigReference>,
            placed: &[(&str, &str)],
        ) -> Vec<Task> {
            let mut service = testkit::service(service_id, service_id, placed.len() as u64);
            service.spec.secrets = secrets;
            service.spec.configs = configs;
            self.harness.apply(Command::CreateService(service.clone()));
            let tasks: Vec<Task> = placed
                .iter()
                .enumerate()
                .map(|(slot, (id, node))| {
                    Task::new(
                        id.to_string(),
                        &service,
                        Some(slot as u64 + 1),
                        Some(node.to_string()),
                    )
                })
                .collect();
            self.harness.apply(Command::CreateTasks(tasks.clone()));
            tasks
        }
    }

    #[test]
    fn a_node_gets_exactly_the_versions_its_own_tasks_reference() {
        let mut fixture = Fixture::new();
        fixture.tasks(
            "web",
            vec![secret_reference("x1", "db_pass", 1)],
            vec![config_reference("c1", "nginx.conf", 1)],
            &[("w1", "n1"), ("w2", "n1")],
        );
        fixture.tasks(
            "api",
            vec![secret_reference("x2", "api_token", 1)],
            Vec::new(),
            &[("a1", "n2")],
        );
        let store = &fixture.harness.store;
        let n1 = files_for(
            store,
            super::super::live_tasks_of(store, "n1"),
            Some(&fixture.data_key),
        );
        assert!(n1.left_out.is_empty(), "{:?}", n1.left_out);
        // Secrets opened, configs as stored, each version once for both tasks; x1's
        // version 2 and n2's x2 are not n1's to see.
        assert_eq!(
            delivered(&n1),
            vec![
                (key(SecretKind::Secret, "x1", 1), b"first-pass".as_slice()),
                (key(SecretKind::Config, "c1", 1), b"listen 80;".as_slice()),
            ]
        );
        let n2 = files_for(
            store,
            super::super::live_tasks_of(store, "n2"),
            Some(&fixture.data_key),
        );
        assert_eq!(
            delivered(&n2),
            vec![(key(SecretKind::Secret, "x2", 1), b"api-token".as_slice())]
        );
    }

    #[test]
    fn tasks_being_stopped_or_finished_get_no_files() {
        let mut fixture = Fixture::new();
        let mut tasks = fixture.tasks(
            "web",
            vec![secret_reference("x1", "db_pass", 1)],
            Vec::new(),
            &[("old", "n1"), ("new", "n1"), ("done", "n1")],
        );
        tasks[0].desired_state = TaskState::Shutdown;
        std::sync::Arc::make_mut(&mut tasks[1].spec).secrets =
            vec![secret_reference("x1", "db_pass", 2)];
        tasks[2].status.state = TaskState::Complete;
        let delivery = files_for(&fixture.harness.store, &tasks, Some(&fixture.data_key));
        assert_eq!(
            delivered(&delivery),
            vec![(key(SecretKind::Secret, "x1", 2), b"second-pass".as_slice())]
        );
    }

    #[test]
    fn secrets_that_do_not_open_are_left_out_and_configs_still_go() {
        let mut fixture = Fixture::new();
        let mut tasks = fixture.tasks(
            "web",
            vec![secret_reference("x1", "db_pass", 1)],
            vec![config_reference("c1", "nginx.conf", 1)],
            &[("w1", "n1")],
        );
        // A secret the store no longer has (it refuses such a spec, but a task may outlive
        // what it named in a store restored from an older snapshot).
        std::sync::Arc::make_mut(&mut tasks[0].spec)
            .secrets
            .push(secret_reference("gone", "gone", 1));
        let store = &fixture.harness.store;
        let reasons = |delivery: &Delivery| -> Vec<(String, LeftOutReason)> {
            delivery
                .left_out
                .iter()
                .map(|left| (left.name.clone(), left.reason))
                .collect()
        };

        let locked = files_for(store, &tasks, None);
        assert_eq!(
            delivered(&locked),
            vec![(key(SecretKind::Config, "c1", 1), b"listen 80;".as_slice())]
        );
        assert_eq!(
            reasons(&locked),
            vec![
                ("gone".to_string(), LeftOutReason::Missing),
                ("db_pass".to_string(), LeftOutReason::NoDataKey),
            ]
        );

        let other = DataKey::generate().expect("key");
        let wrong_key = files_for(store, &tasks, Some(&other));
        assert_eq!(delivered(&wrong_key).len(), 1);
        assert_eq!(
            reasons(&wrong_key),
            vec![
                ("gone".to_string(), LeftOutReason::Missing),
                ("db_pass".to_string(), LeftOutReason::DoesNotOpen),
            ]
        );
        // Nothing a left-out entry prints carries data.
        let printed = format!("{:?} {:?}", wrong_key.left_out, wrong_key.files);
        assert!(!printed.contains("listen"), "{printed}");
    }

    #[test]
    fn files_past_the_size_limit_are_left_out_not_the_set() {
        let data_key = DataKey::generate().expect("key");
        let mut harness = Harness::with_nodes(vec![testkit::node("n1")]);
        let big = vec![7u8; crate::core::secrets::DATA_BYTES_MAX];
        // Enough 500 KiB secrets to pass the limit by a few.
        let count = DELIVERY_BYTES_MAX / big.len() + 2;
        let mut references = Vec::new();
        for index in 0..count {
            let id = format!("big{index:02}");
            harness.apply(Command::CreateSecret(object(
                SecretKind::Secret,
                &id,
                &id,
                sealed(&data_key, &id, 1, &big),
            )));
            references.push(secret_reference(&id, &id, 1));
        }
        let mut service = testkit::service("s1", "web", 1);
        service.spec.secrets = references;
        harness.apply(Command::CreateService(service.clone()));
        let task = Task::new("t1".into(), &service, Some(1), Some("n1".into()));
        let delivery = files_for(&harness.store, [&task], Some(&data_key));
        let sent: usize = delivery.files.iter().map(|file| file.data.0.len()).sum();
        assert!(sent <= DELIVERY_BYTES_MAX, "{sent} bytes");
        assert_eq!(delivery.files.len() + delivery.left_out.len(), count);
        assert!(!delivery.left_out.is_empty());
        assert!(delivery
            .left_out
            .iter()
            .all(|left| left.reason == LeftOutReason::TooLarge));
    }
}
