use super::*;
use crate::core::model::{Availability, NodeStatus, Service, Task, TaskStatus};
use crate::core::testkit::{node, service, Harness};

fn task(id: &str, service: &Service, slot: u64) -> Task {
    Task::new(id.to_string(), service, Some(slot), None)
}

fn report(task_id: &str, state: TaskState, since_ms: u64) -> TaskStatusUpdate {
    TaskStatusUpdate {
        task_id: task_id.to_string(),
        status: TaskStatus {
            state,
            since_ms,
            ..TaskStatus::default()
        },
        runtime: Some("sim".into()),
        runtime_id: None,
        endpoints: None,
    }
}

fn cluster() -> ClusterInfo {
    ClusterInfo {
        id: "c1".into(),
        ca_cert_pem: "cert".into(),
        ca_key_pem: "key".into(),
        worker_join_secret: "w".into(),
        manager_join_secret: "m".into(),
        created_at_ms: 1,
    }
}

#[test]
fn check_refuses_and_apply_leaves_store_unchanged() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    h.apply(Command::InitCluster(cluster()));
    h.apply(Command::CreateService(service("s1", "web", 1)));
    let before = h.store.clone();
    let refused = [
        (Command::InitCluster(cluster()), "already"),
        (Command::CreateService(service("s2", "web", 1)), "in use"),
        (Command::CreateService(service("s1", "api", 1)), "exists"),
        (
            Command::CreateService(service("s3", "bad name", 1)),
            "invalid",
        ),
        (
            Command::RemoveService {
                service_id: "nope".into(),
            },
            "no such",
        ),
        (
            Command::UpdateService {
                service_id: "s1".into(),
                spec: service("s1", "web", 3).spec,
                expected_version: Some(1),
            },
            "out of sequence",
        ),
        (
            Command::RemoveNode {
                node_id: "n1".into(),
                force: false,
            },
            "not down",
        ),
        (
            Command::UpdateNodeStatus {
                node_id: "x".into(),
                status: NodeStatus::Down,
            },
            "no such",
        ),
    ];
    for (command, message) in refused {
        let err = h.store.apply(99, 99, command.clone()).unwrap_err();
        assert!(err.to_string().contains(message), "{command:?}: {err}");
        assert_eq!(h.store.check(&command), Err(err));
        assert_eq!(h.store, before);
    }
    // The right version is accepted and becomes the new version.
    let version = h.store.service("s1").unwrap().meta.version;
    h.apply(Command::UpdateService {
        service_id: "s1".into(),
        spec: service("s1", "web2", 3).spec,
        expected_version: Some(version),
    });
    assert_eq!(h.store.service("s1").unwrap().meta.version, h.index);
    assert_eq!(h.store.resolve_service("web2").unwrap().id, "s1");
    assert!(h.store.service_by_name("web").is_none());
}

#[test]
fn stale_status_updates_are_ignored() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let s = service("s1", "web", 1);
    h.apply(Command::CreateService(s.clone()));
    h.apply(Command::CreateTasks(vec![task("t1", &s, 1)]));
    h.apply(Command::AssignTasks(vec![("t1".into(), "n1".into())]));
    h.apply(Command::UpdateTaskStatuses(vec![report(
        "t1",
        TaskState::Running,
        50,
    )]));
    assert_eq!(h.store.running_count("s1"), 1);
    let steps = [
        (TaskState::Starting, TaskState::Running), // backwards: ignored
        (TaskState::Running, TaskState::Running),  // same: ignored
        (TaskState::Failed, TaskState::Failed),    // forward
        (TaskState::Shutdown, TaskState::Failed),  // out of terminal: ignored
        (TaskState::Running, TaskState::Failed),
    ];
    for (reported, expected) in steps {
        h.apply(Command::UpdateTaskStatuses(vec![report(
            "t1", reported, 60,
        )]));
        assert_eq!(
            h.store.task("t1").unwrap().status.state,
            expected,
            "{reported:?}"
        );
    }
    let t1 = h.store.task("t1").unwrap();
    assert_eq!(t1.started_at_ms, Some(50));
    assert_eq!(h.store.running_count("s1"), 0);
    assert!(h.store.node_usage("n1").is_none());
    // Unknown tasks in a batch are skipped, not fatal.
    let events = h.apply(Command::UpdateTaskStatuses(vec![report(
        "zz",
        TaskState::Running,
        1,
    )]));
    assert!(events.is_empty());
}

