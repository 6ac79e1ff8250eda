//! The worker and the secrets and configs delivered with its assignment set (SPEC §9), over
//! the sim runtime and a stand-in leader: each task starts with exactly the files its spec
//! references, a task whose file was not delivered fails to start (and never runs without
//! it), the saved set holds no plaintext, and a worker restarted from its state directory asks
//! the leader for the files again instead of accepting a bare confirmation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use flotilla::actors::transport::Request;
use flotilla::actors::worker::{
    persist::ASSIGNMENTS_FILE, ApplyAssignments, AttachRuntime, CrashActor, WorkerActor,
};
use flotilla::core::assignment::delivery::{DeliveredFile, FileKey};
use flotilla::core::model::{Service, Task, TaskState};
use flotilla::core::mounts::{ConfigReference, SecretReference};
use flotilla::core::secrets::{Plaintext, SecretKind};
use flotilla::core::spec::ServiceSpec;
use flotilla::core::store::TaskStatusUpdate;
use flotilla::net::message::{
    AssignmentSet, HeartbeatAck, Message as WireMessage, NodeDescription,
};
use flotilla::net::transport::TransportError;
use flotilla::runtime::files::{TaskFile, TaskFileKind};
use flotilla::runtime::sim::SimRuntime;
use flotilla::runtime::{
    ContainerRuntime, ContainerSpec, ExitStatus, RunningInfo, RuntimeError, RuntimeHandle,
    RuntimeKind,
};
use futures::future::BoxFuture;

const NODE: &str = "node-a";
/// Bound on anything converging here; generous for a loaded 2-core machine.
const CONVERGE: Duration = Duration::from_secs(20);

/// The sim runtime, recording the files of every start and every health resumption, and
/// calling itself a process runtime so the worker saves its assignment set (it does not for
/// the sim runtime, whose tasks die with the process).
struct Recording {
    inner: Arc<SimRuntime>,
    starts: Mutex<Vec<(String, Vec<TaskFile>)>>,
    resumed: Mutex<Vec<(String, Vec<TaskFile>)>>,
}

impl Recording {
    fn new() -> Arc<Recording> {
        Arc::new(Recording {
            inner: Arc::new(SimRuntime::new(NODE, 0)),
            starts: Mutex::new(Vec::new()),
            resumed: Mutex::new(Vec::new()),
        })
    }

    fn starts(&self) -> Vec<(String, Vec<TaskFile>)> {
        self.starts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn started(&self, task_id: &str) -> Vec<Vec<TaskFile>> {
        self.starts()
            .into_iter()
            .filter(|(id, _)| id == task_id)
            .map(|(_, files)| files)
            .collect()
    }

    fn resumed(&self, task_id: &str) -> Vec<Vec<TaskFile>> {
        self.resumed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|(id, _)| id == task_id)
            .map(|(_, files)| files.clone())
            .collect()
    }
}

impl ContainerRuntime for Recording {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
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
        self.starts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((spec.task_id.clone(), spec.files.clone()));
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
        self.inner.stop(runtime_id, grace_ms)
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
        self.inner.list()
    }
    fn resume_health<'a>(
        &'a self,
        runtime_id: &'a str,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.resumed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((spec.task_id.clone(), spec.files.clone()));
        self.inner.resume_health(runtime_id, spec)
    }
}

/// What the stand-in leader saw and what it answers with.
#[derive(Default)]
struct LeaderState {
    /// The set it answers a heartbeat of another version with.
    set: Option<AssignmentSet>,
    /// The assignment versions heartbeats reported, in order.
    reported: Vec<u64>,
    /// Every status update the worker sent.
    statuses: Vec<TaskStatusUpdate>,
}

/// A leader as the dispatcher behaves to one worker: a heartbeat reporting another version
/// than its set's is answered with the whole set, one reporting the same with none.
struct FakeLeader {
    addr: SocketAddr,
    state: Arc<Mutex<LeaderState>>,
}

impl Actor for FakeLeader {
    type Context = Context<Self>;
}

impl Handler<Request> for FakeLeader {
    type Result = Result<WireMessage, TransportError>;

    fn handle(&mut self, request: Request, _: &mut Context<Self>) -> Self::Result {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match request.message {
            WireMessage::Heartbeat(beat) => {
                state.reported.push(beat.assignments_version);
                let assignments = state
                    .set
                    .clone()
                    .filter(|set| set.version != beat.assignments_version);
                Ok(WireMessage::HeartbeatAck(HeartbeatAck {
                    period_ms: 50,
                    manager_addrs: vec![self.addr.to_string()],
                    assignments,
                    role_change: None,
                    renewed_cert_pem: None,
                }))
            }
            WireMessage::TaskStatuses(updates) => {
                state.statuses.extend(updates);
                Ok(WireMessage::Ack)
            }
            other => Err(TransportError::Setup(format!(
                "unexpected {}",
                other.kind_name()
            ))),
        }
    }
}

