//! `flotilla events` on a real swarm (SPEC §11): changes stream as they are applied, each with
//! its Raft index; `--since INDEX` resumes exactly after it, on any manager; filters narrow
//! the stream; a bad filter is refused before anything is asked.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Cluster, CLI_BIN};
use serde_json::Value;

/// `flotilla events ARGS --format json` against `host`, its lines sent to the returned
/// channel; the process is killed when the guard drops.
struct Watcher {
    child: std::process::Child,
    lines: mpsc::Receiver<Value>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn watch(cluster: &Cluster, host: usize, args: &[&str]) -> Watcher {
    let mut child = Command::new(CLI_BIN)
        .arg("--config")
        .arg(cluster.config())
        .arg("--host")
        .arg(cluster.addr(host))
        .arg("events")
        .args(args)
        .args(["--format", "json"])
        .env_remove("FLOTILLA_HOST")
        .env_remove("FLOTILLA_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run flotilla events");
    let stdout = child.stdout.take().expect("stdout");
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if send.send(value).is_err() {
                    return;
                }
            }
        }
    });
    Watcher { child, lines }
}

/// Records from `watcher` until one matches `done`, or the timeout.
fn until(watcher: &Watcher, timeout: Duration, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match watcher.lines.recv_timeout(left) {
            Ok(record) => {
                let finished = done(&record);
                seen.push(record);
                if finished {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no matching event within {timeout:?}; saw {seen:?}");
}

fn is(record: &Value, kind: &str, action: &str, name: &str) -> bool {
    record["type"] == kind && record["action"] == action && record["attributes"]["name"] == name
}

#[test]
fn events_stream_with_their_index_resume_after_it_on_any_manager_and_filter() {
    let mut cluster = Cluster::new(&["--heartbeat-ms", "500"]);
    cluster.init();
    let follower = cluster.join("manager");
    cluster.wait_for_reachable_managers(1);

    let everything = watch(&cluster, 0, &[]);
    let services = watch(&cluster, follower, &["--filter", "type=service"]);
    // Both watchers have asked once (and so stand at the current index) before the change.
    std::thread::sleep(Duration::from_millis(600));
    cluster.cli_ok(
        None,
        &[
            "service", "create", "-d", "--name", "web", "busybox", "sleep", "1000",
        ],
    );
    cluster.wait_for_running("web", 1, Duration::from_secs(30));
    cluster.cli_ok(None, &["service", "rm", "web"]);

    let seen = until(&everything, Duration::from_secs(20), |r| {
        is(r, "service", "remove", "web")
    });
    let created = seen
        .iter()
        .find(|r| is(r, "service", "create", "web"))
        .expect("the create came first");
    let created_index = created["index"].as_u64().expect("index");
    assert!(
        seen.iter()
            .any(|r| r["type"] == "task" && r["attributes"]["state"] == "running"),
        "task changes stream too: {seen:?}"
    );
    let indexes: Vec<u64> = seen.iter().filter_map(|r| r["index"].as_u64()).collect();
    assert!(
        indexes.windows(2).all(|pair| pair[0] <= pair[1]),
        "in index order: {indexes:?}"
    );

    // The follower's own history, filtered: services only.
    let on_follower = until(&services, Duration::from_secs(20), |r| {
        is(r, "service", "remove", "web")
    });
    assert!(
        on_follower.iter().all(|r| r["type"] == "service"),
        "{on_follower:?}"
    );
    assert!(on_follower
        .iter()
        .any(|r| is(r, "service", "create", "web")));

    // Resumed after the create's index, on the follower: exactly what came after it.
    let resumed = watch(&cluster, follower, &["--since", &created_index.to_string()]);
    let again = until(&resumed, Duration::from_secs(20), |r| {
        is(r, "service", "remove", "web")
    });
    assert!(
        again
            .iter()
            .all(|r| r["index"].as_u64().is_some_and(|i| i > created_index)),
        "{again:?}"
    );
    assert!(!again.iter().any(|r| is(r, "service", "create", "web")));

    let refused = cluster.cli(None, &["events", "--filter", "colour=red"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("invalid filter \"colour\""),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