#[test]
fn indexes_follow_assignment_and_removal() {
    let mut h = Harness::with_nodes(vec![node("n1"), node("n2")]);
    let mut s = service("s1", "web", 2);
    s.spec.resources.reservations.memory_bytes = 100;
    h.apply(Command::CreateService(s.clone()));
    h.apply(Command::CreateTasks(vec![
        task("t1", &s, 1),
        task("t2", &s, 2),
    ]));
    assert_eq!(h.store.unassigned_tasks().count(), 2);
    h.apply(Command::SetPendingReasons(vec![(
        "t2".into(),
        "no suitable node".into(),
    )]));
    assert_eq!(h.store.task("t2").unwrap().status.state, TaskState::Pending);
    h.apply(Command::AssignTasks(vec![
        ("t1".into(), "n1".into()),
        ("t2".into(), "nx".into()),
    ]));
    assert_eq!(h.store.unassigned_tasks().count(), 1);
    let usage = h.store.node_usage("n1").unwrap();
    assert_eq!((usage.tasks, usage.reserved.memory_bytes), (1, 100));
    assert_eq!(usage.tasks_by_service["s1"], 1);
    assert_eq!(h.store.tasks_of_node("n1").len(), 1);
    let assigned = h.store.assignment_digest("n1");
    assert_ne!(assigned, 0, "n1 has an unfinished task");
    assert_eq!(h.store.assignment_digest("n2"), 0);
    // Desired shutdown of a never-assigned task finishes it on the spot.
    h.apply(Command::SetTaskDesiredStates(vec![(
        "t2".into(),
        TaskState::Shutdown,
    )]));
    assert_eq!(
        h.store.task("t2").unwrap().status.state,
        TaskState::Shutdown
    );
    assert_eq!(h.store.unassigned_tasks().count(), 0);
    // Removing the service asks its remaining task to shut down.
    h.apply(Command::RemoveService {
        service_id: "s1".into(),
    });
    assert_eq!(
        h.store.task("t1").unwrap().desired_state,
        TaskState::Shutdown
    );
    let shutting_down = h.store.assignment_digest("n1");
    assert!(
        shutting_down != assigned && shutting_down != 0,
        "a new desired state is a new assignment version"
    );
    h.apply(Command::RemoveTasks(vec!["t1".into(), "t2".into()]));
    assert!(h.store.tasks().is_empty() && h.store.node_usage("n1").is_none());
    assert_eq!(h.store.assignment_digest("n1"), 0);
    assert_eq!(
        h.store.index,
        Store::restore(&h.store.snapshot()).unwrap().index
    );
}

#[test]
fn snapshot_restore_round_trip_rebuilds_indexes() {
    let mut h = Harness::with_nodes(vec![node("n1"), node("n2")]);
    h.apply(Command::InitCluster(cluster()));
    let s = service("s1", "web", 3);
    h.apply(Command::CreateService(s.clone()));
    h.apply(Command::CreateTasks(
        (1..=3).map(|i| task(&format!("t{i}"), &s, i)).collect(),
    ));
    h.apply(Command::AssignTasks(vec![
        ("t1".into(), "n1".into()),
        ("t2".into(), "n2".into()),
    ]));
    h.apply(Command::UpdateTaskStatuses(vec![report(
        "t1",
        TaskState::Running,
        5,
    )]));
    let restored = Store::restore(&h.store.snapshot()).unwrap();
    assert_eq!(restored, h.store);
    assert_eq!(restored.index, h.store.index);
    assert!(matches!(
        Store::restore(&[1, 2, 3]),
        Err(CoreError::Snapshot(_))
    ));
    let mut long = h.store.snapshot();
    long.push(0);
    assert!(Store::restore(&long).is_err());
}

#[test]
fn service_ps_order_and_counts() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let s = service("s1", "web", 2);
    h.apply(Command::CreateService(s.clone()));
    h.apply(Command::CreateTasks(vec![
        task("b", &s, 2),
        task("a", &s, 1),
    ]));
    h.apply(Command::UpsertNode(node("n0")));
    h.apply(Command::AssignTasks(vec![("a".into(), "n0".into())]));
    h.apply(Command::CreateTasks(vec![task("c", &s, 1)]));
    h.apply(Command::AssignTasks(vec![("c".into(), "n1".into())]));
    let order: Vec<&str> = h
        .store
        .tasks_of_service("s1")
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(order, ["c", "a", "b"]);
    assert_eq!(h.store.desired_count(h.store.service("s1").unwrap()), 2);
    assert_eq!(h.store.resolve_task("c").unwrap().id, "c");
}

