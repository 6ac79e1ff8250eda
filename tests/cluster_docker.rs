//! Services over the Docker runtime through real node processes: container names and labels,
//! replacement after `docker rm -f`, re-attachment after a replica actor crash, and clean-up on
//! `service rm`. Needs a Docker Engine and makes `busybox:latest` with
//! `scripts/make-busybox-image.sh`. Without an answering engine the tests skip with a note, or
//! fail when `FLOTILLA_REQUIRE_DOCKER=1`.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Cluster;
use serde_json::Value;

/// Bound on anything converging in these tests; generous for a loaded 2-core machine.
const CONVERGE: Duration = Duration::from_secs(60);
/// The task command of SPEC's acceptance test: ends at once on SIGTERM.
const LOOP: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// Removes every container labelled with one of the test's service names when dropped, even
/// when the test panics. Declared before the cluster, so it runs after the nodes are killed
/// and none of them can start a replacement afterwards.
struct ContainerGuard {
    service_name: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let ids = containers_of(&self.service_name);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// IDs of every container, running or not, labelled with service name `service_name`.
fn containers_of(service_name: &str) -> Vec<String> {
    let listed = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label=com.flotilla.service.name={service_name}"))
        .output();
    let Ok(listed) = listed else {
        return Vec::new();
    };
    String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Whether the Docker Engine answers; panics instead of skipping under
/// `FLOTILLA_REQUIRE_DOCKER=1`. Makes `busybox:latest` the first time it answers.
fn docker_available() -> bool {
    let answered = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let problem = match answered {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        Err(error) => Some(format!("cannot run docker: {error}")),
    };
    if let Some(problem) = problem {
        assert!(
            std::env::var("FLOTILLA_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "FLOTILLA_REQUIRE_DOCKER=1 but Docker does not answer: {problem}"
        );
        eprintln!("note: skipping Docker test, Docker does not answer: {problem}");
        return false;
    }
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-busybox-image.sh");
        let status = Command::new(script)
            .status()
            .expect("run make-busybox-image.sh");
        assert!(status.success(), "make-busybox-image.sh failed: {status}");
    });
    true
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn field<'a>(task: &'a Value, name: &str) -> &'a str {
    task[name].as_str().unwrap_or_default()
}

