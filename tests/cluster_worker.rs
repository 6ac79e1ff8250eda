//! The worker over real processes and the process runtime: a task killed from outside is
//! reported failed with its exit status and replaced in its slot; a worker killed with SIGKILL
//! and started again adopts its live task processes and stops those the cluster replaced while
//! it was away. Task processes outlive their node (their own process groups, no death signal),
//! so every test kills what it started, by task ID, even when it fails.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use common::Cluster;
use flotilla::actors::transport::Request;
use flotilla::actors::worker::{ApplyAssignments, AttachRuntime, GetAssignments, WorkerActor};
use flotilla::core::model::{Service, Task};
use flotilla::core::spec::ServiceSpec;
use flotilla::net::message::{AssignmentSet, Message as WireMessage, NodeDescription};
use flotilla::net::transport::TransportError;
use flotilla::runtime::sim::SimRuntime;
use flotilla::runtime::{
    ContainerRuntime, ContainerSpec, ExitStatus, RunningInfo, RuntimeError, RuntimeHandle,
    RuntimeKind,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;

const FAST: &[&str] = &["--heartbeat-ms", "500"];
/// Bound on anything converging in these tests; generous for a loaded 2-core machine.
const CONVERGE: Duration = Duration::from_secs(30);

/// Kills every process whose environment names one of the test's services, on drop. Declared
/// before the cluster so it runs after the nodes are gone and nothing starts them again.
struct ProcessGuard {
    service_names: Vec<String>,
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        for name in &self.service_names {
            for pid in pids_with_env("FLOTILLA_SERVICE_NAME", name) {
                // SAFETY: plain kill(2) on a PID we found running with our service's env.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// A service name unique to this test run, so concurrent runs never see each other's tasks.
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

/// Live (non-zombie) processes whose environment has `variable=value`.
fn pids_with_env(variable: &str, value: &str) -> Vec<i32> {
    let wanted = format!("{variable}={value}").into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|environ| environ.split(|b| *b == 0).any(|entry| entry == wanted))
                .unwrap_or(false)
                && is_alive(*pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether `pid` exists and is not a zombie.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain spaces.
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn field<'a>(task: &'a Value, name: &str) -> &'a str {
    task[name].as_str().unwrap_or_default()
}

fn pid_of(task: &Value) -> i32 {
    field(task, "runtime_id")
        .parse()
        .unwrap_or_else(|_| panic!("process runtime_id is a PID: {task}"))
}

fn create(cluster: &Cluster, name: &str, extra: &[&str]) {
    let mut args = vec!["service", "create", "--name", name, "-d"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sleep", "300"]);
    cluster.cli_ok(None, &args);
}

/// Asserts, for `window`, that `service` never has more than `desired` live processes and
/// never more than `desired` running tasks.
fn assert_never_more_than(cluster: &Cluster, service: &str, desired: usize, window: Duration) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let processes = pids_with_env("FLOTILLA_SERVICE_NAME", service);
        assert!(
            processes.len() <= desired,
            "{} processes of {service} run, {desired} desired: {processes:?}",
            processes.len()
        );
        let running = cluster.running_tasks(service);
        assert!(running.len() <= desired, "running tasks: {running:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_task_killed_from_outside_fails_with_137_and_is_replaced_in_its_slot() {
    let name = unique("killed");
    let _processes = ProcessGuard {
        service_names: vec![name.clone()],
    };
    let mut cluster = Cluster::new(FAST);
    cluster.init();
    cluster.join("worker");

    let created_ms = unix_ms();
    let created_at = Instant::now();
    create(&cluster, &name, &["--replicas", "2"]);
    let running = cluster.wait_for_running(&name, 2, CONVERGE);
    let last_running_ms = running
        .iter()
        .filter_map(|task| task["state_since_ms"].as_u64())
        .max()
        .unwrap_or(0);
    println!(
        "process: service create -> 2 tasks running: {} ms by task timestamps, {} ms observed by polling the CLI",
        last_running_ms.saturating_sub(created_ms),
        created_at.elapsed().as_millis()
    );

    let victim = running[0].clone();
    let (victim_id, slot, pid) = (
        field(&victim, "id").to_string(),
        victim["slot"]
            .as_u64()
            .expect("a replicated task has a slot"),
        pid_of(&victim),
    );
    assert_eq!(
        pids_with_env("FLOTILLA_TASK_ID", &victim_id),
        vec![pid],
        "the runtime_id is the task's process"
    );
    let killed_ms = unix_ms();
    let killed_at = Instant::now();
    // SAFETY: kill(2) on the PID the cluster reports for our own task.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "kill -9 {pid}"
    );

    let mut replacement = Value::Null;
    let mut failed = Value::Null;
    cluster.wait_until(
        "the killed task is failed and its slot runs a new task",
        CONVERGE,
        || {
            let tasks = cluster.tasks_json(&name).unwrap_or_default();
            let old = tasks.iter().find(|t| field(t, "id") == victim_id);
            let new = tasks.iter().find(|t| {
                t["slot"].as_u64() == Some(slot)
                    && field(t, "id") != victim_id
                    && field(t, "current_state") == "running"
            });
            match (old, new) {
                (Some(old), Some(new)) if field(old, "current_state") == "failed" => {
                    failed = old.clone();
                    replacement = new.clone();
                    true
                }
                _ => false,
            }
        },
    );
    let observed_ms = killed_at.elapsed().as_millis();
    let failed_since = failed["state_since_ms"].as_u64().unwrap_or(0);
    let running_since = replacement["state_since_ms"].as_u64().unwrap_or(0);
    println!(
        "process: kill -9 -> replacement running: {} ms from the kill, {} ms from detection \
         (task timestamps), {observed_ms} ms observed by polling the CLI",
        running_since.saturating_sub(killed_ms),
        running_since.saturating_sub(failed_since),
    );
    assert_eq!(failed["exit_code"].as_i64(), Some(137), "{failed}");
    assert_ne!(pid_of(&replacement), pid);
    assert_eq!(
        pids_with_env("FLOTILLA_TASK_ID", field(&replacement, "id")),
        vec![pid_of(&replacement)]
    );
    // SPEC §5 goal: < 1 s for the process runtime. Measured between the worker's own
    // timestamps (detection to replacement running) so CLI polling on a loaded machine does
    // not count; the spec bound, with no extra margin.
    assert!(
        running_since.saturating_sub(failed_since) < 1_000,
        "replacement took {} ms from detection",
        running_since.saturating_sub(failed_since)
    );

    // The history shows the failure: `service ps` lists the old task as a failed row.
    let table = cluster.cli_ok(None, &["service", "ps", "--no-trunc", &name]);
    let row = table
        .lines()
        .find(|line| line.contains(&victim_id))
        .unwrap_or_else(|| panic!("no history row for {victim_id}:\n{table}"));
    assert!(row.contains("Failed"), "{row}");
    assert!(row.contains(" \\_ "), "an older task of the slot: {row}");
    assert_eq!(cluster.running_tasks(&name).len(), 2);
}

#[test]
fn a_worker_killed_and_started_again_adopts_its_live_processes() {
    let name = unique("adopt");
    let _processes = ProcessGuard {
        service_names: vec![name.clone()],
    };
    // A slower heartbeat, so the restarted node is back before it could be declared down.
    let mut cluster = Cluster::new(&["--heartbeat-ms", "2000"]);
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.wait_node_id(worker);
    create(
        &cluster,
        &name,
        &["--replicas", "2", "--constraint", "node.role==worker"],
    );
    let before = cluster.wait_for_running(&name, 2, CONVERGE);
    let before: BTreeSet<(String, String)> = before
        .iter()
        .map(|task| {
            assert_eq!(field(task, "node_id"), worker_id);
            (
                field(task, "id").to_string(),
                field(task, "runtime_id").to_string(),
            )
        })
        .collect();

    cluster.kill(worker);
    for (task_id, runtime_id) in &before {
        let pid: i32 = runtime_id.parse().expect("PID");
        assert!(is_alive(pid), "task {task_id} outlives its node");
    }
    cluster.restart(worker);
    cluster.wait_until("the worker is ready again", CONVERGE, || {
        cluster.nodes_json(None).is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["id"] == worker_id.as_str() && n["status"] == "ready")
        })
    });
    cluster.wait_until("the worker re-attached to both tasks", CONVERGE, || {
        cluster.running_tasks(&name).len() == 2
    });
    // Give a restarted node time to do anything wrong (start duplicates), then check.
    std::thread::sleep(Duration::from_secs(3));
    let after: BTreeSet<(String, String)> = cluster
        .running_tasks(&name)
        .iter()
        .map(|task| {
            (
                field(task, "id").to_string(),
                field(task, "runtime_id").to_string(),
            )
        })
        .collect();
    assert_eq!(after, before, "same tasks, same processes");
    for (task_id, runtime_id) in &before {
        let pid: i32 = runtime_id.parse().expect("PID");
        assert_eq!(
            pids_with_env("FLOTILLA_TASK_ID", task_id),
            vec![pid],
            "task {task_id}: the adopted process and no duplicate"
        );
    }
    assert_eq!(pids_with_env("FLOTILLA_SERVICE_NAME", &name).len(), 2);
    let history = cluster.tasks_json(&name).unwrap_or_default();
    assert_eq!(history.len(), 2, "no task was replaced: {history:?}");

    // Adopted processes are still followed: killing one now gets it replaced.
    let (task_id, runtime_id) = before.iter().next().expect("a task").clone();
    let pid: i32 = runtime_id.parse().expect("PID");
    // SAFETY: kill(2) on the PID of our own task.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    cluster.wait_until("the adopted task's death is noticed", CONVERGE, || {
        let tasks = cluster.tasks_json(&name).unwrap_or_default();
        let old_failed = tasks
            .iter()
            .any(|t| field(t, "id") == task_id && field(t, "current_state") == "failed");
        old_failed && cluster.running_tasks(&name).len() == 2
    });
}