#[test]
fn node_updates_and_removal() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let update = NodeSpecUpdate {
        node_id: "n1".into(),
        availability: Some(crate::core::model::Availability::Drain),
        labels_add: [("zone".to_string(), "east".to_string())].into(),
        ..Default::default()
    };
    h.apply(Command::UpdateNodeSpec(update));
    let n1 = h.store.node("n1").unwrap();
    assert_eq!(n1.labels["zone"], "east");
    assert_eq!(n1.meta.version, h.index);
    assert_eq!(h.store.resolve_node("host-n1").unwrap().id, "n1");
    // Unchanged status: no event, no version bump.
    assert!(h
        .apply(Command::UpdateNodeStatus {
            node_id: "n1".into(),
            status: NodeStatus::Ready
        })
        .is_empty());
    h.apply(Command::UpdateNodeStatus {
        node_id: "n1".into(),
        status: NodeStatus::Down,
    });
    h.apply(Command::RemoveNode {
        node_id: "n1".into(),
        force: false,
    });
    assert!(h.store.nodes().is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever sequence of reports arrives, snapshot/restore is lossless and the
        /// incrementally kept indexes equal freshly rebuilt ones.
        #[test]
        fn indexes_match_rebuild(reports in proptest::collection::vec((0usize..4, 0usize..12), 0..40)) {
            let mut h = Harness::with_nodes(vec![node("n1"), node("n2")]);
            let s = service("s1", "web", 4);
            h.apply(Command::CreateService(s.clone()));
            h.apply(Command::CreateTasks((0..4).map(|i| task(&format!("t{i}"), &s, i as u64 + 1)).collect()));
            h.apply(Command::AssignTasks(vec![("t0".into(), "n1".into()), ("t1".into(), "n2".into())]));
            for (task_index, state_index) in reports {
                let state = [
                    TaskState::New, TaskState::Pending, TaskState::Assigned, TaskState::Accepted,
                    TaskState::Preparing, TaskState::Starting, TaskState::Running, TaskState::Complete,
                    TaskState::Failed, TaskState::Shutdown, TaskState::Rejected, TaskState::Orphaned,
                ][state_index];
                h.apply(Command::UpdateTaskStatuses(vec![report(&format!("t{task_index}"), state, 1)]));
            }
            let restored = Store::restore(&h.store.snapshot()).unwrap();
            prop_assert_eq!(&restored, &h.store);
            prop_assert_eq!(&restored.index, &h.store.index);
        }
    }
}

#[test]
fn commands_round_trip_through_bincode() {
    let s = service("s1", "web", 1);
    let commands = vec![
        Command::CreateService(s.clone()),
        Command::CreateTasks(vec![task("t1", &s, 1)]),
        Command::UpdateTaskStatuses(vec![report("t1", TaskState::Running, 3)]),
        Command::UpdateNodeSpec(NodeSpecUpdate {
            node_id: "n1".into(),
            ..Default::default()
        }),
    ];
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&commands, config).unwrap();
    let (decoded, _): (Vec<Command>, usize) =
        bincode::serde::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(decoded, commands);
}

fn description_of(node: &crate::core::model::Node) -> crate::core::model::NodeDescription {
    crate::core::model::NodeDescription {
        hostname: node.hostname.clone(),
        addr: node.addr.clone(),
        engine_version: node.engine_version.clone(),
        resources: node.resources,
        labels: Default::default(),
    }
}

#[test]
fn a_heartbeat_refresh_keeps_the_operators_fields_and_never_revives_a_removed_node() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let mut down = h.store.node("n1").unwrap().clone();
    // The dispatcher read the node while it was down and decided to refresh it...
    h.apply(Command::UpdateNodeStatus {
        node_id: "n1".into(),
        status: NodeStatus::Down,
    });
    down.status = NodeStatus::Down;
    let refresh = crate::core::sessions::refresh_command(&down, &description_of(&down))
        .expect("a down node heartbeating is refreshed");
    // ...and meanwhile the admin drained it and labelled it.
    h.apply(Command::UpdateNodeSpec(NodeSpecUpdate {
        node_id: "n1".into(),
        availability: Some(Availability::Drain),
        labels_add: [("zone".to_string(), "b".to_string())].into(),
        ..NodeSpecUpdate::default()
    }));
    h.apply(refresh.clone());
    let refreshed = h.store.node("n1").unwrap();
    assert_eq!(refreshed.status, NodeStatus::Ready);
    assert_eq!(
        refreshed.availability,
        Availability::Drain,
        "the drain stays"
    );
    assert_eq!(refreshed.labels.get("zone").map(String::as_str), Some("b"));

    h.apply(Command::RemoveNode {
        node_id: "n1".into(),
        force: true,
    });
    assert!(matches!(
        h.store.check(&refresh),
        Err(CoreError::NotFound { .. })
    ));
    h.index += 1;
    assert!(h.store.apply(h.index, 0, refresh).is_err());
    assert!(h.store.node("n1").is_none(), "a removed node stays removed");
}

