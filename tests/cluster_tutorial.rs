//! The Docker Swarm tutorial, replayed on three real nodes with the process runtime: create,
//! scale to 5 over 3 nodes, a replica killed from outside heals with the failure in the
//! history, `service rm` is refused on a worker and stops every replica on a manager.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::Value;

const LOOP: &str = "while true; do sleep 3600; done";

fn tasks(cluster: &Cluster) -> Vec<Value> {
    let text = cluster.cli_ok(None, &["service", "ps", "demo", "--format", "json"]);
    serde_json::from_str(&text).expect("service ps json")
}

fn running(tasks: &[Value]) -> Vec<&Value> {
    tasks
        .iter()
        .filter(|t| t["current_state"] == "running" && t["desired_state"] == "running")
        .collect()
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn the_swarm_tutorial_works_step_by_step() {
    let mut cluster = Cluster::new(&["--heartbeat-ms", "500"]);
    cluster.init();
    let worker = cluster.join("worker");
    cluster.join("worker");

    // node ls: three ready nodes.
    let nodes = cluster.nodes_json(None).expect("node ls");
    assert_eq!(nodes.iter().filter(|n| n["status"] == "ready").count(), 3);

    // service create: prints the ID, shows progress, converges.
    let created = cluster.cli_ok(
        None,
        &[
            "service", "create", "--name", "demo", "busybox", "sh", "-c", LOOP,
        ],
    );
    let mut lines = created.lines();
    let id = lines.next().expect("an ID line");
    assert_eq!(id.len(), 25, "{created}");
    assert!(
        created.contains("overall progress: 1 out of 1 tasks"),
        "{created}"
    );
    assert!(created.contains("verify: Service converged"), "{created}");

    // service ls: 1/1.
    let listed = cluster.cli_ok(None, &["service", "ls"]);
    assert!(
        listed.contains("demo") && listed.contains("1/1"),
        "{listed}"
    );

    // service ps: one running task named demo.1 on some node.
    let table = cluster.cli_ok(None, &["service", "ps", "demo"]);
    assert!(
        table.contains("demo.1") && table.contains("Running"),
        "{table}"
    );

    // scale to 5: converged, spread over the three nodes.
    let scaled = cluster.cli_ok(None, &["service", "scale", "demo=5"]);
    assert!(scaled.contains("verify: Service converged"), "{scaled}");
    let now = tasks(&cluster);
    let up = running(&now);
    assert_eq!(up.len(), 5);
    let nodes_used: BTreeSet<&str> = up.iter().filter_map(|t| t["node_id"].as_str()).collect();
    assert_eq!(
        nodes_used.len(),
        3,
        "5 replicas spread over 3 nodes: {up:?}"
    );
    let listed = cluster.cli_ok(None, &["service", "ls"]);
    assert!(listed.contains("5/5"), "{listed}");

    // Kill one replica's process from outside: replaced in the same slot within 2 s, with the
    // failed task kept as history.
    let victim = up[0].clone();
    let pid: i32 = victim["runtime_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a process ID");
    let slot = victim["slot"].as_u64().expect("slot");
    // SAFETY: sending a signal has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let killed = Instant::now();
    cluster.wait_until("the slot runs a new task", Duration::from_secs(2), || {
        let now = tasks(&cluster);
        running(&now)
            .iter()
            .any(|t| t["slot"] == slot && t["id"] != victim["id"])
            && running(&now).len() == 5
    });
    eprintln!(
        "replica killed -> replacement running: {:?}",
        killed.elapsed()
    );
    let history = tasks(&cluster);
    let failed = history
        .iter()
        .find(|t| t["id"] == victim["id"])
        .expect("the failed task is kept");
    assert_eq!(failed["current_state"], "failed");
    assert_eq!(failed["exit_code"], 137);
    let table = cluster.cli_ok(None, &["service", "ps", "demo"]);
    assert!(table.contains(" \\_ demo."), "history row shown: {table}");
    assert!(table.contains("Failed"), "{table}");

    // rm on a worker is refused with the exact text.
    let refused = cluster.cli(Some(worker), &["service", "rm", "demo"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("This node is not a swarm manager."));

    // rm on the manager stops every replica.
    let pids: Vec<i32> = running(&tasks(&cluster))
        .iter()
        .filter_map(|t| t["runtime_id"].as_str().and_then(|id| id.parse().ok()))
        .collect();
    assert_eq!(pids.len(), 5);
    cluster.cli_ok(None, &["service", "rm", "demo"]);
    cluster.wait_until(
        "every replica process is gone",
        Duration::from_secs(15),
        || pids.iter().all(|pid| !pid_alive(*pid)),
    );
    let listed = cluster.cli_ok(None, &["service", "ls", "--format", "json"]);
    assert_eq!(listed.trim(), "[]");
}

#[test]
fn bad_specs_are_refused_and_change_nothing() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let cases: &[&[&str]] = &[
        &["service", "create", "--replicas", "-1", "busybox"],
        &[
            "service",
            "create",
            "--constraint",
            "node.colour=blue",
            "busybox",
        ],
        &["service", "create", "--no-such-flag", "busybox"],
        &["service", "create", "--name", "bad name", "busybox"],
        &["service", "create", "--reserve-memory", "lots", "busybox"],
    ];
    for args in cases {
        let output = cluster.cli(None, args);
        assert!(!output.status.success(), "{args:?} should be refused");
        assert!(!output.stderr.is_empty(), "{args:?} should say why");
    }
    let refused = cluster.cli(None, &["service", "scale", "ghost=3"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no such service"));
    let listed = cluster.cli_ok(None, &["service", "ls", "--format", "json"]);
    assert_eq!(listed.trim(), "[]");
}

#[test]
fn drain_moves_tasks_away_and_unschedulable_tasks_say_why() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let drained = cluster.join("worker");
    cluster.join("worker");
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "--name",
            "demo",
            "--replicas",
            "6",
            "busybox",
            "sh",
            "-c",
            LOOP,
        ],
    );
    let drained_id = cluster.node_id(drained);
    assert!(running(&tasks(&cluster))
        .iter()
        .any(|t| t["node_id"] == drained_id.as_str()));
    cluster.cli_ok(
        None,
        &["node", "update", "--availability", "drain", &drained_id],
    );
    cluster.wait_until(
        "the drained node runs nothing and 6 run elsewhere",
        Duration::from_secs(15),
        || {
            let now = tasks(&cluster);
            let up = running(&now);
            up.len() == 6 && up.iter().all(|t| t["node_id"] != drained_id.as_str())
        },
    );
    let listed = cluster.cli_ok(None, &["node", "ls"]);
    assert!(listed.contains("Drain"), "{listed}");

    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "nowhere",
            "--constraint",
            "node.labels.zone==mars",
            "busybox",
            "true",
        ],
    );
    cluster.wait_until(
        "the task is pending with the reason",
        Duration::from_secs(10),
        || {
            let text = cluster.cli_ok(None, &["service", "ps", "nowhere", "--format", "json"]);
            let rows: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
            rows.first().is_some_and(|t| {
                t["current_state"] == "pending"
                    && t["error"].as_str().is_some_and(|e| {
                        e.starts_with("no suitable node") && e.contains("constraints")
                    })
            })
        },
    );
    // A node that fits arrives: the pending task is placed.
    cluster.cli_ok(
        None,
        &["node", "update", "--label-add", "zone=mars", &drained_id],
    );
    cluster.cli_ok(
        None,
        &["node", "update", "--availability", "active", &drained_id],
    );
    cluster.wait_until(
        "the pending task is placed",
        Duration::from_secs(10),
        || {
            let text = cluster.cli_ok(None, &["service", "ps", "nowhere", "--format", "json"]);
            let rows: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
            rows.iter().any(|t| t["node_id"] == drained_id.as_str())
        },
    );
}
