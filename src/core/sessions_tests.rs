use super::*;
use crate::core::testkit::{node, Harness};

const PERIOD_MS: u64 = 1_000;

fn store_of(ids: &[&str]) -> Harness {
    Harness::with_nodes(ids.iter().map(|id| node(id)).collect())
}

/// Checks once per period from `from_ms` through `to_ms`, heartbeating `beating` each time;
/// returns the last result.
fn run(
    sessions: &mut NodeSessions,
    store: &Store,
    beating: &[&str],
    from_ms: u64,
    to_ms: u64,
) -> SessionCheck {
    let mut last = SessionCheck::Grace;
    let mut now_ms = from_ms;
    while now_ms <= to_ms {
        for id in beating {
            sessions.heartbeat(id, now_ms);
        }
        last = sessions.check(store, now_ms);
        now_ms += PERIOD_MS;
    }
    last
}

#[test]
fn a_silent_node_is_down_after_three_periods_and_not_before() {
    let h = store_of(&["a", "b"]);
    let mut sessions = NodeSessions::new(PERIOD_MS, 0);
    // Grace for everyone during the first three periods of leadership.
    assert_eq!(
        run(&mut sessions, &h.store, &["a"], 0, 2_000),
        SessionCheck::Grace
    );
    // b was never heard from: first seen at the first check after grace, down three periods on.
    assert_eq!(
        run(&mut sessions, &h.store, &["a"], 3_000, 6_000),
        SessionCheck::Down(vec![])
    );
    assert_eq!(
        run(&mut sessions, &h.store, &["a"], 7_000, 7_000),
        SessionCheck::Down(vec!["b".to_string()])
    );
}

#[test]
fn a_late_check_means_the_dispatcher_stalled_and_grace_starts_again() {
    let h = store_of(&["a"]);
    let mut sessions = NodeSessions::new(PERIOD_MS, 0);
    sessions.heartbeat("a", 0);
    assert_eq!(sessions.check(&h.store, 1_000), SessionCheck::Grace);
    // Ten seconds without a check: a's silence is the dispatcher's fault.
    assert_eq!(
        sessions.check(&h.store, 11_000),
        SessionCheck::Stalled { stalled_ms: 10_000 }
    );
    assert_eq!(
        run(&mut sessions, &h.store, &[], 12_000, 13_000),
        SessionCheck::Grace
    );
    assert_eq!(
        run(&mut sessions, &h.store, &[], 14_000, 14_000),
        SessionCheck::Down(vec!["a".to_string()])
    );
}

#[test]
fn down_nodes_are_not_reported_again_and_forgotten_ones_start_over() {
    let mut down = node("b");
    down.status = NodeStatus::Down;
    let h = Harness::with_nodes(vec![node("a"), down]);
    let mut sessions = NodeSessions::new(PERIOD_MS, 0);
    assert_eq!(
        run(&mut sessions, &h.store, &["a"], 0, 20_000),
        SessionCheck::Down(vec![])
    );
    sessions.heartbeat("a", 20_500);
    assert_eq!(sessions.last_seen_ms("a"), Some(20_500));
    sessions.forget("a");
    assert_eq!(sessions.last_seen_ms("a"), None);
}

#[test]
fn mass_expiry_only_in_large_clusters_and_only_for_most_nodes() {
    // Small clusters: every expiry counts, even all nodes at once.
    assert!(!mass_expiry(3, 2));
    assert!(!mass_expiry(
        LARGE_CLUSTER_NODES - 1,
        LARGE_CLUSTER_NODES - 1
    ));
    // Large clusters: a minority is real, a majority is suspect.
    assert!(!mass_expiry(1000, 10));
    assert!(!mass_expiry(1000, 550));
    assert!(mass_expiry(1000, 551));
    assert!(mass_expiry(LARGE_CLUSTER_NODES, LARGE_CLUSTER_NODES));
}

#[test]
fn most_of_a_large_cluster_falling_silent_marks_nobody_down() {
    let ids: Vec<String> = (0..60).map(|i| format!("n{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let h = store_of(&refs);
    let mut sessions = NodeSessions::new(PERIOD_MS, 0);
    run(&mut sessions, &h.store, &refs, 0, 5_000);
    // Ten keep beating, fifty fall silent at once.
    let result = run(&mut sessions, &h.store, &refs[..10], 6_000, 10_000);
    assert_eq!(
        result,
        SessionCheck::MassSilence {
            expired: 50,
            up: 60
        }
    );
    // A few falling silent in a large cluster is real.
    let mut sessions = NodeSessions::new(PERIOD_MS, 0);
    run(&mut sessions, &h.store, &refs, 0, 5_000);
    let SessionCheck::Down(down) = run(&mut sessions, &h.store, &refs[5..], 6_000, 10_000) else {
        panic!("expected nodes down");
    };
    assert_eq!(down, ids[..5].to_vec());
}

#[test]
fn a_heartbeat_refreshes_the_record_only_when_something_changed() {
    let registered = node("a");
    let description = NodeDescription {
        hostname: registered.hostname.clone(),
        addr: registered.addr.clone(),
        engine_version: registered.engine_version.clone(),
        resources: registered.resources,
        labels: Default::default(),
    };
    assert_eq!(refreshed_record(&registered, &description), None);

    let mut down = registered.clone();
    down.status = NodeStatus::Down;
    let back = refreshed_record(&down, &description).expect("a down node comes back ready");
    assert_eq!(back.status, NodeStatus::Ready);

    // Join labels count only until the first registration; after that the admin's win.
    let mut fresh = registered.clone();
    fresh.engine_version.clear();
    let mut labelled = description.clone();
    labelled.labels.insert("zone".into(), "a".into());
    let first = refreshed_record(&fresh, &labelled).expect("first registration");
    assert_eq!(first.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(refreshed_record(&registered, &labelled), None);
}
