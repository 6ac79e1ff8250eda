//! The Prometheus endpoint on real nodes (SPEC §11): scraped and parsed, its task counts agree
//! with `service ps`; a worker serves only what it knows; an explicit address that cannot be
//! bound stops the start, a busy default port costs a warning and nothing else.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{Cluster, NODE_BIN};

/// `name{labels}` -> value, from the text format (comments skipped, `# EOF` required).
fn parse(text: &str) -> BTreeMap<String, f64> {
    assert!(
        text.trim_end().ends_with("# EOF"),
        "the exposition ends with # EOF: {text}"
    );
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("`name value`");
            let value = value.parse::<f64>().expect("a number");
            (name.to_string(), value)
        })
        .collect()
}

/// The address node `index` logged for its endpoint.
fn endpoint(cluster: &Cluster, index: usize) -> String {
    let mut found = None;
    cluster.wait_until(
        "the node logs its metrics address",
        Duration::from_secs(20),
        || {
            let log = std::fs::read_to_string(&cluster.nodes[index].log).unwrap_or_default();
            found = log
                .lines()
                .find_map(|line| line.split("metrics on http://").nth(1))
                .and_then(|rest| rest.split('/').next())
                .map(str::to_string);
            found.is_some()
        },
    );
    found.expect("found")
}

fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let output = Command::new("curl")
        .args(["-sf", "--max-time", "5", &format!("http://{addr}/metrics")])
        .output()
        .expect("run curl");
    assert!(output.status.success(), "scrape of {addr} failed");
    parse(&String::from_utf8_lossy(&output.stdout))
}

#[test]
fn metrics_agree_with_service_ps_and_a_worker_serves_only_its_own() {
    let mut cluster = Cluster::new(&["--metrics-listen", "127.0.0.1:0"]);
    cluster.init();
    let worker = cluster.join("worker");
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    cluster.wait_for_running("web", 3, Duration::from_secs(30));
    let manager = endpoint(&cluster, 0);
    let mut metrics = BTreeMap::new();
    cluster.wait_until("the store's counts settle", Duration::from_secs(10), || {
        metrics = scrape(&manager);
        metrics.get("flotilla_service_tasks_running{service=\"web\"}") == Some(&3.0)
    });
    let tasks = cluster.tasks_json("web").expect("service ps");
    let running = tasks
        .iter()
        .filter(|t| t["current_state"] == "running")
        .count();
    assert_eq!(metrics["flotilla_tasks{state=\"running\"}"], running as f64);
    assert_eq!(
        metrics["flotilla_store_objects{kind=\"task\"}"],
        tasks.len() as f64
    );
    assert_eq!(metrics["flotilla_store_objects{kind=\"service\"}"], 1.0);
    assert_eq!(metrics["flotilla_store_objects{kind=\"node\"}"], 2.0);
    assert_eq!(
        metrics["flotilla_service_replicas_desired{service=\"web\"}"],
        3.0
    );
    assert_eq!(metrics["flotilla_raft_leader"], 1.0);
    assert!(metrics["flotilla_raft_term"] >= 1.0);
    assert!(metrics["flotilla_raft_applied_index"] <= metrics["flotilla_raft_commit_index"]);
    assert_eq!(
        metrics["flotilla_nodes{status=\"ready\",availability=\"active\"}"],
        2.0
    );
    // Measured, not read off the state: the leader's proposals and Readies.
    assert!(metrics["flotilla_raft_proposal_seconds_count"] >= 1.0);
    assert!(metrics["flotilla_raft_ready_seconds_count"] >= 1.0);
    assert!(
        metrics["flotilla_schedule_seconds_count"] >= 1.0,
        "{metrics:?}"
    );
    assert!(
        metrics["flotilla_reconcile_seconds_count"] >= 1.0,
        "{metrics:?}"
    );
    assert_eq!(
        metrics.get("flotilla_mesh_connections_total"),
        Some(&0.0),
        "nothing is published"
    );

    let from_worker = scrape(&endpoint(&cluster, worker));
    let worker_id = cluster.wait_node_id(worker);
    // The leader hears the worker's heartbeats (every second by default).
    let age = metrics
        .get(&format!(
            "flotilla_node_heartbeat_age_seconds{{node_id=\"{worker_id}\"}}"
        ))
        .copied()
        .unwrap_or(f64::MAX);
    assert!(age < 10.0, "the worker's heartbeat age: {age}; {metrics:?}");
    assert_eq!(
        from_worker.get(&format!(
            "flotilla_node_info{{node_id=\"{worker_id}\",role=\"worker\"}}"
        )),
        Some(&1.0),
        "{from_worker:?}"
    );
    assert!(
        !from_worker
            .keys()
            .any(|name| name.starts_with("flotilla_raft")),
        "a worker has no Raft to report: {from_worker:?}"
    );
    // Each start of a task on the worker was timed by its metered runtime.
    let on_worker = tasks
        .iter()
        .filter(|task| task["node_id"] == worker_id.as_str())
        .count();
    assert!(on_worker > 0, "the scheduler spread the tasks: {tasks:?}");
    assert_eq!(
        from_worker.get("flotilla_runtime_operation_seconds_count{operation=\"start\"}"),
        Some(&(on_worker as f64)),
        "{from_worker:?}"
    );
}

