//! Faults over real processes: the leader killed mid-stream, actors crashed by `flotilla
//! chaos` while a service scales, and a worker cut off from the managers by fault injection.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Cluster;
use flotilla::client::Client;
use flotilla::net::fault::FaultRule;
use flotilla::net::message::{ChaosRequest, Message as WireMessage};
use serde_json::Value;

const LOOP: &str = "while true; do sleep 3600; done";

fn services(cluster: &Cluster, host: usize) -> Option<Vec<Value>> {
    let output = cluster.cli(Some(host), &["service", "ls", "--format", "json"]);
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).ok())
        .flatten()
}

fn tasks(cluster: &Cluster, service: &str) -> Vec<Value> {
    let text = cluster.cli_ok(None, &["service", "ps", service, "--format", "json"]);
    serde_json::from_str(&text).expect("service ps json")
}

/// Running tasks meant to run, and processes alive for the service (no duplicates anywhere).
fn running_and_processes(cluster: &Cluster, service: &str) -> (usize, usize) {
    let running = tasks(cluster, service)
        .iter()
        .filter(|t| t["current_state"] == "running" && t["desired_state"] == "running")
        .count();
    let needle = format!("FLOTILLA_SERVICE_NAME={service}");
    let ours: Vec<String> = (0..cluster.nodes.len())
        .map(|i| format!("FLOTILLA_NODE_ID={}", cluster.node_id(i)))
        .collect();
    let mut processes = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let is_shell = std::fs::read(entry.path().join("cmdline"))
                .map(|c| c.starts_with(b"sh\0"))
                .unwrap_or(false);
            let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
            let of_this_cluster = vars.iter().any(|v| ours.iter().any(|o| *v == o.as_bytes()));
            if is_shell && of_this_cluster && vars.contains(&needle.as_bytes()) {
                processes += 1;
            }
        }
    }
    (running, processes)
}

#[test]
fn leader_killed_during_a_stream_of_writes_loses_no_acknowledged_operation() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    cluster.join("manager");
    cluster.join("manager");
    let mut acknowledged: BTreeMap<String, u64> = BTreeMap::new();
    let mut killed = None;
    for round in 0..12u64 {
        if round == 4 {
            let leader = cluster.leader().expect("a leader");
            cluster.kill(leader);
            killed = Some(leader);
        }
        let host = (0..3).find(|i| Some(*i) != killed).expect("a live manager");
        let name = format!("s{round}");
        let create = [
            "service", "create", "-d", "--name", &name, "busybox", "sh", "-c", LOOP,
        ];
        if cluster.cli(Some(host), &create).status.success() {
            acknowledged.insert(name.clone(), 1);
        }
        let target = format!("{name}={}", 1 + round % 3);
        if acknowledged.contains_key(&name)
            && cluster
                .cli(Some(host), &["service", "scale", "-d", &target])
                .status
                .success()
        {
            acknowledged.insert(name, 1 + round % 3);
        }
    }
    assert!(
        acknowledged.len() >= 8,
        "most writes succeed around a failover: {acknowledged:?}"
    );
    let old_leader = killed.expect("killed");
    cluster.restart(old_leader);
    cluster.wait_until(
        "every acknowledged write is there and converged",
        Duration::from_secs(30),
        || {
            let Some(list) = services(&cluster, old_leader) else {
                return false;
            };
            acknowledged.iter().all(|(name, replicas)| {
                list.iter().any(|s| {
                    s["name"] == name.as_str()
                        && s["replicas_desired"] == *replicas
                        && s["replicas_running"] == *replicas
                })
            })
        },
    );
    let nodes = cluster.nodes_json(Some(old_leader)).expect("node ls");
    let me = nodes.iter().find(|n| n["self"] == true).expect("self");
    assert_ne!(me["manager_status"], "unreachable", "{me}");
}

