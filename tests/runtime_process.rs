//! The process runtime against real host processes: exit detection, stop signals, adoption
//! after a node restart, and refusal to adopt a reused PID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla::runtime::process::ProcessRuntime;
use flotilla::runtime::{
    ContainerRuntime, ContainerSpec, RuntimeError, RuntimeKind, LABEL_NODE_ID, LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME, LABEL_TASK_ID, LABEL_TASK_SLOT,
};

/// Kills every process group recorded under the state directory when dropped, so a failing
/// test leaves no `sleep 30` behind; also owns the temporary state directory.
struct ProcessGuard {
    state_dir: tempfile::TempDir,
    extra_pids: Vec<i32>,
}

impl ProcessGuard {
    fn new() -> Self {
        Self {
            state_dir: tempfile::tempdir().expect("temporary state dir"),
            extra_pids: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.state_dir.path()
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let records = self.path().join("processes");
        let mut pids = self.extra_pids.clone();
        if let Ok(entries) = std::fs::read_dir(&records) {
            for entry in entries.flatten() {
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                let Ok(record) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                    continue;
                };
                let pid = record["pid"]
                    .as_i64()
                    .and_then(|pid| i32::try_from(pid).ok());
                let start = record["start_time_ticks"].as_u64();
                if let (Some(pid), Some(start)) = (pid, start) {
                    if start_time_ticks(pid) == Some(start) {
                        pids.push(pid);
                    }
                }
            }
        }
        for pid in pids {
            if pid > 1 {
                // SAFETY: plain syscall on integers; the group is one this test created.
                unsafe { libc::killpg(pid, libc::SIGKILL) };
            }
        }
    }
}

fn start_time_ticks(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    after.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// True while `pid` exists and is not a zombie.
fn is_live(pid: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = text
        .rfind(')')
        .and_then(|end| text[end + 1..].split_ascii_whitespace().next());
    state.is_some_and(|state| state != "Z")
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
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
        memory_limit_bytes: None,
        nano_cpus_limit: None,
        stop_grace_ms: 10_000,
        health: Default::default(),
        ports: Vec::new(),
        files: Vec::new(),
    }
}

fn pid_of(runtime_id: &str) -> i32 {
    runtime_id.parse().expect("process runtime IDs are PIDs")
}

