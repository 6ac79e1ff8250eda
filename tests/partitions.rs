//! Network partitions between real processes (SPEC §12): the test enters a network namespace
//! of its own (`ip netns add`), where every node runs on its own 127.0.0.x address of the
//! namespace's loopback, and cuts and heals links between chosen pairs with iptables rules
//! inside that namespace only. Nothing leaves 127.0.0.0/8, and nothing outside the namespace
//! is touched.
//!
//! Checked: the history of register writes and reads the test makes through every manager is
//! linearizable (`partitions/checker.rs`), so no acknowledged write is lost and no read goes
//! back in time; no two nodes lead in one term; after healing a partitioned worker's stale
//! tasks are stopped and exactly the desired replicas run.
//!
//! Needs root (network namespaces): under CI (`CI` or `FLOTILLA_REQUIRE_DOCKER` set) a
//! machine that cannot create one fails the test; elsewhere it is skipped with a message.

#[path = "partitions/checker.rs"]
mod checker;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{Call, Op};
use common::Cluster;

/// A network namespace the test thread (and every process it starts) lives in.
struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates a namespace, moves the calling thread into it and brings its loopback up.
    fn enter(test: &str) -> Option<Namespace> {
        let name = format!("flt-{}-{test}", std::process::id());
        let created = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|status| status.success());
        if !created {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("FLOTILLA_REQUIRE_DOCKER").is_some();
            assert!(
                !required,
                "cannot create a network namespace (root and iproute2 needed)"
            );
            eprintln!("skipped: cannot create a network namespace (needs root)");
            return None;
        }
        let namespace = Namespace { name };
        let path = format!("/var/run/netns/{}", namespace.name);
        let file = std::fs::File::open(&path).expect("open the namespace");
        use std::os::fd::AsRawFd;
        // SAFETY: setns only changes this thread's network namespace; children forked from
        // this thread (the nodes, the CLI, iptables) and threads it starts inherit it.
        let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        run(&["ip", "link", "set", "lo", "up"]);
        Some(namespace)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn run(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(status.success(), "{args:?} failed");
}

/// Drops every packet between the nodes at `a` and `b` (both directions), inside the
/// namespace. Only node-to-node traffic: both ends on the cluster's `port` (the CLI's
/// ephemeral ports, whose source address the kernel picks, still pass).
fn cut(a: &str, b: &str, port: u16) {
    let port = port.to_string();
    for (from, to) in [(a, b), (b, a)] {
        run(&[
            "iptables", "-A", "INPUT", "-p", "udp", "-s", from, "--sport", &port, "-d", to,
            "--dport", &port, "-j", "DROP",
        ]);
    }
}

/// Removes every cut.
fn heal() {
    run(&["iptables", "-F", "INPUT"]);
}

/// The register the test reads and writes: the label `reg` of one node.
struct Register {
    node_id: String,
}

impl Register {
    fn write(&self, cluster: &Cluster, host: usize, value: u64) -> bool {
        cluster
            .cli(
                Some(host),
                &[
                    "node",
                    "update",
                    "--label-add",
                    &format!("reg={value}"),
                    &self.node_id,
                ],
            )
            .status
            .success()
    }

    /// `Some(value read)`, or `None` if the read failed.
    fn read(&self, cluster: &Cluster, host: usize) -> Option<Option<u64>> {
        let output = cluster.cli(Some(host), &["node", "inspect", &self.node_id]);
        if !output.status.success() {
            return None;
        }
        let nodes: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        let label = &nodes[0]["labels"]["reg"];
        Some(label.as_str().and_then(|text| text.parse().ok()))
    }
}

/// Clients writing and reading the register through every manager until told to stop; each
/// operation is recorded with its call and return times (microseconds since `origin`).
fn start_clients(
    cluster: &Arc<Cluster>,
    register: &Arc<Register>,
    managers: &[usize],
    stop: &Arc<AtomicBool>,
    history: &Arc<Mutex<Vec<Call>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let origin = Instant::now();
    let next_value = Arc::new(Mutex::new(0u64));
    let mut clients = Vec::new();
    for (client, &host) in managers.iter().enumerate() {
        let (cluster, register, stop, history, next_value) = (
            cluster.clone(),
            register.clone(),
            stop.clone(),
            history.clone(),
            next_value.clone(),
        );
        clients.push(std::thread::spawn(move || {
            let micros = || origin.elapsed().as_micros() as u64;
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                // Paced, so the history stays small enough to search whole.
                std::thread::sleep(Duration::from_millis(40));
                let called = micros();
                // Every client alternates; the two kinds overlap across clients.
                if (round + client as u64).is_multiple_of(2) {
                    let value = {
                        let mut next = next_value.lock().expect("values");
                        *next += 1;
                        *next
                    };
                    let acknowledged = register.write(&cluster, host, value);
                    let returned = micros();
                    history.lock().expect("history").push(Call {
                        op: Op::Write(value),
                        called,
                        // A failed write may still commit later: its outcome is unknown.
                        returned: acknowledged.then_some(returned),
                    });
                } else if let Some(read) = register.read(&cluster, host) {
                    let returned = micros();
                    history.lock().expect("history").push(Call {
                        op: Op::Read(read),
                        called,
                        returned: Some(returned),
                    });
                }
            }
        }));
    }
    clients
}