#[test]
fn the_cluster_record_never_prints_its_key_or_secrets() {
    let rotation = Command::RotateJoinSecret {
        role: crate::core::model::NodeRole::Worker,
        secret: JoinSecret("s3cr3t-token-part".into()),
    };
    let printed_rotation = format!("{rotation:?}");
    assert!(!printed_rotation.contains("s3cr3t"), "{printed_rotation}");
    // The newtype encodes as the bare string, as the first release wrote it.
    let encoded = bincode::serde::encode_to_vec(&rotation, bincode::config::standard()).unwrap();
    assert!(encoded.ends_with(b"s3cr3t-token-part"));
    let printed = format!("{:?}", cluster());
    assert!(printed.contains("c1"));
    for secret in ["key", "\"w\"", "\"m\""] {
        assert!(!printed.contains(secret), "{printed} shows {secret}");
    }
}

/// A snapshot the first release (commit e711e29, before format versions) wrote of the store
/// `snapshot_restore_round_trip_rebuilds_indexes` builds.
const RELEASE_E711E29_SNAPSHOT: &[u8] =
    include_bytes!("../../../tests/fixtures/release-e711e29/store.snapshot");

#[test]
fn a_snapshot_of_the_previous_release_restores() {
    let store = Store::restore(RELEASE_E711E29_SNAPSHOT).expect("legacy snapshot reads");
    assert_eq!(store.cluster().map(|c| c.id.as_str()), Some("c1"));
    assert_eq!(store.nodes().len(), 2);
    assert_eq!(store.tasks_of_service("s1").len(), 3);
    assert_eq!(store.tasks_of_node("n1").len(), 1);
    let running = store.task("t1").map(|t| t.status.state);
    assert_eq!(running, Some(TaskState::Running));
    // Written again, it carries this build's header and reads back the same.
    let again = store.snapshot();
    assert_eq!(&again[..2], &crate::core::format::BINARY_MAGIC);
    assert_eq!(
        Store::restore(&again).expect("current snapshot reads"),
        store
    );
}

#[test]
fn a_snapshot_of_a_newer_format_is_refused_by_name() {
    let mut bytes = Store::new().snapshot();
    bytes[2] = crate::core::format::STORE_SNAPSHOT.current + 1;
    let error = Store::restore(&bytes).expect_err("newer format");
    assert!(
        error.to_string().contains(&format!(
            "store snapshot has format version {}",
            crate::core::format::STORE_SNAPSHOT.current + 1
        )),
        "{error}"
    );
}

#[test]
fn revocations_apply_at_their_index_and_survive_a_snapshot() {
    use crate::core::store::{CertificateStanding, Revocation, RevocationScope};
    let mut store = Store::new();
    let events = store
        .apply(
            7,
            0,
            Command::RevokeCertificates(Revocation {
                node_id: "m2".into(),
                scope: RevocationScope::ManagerCertificates,
            }),
        )
        .expect("applied");
    assert_eq!(
        events,
        vec![Event::CertificatesRevoked {
            node_id: "m2".into()
        }]
    );
    store
        .apply(
            8,
            0,
            Command::RevokeCertificates(Revocation {
                node_id: "w1".into(),
                scope: RevocationScope::AllCertificates,
            }),
        )
        .expect("applied");
    let restored = Store::restore(&store.snapshot()).expect("restored");
    assert_eq!(restored, store);
    let list = restored.revocations();
    assert_eq!(
        list.standing("m2", true, 6),
        CertificateStanding::ManagerRightsRevoked
    );
    assert_eq!(list.standing("m2", true, 7), CertificateStanding::Good);
    assert_eq!(
        list.standing("w1", false, 100),
        CertificateStanding::Revoked
    );
    assert!(store
        .check(&Command::RevokeCertificates(Revocation {
            node_id: String::new(),
            scope: RevocationScope::AllCertificates,
        }))
        .is_err());
}