fn leader(state: &Arc<Mutex<LeaderState>>) -> (SocketAddr, Recipient<Request>) {
    let addr: SocketAddr = "127.0.0.1:4999".parse().expect("address");
    let actor = FakeLeader {
        addr,
        state: state.clone(),
    }
    .start();
    (addr, actor.recipient())
}

fn lock(state: &Arc<Mutex<LeaderState>>) -> std::sync::MutexGuard<'_, LeaderState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start_worker(
    state_dir: &std::path::Path,
    (manager, transport): (SocketAddr, Recipient<Request>),
    runtime: Arc<Recording>,
) -> Addr<WorkerActor> {
    let description = NodeDescription {
        hostname: NODE.into(),
        addr: "127.0.0.1:1".into(),
        engine_version: "sim".into(),
        resources: Default::default(),
        labels: Default::default(),
    };
    let worker = WorkerActor::new(
        NODE.into(),
        description,
        vec![manager],
        transport,
        Duration::from_millis(50),
        state_dir.to_path_buf(),
    )
    .start();
    worker.do_send(AttachRuntime(runtime));
    worker
}

/// A task on node A whose spec references `secrets` and `configs` (IDs, version 1 unless
/// given after a colon).
fn task(id: &str, slot: u64, secrets: &[&str], configs: &[&str]) -> Task {
    let split = |reference: &str| -> (String, u64) {
        match reference.split_once(':') {
            Some((id, version)) => (id.to_string(), version.parse().expect("version")),
            None => (reference.to_string(), 1),
        }
    };
    let mut spec = ServiceSpec::new("web", "busybox");
    spec.command = vec!["sleep".into(), "300".into()];
    spec.secrets = secrets
        .iter()
        .map(|reference| {
            let (secret_id, version) = split(reference);
            SecretReference {
                name: format!("{secret_id}-name"),
                target: format!("{secret_id}.txt"),
                secret_id,
                version,
                uid: "1000".into(),
                gid: "1001".into(),
                mode: 0o400,
            }
        })
        .collect();
    spec.configs = configs
        .iter()
        .map(|reference| {
            let (config_id, version) = split(reference);
            ConfigReference {
                name: format!("{config_id}-name"),
                target: format!("/etc/{config_id}.conf"),
                config_id,
                version,
                uid: String::new(),
                gid: String::new(),
                mode: 0o444,
            }
        })
        .collect();
    let service = Service::new("svc-1".into(), spec);
    Task::new(id.into(), &service, Some(slot), Some(NODE.into()))
}

fn file(kind: SecretKind, id: &str, version: u64, data: &str) -> DeliveredFile {
    DeliveredFile {
        key: FileKey {
            kind,
            id: id.into(),
            version,
        },
        data: Plaintext(data.as_bytes().to_vec()),
    }
}

fn set(sequence: u64, tasks: Vec<Task>, files: Vec<DeliveredFile>) -> AssignmentSet {
    AssignmentSet {
        version: sequence * 100 + tasks.len() as u64,
        tasks,
        node_id: NODE.into(),
        sequence,
        files,
    }
}

