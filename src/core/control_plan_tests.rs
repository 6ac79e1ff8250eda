use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::core::testkit::{node, service, Harness};

fn manager(id: &str, status: NodeStatus) -> Node {
    Node {
        role: NodeRole::Manager,
        status,
        ..node(id)
    }
}

#[test]
fn create_validates_and_takes_its_id_from_the_generator() {
    let spec = service("x", "web", 3).spec;
    let first =
        plan_service_create(&Store::default(), &spec, &mut StdRng::seed_from_u64(7)).unwrap();
    let again =
        plan_service_create(&Store::default(), &spec, &mut StdRng::seed_from_u64(7)).unwrap();
    assert_eq!(first, again, "the same seed plans the same ID");
    assert_eq!(first.ids.len(), 1);
    let Command::CreateService(created) = &first.commands[0] else {
        panic!("expected CreateService, got {:?}", first.commands);
    };
    assert_eq!(created.id, first.ids[0]);

    let mut bad = spec.clone();
    bad.name = String::new();
    assert!(plan_service_create(&Store::default(), &bad, &mut StdRng::seed_from_u64(7)).is_err());
}

#[test]
fn scale_is_conditional_on_the_version_read_and_refused_for_global_services() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    h.apply(Command::CreateService(service("s1", "web", 1)));
    let mut global = service("s2", "agent", 0);
    global.spec.mode = ServiceMode::Global;
    h.apply(Command::CreateService(global));

    let plan = plan_service_scale(&h.store, &[("web".into(), 5)]).unwrap();
    let version = h.store.service("s1").unwrap().meta.version;
    match &plan.commands[..] {
        [Command::UpdateService {
            service_id,
            spec,
            expected_version,
        }] => {
            assert_eq!(service_id, "s1");
            assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 5 });
            assert_eq!(*expected_version, Some(version));
        }
        other => panic!("unexpected plan {other:?}"),
    }
    let error = plan_service_scale(&h.store, &[("agent".into(), 2)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "agent: scale can only be used with replicated mode"
    );
    assert!(matches!(
        plan_service_scale(&h.store, &[("nope".into(), 2)]),
        Err(CoreError::NotFound { .. })
    ));
}

#[test]
fn remove_refuses_managers_and_live_nodes_unless_forced() {
    let mut down = node("w2");
    down.status = NodeStatus::Down;
    let h = Harness::with_nodes(vec![manager("m1", NodeStatus::Ready), node("w1"), down]);
    let error = plan_node_remove(&h.store, &["m1".into()], true).unwrap_err();
    assert!(error.to_string().contains("is a manager: demote it first"));
    let error = plan_node_remove(&h.store, &["w1".into()], false).unwrap_err();
    assert!(error
        .to_string()
        .contains("is not down and can't be removed"));
    assert_eq!(
        plan_node_remove(&h.store, &["w1".into()], true)
            .unwrap()
            .commands,
        vec![
            Command::RevokeCertificates(Revocation {
                node_id: "w1".into(),
                scope: RevocationScope::AllCertificates,
            }),
            Command::RemoveNode {
                node_id: "w1".into(),
                force: true
            }
        ]
    );
    assert_eq!(
        plan_node_remove(&h.store, &["w2".into()], false)
            .unwrap()
            .ids,
        vec!["w2".to_string()]
    );
}