#[test]
fn a_worker_back_after_being_down_stops_the_tasks_replaced_meanwhile() {
    let name = unique("back");
    let _processes = ProcessGuard {
        service_names: vec![name.clone()],
    };
    let mut cluster = Cluster::new(FAST);
    cluster.init();
    cluster.join("worker");
    let worker = cluster.join("worker");
    let worker_id = cluster.wait_node_id(worker);
    create(&cluster, &name, &["--replicas", "3"]);
    let running = cluster.wait_for_running(&name, 3, CONVERGE);
    let stale: Vec<(String, i32)> = running
        .iter()
        .filter(|task| field(task, "node_id") == worker_id)
        .map(|task| (field(task, "id").to_string(), pid_of(task)))
        .collect();
    assert!(
        !stale.is_empty(),
        "spread puts a task on every node: {running:?}"
    );

    cluster.kill(worker);
    let killed_at = Instant::now();
    cluster.wait_until("the worker is down", CONVERGE, || {
        cluster.nodes_json(None).is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["id"] == worker_id.as_str() && n["status"] == "down")
        })
    });
    let down_ms = killed_at.elapsed().as_millis();
    cluster.wait_until("its tasks run elsewhere", CONVERGE, || {
        let running = cluster.running_tasks(&name);
        running.len() == 3 && running.iter().all(|t| field(t, "node_id") != worker_id)
    });
    println!(
        "process: worker SIGKILL -> down {down_ms} ms, -> its tasks running elsewhere {} ms (observed by polling the CLI)",
        killed_at.elapsed().as_millis()
    );
    for (task_id, pid) in &stale {
        assert_eq!(
            pids_with_env("FLOTILLA_TASK_ID", task_id),
            vec![*pid],
            "the replaced task still runs while its node is away"
        );
    }

    cluster.restart(worker);
    let restarted_at = Instant::now();
    cluster.wait_until(
        "the returning worker stopped its replaced tasks",
        CONVERGE,
        || {
            stale
                .iter()
                .all(|(task_id, _)| pids_with_env("FLOTILLA_TASK_ID", task_id).is_empty())
        },
    );
    println!(
        "process: worker start -> replaced tasks stopped {} ms",
        restarted_at.elapsed().as_millis()
    );
    cluster.wait_until("the worker is ready again", CONVERGE, || {
        cluster.nodes_json(None).is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["id"] == worker_id.as_str() && n["status"] == "ready")
        })
    });
    cluster.wait_until("three processes run", CONVERGE, || {
        pids_with_env("FLOTILLA_SERVICE_NAME", &name).len() == 3
            && cluster.running_tasks(&name).len() == 3
    });
    // Converged: never more than desired from here on.
    assert_never_more_than(&cluster, &name, 3, Duration::from_secs(3));
    for (task_id, _) in &stale {
        let tasks = cluster.tasks_json(&name).unwrap_or_default();
        let task = tasks
            .iter()
            .find(|t| field(t, "id") == task_id)
            .unwrap_or_else(|| panic!("the replaced task {task_id} stays in the history"));
        assert_ne!(field(task, "current_state"), "running", "{task}");
    }
}