mod secret_commands {
    use super::*;
    use crate::core::mounts::SecretReference;
    use crate::core::secrets::{
        seal_context, DataKey, SecretData, SecretKind, SecretObject, SecretVersion,
    };

    fn sealed_version(key: &DataKey, id: &str, version: u64, data: &[u8]) -> SecretVersion {
        SecretVersion {
            version,
            data: SecretData::Sealed(key.seal(data, &seal_context(id, version)).expect("seals")),
            size: data.len() as u64,
            created_at_ms: 1,
        }
    }

    fn secret(key: &DataKey, id: &str, name: &str) -> SecretObject {
        SecretObject {
            id: id.into(),
            kind: SecretKind::Secret,
            name: name.into(),
            labels: Default::default(),
            versions: vec![sealed_version(key, id, 1, b"s3cret")],
            meta: Default::default(),
        }
    }

    fn reference(id: &str, name: &str, version: u64) -> SecretReference {
        SecretReference {
            name: name.into(),
            secret_id: id.into(),
            version,
            target: name.into(),
            uid: String::new(),
            gid: String::new(),
            mode: 0o444,
        }
    }

    #[test]
    fn a_secret_in_use_is_not_removed_and_a_rotation_moves_its_users() {
        let key = DataKey::generate().expect("key");
        let mut h = Harness::with_nodes(vec![node("n1")]);
        h.apply(Command::InitCluster(cluster()));
        h.apply(Command::CreateSecret(secret(&key, "x1", "db_pass")));
        // A duplicated name is refused; a plain secret never enters the log.
        let mut twin = secret(&key, "x2", "db_pass");
        assert!(h.store.check(&Command::CreateSecret(twin.clone())).is_err());
        twin.name = "other".into();
        twin.versions[0].data = SecretData::Plain(b"s3cret".to_vec());
        assert!(h.store.check(&Command::CreateSecret(twin)).is_err());

        let mut web = service("s1", "web", 1);
        web.spec.secrets = vec![reference("x1", "db_pass", 1)];
        h.apply(Command::CreateService(web));
        let mut ghost = service("s2", "ghost", 1);
        ghost.spec.secrets = vec![reference("nope", "nope", 1)];
        assert!(h.store.check(&Command::CreateService(ghost)).is_err());

        let error = h
            .store
            .check(&Command::RemoveSecret {
                kind: SecretKind::Secret,
                id: "x1".into(),
            })
            .expect_err("in use");
        assert_eq!(
            error.to_string(),
            "secret db_pass is in use by the following service: web"
        );

        let before = h.store.service("s1").expect("web").spec_version;
        h.apply(Command::RotateSecret {
            kind: SecretKind::Secret,
            id: "x1".into(),
            version: sealed_version(&key, "x1", 2, b"n3w"),
        });
        let web = h.store.service("s1").expect("web");
        assert_eq!(web.spec.secrets[0].version, 2);
        assert!(web.spec_version > before, "a rollout started");
        assert_eq!(
            web.previous_spec
                .as_ref()
                .map(|p| p.spec.secrets[0].version),
            Some(1)
        );
        // Out of order: version 2 again is refused.
        assert!(h
            .store
            .check(&Command::RotateSecret {
                kind: SecretKind::Secret,
                id: "x1".into(),
                version: sealed_version(&key, "x1", 2, b"again"),
            })
            .is_err());
        // The stored form opens only as its own secret's version.
        let object = h.store.secret(SecretKind::Secret, "x1").expect("x1");
        let SecretData::Sealed(sealed) = &object.versions[1].data else {
            panic!("sealed");
        };
        assert_eq!(
            key.open(sealed, &seal_context("x1", 2)).expect("opens"),
            b"n3w"
        );
        assert!(key.open(sealed, &seal_context("x1", 1)).is_err());

        h.apply(Command::RemoveService {
            service_id: "s1".into(),
        });
        h.apply(Command::RemoveSecret {
            kind: SecretKind::Secret,
            id: "x1".into(),
        });
        assert!(h.store.secret(SecretKind::Secret, "x1").is_none());
        let restored = Store::restore(&h.store.snapshot()).expect("restores");
        assert_eq!(restored, h.store);
    }
}
