//! Unit tests of the replica actor over the sim runtime: lifecycle reports, exit reporting,
//! retirement, and re-attachment after a supervisor restart without a second start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::{CrashReplica, ReplicaActor, Retire};
use crate::actors::replica::ReportStatus;
use crate::core::model::{Task, TaskState};
use crate::core::store::TaskStatusUpdate;
use crate::core::testkit::service;
use crate::net::mesh::Mesh;
use crate::runtime::sim::SimRuntime;
use crate::runtime::{ContainerRuntime, ContainerSpec};

const NODE_ID: &str = "node-a";
/// Upper bound on waiting for a report; generous for a loaded machine, never a timing claim.
const REPORT_WAIT_MS_MAX: u64 = 10_000;

/// Stands in for the worker: records every report it gets.
struct Collector {
    updates: Arc<Mutex<Vec<TaskStatusUpdate>>>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<ReportStatus> for Collector {
    type Result = ();

    fn handle(&mut self, ReportStatus(update): ReportStatus, _: &mut Context<Self>) {
        self.updates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(update);
    }
}

/// A replica under a supervisor, its runtime and what it reported.
struct Fixture {
    task: Task,
    runtime: Arc<SimRuntime>,
    updates: Arc<Mutex<Vec<TaskStatusUpdate>>>,
    replica: Option<Addr<ReplicaActor>>,
}

/// The container `task` would get, for tests that start it before the replica does.
fn container_spec(task: &Task) -> ContainerSpec {
    ContainerSpec {
        name: task.container_name(),
        image: task.spec.image.clone(),
        command: task.spec.command.clone(),
        env: Vec::new(),
        labels: task.container_labels(),
        node_id: NODE_ID.into(),
        task_id: task.id.clone(),
        memory_limit_bytes: None,
        nano_cpus_limit: None,
        stop_grace_ms: 0,
        health: Default::default(),
        ports: Vec::new(),
        files: Vec::new(),
    }
}

fn assigned_task(task_id: &str) -> Task {
    let mut task = Task::new(
        task_id.to_string(),
        &service("svc-1", "web", 1),
        Some(1),
        Some(NODE_ID.to_string()),
    );
    std::sync::Arc::make_mut(&mut task.spec).command = vec!["sleep".into(), "30".into()];
    task.status.state = TaskState::Assigned;
    task
}

impl Fixture {
    fn new(task: Task) -> Self {
        Self::with_runtime(task, Arc::new(SimRuntime::new(NODE_ID, 20)))
    }

    fn with_runtime(task: Task, runtime: Arc<SimRuntime>) -> Self {
        Self::build(task, runtime, None)
    }

    fn build(task: Task, runtime: Arc<SimRuntime>, mesh: Option<Mesh>) -> Self {
        let updates = Arc::new(Mutex::new(Vec::new()));
        let reports = Collector {
            updates: updates.clone(),
        }
        .start()
        .recipient();
        let (actor_task, actor_runtime) = (task.clone(), runtime.clone());
        let replica = Supervisor::start(move |_| {
            let runtime: Arc<dyn ContainerRuntime> = actor_runtime;
            let replica = ReplicaActor::new(actor_task, runtime, reports);
            match mesh.clone() {
                Some(mesh) => replica.with_mesh(mesh),
                None => replica,
            }
        });
        Self {
            task,
            runtime,
            updates,
            replica: Some(replica),
        }
    }

    fn states(&self) -> Vec<TaskState> {
        self.updates().iter().map(|u| u.status.state).collect()
    }