/// The sim runtime with a slow `list` and `stop`, as Docker's are under load: widens the window
/// in which an orphan sweep started for one assignment set returns after a newer set started
/// containers, or runs while a retired task is still draining. Records every `stop`.
struct SlowList {
    inner: Arc<SimRuntime>,
    list_delay_ms: u64,
    stop_delay_ms: u64,
    stops: std::sync::Mutex<Vec<String>>,
}

impl SlowList {
    fn new(inner: Arc<SimRuntime>, list_delay_ms: u64, stop_delay_ms: u64) -> Self {
        Self {
            inner,
            list_delay_ms,
            stop_delay_ms,
            stops: Default::default(),
        }
    }

    fn stops(&self) -> Vec<String> {
        self.stops
            .lock()
            .map(|stops| stops.clone())
            .unwrap_or_default()
    }
}

impl ContainerRuntime for SlowList {
    fn kind(&self) -> RuntimeKind {
        self.inner.kind()
    }
    fn node_id(&self) -> &str {
        self.inner.node_id()
    }
    fn version(&self) -> BoxFuture<'_, Result<String, RuntimeError>> {
        self.inner.version()
    }
    fn start<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<RuntimeHandle, RuntimeError>> {
        self.inner.start(spec)
    }
    fn wait<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, RuntimeError>> {
        self.inner.wait(runtime_id)
    }
    fn stop<'a>(
        &'a self,
        runtime_id: &'a str,
        grace_ms: u64,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        if let Ok(mut stops) = self.stops.lock() {
            stops.push(runtime_id.to_string());
        }
        async move {
            tokio::time::sleep(Duration::from_millis(self.stop_delay_ms)).await;
            self.inner.stop(runtime_id, grace_ms).await
        }
        .boxed()
    }
    fn remove<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.inner.remove(runtime_id)
    }
    fn find<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        self.inner.find(task_id)
    }
    fn inspect<'a>(
        &'a self,
        runtime_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        self.inner.inspect(runtime_id)
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<RunningInfo>, RuntimeError>> {
        async move {
            tokio::time::sleep(Duration::from_millis(self.list_delay_ms)).await;
            self.inner.list().await
        }
        .boxed()
    }
}

