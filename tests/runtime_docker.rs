//! The Docker runtime against the local engine. Needs `busybox:latest`, which the tests make
//! with `scripts/make-busybox-image.sh`. Without an answering engine the tests skip with a
//! note, or fail when `FLOTILLA_REQUIRE_DOCKER=1`.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use flotilla::runtime::docker::DockerRuntime;
use flotilla::runtime::{
    ContainerRuntime, ContainerSpec, RuntimeError, RuntimeKind, LABEL_NODE_ID, LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME, LABEL_TASK_ID, LABEL_TASK_SLOT,
};

/// Removes every container labelled with its node ID when dropped, even when the test panics.
/// Uses the docker CLI so it works without an async runtime in `Drop`.
struct ContainerGuard {
    node_id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let listed = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label={LABEL_NODE_ID}={}", self.node_id))
            .output();
        let Ok(listed) = listed else { return };
        let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn make_busybox_image() {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-busybox-image.sh");
        let status = Command::new(script)
            .status()
            .expect("run make-busybox-image.sh");
        assert!(status.success(), "make-busybox-image.sh failed: {status}");
    });
}

/// A runtime for a fresh node ID and its clean-up guard, or `None` (skip) without Docker.
async fn docker_node(label: &str) -> Option<(DockerRuntime, ContainerGuard)> {
    let node_id = unique(label);
    match DockerRuntime::connect(&node_id, Duration::from_secs(1)).await {
        Ok(runtime) => {
            make_busybox_image();
            Some((runtime, ContainerGuard { node_id }))
        }
        Err(error) => {
            assert!(
                std::env::var("FLOTILLA_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "FLOTILLA_REQUIRE_DOCKER=1 but Docker does not answer: {error}"
            );
            eprintln!("note: skipping Docker test, Docker does not answer: {error}");
            None
        }
    }
}

fn spec(node_id: &str, task_id: &str, command: &[&str]) -> ContainerSpec {
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_SERVICE_ID.to_string(), "svc-1".to_string());
    labels.insert(LABEL_SERVICE_NAME.to_string(), "web".to_string());
    labels.insert(LABEL_TASK_ID.to_string(), task_id.to_string());
    labels.insert(LABEL_TASK_SLOT.to_string(), "3".to_string());
    labels.insert(LABEL_NODE_ID.to_string(), node_id.to_string());
    ContainerSpec {
        name: format!("web.3.{task_id}"),
        image: "busybox:latest".to_string(),
        command: command.iter().map(|part| part.to_string()).collect(),
        env: vec![("EXTRA".to_string(), "yes".to_string())],
        labels,
        node_id: node_id.to_string(),
        task_id: task_id.to_string(),
        memory_limit_bytes: Some(64 * 1024 * 1024),
        nano_cpus_limit: Some(500_000_000),
        stop_grace_ms: 10_000,
        health: Default::default(),
        ports: Vec::new(),
        files: Vec::new(),
    }
}