fn read_when_nonempty(path: &PathBuf) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if !text.is_empty() || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn runs_finds_lists_and_reports_an_external_kill() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let runtime = ProcessRuntime::new(&node_id, guard.path()).expect("runtime");
    assert_eq!(runtime.kind(), RuntimeKind::Process);
    let task_id = unique("task");
    let started_at = Instant::now();
    let handle = runtime
        .start(&spec(
            &node_id,
            &task_id,
            &["sh", "-c", "echo \"$FLOTILLA_TASK_ID $FLOTILLA_SERVICE_NAME $FLOTILLA_TASK_SLOT $EXTRA\"; sleep 30"],
        ))
        .await
        .expect("starts");
    println!(
        "process start-to-running: {} us",
        started_at.elapsed().as_micros()
    );

    let out = read_when_nonempty(&runtime.stdout_path(&task_id));
    assert_eq!(out.trim(), format!("{task_id} web 3 yes"));
    {
        // SPEC §4: task logs are the owner's only.
        use std::os::unix::fs::PermissionsExt;
        for log in [runtime.stdout_path(&task_id), runtime.stderr_path(&task_id)] {
            let mode = std::fs::metadata(&log).expect("log").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", log.display());
        }
    }

    let found = runtime.find(&task_id).await.expect("find").expect("found");
    assert!(found.running);
    assert_eq!(found.runtime_id, handle.runtime_id);
    let listed = runtime.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].task_id.as_str(), listed[0].running),
        (task_id.as_str(), true)
    );

    assert!(matches!(
        runtime
            .start(&spec(&node_id, &task_id, &["sleep", "30"]))
            .await,
        Err(RuntimeError::AlreadyRunning { .. })
    ));

    // A wait that is dropped (timed out) leaves nothing behind; the next one still works.
    let abandoned =
        tokio::time::timeout(Duration::from_millis(50), runtime.wait(&handle.runtime_id)).await;
    assert!(abandoned.is_err(), "still running");

    let waiter = runtime.wait(&handle.runtime_id);
    // SAFETY: plain syscall; the PID is the live child this test just started.
    assert_eq!(
        unsafe { libc::kill(pid_of(&handle.runtime_id), libc::SIGKILL) },
        0
    );
    let killed_at = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("exit detected within 5 s")
        .expect("wait");
    println!(
        "process kill -9 to exit detected: {} us",
        killed_at.elapsed().as_micros()
    );
    assert_eq!(status.exit_code, Some(137));
    assert_eq!(status.message, "killed by signal 9");
    // sh forked `sleep`; like a container's other processes when PID 1 dies, it is gone too.
    // Killed members linger as zombies until init reaps them, so allow a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    // SAFETY: signal 0 only checks whether the group exists.
    while unsafe { libc::killpg(pid_of(&handle.runtime_id), 0) } == 0 {
        assert!(
            Instant::now() < deadline,
            "the task's process group outlived its leader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let found = runtime
        .find(&task_id)
        .await
        .expect("find")
        .expect("still recorded");
    assert!(!found.running);
    assert_eq!(found.exit.map(|exit| exit.exit_code), Some(Some(137)));

    runtime.remove(&handle.runtime_id).await.expect("remove");
    assert!(runtime.find(&task_id).await.expect("find").is_none());
    assert!(!runtime.stdout_path(&task_id).exists());
    runtime
        .remove(&handle.runtime_id)
        .await
        .expect("remove twice");
}

#[tokio::test]
async fn exit_codes_and_start_errors() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let runtime = ProcessRuntime::new(&node_id, guard.path()).expect("runtime");
    let handle = runtime
        .start(&spec(&node_id, &unique("task"), &["sh", "-c", "exit 3"]))
        .await
        .expect("starts");
    let status = runtime.wait(&handle.runtime_id).await.expect("wait");
    assert_eq!(status.exit_code, Some(3));
    assert_eq!(status.message, "exited with code 3");

    let missing = runtime
        .start(&spec(
            &node_id,
            &unique("task"),
            &["flotilla-no-such-command"],
        ))
        .await;
    assert!(
        matches!(missing, Err(RuntimeError::Spawn { .. })),
        "{missing:?}"
    );
    let foreign = runtime
        .start(&spec("another-node", &unique("task"), &["sleep", "1"]))
        .await;
    assert!(
        matches!(foreign, Err(RuntimeError::ForeignNode { .. })),
        "{foreign:?}"
    );
    let empty = runtime.start(&spec(&node_id, &unique("task"), &[])).await;
    assert!(
        matches!(empty, Err(RuntimeError::InvalidSpec { .. })),
        "{empty:?}"
    );
    assert!(matches!(
        runtime.wait("999999999").await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test]
async fn stop_sends_sigterm_first() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let runtime = ProcessRuntime::new(&node_id, guard.path()).expect("runtime");
    let handle = runtime
        .start(&spec(&node_id, &unique("task"), &["sleep", "30"]))
        .await
        .expect("starts");
    let stopping_at = Instant::now();
    runtime.stop(&handle.runtime_id, 5_000).await.expect("stop");
    let stop_ms = stopping_at.elapsed().as_millis();
    assert!(
        stop_ms < 2_000,
        "SIGTERM should end sleep at once, took {stop_ms} ms"
    );
    let status = runtime.wait(&handle.runtime_id).await.expect("wait");
    assert_eq!(status.exit_code, Some(143));
    assert_eq!(status.message, "killed by signal 15");
    runtime
        .stop(&handle.runtime_id, 5_000)
        .await
        .expect("stopping twice is fine");
}

#[tokio::test]
async fn stop_kills_after_the_grace_period_when_sigterm_is_ignored() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let runtime = ProcessRuntime::new(&node_id, guard.path()).expect("runtime");
    let handle = runtime
        .start(&spec(
            &node_id,
            &unique("task"),
            &["sh", "-c", "trap '' TERM; sleep 30"],
        ))
        .await
        .expect("starts");
    // Give sh time to install the trap before the signal arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grace_ms = 400;
    let stopping_at = Instant::now();
    runtime
        .stop(&handle.runtime_id, grace_ms)
        .await
        .expect("stop");
    let stop_ms = stopping_at.elapsed().as_millis();
    assert!(
        stop_ms >= u128::from(grace_ms),
        "stopped after {stop_ms} ms, before the grace period"
    );
    assert!(
        stop_ms < 3_000,
        "SIGKILL should follow the grace period, took {stop_ms} ms"
    );
    let status = runtime.wait(&handle.runtime_id).await.expect("wait");
    assert_eq!(status.exit_code, Some(137));
}