/// Kills the node when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn an_explicit_address_in_use_stops_the_start_and_a_busy_default_only_warns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.9:0").expect("bind a probe");
    let taken_addr = taken.local_addr().expect("probe address").to_string();
    let udp_port = std::net::UdpSocket::bind("127.0.0.9:0")
        .and_then(|socket| socket.local_addr())
        .expect("udp probe")
        .port();
    let explicit = Command::new(NODE_BIN)
        .args([
            "init",
            "--runtime",
            "sim",
            "--listen",
            &format!("127.0.0.9:{udp_port}"),
        ])
        .arg("--state-dir")
        .arg(dir.path().join("explicit"))
        .args(["--metrics-listen", &taken_addr])
        .output()
        .expect("run flotilla-node");
    assert!(
        !explicit.status.success(),
        "an explicit busy address must stop the start"
    );
    let stderr = String::from_utf8_lossy(&explicit.stderr);
    assert!(
        stderr.contains(&format!("cannot listen for metrics on {taken_addr}")),
        "{stderr}"
    );
    assert!(
        !dir.path().join("explicit").exists(),
        "refused before the state directory is made"
    );

    // The default port (9323 on the advertise IP) taken: one warning, and the node runs.
    let Ok(_default) = std::net::TcpListener::bind("127.0.0.10:9323") else {
        eprintln!("note: 127.0.0.10:9323 is in use already; the default case is not checked");
        return;
    };
    let log = dir.path().join("default.log");
    let child = Command::new(NODE_BIN)
        .args([
            "init",
            "--runtime",
            "sim",
            "--listen",
            &format!("127.0.0.10:{udp_port}"),
        ])
        .arg("--state-dir")
        .arg(dir.path().join("default"))
        .env("RUST_LOG", "flotilla=info")
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(dir.path().join("default.err")).expect("log"))
        .spawn()
        .expect("run flotilla-node");
    let mut node = KillOnDrop(child);
    let client = dir.path().join("default").join("client.toml");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut answered = false;
    while std::time::Instant::now() < deadline && !answered {
        std::thread::sleep(Duration::from_millis(200));
        answered = client.exists()
            && Command::new(common::CLI_BIN)
                .arg("--config")
                .arg(&client)
                .args(["node", "ls"])
                .output()
                .is_ok_and(|output| output.status.success());
    }
    node.stop();
    assert!(
        answered,
        "the node must run without its default metrics port"
    );
    let logged = std::fs::read_to_string(dir.path().join("default.err")).unwrap_or_default()
        + &std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("default metrics port unavailable"),
        "{logged}"
    );
}
