//! Rolling updates on real processes (SPEC §7): the update state is replicated, so an update
//! whose leader is killed with SIGKILL half-way continues under the next leader and ends with
//! every slot running exactly one task of the new spec version.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Cluster;
use serde_json::Value;

/// Per slot, the spec versions of the tasks that run and are meant to.
fn running_versions(
    cluster: &Cluster,
    host: usize,
    service: &str,
) -> Option<BTreeMap<u64, Vec<u64>>> {
    let output = cluster.cli(Some(host), &["service", "ps", "--format", "json", service]);
    if !output.status.success() {
        return None;
    }
    let tasks: Vec<Value> = serde_json::from_slice(&output.stdout).ok()?;
    let mut slots: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for task in tasks {
        if task["current_state"] == "running" && task["desired_state"] == "running" {
            let slot = task["slot"].as_u64()?;
            slots
                .entry(slot)
                .or_default()
                .push(task["spec_version"].as_u64()?);
        }
    }
    Some(slots)
}

#[test]
fn an_update_survives_its_leader_being_killed_and_completes() {
    let mut cluster = Cluster::three_managers();
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "6",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    cluster.wait_for_running("web", 6, Duration::from_secs(30));
    let before = cluster.service_inspect(Some(0), "web").expect("inspect");
    let old_version = before["spec_version"].as_u64().expect("spec_version");

    // A delay between slots makes the update last several seconds, long enough to kill the
    // leader in the middle of it.
    cluster.cli_ok(
        None,
        &[
            "service",
            "update",
            "-d",
            "--env-add",
            "V=2",
            "--update-delay",
            "1s",
            "--update-monitor",
            "1s",
            "web",
        ],
    );
    let updated = cluster.service_inspect(Some(0), "web").expect("inspect");
    let new_version = updated["spec_version"].as_u64().expect("spec_version");
    assert_ne!(new_version, old_version);
    assert_eq!(updated["update_status"]["state"], "updating");
    assert_eq!(updated["previous_spec"]["version"], old_version);

    let leader = cluster.leader().expect("a leader");
    let survivor = (0..3).find(|i| *i != leader).expect("a survivor");
    cluster.wait_until(
        "two slots run the new spec",
        Duration::from_secs(30),
        || {
            running_versions(&cluster, leader, "web").is_some_and(|slots| {
                slots.values().filter(|v| v.contains(&new_version)).count() >= 2
            })
        },
    );
    let mid = running_versions(&cluster, leader, "web").unwrap_or_default();
    let done_before_kill = mid.values().filter(|v| v == &&vec![new_version]).count();
    assert!(
        done_before_kill < 6,
        "the update finished before the kill: {mid:?}"
    );
    cluster.kill(leader);

    cluster.wait_until("the update completes", Duration::from_secs(60), || {
        cluster
            .service_inspect(Some(survivor), "web")
            .is_some_and(|s| s["update_status"]["state"] == "completed")
    });
    // The killed leader's tasks are replaced once its node is down; wait for all six.
    cluster.wait_until(
        "every slot runs exactly one task of the new version",
        Duration::from_secs(30),
        || {
            running_versions(&cluster, survivor, "web").is_some_and(|slots| {
                slots.len() == 6 && slots.values().all(|v| v == &vec![new_version])
            })
        },
    );
    let service = cluster
        .service_inspect(Some(survivor), "web")
        .expect("inspect");
    assert_eq!(service["spec"]["env"]["V"], "2");
    assert_eq!(service["spec_version"], new_version);
}

fn one_node() -> Cluster {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    cluster
}

#[test]
fn a_failing_update_pauses_exits_1_keeps_the_old_tasks_and_rolls_back() {
    let cluster = one_node();
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    cluster.wait_for_running("web", 2, Duration::from_secs(30));
    let old_version = cluster.service_inspect(Some(0), "web").expect("inspect")["spec_version"]
        .as_u64()
        .expect("spec_version");
    // Start-first with a check that never passes: the new task never runs, the old ones serve.
    let output = cluster.cli(
        None,
        &[
            "service",
            "update",
            "--update-order",
            "start-first",
            "--health-cmd",
            "false",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            "--update-monitor",
            "1s",
            "web",
        ],
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains(
            "service update paused: update paused due to failure or early termination of task"
        ),
        "{printed}"
    );
    let service = cluster.service_inspect(Some(0), "web").expect("inspect");
    assert_eq!(service["update_status"]["state"], "paused");
    let running = running_versions(&cluster, 0, "web").expect("ps");
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(
        running.values().all(|v| v == &vec![old_version]),
        "{running:?}"
    );
    // The failed attempt says why.
    let tasks = cluster.tasks_json("web").expect("ps");
    assert!(
        tasks.iter().any(|t| t["error"] == "task: unhealthy"),
        "no unhealthy task in {tasks:?}"
    );

    cluster.cli_ok(None, &["service", "rollback", "web"]);
    cluster.wait_until("the rollback completes", Duration::from_secs(30), || {
        cluster
            .service_inspect(Some(0), "web")
            .is_some_and(|s| s["update_status"]["state"] == "rollback_completed")
    });
    let service = cluster.service_inspect(Some(0), "web").expect("inspect");
    assert_eq!(service["spec_version"], old_version);
    let running = running_versions(&cluster, 0, "web").expect("ps");
    assert!(
        running.len() == 2 && running.values().all(|v| v == &vec![old_version]),
        "{running:?}"
    );
}

#[test]
fn an_unhealthy_task_is_replaced_and_only_healthy_tasks_count_as_running() {
    let cluster = one_node();
    let marks = cluster.dir.path().join("sick");
    std::fs::create_dir_all(&marks).expect("mkdir");
    let check = format!("test ! -e {}/sick-$FLOTILLA_TASK_ID", marks.display());
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "--health-cmd",
            &check,
            "--health-interval",
            "100ms",
            "--health-retries",
            "2",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let running = cluster.wait_for_running("web", 2, Duration::from_secs(30));
    let sick = running[0]["id"].as_str().expect("id").to_string();
    std::fs::write(marks.join(format!("sick-{sick}")), b"").expect("mark sick");
    cluster.wait_until(
        "the sick task fails unhealthy and a new one runs",
        Duration::from_secs(30),
        || {
            let tasks = cluster.tasks_json("web").unwrap_or_default();
            let failed = tasks
                .iter()
                .any(|t| t["id"] == sick.as_str() && t["error"] == "task: unhealthy");
            let healthy = tasks
                .iter()
                .filter(|t| t["current_state"] == "running" && t["id"] != sick.as_str())
                .count();
            failed && healthy == 2
        },
    );
    // A task whose check has not passed yet is starting, not running, and not counted.
    let never = format!("test -e {}/never", marks.display());
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "slow",
            "--health-cmd",
            &never,
            "--health-interval",
            "100ms",
            "--health-retries",
            "1000",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    // Starting for a second: ten checks have failed meanwhile, none passed.
    cluster.wait_until(
        "the slow task is starting for a second",
        Duration::from_secs(30),
        || {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            cluster
                .tasks_json("slow")
                .unwrap_or_default()
                .iter()
                .any(|t| {
                    t["current_state"] == "starting"
                        && t["state_since_ms"]
                            .as_u64()
                            .is_some_and(|since| since + 1_000 <= now_ms)
                })
        },
    );
    let services = cluster.cli_ok(None, &["service", "ls", "--format", "json"]);
    let services: Vec<Value> = serde_json::from_str(&services).expect("json");
    let slow = services.iter().find(|s| s["name"] == "slow").expect("slow");
    assert_eq!(slow["replicas_running"], 0, "{slow}");
}
