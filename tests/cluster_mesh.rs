//! The routing mesh on real processes (SPEC §8): a published port answers on every node and
//! reaches every task, and a start-first rolling update with a health check loses no request
//! made through the mesh.
//!
//! The tasks are `tests/fixtures/mesh/server.py` (process runtime): HTTP on the port the node
//! gives them, a graceful stop on SIGTERM.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Cluster;

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mesh/server.py");

/// A TCP port free on the loopback addresses the cluster's nodes use (127.0.0.1-3).
fn free_published_port() -> u16 {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        let port = probe.local_addr().expect("probe address").port();
        drop(probe);
        let free = (1..=3).all(|n| {
            std::net::TcpListener::bind(("127.0.0.".to_string() + &n.to_string(), port)).is_ok()
        });
        if free {
            return port;
        }
    }
}

/// One HTTP/1.0 GET through `addr`; the body, or why it failed.
fn get(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if !answer.starts_with("HTTP/1.0 200") {
        return Err(format!("not a 200: {answer:?}"));
    }
    answer
        .split("\r\n\r\n")
        .nth(1)
        .map(|body| body.trim().to_string())
        .ok_or_else(|| format!("no body: {answer:?}"))
}

fn create_web(cluster: &Cluster, port: u16, replicas: usize, extra: &[&str]) {
    let publish = format!("{port}:80");
    let replicas = replicas.to_string();
    let mut args = vec![
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        &replicas,
        "-p",
        &publish,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "python3", SERVER]);
    cluster.cli_ok(None, &args);
}

#[test]
fn a_published_port_reaches_every_task_through_every_node() {
    let cluster = Cluster::three_managers();
    let port = free_published_port();
    // Another process holds the port on node 3: that node says so and serves the rest.
    let squatter = std::net::TcpListener::bind(("127.0.0.3", port)).expect("hold the port");
    create_web(&cluster, port, 3, &[]);
    let tasks = cluster.wait_for_running("web", 3, Duration::from_secs(30));
    let task_ids: Vec<String> = tasks
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(task_ids.len(), 3, "{tasks:?}");

    let listing = cluster.cli_ok(None, &["service", "ls"]);
    assert!(
        listing.contains(&format!("*:{port}->80/tcp")),
        "PORTS column: {listing}"
    );

    cluster.wait_until(
        "node 3 reports the port it cannot bind",
        Duration::from_secs(20),
        || cluster.log_contains(2, "published port cannot be bound on this node"),
    );
    for node in 1..=2 {
        let addr: SocketAddr = format!("127.0.0.{node}:{port}").parse().expect("addr");
        // The port opens once the node holds a table with the three running tasks.
        cluster.wait_until(
            &format!("node {node} routes to all three tasks"),
            Duration::from_secs(20),
            || {
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                for _ in 0..12 {
                    match get(addr) {
                        Ok(body) => *seen.entry(body).or_default() += 1,
                        Err(_) => return false,
                    }
                }
                task_ids
                    .iter()
                    .all(|id| seen.keys().any(|body| body.contains(id.as_str())))
            },
        );
    }

    // Once the port is free, the next table change binds it there too.
    drop(squatter);
    cluster.cli_ok(None, &["service", "scale", "web=2"]);
    let two = cluster.wait_for_running("web", 2, Duration::from_secs(30));
    let addr: SocketAddr = format!("127.0.0.3:{port}").parse().expect("addr");
    cluster.wait_until("node 3 serves the port", Duration::from_secs(20), || {
        answers(addr, 4).is_some_and(|bodies| {
            bodies.iter().all(|body| {
                two.iter()
                    .any(|t| t["id"].as_str().is_some_and(|id| body.contains(id)))
            })
        })
    });

    // A second service cannot take the port.
    let clash = cluster.cli(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "other",
            "-p",
            &format!("{port}:81"),
            "busybox",
            "sleep",
            "100",
        ],
    );
    assert!(!clash.status.success());
    let text = String::from_utf8_lossy(&clash.stderr);
    assert!(
        text.contains(&format!(
            "port '{port}/tcp' is already in use by service 'web'"
        )),
        "{text}"
    );

    // Scaled down: the port still answers, only from the remaining task.
    cluster.cli_ok(None, &["service", "scale", "web=1"]);
    let remaining = cluster.wait_for_running("web", 1, Duration::from_secs(30));
    let remaining = remaining[0]["id"].as_str().expect("id").to_string();
    let addr: SocketAddr = format!("127.0.0.2:{port}").parse().expect("addr");
    cluster.wait_until(
        "only the remaining task answers",
        Duration::from_secs(20),
        || (0..6).all(|_| get(addr).is_ok_and(|body| body.contains(&remaining))),
    );

    // Removed: every node closes the port.
    cluster.cli_ok(None, &["service", "rm", "web"]);
    cluster.wait_until(
        "the port is closed everywhere",
        Duration::from_secs(20),
        || {
            (1..=3).all(|node| {
                let addr: SocketAddr = format!("127.0.0.{node}:{port}").parse().expect("addr");
                TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
            })
        },
    );
}