/// Every (term, node) that claimed leadership, from the nodes' logs.
fn leaders_by_term(cluster: &Cluster) -> BTreeMap<u64, BTreeSet<usize>> {
    let mut leaders: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        for line in log.lines().filter(|line| line.contains("is_leader=true")) {
            let term = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("term="))
                .and_then(|term| term.parse::<u64>().ok());
            if let Some(term) = term {
                leaders.entry(term).or_default().insert(index);
            }
        }
    }
    leaders
}

fn three_managers_and_a_worker() -> (Cluster, usize) {
    let mut cluster = Cluster::new(&[]);
    cluster.runtime = "sim".to_string();
    cluster.init();
    cluster.join("manager");
    cluster.join("manager");
    let worker = cluster.join("worker");
    cluster.wait_for_reachable_managers(2);
    (cluster, worker)
}

#[test]
fn a_leader_cut_off_from_the_majority_loses_no_acknowledged_write() {
    let Some(_namespace) = Namespace::enter("leader") else {
        return;
    };
    let (cluster, worker) = three_managers_and_a_worker();
    let register = Arc::new(Register {
        node_id: cluster.wait_node_id(worker),
    });
    let old_leader = cluster.leader().expect("a leader");
    let cluster = Arc::new(cluster);
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let clients = start_clients(&cluster, &register, &[0, 1, 2], &stop, &history);

    std::thread::sleep(Duration::from_secs(2));
    let old_ip = cluster.nodes[old_leader].ip.clone();
    for other in (0..3).filter(|index| *index != old_leader) {
        cut(&old_ip, &cluster.nodes[other].ip, cluster.port);
    }
    // The majority elects a new leader while the old one still believes it leads.
    let majority: Vec<usize> = (0..3).filter(|index| *index != old_leader).collect();
    cluster.wait_until(
        "the majority elects a new leader",
        Duration::from_secs(20),
        || {
            cluster.nodes_json(Some(majority[0])).is_some_and(|nodes| {
                nodes.iter().any(|n| {
                    n["manager_status"] == "leader"
                        && n["addr"] != cluster.addr(old_leader).as_str()
                })
            })
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    heal();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }

    let history = history.lock().expect("history").clone();
    let acknowledged_writes = history
        .iter()
        .filter(|call| matches!(call.op, Op::Write(_)) && call.returned.is_some())
        .count();
    let reads = history
        .iter()
        .filter(|call| matches!(call.op, Op::Read(_)))
        .count();
    eprintln!(
        "{} operations: {acknowledged_writes} acknowledged writes, {reads} reads",
        history.len()
    );
    let unknown_writes = history
        .iter()
        .filter(|call| matches!(call.op, Op::Write(_)) && call.returned.is_none())
        .count();
    assert!(acknowledged_writes >= 3 && reads >= 3, "{history:?}");
    assert!(
        unknown_writes >= 1,
        "writes through the cut-off leader must fail, not be acknowledged"
    );
    if let Err(error) = checker::check(&history) {
        panic!("{error}");
    }
    for (term, leaders) in leaders_by_term(&cluster) {
        assert!(leaders.len() <= 1, "term {term} had leaders {leaders:?}");
    }
}

#[test]
fn a_partitioned_worker_comes_back_to_exactly_the_desired_replicas() {
    let Some(_namespace) = Namespace::enter("worker") else {
        return;
    };
    let (cluster, worker) = three_managers_and_a_worker();
    let worker_id = cluster.wait_node_id(worker);
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "4",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let running = cluster.wait_for_running("web", 4, Duration::from_secs(20));
    assert!(
        running
            .iter()
            .any(|task| task["node_id"] == worker_id.as_str()),
        "spread puts a task on the worker: {running:?}"
    );

    let worker_ip = cluster.nodes[worker].ip.clone();
    for manager in 0..3 {
        cut(&worker_ip, &cluster.nodes[manager].ip, cluster.port);
    }
    // Declared down, its task is replaced elsewhere while it keeps "running" it.
    cluster.wait_until(
        "the worker's task is replaced on another node",
        Duration::from_secs(20),
        || {
            cluster
                .running_tasks("web")
                .iter()
                .all(|task| task["node_id"] != worker_id.as_str())
                && cluster.running_tasks("web").len() == 4
        },
    );
    heal();
    cluster.wait_until("the worker is ready again", Duration::from_secs(20), || {
        cluster.ready_count() == 4
    });
    // Back, it stops what it ran before and the service has exactly its replicas, one per
    // slot.
    cluster.wait_until(
        "exactly 4 running tasks, one per slot",
        Duration::from_secs(20),
        || {
            let running = cluster.running_tasks("web");
            let slots: BTreeSet<String> = running
                .iter()
                .map(|task| task["name"].as_str().unwrap_or_default().to_string())
                .collect();
            running.len() == 4 && slots.len() == 4
        },
    );
    // And stays so (a stale task does not come back a moment later).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cluster.running_tasks("web").len(), 4);
}