/// `docker inspect` of one container.
fn inspect(container_id: &str) -> Value {
    let output = Command::new("docker")
        .args(["inspect", container_id])
        .output()
        .expect("run docker inspect");
    assert!(
        output.status.success(),
        "docker inspect {container_id}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut all: Vec<Value> = serde_json::from_slice(&output.stdout).expect("inspect JSON");
    all.pop().expect("one container")
}

/// A cluster of a manager and a worker over Docker, both allowing chaos commands.
fn docker_cluster() -> Cluster {
    let mut cluster = Cluster::new(&["--enable-chaos"]).with_runtime("docker");
    cluster.init();
    cluster.join("worker");
    cluster
}

#[test]
fn a_docker_service_runs_labelled_containers_and_heals_without_duplicates() {
    if !docker_available() {
        return;
    }
    let name = unique("dk");
    let _containers = ContainerGuard {
        service_name: name.clone(),
    };
    let cluster = docker_cluster();

    // Three replicas: three containers named and labelled as SPEC §3 says.
    let created_ms = unix_ms();
    let created_at = Instant::now();
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "--name",
            &name,
            "--replicas",
            "3",
            "-d",
            "busybox:latest",
            "sh",
            "-c",
            LOOP,
        ],
    );
    let running = cluster.wait_for_running(&name, 3, CONVERGE);
    let last_running_ms = running
        .iter()
        .filter_map(|task| task["state_since_ms"].as_u64())
        .max()
        .unwrap_or(0);
    println!(
        "docker: service create -> 3 tasks running: {} ms by task timestamps, {} ms observed by polling the CLI",
        last_running_ms.saturating_sub(created_ms),
        created_at.elapsed().as_millis()
    );
    for task in &running {
        assert_eq!(field(task, "runtime"), "docker", "{task}");
        let container = inspect(field(task, "runtime_id"));
        let slot = task["slot"].as_u64().expect("slot");
        let task_id = field(task, "id");
        assert_eq!(
            container["Name"].as_str(),
            Some(format!("/{name}.{slot}.{task_id}").as_str())
        );
        assert_eq!(container["State"]["Running"], true);
        let labels = &container["Config"]["Labels"];
        assert_eq!(labels["com.flotilla.service.id"], task["service_id"]);
        assert_eq!(labels["com.flotilla.service.name"], name.as_str());
        assert_eq!(labels["com.flotilla.task.id"], task_id);
        assert_eq!(labels["com.flotilla.task.slot"], slot.to_string().as_str());
        assert_eq!(labels["com.flotilla.node.id"], task["node_id"]);
    }
    assert_eq!(containers_of(&name).len(), 3);
    // No task failed on the way (an orphan sweep of an older assignment set once removed the
    // fresh containers of a newer one, so tasks failed right after they started).
    let history = cluster.tasks_json(&name).unwrap_or_default();
    assert_eq!(history.len(), 3, "only the three first tasks: {history:#?}");

    // `docker rm -f` of one: a new task in the same slot runs within 2 s of the detection.
    let victim = running[0].clone();
    let (victim_id, slot) = (field(&victim, "id").to_string(), victim["slot"].as_u64());
    let removed_ms = unix_ms();
    let removed_at = Instant::now();
    let status = Command::new("docker")
        .args(["rm", "-f", field(&victim, "runtime_id")])
        .output()
        .expect("docker rm -f");
    assert!(status.status.success());
    let mut pair = (Value::Null, Value::Null);
    cluster.wait_until(
        "the removed container's slot runs a new task",
        CONVERGE,
        || {
            let tasks = cluster.tasks_json(&name).unwrap_or_default();
            let old = tasks
                .iter()
                .find(|t| field(t, "id") == victim_id && field(t, "current_state") == "failed");
            let new = tasks.iter().find(|t| {
                t["slot"].as_u64() == slot
                    && field(t, "id") != victim_id
                    && field(t, "current_state") == "running"
            });
            match (old, new) {
                (Some(old), Some(new)) => {
                    pair = (old.clone(), new.clone());
                    true
                }
                _ => false,
            }
        },
    );
    let (failed, replacement) = pair;
    let detected_ms = failed["state_since_ms"].as_u64().unwrap_or(0);
    let replaced_ms = replacement["state_since_ms"].as_u64().unwrap_or(0);
    println!(
        "docker: rm -f -> replacement running: {} ms from the rm, {} ms from detection (task \
         timestamps), {} ms observed by polling the CLI",
        replaced_ms.saturating_sub(removed_ms),
        replaced_ms.saturating_sub(detected_ms),
        removed_at.elapsed().as_millis()
    );
    assert!(
        replaced_ms.saturating_sub(detected_ms) < 2_000,
        "SPEC §6: replaced within 2 s of the container's death; took {} ms",
        replaced_ms.saturating_sub(detected_ms)
    );
    assert_eq!(
        inspect(field(&replacement, "runtime_id"))["State"]["Running"],
        true
    );
    cluster.wait_until("three containers again", CONVERGE, || {
        containers_of(&name).len() == 3
    });

    // A crashed replica actor re-attaches: same container, still running, no new task.
    let target = cluster.running_tasks(&name)[0].clone();
    let target_id = field(&target, "id").to_string();
    let container_id = field(&target, "runtime_id").to_string();
    let host = cluster
        .index_of(field(&target, "node_id"))
        .expect("the task's node is one of ours");
    let tasks_before: BTreeSet<String> = cluster
        .tasks_json(&name)
        .unwrap_or_default()
        .iter()
        .map(|t| field(t, "id").to_string())
        .collect();
    cluster.cli_ok(
        Some(host),
        &["chaos", "kill-actor", "replica", target_id.as_str()],
    );
    let log = cluster.nodes[host].log.clone();
    cluster.wait_until("the replica actor restarted", CONVERGE, || {
        std::fs::read_to_string(&log).is_ok_and(|text| {
            text.lines()
                .any(|line| line.contains("replica actor restarting") && line.contains(&target_id))
        })
    });
    // Give a wrong implementation time to start a duplicate or fail the task, then check.
    std::thread::sleep(Duration::from_secs(3));
    let container = inspect(&container_id);
    assert_eq!(
        container["State"]["Running"], true,
        "the same container runs on"
    );
    assert_eq!(container["Id"].as_str(), Some(container_id.as_str()));
    let tasks_after: BTreeSet<String> = cluster
        .tasks_json(&name)
        .unwrap_or_default()
        .iter()
        .map(|t| field(t, "id").to_string())
        .collect();
    assert_eq!(tasks_after, tasks_before, "no new task");
    let still = cluster
        .running_tasks(&name)
        .into_iter()
        .find(|t| field(t, "id") == target_id)
        .expect("the task still runs");
    assert_eq!(field(&still, "runtime_id"), container_id);
    assert_eq!(containers_of(&name).len(), 3, "no duplicate container");

    // `service rm` removes every container.
    cluster.cli_ok(None, &["service", "rm", &name]);
    cluster.wait_until("no container of the service is left", CONVERGE, || {
        containers_of(&name).is_empty()
    });
}

