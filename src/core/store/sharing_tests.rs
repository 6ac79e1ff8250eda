//! Tasks of one service spec version share one spec (SPEC §7).

use std::sync::Arc;

use super::*;
use crate::core::model::Task;
use crate::core::testkit::{node, service, Harness};

fn create(h: &mut Harness, ids: &[&str], version_of: &Service) {
    let tasks = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Task::new(id.to_string(), version_of, Some(i as u64 + 1), None))
        .collect();
    h.apply(Command::CreateTasks(tasks));
}

#[test]
fn tasks_of_a_version_point_at_one_spec_until_the_last_goes() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    h.apply(Command::CreateService(service("s1", "web", 3)));
    let v1 = h.store.service("s1").expect("service").clone();
    create(&mut h, &["a", "b", "c"], &v1);
    let spec_of = |h: &Harness, id: &str| h.store.task(id).expect("task").spec.clone();
    assert!(Arc::ptr_eq(&spec_of(&h, "a"), &spec_of(&h, "b")));
    assert!(Arc::ptr_eq(&spec_of(&h, "a"), &spec_of(&h, "c")));
    assert_eq!(h.store.shared_spec_count(), 1);

    let mut spec = v1.spec.clone();
    spec.image = "busybox:2".into();
    h.apply(Command::UpdateService {
        service_id: "s1".into(),
        spec,
        expected_version: None,
    });
    let v2 = h.store.service("s1").expect("service").clone();
    create(&mut h, &["d"], &v2);
    assert_eq!(h.store.shared_spec_count(), 2);
    assert_eq!(spec_of(&h, "d").image, "busybox:2");
    assert!(!Arc::ptr_eq(&spec_of(&h, "a"), &spec_of(&h, "d")));

    // Changing a task's state keeps it on the shared spec.
    h.apply(Command::SetTaskDesiredStates(vec![(
        "a".into(),
        TaskState::Shutdown,
    )]));
    assert!(Arc::ptr_eq(&spec_of(&h, "a"), &spec_of(&h, "b")));

    // A snapshot restore shares again.
    let restored = Store::restore(&h.store.snapshot()).expect("restores");
    let a = restored.task("a").expect("a").spec.clone();
    let b = restored.task("b").expect("b").spec.clone();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(restored.shared_spec_count(), 2);

    h.apply(Command::RemoveTasks(vec![
        "a".into(),
        "b".into(),
        "c".into(),
    ]));
    assert_eq!(h.store.shared_spec_count(), 1, "version 1 has no task left");
}