#[tokio::test]
async fn starts_with_spec_name_and_labels_and_detects_rm_f() {
    let Some((runtime, guard)) = docker_node("node").await else {
        return;
    };
    assert_eq!(runtime.kind(), RuntimeKind::Docker);
    println!("engine: {}", runtime.version().await.expect("version"));
    let task_id = unique("task");
    let spec = spec(&guard.node_id, &task_id, &["sleep", "30"]);
    let started_at = Instant::now();
    let handle = runtime.start(&spec).await.expect("starts");
    println!(
        "docker start-to-running: {} ms",
        started_at.elapsed().as_millis()
    );

    let inspected = runtime
        .client()
        .inspect_container(&handle.runtime_id, None)
        .await
        .expect("docker inspect");
    assert_eq!(
        inspected.name.as_deref(),
        Some(format!("/web.3.{task_id}").as_str())
    );
    let labels = inspected
        .config
        .and_then(|config| config.labels)
        .unwrap_or_default();
    for (key, value) in &spec.labels {
        assert_eq!(labels.get(key), Some(value), "label {key}");
    }
    let host_config = inspected.host_config.unwrap_or_default();
    assert_eq!(host_config.memory, Some(64 * 1024 * 1024));
    assert_eq!(host_config.nano_cpus, Some(500_000_000));

    let found = runtime.find(&task_id).await.expect("find").expect("found");
    assert!(found.running);
    assert_eq!(found.runtime_id, handle.runtime_id);
    // A wait that is dropped (timed out) leaves nothing behind; the next one still works.
    let abandoned =
        tokio::time::timeout(Duration::from_millis(50), runtime.wait(&handle.runtime_id)).await;
    assert!(abandoned.is_err(), "still running");

    let waiter = tokio::spawn({
        let runtime_id = handle.runtime_id.clone();
        async move {
            let status = runtime.wait(&runtime_id).await;
            (status, Instant::now(), runtime)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = bollard::Docker::connect_with_local_defaults().expect("client");
    let removing_at = Instant::now();
    client
        .remove_container(
            &handle.runtime_id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .expect("docker rm -f");
    let removed_at = Instant::now();
    let (status, detected_at, runtime) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("exit detected within 5 s")
        .expect("waiter task");
    println!(
        "docker rm -f to exit detected: {} ms after the call, {} ms after it returned",
        detected_at.duration_since(removing_at).as_millis(),
        detected_at
            .saturating_duration_since(removed_at)
            .as_millis()
    );
    let status = status.expect("wait");
    assert_eq!(status.exit_code, Some(137));
    assert!(runtime.find(&task_id).await.expect("find").is_none());
}

#[tokio::test]
async fn exit_codes_are_reported_even_when_waiting_late() {
    let Some((runtime, guard)) = docker_node("node").await else {
        return;
    };
    let handle = runtime
        .start(&spec(
            &guard.node_id,
            &unique("task"),
            &["sh", "-c", "exit 3"],
        ))
        .await
        .expect("starts");
    let status = tokio::time::timeout(Duration::from_secs(10), runtime.wait(&handle.runtime_id))
        .await
        .expect("exit detected")
        .expect("wait");
    assert_eq!(status.exit_code, Some(3));
    // Waiting again after the exit answers from the container's state.
    let again = runtime.wait(&handle.runtime_id).await.expect("wait");
    assert_eq!(again.exit_code, Some(3));
    runtime.remove(&handle.runtime_id).await.expect("remove");
    assert!(runtime
        .inspect(&handle.runtime_id)
        .await
        .expect("inspect")
        .is_none());
}

#[tokio::test]
async fn stop_honours_sigterm_and_kills_after_the_grace_period() {
    let Some((runtime, guard)) = docker_node("node").await else {
        return;
    };
    let polite = runtime
        .start(&spec(
            &guard.node_id,
            &unique("task"),
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            ],
        ))
        .await
        .expect("starts");
    // sh as PID 1 ignores SIGTERM unless trapped; this one traps it.
    let stubborn = runtime
        .start(&spec(&guard.node_id, &unique("task"), &["sleep", "30"]))
        .await
        .expect("starts");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping_at = Instant::now();
    runtime.stop(&polite.runtime_id, 5_000).await.expect("stop");
    let polite_ms = stopping_at.elapsed().as_millis();
    println!("docker stop (SIGTERM handled): {polite_ms} ms");
    assert!(polite_ms < 2_000, "took {polite_ms} ms");
    assert_eq!(
        runtime
            .wait(&polite.runtime_id)
            .await
            .expect("wait")
            .exit_code,
        Some(0)
    );

    let grace_ms = 500;
    let stopping_at = Instant::now();
    runtime
        .stop(&stubborn.runtime_id, grace_ms)
        .await
        .expect("stop");
    let stubborn_ms = stopping_at.elapsed().as_millis();
    println!("docker stop (SIGTERM ignored, grace {grace_ms} ms): {stubborn_ms} ms");
    assert!(stubborn_ms >= u128::from(grace_ms), "took {stubborn_ms} ms");
    assert!(stubborn_ms < 4_000, "took {stubborn_ms} ms");
    assert_eq!(
        runtime
            .wait(&stubborn.runtime_id)
            .await
            .expect("wait")
            .exit_code,
        Some(137)
    );
    runtime
        .stop(&stubborn.runtime_id, 100)
        .await
        .expect("stopping twice is fine");
    runtime.remove(&stubborn.runtime_id).await.expect("remove");
    runtime
        .remove(&stubborn.runtime_id)
        .await
        .expect("remove twice");
}

#[tokio::test]
async fn a_missing_image_is_a_clear_error() {
    let Some((runtime, guard)) = docker_node("node").await else {
        return;
    };
    let mut spec = spec(&guard.node_id, &unique("task"), &["sleep", "30"]);
    spec.image = "busybox:nope".to_string();
    let started_at = Instant::now();
    let error = runtime.start(&spec).await.expect_err("no such image");
    assert!(
        matches!(error, RuntimeError::ImageNotFound { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "image busybox:nope not found locally and no registry is reachable"
    );
    assert!(started_at.elapsed() < Duration::from_secs(5), "fails fast");
}

#[tokio::test]
async fn a_node_only_lists_and_touches_its_own_containers() {
    let Some((mine, my_guard)) = docker_node("mine").await else {
        return;
    };
    let Some((theirs, their_guard)) = docker_node("theirs").await else {
        return;
    };
    let my_task = unique("task");
    let mine_handle = mine
        .start(&spec(&my_guard.node_id, &my_task, &["sleep", "30"]))
        .await
        .expect("starts");
    let their_task = unique("task");
    let their_handle = theirs
        .start(&spec(&their_guard.node_id, &their_task, &["sleep", "30"]))
        .await
        .expect("starts");

    let listed = mine.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].task_id, my_task);
    assert_eq!(listed[0].runtime_id, mine_handle.runtime_id);
    assert!(listed[0].running);
    assert!(mine.find(&their_task).await.expect("find").is_none());
    assert!(matches!(
        mine.remove(&their_handle.runtime_id).await,
        Err(RuntimeError::NotFound { .. })
    ));
    assert!(matches!(
        mine.start(&spec(
            &their_guard.node_id,
            &unique("task"),
            &["sleep", "1"]
        ))
        .await,
        Err(RuntimeError::ForeignNode { .. })
    ));
    let still_there = theirs
        .find(&their_task)
        .await
        .expect("find")
        .expect("found");
    assert!(still_there.running);
}

#[tokio::test]
async fn a_restarted_node_finds_its_container_and_sees_it_exit() {
    let Some((before_restart, guard)) = docker_node("node").await else {
        return;
    };
    let task_id = unique("task");
    let handle = before_restart
        .start(&spec(&guard.node_id, &task_id, &["sleep", "30"]))
        .await
        .expect("starts");
    drop(before_restart);

    let after_restart = DockerRuntime::connect(&guard.node_id, Duration::from_secs(1))
        .await
        .expect("engine still answers");
    let found = after_restart
        .find(&task_id)
        .await
        .expect("find")
        .expect("adopted");
    assert!(found.running);
    assert_eq!(found.runtime_id, handle.runtime_id);
    assert_eq!(found.task_id, task_id);
    let listed = after_restart.list().await.expect("list");
    assert_eq!(listed.len(), 1);

    let waiter = after_restart.wait(&handle.runtime_id);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let options = bollard::query_parameters::KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        after_restart
            .client()
            .kill_container(&handle.runtime_id, Some(options))
            .await
            .expect("docker kill");
        Instant::now()
    };
    let (status, killed_at) =
        tokio::join!(tokio::time::timeout(Duration::from_secs(5), waiter), killer);
    let status = status.expect("exit detected within 5 s").expect("wait");
    println!(
        "docker kill to exit detected (adopted): {} ms",
        killed_at.elapsed().as_millis()
    );
    assert_eq!(status.exit_code, Some(137));
    let found = after_restart
        .find(&task_id)
        .await
        .expect("find")
        .expect("still there");
    assert!(!found.running);
    assert_eq!(found.exit.and_then(|exit| exit.exit_code), Some(137));
}
