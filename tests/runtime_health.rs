//! Health checks and the stop grace period (SPEC §7) end to end: a replica actor over the real
//! process runtime and over the Docker Engine. A task with a health check is `running` only
//! after its first passing check, `failed` with `task: unhealthy` / `task: unhealthy container`
//! once its check keeps failing (and its process or container is stopped), and a task that
//! ignores SIGTERM is killed after its grace period and not before.
//!
//! Docker tests skip with a note without an engine, and fail under `FLOTILLA_REQUIRE_DOCKER=1`.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use flotilla::actors::replica::{ReplicaActor, ReportStatus, Retire};
use flotilla::core::model::{Service, Task, TaskState};
use flotilla::core::rollout::{HealthCheck, HealthTest};
use flotilla::core::spec::{ServiceMode, ServiceSpec};
use flotilla::core::store::TaskStatusUpdate;
use flotilla::runtime::docker::DockerRuntime;
use flotilla::runtime::process::ProcessRuntime;
use flotilla::runtime::{ContainerRuntime, LABEL_NODE_ID};

/// Upper bound on waiting for a report; generous for a loaded machine, never a timing claim.
const REPORT_WAIT_MS_MAX: u64 = 20_000;

/// Stands in for the worker: records every report.
struct Collector {
    updates: Arc<Mutex<Vec<TaskStatusUpdate>>>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<ReportStatus> for Collector {
    type Result = ();

    fn handle(&mut self, ReportStatus(update): ReportStatus, _: &mut Context<Self>) {
        lock(&self.updates).push(update);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A replica of one task and what it reported.
struct Replica {
    updates: Arc<Mutex<Vec<TaskStatusUpdate>>>,
    address: Addr<ReplicaActor>,
}

impl Replica {
    fn start(task: Task, runtime: Arc<dyn ContainerRuntime>) -> Self {
        let updates = Arc::new(Mutex::new(Vec::new()));
        let reports = Collector {
            updates: updates.clone(),
        }
        .start()
        .recipient();
        let address = ReplicaActor::new(task, runtime, reports).start();
        Self { updates, address }
    }

    fn states(&self) -> Vec<TaskState> {
        lock(&self.updates).iter().map(|u| u.status.state).collect()
    }

    /// Waits for the first report of `state` and returns it.
    async fn wait_for(&self, state: TaskState) -> TaskStatusUpdate {
        let deadline = Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
        loop {
            let found = lock(&self.updates)
                .iter()
                .find(|u| u.status.state == state)
                .cloned();
            if let Some(update) = found {
                return update;
            }
            assert!(
                Instant::now() < deadline,
                "no {state:?} report; got {:?}",
                self.states()
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
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

fn task(node_id: &str, command: &[&str], health: HealthTest, grace_ms: u64) -> Task {
    let mut spec = ServiceSpec::new("web", "busybox:latest");
    spec.mode = ServiceMode::Replicated { replicas: 1 };
    let service = Service::new("svc-health".to_string(), spec);
    let mut task = Task::new(unique("task"), &service, Some(1), Some(node_id.to_string()));
    std::sync::Arc::make_mut(&mut task.spec).command =
        command.iter().map(|part| part.to_string()).collect();
    std::sync::Arc::make_mut(&mut task.spec).health = HealthCheck {
        test: health,
        interval_ms: Some(100),
        timeout_ms: Some(2_000),
        retries: Some(2),
        start_period_ms: None,
    };
    std::sync::Arc::make_mut(&mut task.spec).stop_grace_ms = grace_ms;
    task.status.state = TaskState::Assigned;
    task
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

fn pid_of(update: &TaskStatusUpdate) -> i32 {
    update
        .runtime_id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .expect("a process runtime ID is a PID")
}

/// Kills the process groups a test started, and owns the state directory.
struct ProcessGuard {
    state_dir: tempfile::TempDir,
    pids: Mutex<Vec<i32>>,
}

impl ProcessGuard {
    fn new() -> Self {
        Self {
            state_dir: tempfile::tempdir().expect("temporary state dir"),
            pids: Mutex::new(Vec::new()),
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        for pid in lock(&self.pids).iter().copied().filter(|pid| *pid > 1) {
            // SAFETY: plain syscall on integers; the group is one this test started.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
    }
}

fn process_runtime(guard: &ProcessGuard) -> (String, Arc<dyn ContainerRuntime>) {
    let node_id = unique("node");
    let runtime = ProcessRuntime::new(&node_id, guard.state_dir.path()).expect("runtime");
    (node_id, Arc::new(runtime))
}

#[actix_rt::test]
async fn process_task_is_running_only_after_its_first_passing_check() {
    let guard = ProcessGuard::new();
    let (node_id, runtime) = process_runtime(&guard);
    let dir = guard.state_dir.path().join("marks");
    std::fs::create_dir_all(&dir).expect("marks dir");
    // The check counts its runs and passes once the test creates the task's own marker: the
    // path uses FLOTILLA_TASK_ID, so a pass also proves the check has the task's environment.
    let check = format!(
        "echo run >> {dir}/runs; test -f {dir}/$FLOTILLA_TASK_ID.ok",
        dir = dir.display()
    );
    let mut task = task(&node_id, &["sleep", "100"], HealthTest::Shell(check), 1_000);
    // Failures while starting do not count within the start period: no early unhealthy.
    std::sync::Arc::make_mut(&mut task.spec)
        .health
        .start_period_ms = Some(60_000);
    let marker = dir.join(format!("{}.ok", task.id));
    let replica = Replica::start(task, runtime);
    let starting = replica.wait_for(TaskState::Starting).await;
    assert_eq!(starting.status.message, "starting");

    let deadline = Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
    loop {
        let runs = std::fs::read_to_string(dir.join("runs")).unwrap_or_default();
        if runs.lines().count() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the check never ran 3 times");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !replica.states().contains(&TaskState::Running),
        "running before any check passed: {:?}",
        replica.states()
    );
    std::fs::write(&marker, b"").expect("marker");
    let running = replica.wait_for(TaskState::Running).await;
    lock(&guard.pids).push(pid_of(&running));
    assert!(!replica.states().contains(&TaskState::Failed));
    replica.address.do_send(Retire);
    replica.wait_for(TaskState::Shutdown).await;
}

#[actix_rt::test]
async fn process_task_whose_check_fails_is_failed_unhealthy_and_stopped() {
    let guard = ProcessGuard::new();
    let (node_id, runtime) = process_runtime(&guard);
    let marker = guard.state_dir.path().join(unique("healthy"));
    std::fs::write(&marker, b"").expect("marker");
    let check = format!("test -f {}", marker.display());
    let task = task(&node_id, &["sleep", "100"], HealthTest::Shell(check), 1_000);
    let replica = Replica::start(task, runtime);
    let running = replica.wait_for(TaskState::Running).await;
    let pid = pid_of(&running);
    lock(&guard.pids).push(pid);
    assert!(is_live(pid));

    std::fs::remove_file(&marker).expect("remove marker");
    let failed = replica.wait_for(TaskState::Failed).await;
    assert_eq!(failed.status.error.as_deref(), Some("task: unhealthy"));
    let deadline = Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
    while is_live(pid) {
        assert!(
            Instant::now() < deadline,
            "the unhealthy process still runs"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn process_task_ignoring_sigterm_is_killed_after_its_grace_period_not_before() {
    let guard = ProcessGuard::new();
    let (node_id, runtime) = process_runtime(&guard);
    let grace_ms = 1_500;
    let command = ["sh", "-c", "trap '' TERM; sleep 100"];
    let task = task(&node_id, &command, HealthTest::Disabled, grace_ms);
    let replica = Replica::start(task, runtime);
    let running = replica.wait_for(TaskState::Running).await;
    let pid = pid_of(&running);
    lock(&guard.pids).push(pid);
    // Let the shell install its trap before it is signalled.
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    let retired_at = Instant::now();
    replica.address.do_send(Retire);
    actix_rt::time::sleep(Duration::from_millis(grace_ms / 2)).await;
    assert!(is_live(pid), "killed before the grace period ended");
    assert!(!replica.states().contains(&TaskState::Shutdown));
    replica.wait_for(TaskState::Shutdown).await;
    assert!(
        retired_at.elapsed() >= Duration::from_millis(grace_ms),
        "stopped after {:?}, before the {grace_ms} ms grace period",
        retired_at.elapsed()
    );
    assert!(!is_live(pid), "still alive after SIGKILL");
}

/// Removes every container labelled with its node ID when dropped, even when the test panics.
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

/// A Docker runtime for a fresh node and its clean-up guard, or `None` (skip) without Docker.
async fn docker_node() -> Option<(Arc<DockerRuntime>, ContainerGuard)> {
    let node_id = unique("node");
    match DockerRuntime::connect(&node_id, Duration::from_secs(1)).await {
        Ok(runtime) => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-busybox-image.sh");
            let status = Command::new(script).status().expect("run the image script");
            assert!(status.success(), "make-busybox-image.sh failed: {status}");
            Some((Arc::new(runtime), ContainerGuard { node_id }))
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

async fn container_running(runtime: &DockerRuntime, id: &str) -> bool {
    runtime
        .client()
        .inspect_container(id, None)
        .await
        .ok()
        .and_then(|response| response.state?.running)
        .unwrap_or(false)
}

/// A check that passes its first five runs and fails after.
const PASS_FIVE_TIMES: &str =
    "n=$(cat /tmp/runs 2>/dev/null || echo 0); echo $((n + 1)) > /tmp/runs; test $n -lt 5";

#[actix_rt::test]
async fn docker_task_is_running_after_a_passing_check_and_failed_when_it_fails() {
    let Some((runtime, guard)) = docker_node().await else {
        return;
    };
    // Passes 5 times (a window the replica's polling cannot miss), then fails for ever:
    // healthy, then unhealthy after 2 failures.
    let check = PASS_FIVE_TIMES.to_string();
    let task = task(
        &guard.node_id,
        &["sleep", "100"],
        HealthTest::Shell(check),
        500,
    );
    let replica = Replica::start(task, runtime.clone());
    replica.wait_for(TaskState::Starting).await;
    let running = replica.wait_for(TaskState::Running).await;
    let id = running.runtime_id.clone().expect("a container ID");
    let inspected = runtime
        .client()
        .inspect_container(&id, None)
        .await
        .expect("inspect");
    let test = inspected
        .config
        .and_then(|config| config.healthcheck)
        .and_then(|health| health.test);
    assert_eq!(
        test,
        Some(vec!["CMD-SHELL".to_string(), PASS_FIVE_TIMES.to_string()])
    );
    let failed = replica.wait_for(TaskState::Failed).await;
    assert_eq!(
        failed.status.error.as_deref(),
        Some("task: unhealthy container")
    );
    let deadline = Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
    while container_running(&runtime, &id).await {
        assert!(
            Instant::now() < deadline,
            "the unhealthy container still runs"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn docker_task_ignoring_sigterm_is_killed_after_its_grace_period_not_before() {
    let Some((runtime, guard)) = docker_node().await else {
        return;
    };
    let grace_ms = 2_000;
    let command = ["sh", "-c", "trap '' TERM; sleep 100"];
    let task = task(&guard.node_id, &command, HealthTest::Disabled, grace_ms);
    let replica = Replica::start(task, runtime.clone());
    let running = replica.wait_for(TaskState::Running).await;
    let id = running.runtime_id.clone().expect("a container ID");
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    let retired_at = Instant::now();
    replica.address.do_send(Retire);
    actix_rt::time::sleep(Duration::from_millis(grace_ms / 2)).await;
    assert!(
        container_running(&runtime, &id).await,
        "killed before the grace period ended"
    );
    replica.wait_for(TaskState::Shutdown).await;
    assert!(
        retired_at.elapsed() >= Duration::from_millis(grace_ms),
        "stopped after {:?}, before the {grace_ms} ms grace period",
        retired_at.elapsed()
    );
    assert!(!container_running(&runtime, &id).await);
}

#[actix_rt::test]
async fn process_task_adopted_after_a_node_restart_is_still_checked() {
    use flotilla::actors::replica::CrashReplica;

    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let first: Arc<dyn ContainerRuntime> =
        Arc::new(ProcessRuntime::new(&node_id, guard.state_dir.path()).expect("runtime"));
    let marker = guard.state_dir.path().join(unique("healthy"));
    std::fs::write(&marker, b"").expect("marker");
    let check = format!("test -f {}", marker.display());
    let mut task = task(&node_id, &["sleep", "100"], HealthTest::Shell(check), 1_000);
    let replica = Replica::start(task.clone(), first);
    let running = replica.wait_for(TaskState::Running).await;
    let pid = pid_of(&running);
    lock(&guard.pids).push(pid);

    // The node restarts: its replica and runtime are gone, the process runs on, and a new
    // runtime on the same state directory adopts it for a replica of the running task.
    replica.address.do_send(CrashReplica);
    let second: Arc<dyn ContainerRuntime> =
        Arc::new(ProcessRuntime::new(&node_id, guard.state_dir.path()).expect("runtime"));
    task.status = running.status.clone();
    let adopted = Replica::start(task, second);
    // The check runs again on the adopted process: once it fails, the task is unhealthy.
    std::fs::remove_file(&marker).expect("remove marker");
    let failed = adopted.wait_for(TaskState::Failed).await;
    assert_eq!(failed.status.error.as_deref(), Some("task: unhealthy"));
    let deadline = Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
    while is_live(pid) {
        assert!(
            Instant::now() < deadline,
            "the unhealthy adopted process still runs"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn process_task_is_healthy_as_soon_as_it_passes_not_one_interval_later() {
    let guard = ProcessGuard::new();
    let (node_id, runtime) = process_runtime(&guard);
    let marker = guard.state_dir.path().join(unique("ready"));
    let check = format!("test -f {}", marker.display());
    let mut task = task(&node_id, &["sleep", "100"], HealthTest::Shell(check), 1_000);
    // A long interval: the first regular check would come a minute after the start.
    std::sync::Arc::make_mut(&mut task.spec).health.interval_ms = Some(60_000);
    let replica = Replica::start(task, runtime);
    replica.wait_for(TaskState::Starting).await;
    // Failing early probes count for nothing: still starting, not failed.
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !replica.states().contains(&TaskState::Failed),
        "{:?}",
        replica.states()
    );
    std::fs::write(&marker, b"").expect("marker");
    // Well inside the minute (REPORT_WAIT_MS_MAX is 20 s).
    let running = replica.wait_for(TaskState::Running).await;
    lock(&guard.pids).push(pid_of(&running));
    replica.address.do_send(Retire);
    replica.wait_for(TaskState::Shutdown).await;
}