/// A transport nobody calls (the worker knows no manager); refuses anything it is sent.
struct NoTransport;

impl Actor for NoTransport {
    type Context = Context<Self>;
}

impl Handler<Request> for NoTransport {
    type Result = Result<WireMessage, TransportError>;

    fn handle(&mut self, _: Request, _: &mut Context<Self>) -> Self::Result {
        Err(TransportError::Setup("no transport in this test".into()))
    }
}

fn sim_task(id: &str, slot: u64) -> Task {
    let mut spec = ServiceSpec::new("web", "busybox");
    spec.command = vec!["sleep".into(), "300".into()];
    let service = Service::new("svc-1".into(), spec);
    Task::new(id.into(), &service, Some(slot), Some("node-a".into()))
}

/// Regression: the orphan sweep of an older assignment set used to remove the containers a
/// newer set had just started (seen as tasks failing right after a service was created).
#[actix_rt::test]
async fn an_orphan_sweep_spares_the_containers_of_a_newer_assignment_set() {
    let state_dir = tempfile::tempdir().expect("tempdir");
    let sim = Arc::new(SimRuntime::new("node-a", 0));
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(SlowList::new(sim.clone(), 300, 0));
    let worker = start_node_a_worker(state_dir.path(), runtime);
    let first = sim_task("t1", 1);
    worker.do_send(ApplyAssignments(AssignmentSet {
        version: 1,
        tasks: vec![first.clone()],
        node_id: "node-a".into(),
        sequence: 1,
        files: Vec::new(),
    }));
    worker.do_send(ApplyAssignments(AssignmentSet {
        version: 2,
        tasks: vec![first, sim_task("t2", 2)],
        node_id: "node-a".into(),
        sequence: 2,
        files: Vec::new(),
    }));
    // Long enough for both sweeps to return and act.
    actix_rt::time::sleep(Duration::from_millis(1_500)).await;
    for task_id in ["t1", "t2"] {
        let found = sim.find(task_id).await.expect("sim finds");
        assert!(
            found.is_some_and(|info| info.running),
            "{task_id} still runs"
        );
    }
    assert_eq!(sim.running_count(), 2);
}

