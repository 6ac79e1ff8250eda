//! Smoke run of hollow workers (`flotilla-node sim`): tiny W and R, so the scale tooling keeps
//! working. The measurements themselves are benchmarks (see docs/PERFORMANCE.md), not tests.

mod common;

use std::time::Duration;

use common::Cluster;

#[test]
fn hollow_workers_join_and_run_a_service() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    cluster.cli_ok(
        None,
        &[
            "node",
            "update",
            "--availability",
            "drain",
            &cluster.node_id(0),
        ],
    );
    cluster.spawn_hollow(8);
    let nodes = cluster.nodes_json(None).expect("node ls");
    let hollow = nodes
        .iter()
        .filter(|n| {
            n["hostname"]
                .as_str()
                .is_some_and(|h| h.starts_with("hollow-"))
        })
        .count();
    assert_eq!(hollow, 8);
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "many",
            "--replicas",
            "40",
            "busybox",
            "sleep",
            "9",
        ],
    );
    cluster.wait_until("40 simulated replicas run", Duration::from_secs(30), || {
        let text = cluster.cli_ok(None, &["service", "ls", "--format", "json"]);
        let services: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        services
            .first()
            .is_some_and(|s| s["replicas_running"] == 40)
    });
    let text = cluster.cli_ok(None, &["service", "ps", "many", "--format", "json"]);
    let tasks: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
    assert!(
        tasks.iter().all(|t| t["runtime"] == "sim"),
        "hollow workers run nothing real"
    );
}
