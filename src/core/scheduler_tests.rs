use super::*;
use crate::core::model::{NodeRole, Service};
use crate::core::spec::{Constraint, ServiceMode};
use crate::core::testkit::{node, service, Harness};

fn with_service(h: &mut Harness, service: &Service, count: u64) -> Vec<String> {
    h.apply(Command::CreateService(service.clone()));
    let tasks: Vec<Task> = (1..=count)
        .map(|slot| {
            Task::new(
                format!("{}-t{slot:03}", service.id),
                service,
                Some(slot),
                None,
            )
        })
        .collect();
    let ids = tasks.iter().map(|t| t.id.clone()).collect();
    h.apply(Command::CreateTasks(tasks));
    ids
}

fn run(h: &mut Harness, ids: &[String]) -> SchedulePlan {
    let plan = schedule(&h.store, ids.iter().map(String::as_str));
    for command in plan.clone().into_commands() {
        h.apply(command);
    }
    plan
}

#[test]
fn spread_five_over_three_is_two_two_one() {
    let mut h = Harness::with_nodes(vec![node("n1"), node("n2"), node("n3")]);
    let ids = with_service(&mut h, &service("s1", "web", 5), 5);
    let plan = run(&mut h, &ids);
    let per_node: Vec<u64> = placements_per_node(&plan).into_values().collect();
    assert_eq!(per_node, [2, 2, 1]);
    assert!(plan.pending_reasons.is_empty());
    // A second service first fills the node with fewest tasks overall.
    let ids = with_service(&mut h, &service("s2", "db", 1), 1);
    let plan = run(&mut h, &ids);
    assert_eq!(plan.assignments, [(ids[0].clone(), "n3".to_string())]);
}

#[test]
fn spread_prefers_fewest_of_this_service_over_fewest_overall() {
    let mut h = Harness::with_nodes(vec![node("n1"), node("n2")]);
    // n1 holds 3 tasks of another service; n2 holds one of ours.
    let other = with_service(&mut h, &service("s0", "other", 3), 3);
    h.apply(Command::AssignTasks(
        other
            .iter()
            .map(|t| (t.clone(), "n1".to_string()))
            .collect(),
    ));
    let ours = with_service(&mut h, &service("s1", "web", 2), 2);
    h.apply(Command::AssignTasks(vec![(ours[0].clone(), "n2".into())]));
    let plan = run(&mut h, &ours[1..]);
    assert_eq!(plan.assignments[0].1, "n1");
}

#[test]
fn filters_and_exact_reasons() {
    // n1: too small; n2: label mismatch; n3: drained; n4: down; n5 fits.
    let mut nodes: Vec<Node> = (1..=5).map(|i| node(&format!("n{i}"))).collect();
    nodes[0].resources.memory_bytes = 1 << 20;
    nodes[2].availability = Availability::Drain;
    nodes[3].status = NodeStatus::Down;
    for (i, n) in nodes.iter_mut().enumerate() {
        if i != 1 {
            n.labels.insert("zone".into(), "east".into());
        }
    }
    let mut h = Harness::with_nodes(nodes);
    let mut s = service("s1", "web", 3);
    s.spec.resources.reservations.memory_bytes = 5 << 30;
    s.spec.constraints = vec![Constraint::parse("node.labels.zone==east").unwrap()];
    let ids = with_service(&mut h, &s, 3);
    let plan = run(&mut h, &ids);
    assert_eq!(plan.assignments, [(ids[0].clone(), "n5".to_string())]);
    // n5 filled up by the first task: 2 nodes short of resources now.
    let reason = "no suitable node (2 nodes not available for new tasks; \
                  insufficient resources on 2 nodes; scheduling constraints not satisfied on 1 node)";
    assert_eq!(
        plan.pending_reasons,
        [
            (ids[1].clone(), reason.into()),
            (ids[2].clone(), reason.into())
        ]
    );
    let pending = h.store.task(&ids[1]).unwrap();
    assert_eq!(
        (pending.status.state, pending.status.error.as_deref()),
        (TaskState::Pending, Some(reason))
    );
    // Unchanged reasons are not re-proposed.
    assert!(run(&mut h, &ids).is_empty());
    // As soon as a node fits, the task is placed.
    let mut big = node("n6");
    big.labels.insert("zone".into(), "east".into());
    h.apply(Command::UpsertNode(big));
    let plan = run(&mut h, &ids);
    assert_eq!(plan.assignments.len(), 1);
    assert_eq!(plan.pending_reasons.len(), 1);
}