/// A container removed while its node is down (and back before the cluster declares it down)
/// is a task that ended: the restarted node reports it failed and the managers replace it. The
/// node must not start the same task again (SPEC §3: a task is one container attempt).
#[test]
fn a_container_removed_while_its_node_was_down_is_failed_not_restarted_in_place() {
    if !docker_available() {
        return;
    }
    let name = unique("dkgone");
    let _containers = ContainerGuard {
        service_name: name.clone(),
    };
    // A slow heartbeat, so the node is back long before it could be declared down.
    let mut cluster = Cluster::new(&["--heartbeat-ms", "2000"]).with_runtime("docker");
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.wait_node_id(worker);
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "--name",
            &name,
            "--replicas",
            "1",
            "--constraint",
            "node.role==worker",
            "-d",
            "busybox:latest",
            "sh",
            "-c",
            LOOP,
        ],
    );
    let running = cluster.wait_for_running(&name, 1, CONVERGE);
    let old_task = field(&running[0], "id").to_string();
    assert_eq!(field(&running[0], "node_id"), worker_id);

    cluster.kill(worker);
    let removed = Command::new("docker")
        .args(["rm", "-f", field(&running[0], "runtime_id")])
        .output()
        .expect("docker rm -f");
    assert!(removed.status.success());
    cluster.restart(worker);

    cluster.wait_until("the old task failed and a new one runs", CONVERGE, || {
        let tasks = cluster.tasks_json(&name).unwrap_or_default();
        let old_failed = tasks
            .iter()
            .any(|t| field(t, "id") == old_task && field(t, "current_state") == "failed");
        let running = cluster.running_tasks(&name);
        old_failed && running.len() == 1 && field(&running[0], "id") != old_task
    });
    let of_old_task = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.flotilla.task.id={old_task}"))
        .output()
        .expect("docker ps");
    assert!(
        String::from_utf8_lossy(&of_old_task.stdout)
            .trim()
            .is_empty(),
        "the old task was started again in place"
    );
    let new = &cluster.running_tasks(&name)[0];
    assert_eq!(inspect(field(new, "runtime_id"))["State"]["Running"], true);
    assert_eq!(containers_of(&name).len(), 1);
}

/// A worker killed with SIGKILL and started again adopts its running containers (same
/// container, same task, nothing started) and still learns of their death.
#[test]
fn a_restarted_docker_worker_adopts_its_containers_and_follows_them() {
    if !docker_available() {
        return;
    }
    let name = unique("dkadopt");
    let _containers = ContainerGuard {
        service_name: name.clone(),
    };
    let mut cluster = Cluster::new(&["--heartbeat-ms", "2000"]).with_runtime("docker");
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.wait_node_id(worker);
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "--name",
            &name,
            "--replicas",
            "2",
            "--constraint",
            "node.role==worker",
            "-d",
            "busybox:latest",
            "sh",
            "-c",
            LOOP,
        ],
    );
    let before: BTreeSet<(String, String)> = cluster
        .wait_for_running(&name, 2, CONVERGE)
        .iter()
        .map(|t| {
            (
                field(t, "id").to_string(),
                field(t, "runtime_id").to_string(),
            )
        })
        .collect();

    cluster.kill(worker);
    cluster.restart(worker);
    cluster.wait_until("the worker is ready again", CONVERGE, || {
        cluster.nodes_json(None).is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["id"] == worker_id.as_str() && n["status"] == "ready")
        })
    });
    // Give a restarted node time to do anything wrong (start duplicates), then check.
    std::thread::sleep(Duration::from_secs(3));
    let after: BTreeSet<(String, String)> = cluster
        .running_tasks(&name)
        .iter()
        .map(|t| {
            (
                field(t, "id").to_string(),
                field(t, "runtime_id").to_string(),
            )
        })
        .collect();
    assert_eq!(after, before, "same tasks, same containers");
    assert_eq!(cluster.tasks_json(&name).unwrap_or_default().len(), 2);
    assert_eq!(containers_of(&name).len(), 2, "no duplicate container");

    // The adopted container's death is still seen, with Docker's exit code.
    let (task_id, container_id) = before.iter().next().expect("a task").clone();
    let killed = Command::new("docker")
        .args(["kill", &container_id])
        .output()
        .expect("docker kill");
    assert!(killed.status.success());
    let mut failed = Value::Null;
    cluster.wait_until("the adopted task is failed and replaced", CONVERGE, || {
        let tasks = cluster.tasks_json(&name).unwrap_or_default();
        let old = tasks
            .iter()
            .find(|t| field(t, "id") == task_id && field(t, "current_state") == "failed");
        match old {
            Some(old) if cluster.running_tasks(&name).len() == 2 => {
                failed = old.clone();
                true
            }
            _ => false,
        }
    });
    assert_eq!(failed["exit_code"].as_i64(), Some(137), "{failed}");
}