/// Regression (seen as requests failing through the mesh in a rolling update under load): a
/// retired replica left the worker's map at once, so an orphan sweep for the next set, arriving
/// while the replica still drained, stopped its container at once with the default grace period.
#[actix_rt::test]
async fn a_retiring_task_is_stopped_once_by_its_replica_not_by_an_orphan_sweep() {
    let state_dir = tempfile::tempdir().expect("tempdir");
    let sim = Arc::new(SimRuntime::new("node-a", 0));
    let slow = Arc::new(SlowList::new(sim.clone(), 0, 1_000));
    let runtime: Arc<dyn ContainerRuntime> = slow.clone();
    let worker = start_node_a_worker(state_dir.path(), runtime);
    let old = sim_task("t1", 1);
    worker.do_send(ApplyAssignments(set_for("node-a", 1, vec![old.clone()])));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sim
        .find("t1")
        .await
        .expect("sim finds")
        .is_some_and(|info| info.running)
    {
        assert!(Instant::now() < deadline, "t1 never ran");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    // The update: t1 is to shut down (its replica starts stopping it), then the next set
    // (a new task in another slot) arrives while t1's stop is still under way.
    let mut retired = old.clone();
    retired.desired_state = flotilla::core::model::TaskState::Shutdown;
    worker.do_send(ApplyAssignments(set_for(
        "node-a",
        2,
        vec![retired.clone()],
    )));
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    worker.do_send(ApplyAssignments(set_for(
        "node-a",
        3,
        vec![retired, sim_task("t2", 2)],
    )));
    // Long enough for the sweep of set 3 to list and act, not for t1's stop to end.
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    assert!(
        sim.find("t1")
            .await
            .expect("sim finds")
            .is_some_and(|info| info.running),
        "t1 is still stopping"
    );
    actix_rt::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(slow.stops().len(), 1, "t1 stopped once: {:?}", slow.stops());
    assert!(!sim
        .find("t1")
        .await
        .expect("sim finds")
        .is_some_and(|info| info.running));
    assert!(sim
        .find("t2")
        .await
        .expect("sim finds")
        .is_some_and(|info| info.running));
}

/// A worker for node A that knows no manager (sets are handed to it), on `runtime`.
fn start_node_a_worker(
    state_dir: &std::path::Path,
    runtime: Arc<dyn ContainerRuntime>,
) -> Addr<WorkerActor> {
    let description = NodeDescription {
        hostname: "node-a".into(),
        addr: "127.0.0.1:1".into(),
        engine_version: "sim".into(),
        resources: Default::default(),
        labels: Default::default(),
    };
    let worker = WorkerActor::new(
        "node-a".into(),
        description,
        Vec::new(),
        NoTransport.start().recipient(),
        Duration::from_secs(3600),
        state_dir.to_path_buf(),
    )
    .start();
    worker.do_send(AttachRuntime(runtime));
    worker
}

/// A task placed on node B (the sim runtime runs only its own node's tasks).
fn b_task(id: &str, slot: u64) -> Task {
    let mut task = sim_task(id, slot);
    task.node_id = Some("node-b".into());
    task
}

fn set_for(node_id: &str, sequence: u64, tasks: Vec<Task>) -> AssignmentSet {
    AssignmentSet {
        // Any digest that differs per content will do here.
        version: sequence * 100 + tasks.len() as u64,
        tasks,
        node_id: node_id.into(),
        sequence,
        files: Vec::new(),
    }
}

/// Node B never applies node A's set (it would stop B's own tasks), and never goes back to an
/// older set of its own that arrives after a newer one (sets travel on separate streams).
#[actix_rt::test]
async fn a_worker_applies_only_its_own_sets_and_never_an_older_one() {
    let state_dir = tempfile::tempdir().expect("tempdir");
    let sim = Arc::new(SimRuntime::new("node-b", 0));
    let description = NodeDescription {
        hostname: "node-b".into(),
        addr: "127.0.0.1:1".into(),
        engine_version: "sim".into(),
        resources: Default::default(),
        labels: Default::default(),
    };
    let worker = WorkerActor::new(
        "node-b".into(),
        description,
        Vec::new(),
        NoTransport.start().recipient(),
        Duration::from_secs(3600),
        state_dir.path().to_path_buf(),
    )
    .start();
    worker.do_send(AttachRuntime(sim.clone()));
    let own = b_task("b1", 1);
    worker.do_send(ApplyAssignments(set_for("node-b", 2, vec![own.clone()])));
    wait_until_running(&sim, &["b1"]).await;
    // A's set, as a leader pushing to a wrong address would deliver it: refused, B keeps b1.
    worker.do_send(ApplyAssignments(set_for(
        "node-a",
        9,
        vec![b_task("a1", 2)],
    )));
    let held = worker.send(GetAssignments).await.expect("worker answers");
    assert_eq!(held.node_id, "node-b");
    assert_eq!(held.sequence, 2);
    assert_eq!(held.tasks.len(), 1);
    assert_eq!(held.tasks[0].id, "b1");
    // A newer own set, then an older one overtaking nothing: the older is ignored.
    worker.do_send(ApplyAssignments(set_for(
        "node-b",
        5,
        vec![own, b_task("b2", 3)],
    )));
    worker.do_send(ApplyAssignments(set_for("node-b", 4, Vec::new())));
    let held = worker.send(GetAssignments).await.expect("worker answers");
    assert_eq!(held.sequence, 5);
    let mut ids: Vec<&str> = held.tasks.iter().map(|task| task.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["b1", "b2"]);
    wait_until_running(&sim, &["b1", "b2"]).await;
    assert!(
        sim.find("a1").await.expect("sim finds").is_none(),
        "a1 never ran on B"
    );
    assert_eq!(sim.running_count(), 2);
}

async fn wait_until_running(sim: &SimRuntime, task_ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = true;
        for task_id in task_ids {
            let found = sim.find(task_id).await.expect("sim finds");
            all &= found.is_some_and(|info| info.running);
        }
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "{task_ids:?} never all ran");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