#[test]
fn swarm_example_reason() {
    let mut nodes: Vec<Node> = (1..=3).map(|i| node(&format!("n{i}"))).collect();
    nodes[0].resources.nano_cpus = 0;
    nodes[1].resources.nano_cpus = 0;
    nodes[2].role = NodeRole::Manager;
    let mut h = Harness::with_nodes(nodes);
    let mut s = service("s1", "web", 1);
    s.spec.resources.reservations.nano_cpus = 1;
    s.spec.constraints = vec![Constraint::parse("node.role!=manager").unwrap()];
    let ids = with_service(&mut h, &s, 1);
    let plan = run(&mut h, &ids);
    assert_eq!(
        plan.pending_reasons[0].1,
        "no suitable node (insufficient resources on 2 nodes; scheduling constraints not satisfied on 1 node)"
    );
    let mut empty = Harness::with_nodes(vec![]);
    let ids = with_service(&mut empty, &service("s1", "web", 1), 1);
    assert_eq!(
        run(&mut empty, &ids).pending_reasons[0].1,
        "no suitable node"
    );
}

#[test]
fn global_tasks_only_try_their_node() {
    let mut paused = node("n2");
    paused.availability = Availability::Pause;
    let mut h = Harness::with_nodes(vec![node("n1"), paused]);
    let mut s = service("g", "agent", 0);
    s.spec.mode = ServiceMode::Global;
    h.apply(Command::CreateService(s.clone()));
    let tasks = vec![
        Task::new("g1".into(), &s, None, Some("n1".into())),
        Task::new("g2".into(), &s, None, Some("n2".into())),
    ];
    h.apply(Command::CreateTasks(tasks));
    let plan = schedule_unassigned(&h.store, 100);
    assert_eq!(plan.assignments, [("g1".to_string(), "n1".to_string())]);
    assert_eq!(
        plan.pending_reasons[0].1,
        "no suitable node (1 node not available for new tasks)"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the capacities and reservations, no node is ever over-committed and
        /// every task is either placed or explained.
        #[test]
        fn never_over_commits(
            capacities in proptest::collection::vec(0u64..10, 1..8),
            reservations in proptest::collection::vec((0u64..4, 1u64..6), 1..6),
        ) {
            let nodes = capacities.iter().enumerate().map(|(i, c)| {
                let mut n = node(&format!("n{i}"));
                n.resources.memory_bytes = *c;
                n
            }).collect();
            let mut h = Harness::with_nodes(nodes);
            let mut total = 0;
            for (i, (memory, count)) in reservations.iter().enumerate() {
                let mut s = service(&format!("s{i}"), &format!("svc{i}"), *count);
                s.spec.resources.reservations.memory_bytes = *memory;
                let ids = with_service(&mut h, &s, *count);
                let plan = run(&mut h, &ids);
                prop_assert_eq!(plan.assignments.len() + plan.pending_reasons.len(), ids.len());
                total += ids.len();
            }
            for n in h.store.nodes().values() {
                let used = h.store.node_usage(&n.id).map_or(0, |u| u.reserved.memory_bytes);
                prop_assert!(used <= n.resources.memory_bytes);
            }
            prop_assert!(total > 0);
        }
    }
}

/// 10,000 tasks over 1,000 nodes in one pass: spread stays even. (About 50 ms in a debug
/// build; not asserted, the core has no clock.)
#[test]
fn ten_thousand_tasks_over_a_thousand_nodes() {
    let nodes = (0..1_000).map(|i| node(&format!("n{i:04}"))).collect();
    let mut h = Harness::with_nodes(nodes);
    let ids = with_service(&mut h, &service("s1", "web", 10_000), 10_000);
    let plan = schedule(&h.store, ids.iter().map(String::as_str));
    let per_node = placements_per_node(&plan);
    assert_eq!(per_node.len(), 1_000);
    assert!(per_node.values().all(|&n| n == 10));
}

#[test]
fn a_round_proposes_a_pending_reason_once_and_then_nothing() {
    let mut h = Harness::with_nodes(vec![node("n1")]);
    let mut web = service("s1", "web", 1);
    web.spec.constraints = vec![Constraint::parse("node.labels.zone==a").unwrap()];
    with_service(&mut h, &web, 1);
    let first = scheduling_round(&h.store, 100);
    assert!(
        matches!(&first[..], [Command::SetPendingReasons(reasons)] if reasons.len() == 1),
        "{first:?}"
    );
    for command in first {
        h.apply(command);
    }
    assert!(
        scheduling_round(&h.store, 100).is_empty(),
        "an unchanged reason is not proposed again"
    );
    // Once a node fits, the round places the task.
    let mut fits = node("n2");
    fits.labels.insert("zone".into(), "a".into());
    h.apply(Command::UpsertNode(fits));
    let placed = scheduling_round(&h.store, 100);
    assert!(
        placed
            .iter()
            .any(|c| matches!(c, Command::AssignTasks(a) if a.len() == 1)),
        "{placed:?}"
    );
}
