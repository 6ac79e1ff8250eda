//! Delivery of configs and secrets through a real manager and worker (SPEC §9): one process,
//! real QUIC on loopback, the sim runtime. A config's task runs (its data went out with the
//! worker's assignment set: a task whose file is not delivered fails to start); a secret the
//! manager cannot open (its keyring holds no data key here) is not delivered, and its task
//! fails with the error that names it instead of running without the file.
//!
//! The objects are proposed to Raft directly: the admin requests that create them are not
//! part of this test.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use flotilla::actors::raft::Propose;
use flotilla::client::Client;
use flotilla::core::model::{Task, TaskState};
use flotilla::core::mounts::{ConfigReference, SecretReference};
use flotilla::core::secrets::{
    seal_context, DataKey, SecretData, SecretKind, SecretObject, SecretVersion,
};
use flotilla::core::store::{Command, NodeSpecUpdate};
use flotilla::net::admin::{AdminReply, AdminRequest};
use flotilla::node::daemon::{self, NodeOptions, RunningNode};

const CONVERGE: Duration = Duration::from_secs(20);

fn options(dir: &std::path::Path, index: usize, port: u16) -> NodeOptions {
    let listen: SocketAddr = format!("127.0.0.{}:{port}", index + 1)
        .parse()
        .expect("address");
    NodeOptions {
        listen,
        advertise_addr: None,
        state_dir: dir.join(format!("node{}", index + 1)),
        hostname: Some(format!("node{}", index + 1)),
        runtime: "sim".to_string(),
        labels: vec![],
        enable_chaos: false,
        raft_tick_ms: 50,
        heartbeat_ms: 200,
        sim_task_start_ms: 10,
        metrics_listen: flotilla::node::metrics::MetricsListen::Off,
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {CONVERGE:?} waiting until {what}");
}

/// A manager and one worker; the manager's node is drained, so every task runs on the worker.
struct TwoNodes {
    _dir: tempfile::TempDir,
    nodes: Vec<RunningNode>,
    client: Client,
}

impl TwoNodes {
    async fn start() -> TwoNodes {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let (_, manager) = daemon::init(options(dir.path(), 0, port))
            .await
            .expect("init");
        let client = Client::load(&dir.path().join("node1/client.toml"), None).expect("client");
        let token = match client
            .control(AdminRequest::JoinToken {
                role: flotilla::core::model::NodeRole::Worker,
                rotate: false,
            })
            .await
            .expect("join token")
        {
            AdminReply::Token(token) => token,
            other => panic!("unexpected {other:?}"),
        };
        let manager_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let worker = daemon::join(options(dir.path(), 1, port), &token, manager_addr)
            .await
            .expect("join");
        let cluster = TwoNodes {
            _dir: dir,
            nodes: vec![manager, worker],
            client,
        };
        wait_until("both nodes are ready", || async {
            let store = cluster.store();
            store.nodes().len() == 2
                && store
                    .nodes()
                    .values()
                    .all(|n| n.status == flotilla::core::model::NodeStatus::Ready)
        })
        .await;
        let manager_id = cluster.nodes[0].settings.node_id.clone();
        cluster
            .propose(Command::UpdateNodeSpec(NodeSpecUpdate {
                node_id: manager_id,
                availability: Some(flotilla::core::model::Availability::Drain),
                ..NodeSpecUpdate::default()
            }))
            .await;
        cluster
    }

    fn store(&self) -> parking_lot::RwLockReadGuard<'_, flotilla::core::store::Store> {
        self.nodes[0].store.as_ref().expect("manager store").read()
    }

    async fn propose(&self, command: Command) {
        self.nodes[0]
            .raft
            .as_ref()
            .expect("manager raft")
            .send(Propose { command })
            .await
            .expect("raft answers")
            .expect("applied");
    }

    fn tasks(&self, service: &str) -> Vec<Task> {
        let store = self.store();
        let Some(service) = store.service_by_name(service) else {
            return Vec::new();
        };
        let id = service.id.clone();
        store.tasks_of_service(&id).into_iter().cloned().collect()
    }
}

fn object(kind: SecretKind, id: &str, name: &str, data: SecretData) -> SecretObject {
    SecretObject {
        id: id.into(),
        kind,
        name: name.into(),
        labels: Default::default(),
        versions: vec![SecretVersion {
            version: 1,
            data,
            size: 12,
            created_at_ms: 1,
        }],
        meta: Default::default(),
    }
}

#[actix_rt::test]
async fn a_config_reaches_its_worker_and_a_secret_the_manager_cannot_open_fails_its_task() {
    let cluster = TwoNodes::start().await;
    let worker_id = cluster.nodes[1].settings.node_id.clone();

    cluster
        .propose(Command::CreateSecret(object(
            SecretKind::Config,
            "cfg1",
            "app.conf",
            SecretData::Plain(b"listen 8080;".to_vec()),
        )))
        .await;
    let mut spec = flotilla::core::spec::ServiceSpec::new("configured", "busybox");
    spec.configs = vec![ConfigReference {
        name: "app.conf".into(),
        config_id: "cfg1".into(),
        version: 1,
        target: "/etc/app.conf".into(),
        uid: String::new(),
        gid: String::new(),
        mode: 0o444,
    }];
    cluster
        .client
        .control(AdminRequest::ServiceCreate { spec })
        .await
        .expect("service create");
    wait_until("the configured task runs on the worker", || async {
        cluster.tasks("configured").iter().any(|task| {
            task.status.state == TaskState::Running
                && task.node_id.as_deref() == Some(worker_id.as_str())
        })
    })
    .await;
    assert!(
        cluster
            .tasks("configured")
            .iter()
            .all(|task| task.status.state != TaskState::Failed),
        "no configured task failed: {:?}",
        cluster.tasks("configured")
    );

    // Sealed with a key this manager does not hold (its keyring is empty in this build).
    let foreign = DataKey::generate().expect("key");
    let sealed = foreign
        .seal(b"s3cret-value", &seal_context("sec1", 1))
        .expect("seals");
    cluster
        .propose(Command::CreateSecret(object(
            SecretKind::Secret,
            "sec1",
            "db_pass",
            SecretData::Sealed(sealed),
        )))
        .await;
    let mut spec = flotilla::core::spec::ServiceSpec::new("secretive", "busybox");
    spec.secrets = vec![SecretReference {
        name: "db_pass".into(),
        secret_id: "sec1".into(),
        version: 1,
        target: "db_pass".into(),
        uid: String::new(),
        gid: String::new(),
        mode: 0o400,
    }];
    cluster
        .client
        .control(AdminRequest::ServiceCreate { spec })
        .await
        .expect("service create");
    wait_until("the secretive task fails", || async {
        cluster
            .tasks("secretive")
            .iter()
            .any(|task| task.status.state == TaskState::Failed)
    })
    .await;
    let tasks = cluster.tasks("secretive");
    let failed = tasks
        .iter()
        .find(|task| task.status.state == TaskState::Failed)
        .expect("a failed task");
    assert_eq!(
        failed.status.error.as_deref(),
        Some("secret db_pass version 1 not delivered")
    );
    assert!(
        tasks
            .iter()
            .all(|task| task.status.state != TaskState::Running),
        "a task ran without its secret: {tasks:?}"
    );
}