#[test]
fn a_start_first_rolling_update_with_a_health_check_loses_no_request() {
    let cluster = Cluster::three_managers();
    let port = free_published_port();
    create_web(
        &cluster,
        port,
        4,
        &[
            "--env",
            "DELAY_MS=5",
            "--health-cmd",
            "curl -sf -o /dev/null http://$FLOTILLA_HOST_IP:$PORT/",
            "--health-interval",
            "200ms",
            "--health-retries",
            "3",
            // A loaded machine may take a while to start python: failures before the first
            // success do not count then.
            "--health-start-period",
            "20s",
            "--stop-grace-period",
            "5s",
        ],
    );
    cluster.wait_for_running("web", 4, Duration::from_secs(60));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    cluster.wait_until("the mesh answers", Duration::from_secs(20), || {
        get(addr).is_ok()
    });

    // The clients: four threads, each sending requests one after another through node 1's
    // mesh until told to stop, at least 1,000 in all.
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut answers: BTreeMap<String, usize> = BTreeMap::new();
                let mut failures: Vec<String> = Vec::new();
                let mut requests = 0usize;
                while !done.load(Ordering::Relaxed) || requests < 250 {
                    requests += 1;
                    match get(addr) {
                        Ok(body) => {
                            let version = body.split_whitespace().last().unwrap_or("").to_string();
                            *answers.entry(version).or_default() += 1;
                        }
                        Err(error) => failures.push(format!("request {requests}: {error}")),
                    }
                }
                (requests, answers, failures)
            })
        })
        .collect();

    let started = Instant::now();
    let update = cluster.cli(
        None,
        &[
            "service",
            "update",
            "--env-add",
            "V=2",
            "--update-order",
            "start-first",
            "--update-parallelism",
            "1",
            "--update-monitor",
            "500ms",
            "web",
        ],
    );
    let update_took = started.elapsed();
    // Some requests after the last old task stopped, too.
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let (mut requests, mut answers, mut failures) = (0, BTreeMap::new(), Vec::new());
    for client in clients {
        let (sent, seen, failed) = client.join().expect("client thread");
        requests += sent;
        for (version, count) in seen {
            *answers.entry(version).or_insert(0usize) += count;
        }
        failures.extend(failed);
    }
    assert!(
        update.status.success(),
        "update failed: {}{}\ntasks: {:#?}",
        String::from_utf8_lossy(&update.stdout),
        String::from_utf8_lossy(&update.stderr),
        cluster.tasks_json("web")
    );
    eprintln!(
        "{requests} requests during a {:.1} s update: {answers:?}, {} failed",
        update_took.as_secs_f64(),
        failures.len()
    );
    assert!(requests >= 1_000);
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    assert!(
        answers.contains_key("version=1") && answers.contains_key("version=2"),
        "both versions answered: {answers:?}"
    );
    // Afterwards only the new version answers.
    assert!((0..8).all(|_| get(addr).is_ok_and(|body| body.ends_with("version=2"))));
}

/// The bodies seen through `addr` in `tries` requests, or `None` if one failed.
fn answers(addr: SocketAddr, tries: usize) -> Option<Vec<String>> {
    (0..tries).map(|_| get(addr).ok()).collect()
}

#[test]
fn workers_learn_the_table_by_gossip_and_keep_forwarding_without_their_manager() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    cluster.join("worker");
    cluster.join("worker");
    let port = free_published_port();
    create_web(&cluster, port, 2, &["--constraint", "node.role==worker"]);
    let tasks = cluster.wait_for_running("web", 2, Duration::from_secs(30));
    let task_ids: Vec<String> = tasks
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    let reaches_both = |addr: SocketAddr| {
        answers(addr, 8).is_some_and(|bodies| {
            task_ids
                .iter()
                .all(|id| bodies.iter().any(|body| body.contains(id.as_str())))
        })
    };
    let workers: Vec<SocketAddr> = [2, 3]
        .iter()
        .map(|n| format!("127.0.0.{n}:{port}").parse().expect("addr"))
        .collect();
    // Workers have no store: the table reaches them by gossip only.
    for addr in &workers {
        cluster.wait_until(
            &format!("worker {addr} routes to both tasks"),
            Duration::from_secs(20),
            || reaches_both(*addr),
        );
    }

    // The only manager dies: the workers keep their tasks and the table they last had.
    cluster.kill(0);
    for addr in &workers {
        assert!(
            reaches_both(*addr),
            "worker {addr} stopped forwarding when its manager died"
        );
    }
}

#[test]
fn udp_flows_reach_every_task_through_a_worker() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    cluster.join("worker");
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("probe address").port()
    };
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mesh/udp_echo.py"
    );
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "echo",
            "--replicas",
            "2",
            "-p",
            &format!("{port}:53/udp"),
            "busybox",
            "python3",
            server,
        ],
    );
    let tasks = cluster.wait_for_running("echo", 2, Duration::from_secs(30));
    let task_ids: Vec<String> = tasks
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    let worker: SocketAddr = format!("127.0.0.2:{port}").parse().expect("addr");
    // One flow per client address, balanced over the tasks: several clients see both.
    let ask = |client: &std::net::UdpSocket, text: &str| -> Option<String> {
        client.send_to(text.as_bytes(), worker).ok()?;
        let mut buffer = [0u8; 1024];
        let (read, _) = client.recv_from(&mut buffer).ok()?;
        Some(String::from_utf8_lossy(&buffer[..read]).to_string())
    };
    cluster.wait_until(
        "both tasks answer through the worker",
        Duration::from_secs(20),
        || {
            let mut seen = Vec::new();
            for n in 0..8 {
                let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
                client
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .expect("timeout");
                let text = format!("hello {n}");
                match ask(&client, &text) {
                    Some(answer) if answer.ends_with(&text) => seen.push(answer),
                    _ => return false,
                }
            }
            task_ids
                .iter()
                .all(|id| seen.iter().any(|answer| answer.contains(id.as_str())))
        },
    );
}