#[test]
fn crashed_actors_are_restarted_and_the_replica_count_is_exact() {
    let mut cluster = Cluster::new(&["--enable-chaos"]);
    cluster.init();
    let worker = cluster.join("worker");
    cluster.join("worker");
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "busybox",
            "sh",
            "-c",
            LOOP,
        ],
    );
    cluster.cli_ok(None, &["service", "scale", "-d", "web=9"]);
    for (kind, id) in [
        ("scheduler", None),
        ("dispatcher", None),
        ("service", Some("web")),
        ("orchestrator", None),
        ("raft", None),
    ] {
        let mut args = vec!["chaos", "kill-actor", kind];
        args.extend(id);
        cluster.cli_ok(None, &args);
    }
    // A replica actor on a worker, mid-flight.
    let on_worker = cluster.node_id(worker);
    let task = tasks(&cluster, "web")
        .into_iter()
        .find(|t| t["node_id"] == on_worker.as_str())
        .expect("a task on the worker");
    let task_id = task["id"].as_str().expect("id").to_string();
    cluster.cli_ok(Some(worker), &["chaos", "kill-actor", "replica", &task_id]);
    cluster.cli_ok(Some(worker), &["chaos", "kill-actor", "worker"]);
    cluster.cli_ok(None, &["service", "scale", "-d", "web=7"]);
    cluster.wait_until(
        "exactly 7 replicas, and 7 processes",
        Duration::from_secs(30),
        || running_and_processes(&cluster, "web") == (7, 7),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        running_and_processes(&cluster, "web"),
        (7, 7),
        "stable afterwards"
    );
    // The replica actor re-attached: its task still runs, with the same process.
    let same = tasks(&cluster, "web")
        .into_iter()
        .find(|t| t["id"] == task_id.as_str());
    if let Some(same) = same {
        if same["desired_state"] == "running" {
            assert_eq!(same["current_state"], "running");
            assert_eq!(same["runtime_id"], task["runtime_id"]);
        }
    }
    let refused = cluster.cli(Some(worker), &["chaos", "kill-actor", "scheduler"]);
    assert!(
        !refused.status.success(),
        "the scheduler runs on the leader only"
    );
}

fn set_fault(cluster: &Cluster, host: usize, peer: &str, rule: Option<FaultRule>) {
    let client = Client::load(&cluster.config(), Some(&cluster.addr(host))).expect("client");
    let request = WireMessage::Chaos(ChaosRequest::SetFault {
        peer_node_id: peer.to_string(),
        rule,
    });
    let reply = actix::System::new()
        .block_on(async move { client.exchange(request, flotilla::client::ANY_NODE).await });
    assert!(matches!(reply, Ok(WireMessage::Ack)), "{reply:?}");
}

#[test]
fn a_partitioned_worker_is_replaced_and_its_stale_copies_stop_after_the_heal() {
    let mut cluster = Cluster::new(&["--enable-chaos", "--heartbeat-ms", "500"]);
    let manager = cluster.init();
    let cut = cluster.join("worker");
    cluster.join("worker");
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "--name",
            "app",
            "--replicas",
            "6",
            "busybox",
            "sh",
            "-c",
            LOOP,
        ],
    );
    let cut_id = cluster.node_id(cut);
    let manager_id = cluster.node_id(manager);
    assert!(
        tasks(&cluster, "app")
            .iter()
            .any(|t| t["node_id"] == cut_id.as_str()),
        "the worker runs some replicas"
    );
    set_fault(&cluster, cut, &manager_id, Some(FaultRule::Partition));
    cluster.wait_until(
        "the worker is down and its tasks run elsewhere",
        Duration::from_secs(15),
        || {
            let down = cluster.nodes_json(None).is_some_and(|nodes| {
                nodes
                    .iter()
                    .any(|n| n["id"] == cut_id.as_str() && n["status"] == "down")
            });
            let replaced = tasks(&cluster, "app")
                .iter()
                .filter(|t| t["current_state"] == "running" && t["desired_state"] == "running")
                .all(|t| t["node_id"] != cut_id.as_str());
            down && replaced && running_and_processes(&cluster, "app").0 == 6
        },
    );
    // The cut-off worker still runs its stale copies: more processes than replicas.
    assert!(running_and_processes(&cluster, "app").1 > 6);
    set_fault(&cluster, cut, &manager_id, None);
    cluster.wait_until(
        "the stale copies are stopped",
        Duration::from_secs(15),
        || running_and_processes(&cluster, "app") == (6, 6),
    );
}