#[tokio::test]
async fn a_restarted_node_adopts_its_live_process_and_sees_it_exit() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let before_restart = ProcessRuntime::new(&node_id, guard.path()).expect("runtime");
    let task_id = unique("task");
    let handle = before_restart
        .start(&spec(&node_id, &task_id, &["sleep", "30"]))
        .await
        .expect("starts");
    let stopped_task = unique("task");
    let to_stop = before_restart
        .start(&spec(&node_id, &stopped_task, &["sleep", "30"]))
        .await
        .expect("starts");

    // The node restarts: a new runtime instance over the same state directory.
    let after_restart = ProcessRuntime::new(&node_id, guard.path()).expect("runtime");
    let found = after_restart
        .find(&task_id)
        .await
        .expect("find")
        .expect("adopted");
    assert!(found.running);
    assert_eq!(found.runtime_id, handle.runtime_id);
    let mut listed: Vec<(String, bool)> = after_restart
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|info| (info.task_id, info.running))
        .collect();
    listed.sort();
    let mut expected = vec![(task_id.clone(), true), (stopped_task.clone(), true)];
    expected.sort();
    assert_eq!(listed, expected);
    // Another node's runtime over the same directory sees none of it.
    let other_node = ProcessRuntime::new("other-node", guard.path()).expect("runtime");
    assert!(other_node.list().await.expect("list").is_empty());
    assert!(other_node.find(&task_id).await.expect("find").is_none());

    let waiter = after_restart.wait(&handle.runtime_id);
    // SAFETY: plain syscall on the live child this test started.
    assert_eq!(
        unsafe { libc::kill(pid_of(&handle.runtime_id), libc::SIGKILL) },
        0
    );
    let killed_at = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("adopted exit detected within 5 s")
        .expect("wait");
    println!(
        "adopted process kill -9 to exit detected: {} us",
        killed_at.elapsed().as_micros()
    );
    assert_eq!(
        status.exit_code, None,
        "an adopted process's code is not ours to read"
    );
    let found = after_restart
        .find(&task_id)
        .await
        .expect("find")
        .expect("recorded");
    assert!(!found.running);

    after_restart
        .stop(&to_stop.runtime_id, 2_000)
        .await
        .expect("stop adopted");
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        after_restart.wait(&to_stop.runtime_id),
    )
    .await
    .expect("stopped")
    .expect("wait");
    assert_eq!(status.exit_code, None);
    assert!(
        !is_live(pid_of(&to_stop.runtime_id)),
        "the stopped process is gone (or a zombie)"
    );
}

#[tokio::test]
async fn a_record_whose_pid_was_reused_is_not_adopted() {
    let mut guard = ProcessGuard::new();
    let node_id = unique("node");
    let runtime = ProcessRuntime::new(&node_id, guard.path()).expect("runtime");
    // An unrelated process that happens to hold the recorded PID now.
    let mut stranger = std::process::Command::new("sleep");
    std::os::unix::process::CommandExt::process_group(&mut stranger, 0);
    let mut stranger = stranger.arg("30").spawn().expect("spawn stranger");
    let pid = i32::try_from(stranger.id()).expect("pid fits");
    guard.extra_pids.push(pid);
    let real_start = start_time_ticks(pid).expect("stranger has a stat");
    let task_id = unique("task");
    let record = serde_json::json!({
        "task_id": task_id, "node_id": node_id, "name": "web.1.x", "image": "busybox",
        "command": ["sleep", "30"], "pid": pid, "start_time_ticks": real_start + 1,
        "labels": {},
    });
    std::fs::write(
        guard
            .path()
            .join("processes")
            .join(format!("{task_id}.json")),
        serde_json::to_vec(&record).expect("json"),
    )
    .expect("write stale record");

    let found = runtime
        .find(&task_id)
        .await
        .expect("find")
        .expect("record exists");
    assert!(
        !found.running,
        "a reused PID must not look like our process"
    );
    let status = tokio::time::timeout(Duration::from_secs(2), runtime.wait(&pid.to_string()))
        .await
        .expect("resolves at once")
        .expect("wait");
    assert_eq!(status.exit_code, None);
    runtime
        .stop(&pid.to_string(), 0)
        .await
        .expect("stop is a no-op");
    runtime
        .remove(&pid.to_string())
        .await
        .expect("remove forgets the record");
    assert!(
        stranger.try_wait().expect("try_wait").is_none(),
        "the stranger must survive"
    );
    assert!(runtime.find(&task_id).await.expect("find").is_none());
}
