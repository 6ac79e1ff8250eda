//! Membership over real processes and QUIC: init, join, refusals, down detection, restart.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use flotilla::net::token::JoinToken;

const FAST: &[&str] = &["--heartbeat-ms", "500"];

#[test]
fn init_and_two_joins_give_three_ready_nodes_and_one_leader() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    cluster.join("worker");
    cluster.join("worker");
    let nodes = cluster.nodes_json(None).expect("node ls");
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["status"] == "ready"), "{nodes:?}");
    let leaders = nodes
        .iter()
        .filter(|n| n["manager_status"] == "leader")
        .count();
    assert_eq!(leaders, 1);
    assert_eq!(nodes.iter().filter(|n| n["self"] == true).count(), 1);
    let table = cluster.cli_ok(None, &["node", "ls"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains("MANAGER STATUS"), "{table}");
    assert!(table.contains(" *"), "{table}");
}

#[test]
fn bad_join_tokens_are_refused_with_distinct_errors_and_add_no_node() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let good = cluster.token("worker");
    let parsed = JoinToken::parse(&good).expect("token parses");

    let malformed = cluster.join_expecting_failure("FLTKN-1-not-a-token", 5);
    let malformed = String::from_utf8_lossy(&malformed.stderr);
    assert!(malformed.contains("malformed join token"), "{malformed}");

    let wrong_secret = JoinToken::new(parsed.ca_digest, "0".repeat(25)).to_string();
    let refused = cluster.join_expecting_failure(&wrong_secret, 6);
    let refused = String::from_utf8_lossy(&refused.stderr);
    assert!(refused.contains("secret is not valid"), "{refused}");

    let wrong_ca = JoinToken::new([9; 32], parsed.secret.clone()).to_string();
    let mismatch = cluster.join_expecting_failure(&wrong_ca, 7);
    let mismatch = String::from_utf8_lossy(&mismatch.stderr);
    assert!(
        mismatch.contains("does not match the join token"),
        "{mismatch}"
    );

    let rotated = cluster.cli_ok(None, &["swarm", "join-token", "--rotate", "-q", "worker"]);
    assert_ne!(rotated.trim(), good);
    let old = cluster.join_expecting_failure(&good, 8);
    let old = String::from_utf8_lossy(&old.stderr);
    assert!(old.contains("secret is not valid"), "{old}");

    assert_eq!(cluster.nodes_json(None).expect("node ls").len(), 1);
    // The rotated token works.
    let index = cluster.spawn_join(rotated.trim(), 0);
    cluster.wait_until(
        "the node with the new token is ready",
        Duration::from_secs(20),
        || cluster.ready_count() == 2,
    );
    assert_eq!(index, 1);
}

#[test]
fn a_killed_worker_is_down_within_five_seconds_and_ready_again_after_start() {
    let mut cluster = Cluster::new(FAST);
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.node_id(worker);
    cluster.kill(worker);
    let killed_at = Instant::now();
    let status = |cluster: &Cluster| {
        cluster
            .nodes_json(None)
            .and_then(|nodes| nodes.into_iter().find(|n| n["id"] == worker_id.as_str()))
            .map(|n| n["status"].as_str().unwrap_or_default().to_string())
    };
    cluster.wait_until("the worker is down", Duration::from_secs(5), || {
        status(&cluster).as_deref() == Some("down")
    });
    eprintln!("down after {:?}", killed_at.elapsed());
    cluster.restart(worker);
    cluster.wait_until("the worker is ready again", Duration::from_secs(10), || {
        status(&cluster).as_deref() == Some("ready")
    });
    assert_eq!(
        cluster.nodes_json(None).expect("node ls").len(),
        2,
        "same node, same ID"
    );
}

#[test]
fn control_commands_on_a_worker_fail_with_the_exact_text() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let worker = cluster.join("worker");
    let output = cluster.cli(Some(worker), &["node", "ls"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "Error: This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.\n"
    );
}

fn role_and_status(cluster: &Cluster, node_id: &str) -> Option<(String, Option<String>, String)> {
    let nodes = cluster.nodes_json(None)?;
    let node = nodes.into_iter().find(|n| n["id"] == node_id)?;
    Some((
        node["role"].as_str()?.to_string(),
        node["manager_status"].as_str().map(str::to_string),
        node["status"].as_str()?.to_string(),
    ))
}

#[test]
fn a_worker_is_promoted_to_manager_and_demoted_back() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.node_id(worker);
    let refused = cluster.cli(None, &["node", "demote", &cluster.node_id(0)]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("last manager"),
        "the last manager cannot be demoted"
    );

    let promoted = cluster.cli_ok(None, &["node", "promote", &worker_id]);
    assert!(promoted.contains("promoted to a manager"), "{promoted}");
    cluster.wait_until(
        "the node is a reachable manager",
        Duration::from_secs(20),
        || {
            role_and_status(&cluster, &worker_id)
                == Some(("manager".into(), Some("reachable".into()), "ready".into()))
        },
    );
    // It restarts as a manager: it serves control commands and holds the replicated data.
    cluster.wait_until(
        "the promoted node serves control commands",
        Duration::from_secs(20),
        || cluster.cli(Some(worker), &["node", "ls"]).status.success(),
    );
    let seen = cluster.cli_ok(Some(worker), &["node", "ls"]);
    assert!(
        seen.contains("Reachable") && seen.contains("Leader"),
        "{seen}"
    );

    cluster.cli_ok(None, &["node", "demote", &worker_id]);
    cluster.wait_until(
        "the node is a worker again",
        Duration::from_secs(20),
        || role_and_status(&cluster, &worker_id) == Some(("worker".into(), None, "ready".into())),
    );
    cluster.wait_until(
        "the demoted node refuses control commands",
        Duration::from_secs(20),
        || {
            let refused = cluster.cli(Some(worker), &["node", "ls"]);
            String::from_utf8_lossy(&refused.stderr).contains("not a swarm manager")
        },
    );
    cluster.cli_ok(
        None,
        &[
            "service", "create", "-d", "--name", "after", "busybox", "true",
        ],
    );
}

#[test]
fn removing_a_ready_node_needs_force() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.node_id(worker);
    let refused = cluster.cli(None, &["node", "rm", &worker_id]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    cluster.cli_ok(None, &["node", "rm", "--force", &worker_id]);
    let nodes = cluster.nodes_json(None).expect("node ls");
    assert!(nodes.iter().all(|n| n["id"] != worker_id.as_str()));
}