#[test]
fn demotion_keeps_a_quorum_and_never_demotes_the_answering_leader() {
    let h = Harness::with_nodes(vec![manager("m1", NodeStatus::Ready)]);
    let error = plan_role_change(&h.store, "m1", NodeRole::Worker, "m1", |_| true).unwrap_err();
    assert!(error.to_string().contains("last manager"));

    // Three managers, one of the other two down: demoting m3 leaves m1, m2 with m2 down.
    let h = Harness::with_nodes(vec![
        manager("m1", NodeStatus::Ready),
        manager("m2", NodeStatus::Down),
        manager("m3", NodeStatus::Ready),
    ]);
    let error = plan_role_change(&h.store, "m3", NodeRole::Worker, "m1", |_| true).unwrap_err();
    assert!(
        error.to_string().contains("would not have a quorum"),
        "{error}"
    );

    // After `--force-new-cluster` only m1 votes: the dead m2 and m3 may be demoted (they
    // hold no vote), and there is no Raft member to remove.
    let h = Harness::with_nodes(vec![
        manager("m1", NodeStatus::Ready),
        manager("m2", NodeStatus::Down),
        manager("m3", NodeStatus::Down),
    ]);
    match plan_role_change(&h.store, "m3", NodeRole::Worker, "m1", |id| id == "m1").unwrap() {
        RolePlan::Change {
            leaves_raft_group, ..
        } => assert!(!leaves_raft_group),
        other => panic!("unexpected {other:?}"),
    }

    let h = Harness::with_nodes(vec![
        manager("m1", NodeStatus::Ready),
        manager("m2", NodeStatus::Ready),
        manager("m3", NodeStatus::Ready),
        node("w1"),
    ]);
    assert!(matches!(
        plan_role_change(&h.store, "m1", NodeRole::Worker, "m1", |_| true).unwrap(),
        RolePlan::MoveLeadershipFirst { .. }
    ));
    match plan_role_change(&h.store, "m3", NodeRole::Worker, "m1", |_| true).unwrap() {
        RolePlan::Change {
            node_id,
            leaves_raft_group,
            revocation,
            ..
        } => {
            assert_eq!(node_id, "m3");
            assert!(leaves_raft_group);
            assert_eq!(
                revocation.map(|command| *command),
                Some(Command::RevokeCertificates(Revocation {
                    node_id: "m3".into(),
                    scope: RevocationScope::ManagerCertificates,
                }))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    match plan_role_change(&h.store, "w1", NodeRole::Manager, "m1", |_| false).unwrap() {
        RolePlan::Change {
            leaves_raft_group,
            revocation,
            ..
        } => assert!(!leaves_raft_group && revocation.is_none()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        plan_role_change(&h.store, "m2", NodeRole::Manager, "m1", |_| true).unwrap(),
        RolePlan::Unchanged {
            node_id: "m2".into()
        }
    );
}

#[test]
fn a_half_done_demotion_is_finished_by_demoting_again() {
    // w1 is a worker in the store; the Raft member removal after its demotion failed.
    let h = Harness::with_nodes(vec![
        manager("m1", NodeStatus::Ready),
        manager("m2", NodeStatus::Ready),
        node("w1"),
    ]);
    assert_eq!(
        plan_role_change(&h.store, "w1", NodeRole::Worker, "m1", |id| id == "w1").unwrap(),
        RolePlan::FinishDemotion {
            node_id: "w1".into(),
            revocation: Box::new(Command::RevokeCertificates(Revocation {
                node_id: "w1".into(),
                scope: RevocationScope::ManagerCertificates,
            })),
        }
    );
    assert_eq!(
        plan_role_change(&h.store, "w1", NodeRole::Worker, "m1", |id| id != "w1").unwrap(),
        RolePlan::Unchanged {
            node_id: "w1".into()
        }
    );
}

#[test]
fn update_is_conditional_on_the_version_read_and_keeps_the_mode() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    h.apply(Command::CreateService(service("s1", "web", 2)));
    let read = h.store.service("s1").unwrap().clone();
    let mut spec = read.spec.clone();
    spec.image = "busybox:2".into();

    let plan = plan_service_update(&h.store, "web", &spec, read.meta.version).unwrap();
    assert_eq!(plan.ids, vec!["s1".to_string()]);
    assert_eq!(
        plan.commands,
        vec![Command::UpdateService {
            service_id: "s1".into(),
            spec: spec.clone(),
            expected_version: Some(read.meta.version),
        }]
    );
    // Applied, the service becomes a rollout with the old spec as previous.
    h.apply(plan.commands[0].clone());
    let updated = h.store.service("s1").unwrap();
    assert_eq!(
        updated.previous_spec.as_ref().map(|p| &p.spec),
        Some(&read.spec)
    );

    // The version read before that update is stale now: refused, with the store's words.
    let error = plan_service_update(&h.store, "s1", &spec, read.meta.version).unwrap_err();
    assert!(
        matches!(error, CoreError::VersionMismatch { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with("update out of sequence"),
        "{error}"
    );

    let version = h.store.service("s1").unwrap().meta.version;
    let mut global = spec.clone();
    global.mode = ServiceMode::Global;
    let error = plan_service_update(&h.store, "web", &global, version).unwrap_err();
    assert!(error.to_string().contains("mode"), "{error}");
    let mut invalid = spec.clone();
    invalid.image = String::new();
    assert!(matches!(
        plan_service_update(&h.store, "web", &invalid, version),
        Err(CoreError::InvalidSpec(_))
    ));
    assert!(matches!(
        plan_service_update(&h.store, "nope", &spec, version),
        Err(CoreError::NotFound { .. })
    ));
}

#[test]
fn rollback_needs_a_previous_spec() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    h.apply(Command::CreateService(service("s1", "web", 1)));
    let error = plan_service_rollback(&h.store, "web").unwrap_err();
    assert_eq!(
        error.to_string(),
        "service web does not have a previous spec to roll back to"
    );

    let read = h.store.service("s1").unwrap().clone();
    let mut spec = read.spec.clone();
    spec.image = "busybox:2".into();
    let update = plan_service_update(&h.store, "s1", &spec, read.meta.version).unwrap();
    h.apply(update.commands[0].clone());
    let plan = plan_service_rollback(&h.store, "web").unwrap();
    assert_eq!(
        plan.commands,
        vec![Command::RollbackService {
            service_id: "s1".into(),
            expected_version: None,
            message: MANUAL_ROLLBACK_MESSAGE.into(),
        }]
    );
    h.apply(plan.commands[0].clone());
    assert_eq!(h.store.service("s1").unwrap().spec.image, "busybox");
}