    fn updates(&self) -> Vec<TaskStatusUpdate> {
        self.updates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until `count` reports of `state` arrived and returns the last one.
    async fn wait_for(&self, state: TaskState, count: usize) -> TaskStatusUpdate {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
        loop {
            let matching: Vec<TaskStatusUpdate> = self
                .updates()
                .into_iter()
                .filter(|u| u.status.state == state)
                .collect();
            if matching.len() >= count {
                return matching[count - 1].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {count} x {state:?} report; got {:?}",
                self.states()
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn replica(&self) -> &Addr<ReplicaActor> {
        self.replica.as_ref().expect("the replica address is held")
    }

    /// The one running container of the task, as the sim runtime lists it.
    async fn only_container(&self) -> crate::runtime::RunningInfo {
        let listed = self.runtime.list().await.expect("sim lists");
        let of_task: Vec<_> = listed
            .into_iter()
            .filter(|info| info.task_id == self.task.id)
            .collect();
        assert_eq!(of_task.len(), 1, "exactly one container: {of_task:?}");
        of_task[0].clone()
    }

    /// The runtime ID the next start would get: proves how many starts happened so far.
    async fn next_start_id(&self) -> String {
        let spec = ContainerSpec {
            name: "probe".into(),
            image: "busybox".into(),
            command: vec!["true".into()],
            env: Vec::new(),
            labels: Default::default(),
            node_id: NODE_ID.into(),
            task_id: format!("probe-{}", self.task.id),
            memory_limit_bytes: None,
            nano_cpus_limit: None,
            stop_grace_ms: 0,
            health: Default::default(),
            ports: Vec::new(),
            files: Vec::new(),
        };
        self.runtime
            .start(&spec)
            .await
            .expect("probe starts")
            .runtime_id
    }
}

#[actix_rt::test]
async fn reports_starting_then_running_with_the_runtime_id() {
    let fixture = Fixture::new(assigned_task("t-life"));
    let running = fixture.wait_for(TaskState::Running, 1).await;
    assert_eq!(
        fixture.states(),
        vec![TaskState::Starting, TaskState::Running]
    );
    assert_eq!(running.runtime_id.as_deref(), Some("sim-1"));
    assert_eq!(running.runtime.as_deref(), Some("sim"));
    assert_eq!(running.task_id, "t-life");
    let container = fixture.only_container().await;
    assert!(container.running);
    assert_eq!(
        container
            .labels
            .get(crate::runtime::LABEL_TASK_SLOT)
            .map(String::as_str),
        Some("1")
    );
}

#[actix_rt::test]
async fn a_non_zero_exit_is_reported_failed_with_its_code() {
    let fixture = Fixture::new(assigned_task("t-fail"));
    let running = fixture.wait_for(TaskState::Running, 1).await;
    let runtime_id = running.runtime_id.expect("runtime id");
    assert!(fixture.runtime.exit_task(&runtime_id, 3));
    let failed = fixture.wait_for(TaskState::Failed, 1).await;
    assert_eq!(failed.status.exit_code, Some(3));
    assert_eq!(failed.runtime_id.as_deref(), Some(runtime_id.as_str()));
    let error = failed.status.error.unwrap_or_default();
    assert!(error.contains("non-zero exit"), "{error}");
    // The replica never restarts the container itself: the managers replace the task.
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fixture.runtime.running_count(), 0);
    assert_eq!(fixture.next_start_id().await, "sim-2", "no second start");
}

#[actix_rt::test]
async fn a_zero_exit_is_reported_complete() {
    let fixture = Fixture::new(assigned_task("t-done"));
    let running = fixture.wait_for(TaskState::Running, 1).await;
    assert!(fixture
        .runtime
        .exit_task(&running.runtime_id.expect("runtime id"), 0));
    let complete = fixture.wait_for(TaskState::Complete, 1).await;
    assert_eq!(complete.status.exit_code, Some(0));
    assert!(!fixture.states().contains(&TaskState::Failed));
}

#[actix_rt::test]
async fn retire_stops_the_container_and_reports_shutdown() {
    let mut fixture = Fixture::new(assigned_task("t-retire"));
    fixture.wait_for(TaskState::Running, 1).await;
    let replica = fixture.replica.take().expect("address");
    replica.do_send(Retire);
    // As the worker does: drop the address so the supervisor lets the actor end for good.
    drop(replica);
    fixture.wait_for(TaskState::Shutdown, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
    while fixture.runtime.running_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica did not end"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        fixture
            .runtime
            .find("t-retire")
            .await
            .expect("find")
            .is_none(),
        "removed"
    );
    let states = fixture.states();
    assert!(!states.contains(&TaskState::Failed), "{states:?}");
    assert!(!states.contains(&TaskState::Complete), "{states:?}");
}

#[actix_rt::test]
async fn retire_during_start_stops_what_the_start_made() {
    let runtime = Arc::new(SimRuntime::new(NODE_ID, 200));
    let mut fixture = Fixture::with_runtime(assigned_task("t-early"), runtime);
    fixture.wait_for(TaskState::Starting, 1).await;
    let replica = fixture.replica.take().expect("address");
    replica.do_send(Retire);
    drop(replica);
    fixture.wait_for(TaskState::Shutdown, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
    while fixture.runtime.running_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the container still runs"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn a_supervisor_restart_re_attaches_without_a_second_start() {
    let fixture = Fixture::new(assigned_task("t-crash"));
    let first = fixture.wait_for(TaskState::Running, 1).await;
    let runtime_id = first.runtime_id.expect("runtime id");
    fixture.replica().do_send(CrashReplica);
    // The restarted actor re-attaches and says so.
    let again = fixture.wait_for(TaskState::Running, 2).await;
    assert_eq!(again.runtime_id.as_deref(), Some(runtime_id.as_str()));
    let container = fixture.only_container().await;
    assert_eq!(container.runtime_id, runtime_id);
    assert!(container.running);
    assert_eq!(fixture.next_start_id().await, "sim-2", "no second start");
    assert_eq!(
        fixture
            .states()
            .iter()
            .filter(|s| **s == TaskState::Starting)
            .count(),
        1
    );
    // And it still follows the container: its exit is reported once.
    assert!(fixture.runtime.exit_task(&runtime_id, 1));
    let failed = fixture.wait_for(TaskState::Failed, 1).await;
    assert_eq!(failed.status.exit_code, Some(1));
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fixture
            .states()
            .iter()
            .filter(|s| **s == TaskState::Failed)
            .count(),
        1,
        "{:?}",
        fixture.states()
    );
}

#[actix_rt::test]
async fn repeated_crashes_keep_one_container() {
    let fixture = Fixture::new(assigned_task("t-crashes"));
    let first = fixture.wait_for(TaskState::Running, 1).await;
    for round in 2..=4 {
        fixture.replica().do_send(CrashReplica);
        fixture.wait_for(TaskState::Running, round).await;
    }
    let container = fixture.only_container().await;
    assert_eq!(Some(container.runtime_id), first.runtime_id);
    assert_eq!(fixture.next_start_id().await, "sim-2", "no second start");
}

#[actix_rt::test]
async fn a_task_already_running_is_adopted_not_started_again() {
    // As after a node restart: the assignment says running and the container still runs.
    let mut task = assigned_task("t-adopt");
    let runtime = Arc::new(SimRuntime::new(NODE_ID, 0));
    let spec = container_spec(&task);
    let existing = runtime.start(&spec).await.expect("starts").runtime_id;
    task.status.state = TaskState::Running;
    let fixture = Fixture::with_runtime(task, runtime);
    let running = fixture.wait_for(TaskState::Running, 1).await;
    assert_eq!(running.runtime_id, Some(existing));
    assert!(!fixture.states().contains(&TaskState::Starting));
    assert_eq!(fixture.next_start_id().await, "sim-2", "no second start");
}

#[actix_rt::test]
async fn a_running_task_whose_container_is_gone_is_reported_failed_not_restarted() {
    let mut task = assigned_task("t-gone");
    task.status.state = TaskState::Running;
    let fixture = Fixture::new(task);
    let failed = fixture.wait_for(TaskState::Failed, 1).await;
    assert!(failed.status.error.unwrap_or_default().contains("gone"));
    assert_eq!(fixture.runtime.running_count(), 0);
    assert_eq!(
        fixture.next_start_id().await,
        "sim-1",
        "nothing was started"
    );
}

#[actix_rt::test]
async fn an_adopt_only_replica_fails_a_task_whose_container_is_gone_even_if_only_assigned() {
    // As after a node restart: the saved assignment set says `assigned`, but the task may have
    // run before the node went down; its container is gone, so it ended: never start it again.
    let runtime = Arc::new(SimRuntime::new(NODE_ID, 0));
    let updates = Arc::new(Mutex::new(Vec::new()));
    let reports = Collector {
        updates: updates.clone(),
    }
    .start()
    .recipient();
    let (task, actor_runtime) = (assigned_task("t-saved"), runtime.clone());
    let replica = Supervisor::start(move |_| {
        let runtime: Arc<dyn ContainerRuntime> = actor_runtime;
        ReplicaActor::new(task, runtime, reports).adopt_only()
    });
    let fixture = Fixture {
        task: assigned_task("t-saved"),
        runtime,
        updates,
        replica: Some(replica),
    };
    let failed = fixture.wait_for(TaskState::Failed, 1).await;
    assert!(failed.status.error.unwrap_or_default().contains("gone"));
    assert!(!fixture.states().contains(&TaskState::Starting));
    assert_eq!(
        fixture.next_start_id().await,
        "sim-1",
        "nothing was started"
    );
}

#[actix_rt::test]
async fn an_adopt_only_replica_re_attaches_to_a_running_container() {
    let runtime = Arc::new(SimRuntime::new(NODE_ID, 0));
    let task = assigned_task("t-saved-live");
    let spec = container_spec(&task);
    let existing = runtime.start(&spec).await.expect("starts").runtime_id;
    let updates = Arc::new(Mutex::new(Vec::new()));
    let reports = Collector {
        updates: updates.clone(),
    }
    .start()
    .recipient();
    let (actor_task, actor_runtime) = (task.clone(), runtime.clone());
    let replica = Supervisor::start(move |_| {
        let runtime: Arc<dyn ContainerRuntime> = actor_runtime;
        ReplicaActor::new(actor_task, runtime, reports).adopt_only()
    });
    let fixture = Fixture {
        task,
        runtime,
        updates,
        replica: Some(replica),
    };
    let running = fixture.wait_for(TaskState::Running, 1).await;
    assert_eq!(running.runtime_id, Some(existing));
    assert_eq!(fixture.next_start_id().await, "sim-2", "no second start");
}

#[actix_rt::test]
async fn a_checked_task_runs_once_healthy_and_fails_when_unhealthy() {
    let mut task = assigned_task("t-health");
    let spec = std::sync::Arc::make_mut(&mut task.spec);
    spec.health.test = crate::core::rollout::HealthTest::Shell("true".into());
    spec.health.interval_ms = Some(20);
    let fixture = Fixture::new(task);
    let running = fixture.wait_for(TaskState::Running, 1).await;
    let runtime_id = running.runtime_id.clone().expect("a runtime ID");
    let output = "connection refused".to_string();
    assert!(fixture
        .runtime
        .set_health(&runtime_id, crate::runtime::Health::Unhealthy { output }));
    let failed = fixture.wait_for(TaskState::Failed, 1).await;
    assert_eq!(failed.status.error.as_deref(), Some("task: unhealthy"));
    assert!(
        !fixture.states().contains(&TaskState::Shutdown),
        "{:?}",
        fixture.states()
    );
    // The stop follows the report: poll for it.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REPORT_WAIT_MS_MAX);
    loop {
        let info = fixture.runtime.inspect(&runtime_id).await.expect("inspect");
        if !info.as_ref().is_some_and(|info| info.running) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never stopped");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn a_task_in_the_mesh_is_stopped_only_after_the_mesh_stops_routing_to_it() {
    use crate::core::ports::parse_publish;
    use crate::core::routing::{Backend, Route, RoutingTable};

    let mut task = assigned_task("t-drain");
    let port = parse_publish("18080:80").expect("publish spec");
    std::sync::Arc::make_mut(&mut task.spec).ports = vec![port];
    let mesh = Mesh::new(std::net::IpAddr::from([127, 0, 0, 1]));
    let runtime = Arc::new(SimRuntime::new(NODE_ID, 20));
    let mut fixture = Fixture::build(task, runtime, Some(mesh.clone()));
    let running = fixture.wait_for(TaskState::Running, 1).await;
    let endpoint = running.endpoints.expect("endpoints reported")[0].addr;
    let route = |backends: Vec<Backend>| Route {
        published: 18080,
        protocol: port.protocol,
        proxy_protocol: false,
        service_id: "svc-1".into(),
        service_name: "web".into(),
        backends,
    };
    // The mesh routes to it (its listener is not needed for this: only the table counts).
    mesh.apply(RoutingTable {
        version: 1,
        routes: vec![route(vec![Backend {
            task_id: "t-drain".into(),
            addr: endpoint,
        }])],
    });
    let replica = fixture.replica.take().expect("address");
    replica.do_send(Retire);
    drop(replica);
    // Well within DRAIN_BOUND: still routed, so still running.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fixture.runtime.running_count(), 1, "{:?}", fixture.states());
    assert!(!fixture.states().contains(&TaskState::Shutdown));
    mesh.apply(RoutingTable {
        version: 2,
        routes: vec![route(Vec::new())],
    });
    fixture.wait_for(TaskState::Shutdown, 1).await;
    mesh.close();
}

/// A replica given `undelivered` (a file its task references was not delivered), adopting
/// only or not.
fn undelivered_fixture(task: Task, runtime: Arc<SimRuntime>, adopt_only: bool) -> Fixture {
    let updates = Arc::new(Mutex::new(Vec::new()));
    let reports = Collector {
        updates: updates.clone(),
    }
    .start()
    .recipient();
    let (actor_task, actor_runtime) = (task.clone(), runtime.clone());
    let replica = Supervisor::start(move |_| {
        let runtime: Arc<dyn ContainerRuntime> = actor_runtime;
        let replica = ReplicaActor::new(actor_task, runtime, reports)
            .with_undelivered("secret db_pass version 2 not delivered".into());
        if adopt_only {
            replica.adopt_only()
        } else {
            replica
        }
    });
    Fixture {
        task,
        runtime,
        updates,
        replica: Some(replica),
    }
}

#[actix_rt::test]
async fn a_task_missing_a_delivered_file_fails_its_start_and_never_runs_without_it() {
    let fixture = undelivered_fixture(
        assigned_task("t-undelivered"),
        Arc::new(SimRuntime::new(NODE_ID, 0)),
        false,
    );
    let failed = fixture.wait_for(TaskState::Failed, 1).await;
    assert_eq!(
        failed.status.error.as_deref(),
        Some("secret db_pass version 2 not delivered")
    );
    assert_eq!(
        fixture.next_start_id().await,
        "sim-1",
        "nothing was started"
    );
}

#[actix_rt::test]
async fn a_running_task_missing_its_files_in_memory_is_still_re_attached() {
    // After a node restart: the task runs, its files are in its tmpfs directory, and the
    // worker holds none of them yet.
    let runtime = Arc::new(SimRuntime::new(NODE_ID, 0));
    let task = assigned_task("t-restarted");
    let existing = runtime
        .start(&container_spec(&task))
        .await
        .expect("starts")
        .runtime_id;
    let fixture = undelivered_fixture(task, runtime, true);
    let running = fixture.wait_for(TaskState::Running, 1).await;
    assert_eq!(running.runtime_id, Some(existing));
    assert!(!fixture.states().contains(&TaskState::Failed));
}
