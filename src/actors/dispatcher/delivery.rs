//! The secrets and configs in each set the dispatcher sends (SPEC §9): the plaintext of exactly
//! what the node's tasks reference (`core::assignment::delivery`), opened with this manager's
//! data key just before sending, over the node's mutual-TLS connection only. What does not
//! open is left out with a warning that names it (never its bytes); the worker then fails the
//! start of the tasks that need it rather than running them without the file.

use super::DispatcherActor;
use crate::core::assignment::delivery::{files_for, LeftOut};
use crate::core::assignment::{assignment_set, AssignmentSet};
use crate::core::secrets::Keyring;
use crate::core::store::Store;

/// `node_id`'s assignment set with its files, and what had to be left out of them.
pub(super) fn set_with_files(
    store: &Store,
    node_id: &str,
    keyring: &Keyring,
) -> (AssignmentSet, Vec<LeftOut>) {
    let mut set = assignment_set(store, node_id);
    let data_key = keyring.data_key();
    let delivery = files_for(store, &set.tasks, data_key.as_deref());
    set.files = delivery.files;
    (set, delivery.left_out)
}

impl DispatcherActor {
    /// The set to send `node_id`: its tasks and their files.
    pub(super) fn full_set(&self, store: &Store, node_id: &str) -> AssignmentSet {
        let (set, left_out) = set_with_files(store, node_id, &self.keyring);
        for left in left_out {
            tracing::warn!(
                node = %node_id,
                kind = %left.key.kind,
                name = %left.name,
                id = %left.key.id,
                version = left.key.version,
                reason = %left.reason,
                "not delivering a secret or config; its tasks will fail to start"
            );
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::assignment::delivery::{FileKey, LeftOutReason};
    use crate::core::model::Task;
    use crate::core::mounts::{ConfigReference, SecretReference};
    use crate::core::secrets::{
        seal_context, DataKey, SecretData, SecretKind, SecretObject, SecretVersion,
    };
    use crate::core::store::Command;
    use crate::core::testkit::{self, Harness};

    fn object(kind: SecretKind, id: &str, data: SecretData) -> SecretObject {
        SecretObject {
            id: id.into(),
            kind,
            name: format!("{id}-name"),
            labels: Default::default(),
            versions: vec![SecretVersion {
                version: 1,
                data,
                size: 6,
                created_at_ms: 1,
            }],
            meta: Default::default(),
        }
    }

    /// Node n1 runs `web` (secret s1, config c1); n2 runs `api` (secret s2).
    fn cluster(data_key: &DataKey) -> Harness {
        let mut harness = Harness::with_nodes(vec![testkit::node("n1"), testkit::node("n2")]);
        for (id, plaintext) in [("s1", b"web-pw"), ("s2", b"api-pw")] {
            let sealed = data_key
                .seal(plaintext, &seal_context(id, 1))
                .expect("seals");
            harness.apply(Command::CreateSecret(object(
                SecretKind::Secret,
                id,
                SecretData::Sealed(sealed),
            )));
        }
        harness.apply(Command::CreateSecret(object(
            SecretKind::Config,
            "c1",
            SecretData::Plain(b"conf-1".to_vec()),
        )));
        let secret = |id: &str| SecretReference {
            name: format!("{id}-name"),
            secret_id: id.into(),
            version: 1,
            target: id.into(),
            uid: String::new(),
            gid: String::new(),
            mode: 0o400,
        };
        let mut web = testkit::service("web", "web", 1);
        web.spec.secrets = vec![secret("s1")];
        web.spec.configs = vec![ConfigReference {
            name: "c1-name".into(),
            config_id: "c1".into(),
            version: 1,
            target: "/etc/c1".into(),
            uid: String::new(),
            gid: String::new(),
            mode: 0o444,
        }];
        let mut api = testkit::service("api", "api", 1);
        api.spec.secrets = vec![secret("s2")];
        harness.apply(Command::CreateService(web.clone()));
        harness.apply(Command::CreateService(api.clone()));
        harness.apply(Command::CreateTasks(vec![
            Task::new("w1".into(), &web, Some(1), Some("n1".into())),
            Task::new("a1".into(), &api, Some(1), Some("n2".into())),
        ]));
        harness
    }

    fn files(set: &AssignmentSet) -> Vec<(SecretKind, &str, &[u8])> {
        set.files
            .iter()
            .map(|file| (file.key.kind, file.key.id.as_str(), file.data.0.as_slice()))
            .collect()
    }

    #[test]
    fn each_node_gets_only_its_own_tasks_files_with_secrets_opened() {
        let data_key = DataKey::generate().expect("key");
        let harness = cluster(&data_key);
        let keyring = Keyring::with_key(data_key);
        let (n1, left_out) = set_with_files(&harness.store, "n1", &keyring);
        assert!(left_out.is_empty(), "{left_out:?}");
        assert_eq!(
            files(&n1),
            vec![
                (SecretKind::Secret, "s1", b"web-pw".as_slice()),
                (SecretKind::Config, "c1", b"conf-1".as_slice()),
            ]
        );
        let (n2, _) = set_with_files(&harness.store, "n2", &keyring);
        assert_eq!(
            files(&n2),
            vec![(SecretKind::Secret, "s2", b"api-pw".as_slice())]
        );
        // The files leave the version alone: it is the tasks' digest.
        assert_eq!(
            n1.version,
            crate::core::assignment::assignment_version(&harness.store, "n1")
        );
    }

    #[test]
    fn a_manager_without_the_data_key_sends_configs_and_names_the_secrets_it_could_not() {
        let data_key = DataKey::generate().expect("key");
        let harness = cluster(&data_key);
        let (n1, left_out) = set_with_files(&harness.store, "n1", &Keyring::new());
        assert_eq!(
            files(&n1),
            vec![(SecretKind::Config, "c1", b"conf-1".as_slice())]
        );
        let left: Vec<(FileKey, &str, LeftOutReason)> = left_out
            .iter()
            .map(|left| (left.key.clone(), left.name.as_str(), left.reason))
            .collect();
        assert_eq!(
            left,
            vec![(
                FileKey {
                    kind: SecretKind::Secret,
                    id: "s1".into(),
                    version: 1
                },
                "s1-name",
                LeftOutReason::NoDataKey
            )]
        );
        // The tasks still go: the worker fails their start clearly.
        assert_eq!(n1.tasks.len(), 1);
    }
}