/// Builds `flotilla-test/healthcheck:latest` from the local busybox (no registry needed): an
/// image with its own HEALTHCHECK, healthy until `/tmp/sick` exists.
fn healthcheck_image() -> &'static str {
    const IMAGE: &str = "flotilla-test/healthcheck:latest";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox:latest\nHEALTHCHECK --interval=200ms --timeout=2s --retries=2 CMD test ! -e /tmp/sick\n",
    )
    .expect("write Dockerfile");
    let built = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(dir.path())
        .output()
        .expect("run docker build");
    assert!(
        built.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    IMAGE
}

#[test]
fn an_images_own_healthcheck_counts_unless_disabled() {
    if !docker_available() {
        return;
    }
    let image = healthcheck_image();
    let checked = unique("hc");
    let unchecked = unique("nohc");
    let _guards = [
        ContainerGuard {
            service_name: checked.clone(),
        },
        ContainerGuard {
            service_name: unchecked.clone(),
        },
    ];
    let mut cluster = Cluster::new(&[]).with_runtime("docker");
    cluster.init();
    cluster.cli_ok(
        None,
        &[
            "service", "create", "-d", "--name", &checked, image, "sleep", "1000",
        ],
    );
    // Running only once the image's check passed.
    let running = cluster.wait_for_running(&checked, 1, CONVERGE);
    let first = field(&running[0], "id").to_string();
    let container = field(&running[0], "runtime_id").to_string();
    assert_eq!(inspect(&container)["State"]["Health"]["Status"], "healthy");

    let sick = Command::new("docker")
        .args(["exec", &container, "touch", "/tmp/sick"])
        .status()
        .expect("docker exec");
    assert!(sick.success(), "docker exec touch failed");
    cluster.wait_until(
        "the unhealthy task fails and a healthy one replaces it",
        CONVERGE,
        || {
            let tasks = cluster.tasks_json(&checked).unwrap_or_default();
            let failed = tasks.iter().any(|t| {
                field(t, "id") == first && field(t, "error") == "task: unhealthy container"
            });
            let replaced = tasks
                .iter()
                .any(|t| field(t, "id") != first && field(t, "current_state") == "running");
            failed && replaced
        },
    );

    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            &unchecked,
            "--no-healthcheck",
            image,
            "sleep",
            "1000",
        ],
    );
    let running = cluster.wait_for_running(&unchecked, 1, CONVERGE);
    let container = field(&running[0], "runtime_id").to_string();
    let config = inspect(&container);
    assert_eq!(
        config["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["NONE"]),
        "{}",
        config["Config"]["Healthcheck"]
    );
}