/// Kind, target, owner, mode and data of each file, for comparing.
fn described(files: &[TaskFile]) -> Vec<(TaskFileKind, String, String, u32, String)> {
    files
        .iter()
        .map(|file| {
            (
                file.kind,
                file.target.clone(),
                format!("{}:{}", file.uid, file.gid),
                file.mode,
                String::from_utf8_lossy(&file.data).into_owned(),
            )
        })
        .collect()
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn each_task_starts_with_exactly_its_files_and_one_without_its_secret_never_runs() {
    let state_dir = tempfile::tempdir().expect("tempdir");
    let leader_state = Arc::new(Mutex::new(LeaderState::default()));
    let runtime = Recording::new();
    let worker = start_worker(state_dir.path(), leader(&leader_state), runtime.clone());
    let delivered = set(
        1,
        vec![
            task("t1", 1, &["s1"], &["c1"]),
            task("t2", 2, &[], &[]),
            task("t3", 3, &["s1", "s2:3"], &[]),
        ],
        vec![
            file(SecretKind::Secret, "s1", 1, "s1-plaintext"),
            file(SecretKind::Config, "c1", 1, "c1-text"),
            // Version 2 of s2 does not stand in for the version 3 that t3 names.
            file(SecretKind::Secret, "s2", 2, "s2-v2-plaintext"),
        ],
    );
    worker.do_send(ApplyAssignments(delivered));

    wait_for("t1 and t2 start", || {
        !runtime.started("t1").is_empty() && !runtime.started("t2").is_empty()
    })
    .await;
    assert_eq!(
        runtime
            .started("t1")
            .iter()
            .map(|files| described(files))
            .collect::<Vec<_>>(),
        vec![vec![
            (
                TaskFileKind::Secret,
                "s1.txt".to_string(),
                "1000:1001".to_string(),
                0o400,
                "s1-plaintext".to_string()
            ),
            (
                TaskFileKind::Config,
                "/etc/c1.conf".to_string(),
                ":".to_string(),
                0o444,
                "c1-text".to_string()
            ),
        ]]
    );
    assert_eq!(runtime.started("t2"), vec![Vec::new()]);

    wait_for("t3 is reported failed", || {
        lock(&leader_state)
            .statuses
            .iter()
            .any(|update| update.task_id == "t3" && update.status.state == TaskState::Failed)
    })
    .await;
    let failure = lock(&leader_state)
        .statuses
        .iter()
        .find(|update| update.task_id == "t3" && update.status.state == TaskState::Failed)
        .map(|update| update.status.error.clone());
    assert_eq!(
        failure,
        Some(Some("secret s2-name version 3 not delivered".to_string()))
    );
    assert!(
        runtime.started("t3").is_empty(),
        "t3 never started without its secret"
    );

    // The saved set has the tasks and none of the plaintext.
    let path = state_dir.path().join(ASSIGNMENTS_FILE);
    wait_for("the set is saved", || path.exists()).await;
    let saved = std::fs::read_to_string(&path).expect("read the saved set");
    assert!(saved.contains("\"t3\""), "the tasks are saved");
    for plaintext in ["s1-plaintext", "c1-text", "s2-v2-plaintext"] {
        assert!(!saved.contains(plaintext), "{plaintext} was saved");
        let as_numbers = serde_json::to_string(plaintext.as_bytes()).expect("json");
        let inner = as_numbers.trim_matches(|c| c == '[' || c == ']');
        assert!(!saved.contains(inner), "{plaintext} was saved as bytes");
    }
}

#[actix_rt::test]
async fn a_worker_restarted_from_disk_asks_for_its_files_and_adopts_without_restarting() {
    let state_dir = tempfile::tempdir().expect("tempdir");
    let leader_state = Arc::new(Mutex::new(LeaderState::default()));
    let runtime = Recording::new();
    let first = set(
        4,
        vec![task("t1", 1, &["s1"], &[])],
        vec![file(SecretKind::Secret, "s1", 1, "s1-plaintext")],
    );
    lock(&leader_state).set = Some(first.clone());
    let worker = start_worker(state_dir.path(), leader(&leader_state), runtime.clone());
    wait_for("t1 starts", || !runtime.started("t1").is_empty()).await;
    let path = state_dir.path().join(ASSIGNMENTS_FILE);
    wait_for("the set is saved", || path.exists()).await;
    worker.do_send(CrashActor::Worker);
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    // The same node again, from its state directory; t1 still runs in the runtime.
    let reported_before = lock(&leader_state).reported.len();
    let again = start_worker(state_dir.path(), leader(&leader_state), runtime.clone());
    wait_for("the restarted worker heartbeats twice", || {
        lock(&leader_state).reported.len() >= reported_before + 2
    })
    .await;
    let reported: Vec<u64> = lock(&leader_state).reported[reported_before..].to_vec();
    // It holds the saved set but not its files: it asks for the whole set
    // with version 0, then, having it, reports the set's version.
    assert_eq!(reported[0], 0, "reported {reported:?}");
    wait_for("the restarted worker reports the set's version", || {
        lock(&leader_state).reported.last() == Some(&first.version)
    })
    .await;
    // t1 was adopted, not started again; its runtime was told it has a file.
    assert_eq!(runtime.started("t1").len(), 1);
    let resumed = runtime.resumed("t1");
    assert!(
        resumed
            .iter()
            .all(|files| files.len() == 1 && files[0].target == "s1.txt"),
        "{resumed:?}"
    );

    // A new task needing s1 arrives in a set whose leader could not open it: the copy the
    // confirmation delivered serves it.
    let mut tasks = first.tasks.clone();
    tasks.push(task("t4", 2, &["s1"], &[]));
    again.do_send(ApplyAssignments(set(5, tasks, Vec::new())));
    wait_for("t4 starts", || !runtime.started("t4").is_empty()).await;
    let started: BTreeMap<String, Vec<String>> = runtime
        .starts()
        .into_iter()
        .map(|(id, files)| {
            let data = files
                .iter()
                .map(|file| String::from_utf8_lossy(&file.data).into_owned())
                .collect();
            (id, data)
        })
        .collect();
    assert_eq!(started["t4"], vec!["s1-plaintext".to_string()]);
}