#[test]
fn a_published_port_reaches_docker_containers_through_every_node() {
    if !docker_available() {
        return;
    }
    let name = unique("dkweb");
    let _containers = ContainerGuard {
        service_name: name.clone(),
    };
    let cluster = docker_cluster();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("probe address").port()
    };
    // Each container serves its own hostname (its container ID) on its target port, 80.
    let script = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            &name,
            "--replicas",
            "2",
            "-p",
            &format!("{port}:80"),
            "busybox:latest",
            "sh",
            "-c",
            script,
        ],
    );
    let tasks = cluster.wait_for_running(&name, 2, Duration::from_secs(60));
    // The docker runtime bound each container's port 80 to an ephemeral port of its node's
    // advertise IP, and reported it.
    for task in &tasks {
        let endpoint = task["endpoints"][0].as_str().unwrap_or_default();
        assert!(
            endpoint.starts_with("127.0.0.") && endpoint.ends_with("->80/tcp"),
            "{task}"
        );
    }
    let hostnames: Vec<String> = containers_of(&name)
        .iter()
        .map(|id| id[..12].to_string())
        .collect();
    assert_eq!(hostnames.len(), 2, "{hostnames:?}");
    for node in 1..=2 {
        let addr = format!("127.0.0.{node}:{port}");
        cluster.wait_until(
            &format!("{addr} reaches both containers"),
            Duration::from_secs(30),
            || {
                let seen: Vec<String> = (0..8)
                    .filter_map(|_| {
                        let output = Command::new("curl")
                            .args(["-sf", "--max-time", "5", &format!("http://{addr}/")])
                            .output()
                            .ok()?;
                        output
                            .status
                            .success()
                            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
                    })
                    .collect();
                seen.len() == 8 && hostnames.iter().all(|h| seen.iter().any(|s| s == h))
            },
        );
    }
    cluster.cli_ok(None, &["service", "rm", &name]);
}

#[test]
fn a_docker_task_reads_its_secret_and_config_from_read_only_tmpfs_mounts() {
    if !docker_available() {
        return;
    }
    let name = unique("dksecret");
    let _containers = ContainerGuard {
        service_name: name.clone(),
    };
    let files_root = tempfile::Builder::new()
        .prefix("flotilla-docker-secrets")
        .tempdir_in("/dev/shm")
        .expect("a tmpfs directory in /dev/shm");
    let mut cluster = Cluster::new(&[]).with_runtime("docker").with_env(
        "FLOTILLA_FILES_ROOT",
        &files_root.path().display().to_string(),
    );
    cluster.init();
    cluster.join("worker");
    let password = format!("pw-{}", unix_ms());
    let created = cluster.cli_stdin(None, &["secret", "create", &name, "-"], password.as_bytes());
    assert!(
        created.status.success(),
        "secret create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let config = cluster.cli_stdin(None, &["config", "create", &name, "-"], b"listen 80\n");
    assert!(
        config.status.success(),
        "{}",
        String::from_utf8_lossy(&config.stderr)
    );
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            &name,
            "--secret",
            &format!("source={name},target=password,mode=0400"),
            "--config",
            &format!("source={name},target=/etc/site.conf"),
            "busybox:latest",
            "sh",
            "-c",
            LOOP,
        ],
    );
    cluster.wait_for_running(&name, 1, CONVERGE);
    let containers = containers_of(&name);
    assert_eq!(containers.len(), 1, "{containers:?}");
    let exec = |script: &str| {
        Command::new("docker")
            .args(["exec", &containers[0], "sh", "-c", script])
            .output()
            .expect("docker exec")
    };
    let read = exec(
        "cat /run/secrets/password; echo; stat -c %a /run/secrets/password; cat /etc/site.conf",
    );
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        format!("{password}\n400\nlisten 80\n")
    );
    let write = exec("echo leaked > /run/secrets/password");
    assert!(
        !write.status.success(),
        "the secret's mount must be read-only"
    );
    let mounts = inspect(&containers[0])["Mounts"].clone();
    let sources: Vec<&str> = mounts
        .as_array()
        .map(|all| all.iter().filter_map(|m| m["Source"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        sources
            .iter()
            .all(|source| source.starts_with(&files_root.path().display().to_string())),
        "every file comes from the tmpfs root: {sources:?}"
    );
    cluster.cli_ok(None, &["service", "rm", &name]);
    cluster.wait_until("the container and its files are gone", CONVERGE, || {
        containers_of(&name).is_empty()
            && std::fs::read_dir(files_root.path())
                .map(|nodes| {
                    nodes.flatten().all(|node| {
                        std::fs::read_dir(node.path())
                            .map_or(true, |mut tasks| tasks.next().is_none())
                    })
                })
                .unwrap_or(true)
    });
}
