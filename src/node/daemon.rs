//! Bootstrapping a node: `init` (a new cluster), `join` (an existing one), `start` (again,
//! from the state directory), and running it until a signal says stop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::prelude::*;

use crate::actors::control::ControlActor;
use crate::actors::environment::NodeEnvironment;
use crate::actors::node::{AttachTransport, AttachWorker, ManagerParts, NodeActor};
use crate::actors::raft::{GetStatus, Propose, RaftActor, RaftWiring, TransferLeadership};
use crate::actors::transport::TransportActor;
use crate::actors::worker::{AttachRuntime, StopAllTasks, WorkerActor};
use crate::consensus::store_machine::{raft_id_of, EventQueue, SharedStore, StoreMachine};
use crate::consensus::{RaftReplica, RedbStorage, ReplicaConfig};
use crate::core::ids;
use crate::core::model::{Availability, ClusterInfo, Node, NodeRole, NodeStatus, Resources};
use crate::core::store::Command;
use crate::net::message::{JoinRequest, Message as WireMessage, NodeDescription, RoleChange};
use crate::net::tls::{self, ClusterCa, Credentials, Role};
use crate::net::token::{self, JoinToken};
use crate::net::transport::{self, Transport, TransportConfig};
use crate::node::state::{
    self, ClientConfig, NodeSettings, CLIENT_FILE, CREDENTIALS_FILE, NODE_FILE, RAFT_FILE,
};
use crate::runtime::sim::SimRuntime;
use crate::runtime::{ContainerRuntime, RuntimeChoice};
use std::sync::Arc;

/// Default UDP address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4240";
/// Default Raft tick.
pub const DEFAULT_RAFT_TICK_MS: u64 = 100;
/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u64 = 1_000;

/// Failures of bootstrapping.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory is unusable.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// The state directory already holds a node (use `start`), or holds none (use init/join).
    #[error("{0}")]
    StateDir(String),
    /// Certificates could not be made or read.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The join token is not acceptable.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// The network failed.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// Raft could not start.
    #[error("raft: {0}")]
    Raft(String),
    /// The cluster refused or failed.
    #[error("{0}")]
    Cluster(String),
}

/// Options common to init, join and dev.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address others reach this node at (default: `listen`).
    pub advertise_addr: Option<SocketAddr>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Hostname to report (default: the machine's).
    pub hostname: Option<String>,
    /// `auto`, `docker` or `process`.
    pub runtime: String,
    /// Node labels.
    pub labels: Vec<(String, String)>,
    /// Allow chaos commands.
    pub enable_chaos: bool,
    /// Raft tick period.
    pub raft_tick_ms: u64,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// With `runtime` = `sim`: how long a simulated task takes to start.
    pub sim_task_start_ms: u64,
}

/// What `init` prints.
#[derive(Debug)]
pub struct InitSummary {
    /// This node's ID.
    pub node_id: String,
    /// The worker join token.
    pub worker_token: String,
    /// Where workers join.
    pub advertise_addr: String,
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn machine_resources() -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .unwrap_or(0);
    Resources {
        nano_cpus: cpus * 1_000_000_000,
        memory_bytes: memory_kib * 1024,
    }
}

fn settings_from(
    options: &NodeOptions,
    node_id: String,
    role: Role,
    managers: Vec<String>,
) -> NodeSettings {
    let advertise = options.advertise_addr.unwrap_or(options.listen);
    NodeSettings {
        node_id,
        role,
        listen: options.listen.to_string(),
        advertise_addr: advertise.to_string(),
        hostname: options.hostname.clone().unwrap_or_else(machine_hostname),
        runtime: options.runtime.clone(),
        labels: options.labels.clone(),
        manager_addrs: managers,
        raft_tick_ms: options.raft_tick_ms,
        heartbeat_ms: options.heartbeat_ms,
        sim_task_start_ms: options.sim_task_start_ms,
    }
}

fn refuse_existing(state_dir: &Path) -> Result<(), DaemonError> {
    if state_dir.join(NODE_FILE).exists() {
        return Err(DaemonError::StateDir(format!(
            "{} already holds a node; use `flotilla-node start --state-dir {}`",
            state_dir.display(),
            state_dir.display()
        )));
    }
    Ok(())
}

/// Creates a new cluster in `options.state_dir` and starts its first manager. Returns what
/// `init` prints; the node runs until [`wait_for_shutdown`] returns.
pub async fn init(options: NodeOptions) -> Result<(InitSummary, RunningNode), DaemonError> {
    refuse_existing(&options.state_dir)?;
    let mut rng = rand::rng();
    let cluster_id = ids::new_id(&mut rng);
    let node_id = ids::new_id(&mut rng);
    let ca = ClusterCa::create(&cluster_id)?;
    let credentials = ca.issue(&node_id, Role::Manager)?;
    let admin = ca.issue("admin", Role::Admin)?;
    let settings = settings_from(&options, node_id.clone(), Role::Manager, vec![]);
    let cluster = ClusterInfo {
        id: cluster_id,
        ca_cert_pem: ca.cert_pem().to_string(),
        ca_key_pem: ca.key_pem().to_string(),
        worker_join_secret: token::generate_secret()?,
        manager_join_secret: token::generate_secret()?,
        created_at_ms: crate::actors::raft::system_now_ms(),
    };
    let worker_token = JoinToken::new(ca.digest(), cluster.worker_join_secret.clone()).to_string();
    std::fs::create_dir_all(&options.state_dir).map_err(|e| {
        DaemonError::StateDir(format!(
            "cannot create {}: {e}",
            options.state_dir.display()
        ))
    })?;
    state::write_toml(&options.state_dir.join(CREDENTIALS_FILE), &credentials)?;
    state::write_toml(
        &options.state_dir.join(CLIENT_FILE),
        &ClientConfig {
            managers: vec![settings.advertise_addr.clone()],
            credentials: admin,
        },
    )?;
    let manager = start_replica(&options.state_dir, &settings.node_id, RaftStart::Bootstrap)?;
    // node.toml last: its presence means "initialized".
    state::write_toml(&options.state_dir.join(NODE_FILE), &settings)?;
    let running = run(
        settings.clone(),
        &options.state_dir,
        credentials,
        Some(manager),
        options.enable_chaos,
    )
    .await?;
    let manager = running
        .raft
        .clone()
        .ok_or_else(|| DaemonError::Raft("no raft actor".into()))?;
    wait_for_leadership(&manager).await?;
    let self_node = Node {
        id: node_id.clone(),
        hostname: settings.hostname.clone(),
        role: NodeRole::Manager,
        status: NodeStatus::Unknown,
        availability: Availability::Active,
        labels: settings.labels.iter().cloned().collect(),
        addr: settings.advertise_addr.clone(),
        engine_version: String::new(),
        resources: Resources::default(),
        meta: Default::default(),
    };
    for command in [
        Command::InitCluster(cluster),
        Command::UpsertNode(self_node),
    ] {
        manager
            .send(Propose { command })
            .await
            .map_err(|e| DaemonError::Raft(e.to_string()))?
            .map_err(|e| DaemonError::Raft(e.to_string()))?;
    }
    Ok((
        InitSummary {
            node_id,
            worker_token,
            advertise_addr: settings.advertise_addr,
        },
        running,
    ))
}

async fn wait_for_leadership(raft: &Addr<RaftActor>) -> Result<(), DaemonError> {
    for _ in 0..200 {
        let status = raft
            .send(GetStatus)
            .await
            .map_err(|e| DaemonError::Raft(e.to_string()))?;
        if status.leadership.is_leader {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(DaemonError::Raft(
        "this manager did not become leader within 10 s".into(),
    ))
}

/// Opens the Raft database with owner-only permissions: it holds the CA key and join secrets.
fn open_raft_storage(state_dir: &Path) -> Result<RedbStorage, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let path = state_dir.join(RAFT_FILE);
    let storage = RedbStorage::open(&path).map_err(|e| DaemonError::Raft(e.to_string()))?;
    for (target, mode) in [(path.as_path(), 0o600), (state_dir, 0o700)] {
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            DaemonError::StateDir(format!("cannot restrict {}: {e}", target.display()))
        })?;
    }
    Ok(storage)
}

/// How a manager's Raft replica comes up.
enum RaftStart {
    /// A new cluster with this manager as its only voter (`init`).
    Bootstrap,
    /// Empty storage; the leader adds this manager and sends a snapshot (`join`).
    Join,
    /// From the state directory (`start`). Empty storage means a promoted worker: it joins.
    Restart,
}

fn start_replica(
    state_dir: &Path,
    node_id: &str,
    how: RaftStart,
) -> Result<ManagerStart, DaemonError> {
    let storage = open_raft_storage(state_dir)?;
    let store = SharedStore::default();
    let events = EventQueue::default();
    let raft_id = raft_id_of(node_id);
    let config = replica_config(raft_id);
    let machine = StoreMachine::new(store.clone(), events.clone());
    let replica = match how {
        RaftStart::Bootstrap => RaftReplica::bootstrap(config, storage, machine, &[raft_id]),
        RaftStart::Restart if !storage.is_empty() => RaftReplica::restart(config, storage, machine),
        RaftStart::Join | RaftStart::Restart => RaftReplica::join(config, storage, machine),
    }
    .map_err(|e| DaemonError::Raft(e.to_string()))?;
    Ok((replica, store, events))
}

fn replica_config(raft_id: u64) -> ReplicaConfig {
    ReplicaConfig::new(raft_id)
}

/// Joins the cluster at `manager` with `token_text`, writes the state directory, and starts.
pub async fn join(
    options: NodeOptions,
    token_text: &str,
    manager: SocketAddr,
) -> Result<RunningNode, DaemonError> {
    refuse_existing(&options.state_dir)?;
    let token = JoinToken::parse(token_text)?;
    let (key_pem, csr_der) = tls::generate_request()?;
    let (client_config, verifier) = tls::pinned_client_config(token.ca_digest)?;
    let hostname = options.hostname.clone().unwrap_or_else(machine_hostname);
    let advertise = options.advertise_addr.unwrap_or(options.listen);
    let request = WireMessage::Join(JoinRequest {
        secret: token.secret.clone(),
        csr_der,
        hostname,
        advertise_addr: advertise.to_string(),
    });
    let bind: SocketAddr = SocketAddr::new(options.listen.ip(), 0);
    let reply = transport::request_with(
        bind,
        client_config,
        manager,
        request,
        Duration::from_secs(10),
    )
    .await;
    if verifier.saw_mismatch() {
        return Err(token::TokenError::CaMismatch.into());
    }
    let accepted = match reply {
        Ok(WireMessage::JoinAccepted(accepted)) => accepted,
        Ok(other) => {
            return Err(DaemonError::Cluster(format!(
                "unexpected answer to join: {}",
                other.kind_name()
            )))
        }
        Err(transport::TransportError::Remote(error)) => {
            return Err(DaemonError::Cluster(error.message))
        }
        Err(error) => return Err(error.into()),
    };
    let credentials = Credentials {
        cert_pem: accepted.cert_pem,
        key_pem,
        ca_pem: accepted.ca_pem,
    };
    let identity = credentials.identity()?;
    if identity.node_id != accepted.node_id || identity.role != accepted.role {
        return Err(DaemonError::Cluster(
            "the certificate does not match the join answer".into(),
        ));
    }
    let mut managers = accepted.manager_addrs;
    if !managers.contains(&manager.to_string()) {
        managers.push(manager.to_string());
    }
    let settings = settings_from(&options, accepted.node_id, accepted.role, managers);
    std::fs::create_dir_all(&options.state_dir).map_err(|e| {
        DaemonError::StateDir(format!(
            "cannot create {}: {e}",
            options.state_dir.display()
        ))
    })?;
    state::write_toml(&options.state_dir.join(CREDENTIALS_FILE), &credentials)?;
    let manager_parts = if accepted.role == Role::Manager {
        Some(start_replica(
            &options.state_dir,
            &settings.node_id,
            RaftStart::Join,
        )?)
    } else {
        None
    };
    state::write_toml(&options.state_dir.join(NODE_FILE), &settings)?;
    run(
        settings,
        &options.state_dir,
        credentials,
        manager_parts,
        options.enable_chaos,
    )
    .await
}

/// Starts a node that `init` or `join` created, from its state directory.
pub async fn start(state_dir: &Path, enable_chaos: bool) -> Result<RunningNode, DaemonError> {
    if !state_dir.join(NODE_FILE).exists() {
        return Err(DaemonError::StateDir(format!(
            "{} holds no node; create one with `flotilla-node init` or `join`",
            state_dir.display()
        )));
    }
    let settings: NodeSettings = state::read_toml(&state_dir.join(NODE_FILE))?;
    let credentials: Credentials = state::read_toml(&state_dir.join(CREDENTIALS_FILE))?;
    let manager_parts = if settings.role == Role::Manager {
        Some(start_replica(
            state_dir,
            &settings.node_id,
            RaftStart::Restart,
        )?)
    } else {
        None
    };
    run(
        settings,
        state_dir,
        credentials,
        manager_parts,
        enable_chaos,
    )
    .await
}

async fn select_runtime(
    settings: &NodeSettings,
    state_dir: &Path,
) -> Result<(Arc<dyn ContainerRuntime>, Option<Arc<SimRuntime>>), DaemonError> {
    if settings.runtime == "sim" {
        let sim = Arc::new(SimRuntime::new(
            &settings.node_id,
            settings.sim_task_start_ms,
        ));
        return Ok((sim.clone(), Some(sim)));
    }
    let choice: RuntimeChoice = settings
        .runtime
        .parse()
        .map_err(|e: crate::runtime::RuntimeError| DaemonError::StateDir(e.to_string()))?;
    let runtime = crate::runtime::select(choice, &settings.node_id, state_dir)
        .await
        .map_err(|e| DaemonError::Cluster(format!("container runtime: {e}")))?;
    Ok((runtime, None))
}

/// The clock and seed a node's actors are given: the system clock, and `FLOTILLA_SEED` when
/// set (a replayable run), else a seed from the operating system.
fn node_environment() -> NodeEnvironment {
    let seed = std::env::var("FLOTILLA_SEED")
        .ok()
        .and_then(|value| value.trim().parse().ok());
    NodeEnvironment::system(seed)
}

/// A started node's actors.
pub struct RunningNode {
    /// The settings it runs with.
    pub settings: NodeSettings,
    /// The endpoint.
    pub transport: Transport,
    /// The Raft actor, on managers.
    pub raft: Option<Addr<RaftActor>>,
    /// The worker actor.
    pub worker: Addr<WorkerActor>,
    /// The applied store, on managers.
    pub store: Option<SharedStore>,
    /// The simulated runtime, when the node runs with `--runtime sim` (tests, hollow nodes).
    pub sim: Option<Arc<SimRuntime>>,
}

type ManagerStart = (RaftReplica<StoreMachine>, SharedStore, EventQueue);

async fn run(
    settings: NodeSettings,
    state_dir: &Path,
    credentials: Credentials,
    manager: Option<ManagerStart>,
    enable_chaos: bool,
) -> Result<RunningNode, DaemonError> {
    let (runtime, sim) = select_runtime(&settings, state_dir).await?;
    let engine_version = match runtime.version().await {
        Ok(version) => version,
        Err(_) => runtime.kind().to_string(),
    };
    let listen: SocketAddr = settings.listen.parse().map_err(|_| {
        DaemonError::StateDir(format!(
            "listen address {:?} is not host:port",
            settings.listen
        ))
    })?;
    let heartbeat = Duration::from_millis(settings.heartbeat_ms.max(10));
    let environment = node_environment();
    // The node actor must exist before the endpoint (which delivers to it), and the endpoint
    // before the actors that send: create the context first, start the actor last.
    let node_context = Context::<NodeActor>::new();
    let node_address = node_context.address();
    let transport = Transport::bind(
        TransportConfig {
            listen,
            credentials,
        },
        node_address.clone().recipient(),
    )?;
    let transport_actor = TransportActor::new(transport.clone()).start();
    let store_handle = manager.as_ref().map(|(_, store, _)| store.clone());
    let (manager_parts, raft) = match manager {
        Some((replica, store, events)) => {
            let mut peers = HashMap::new();
            if let Ok(addr) = settings.advertise_addr.parse() {
                peers.insert(raft_id_of(&settings.node_id), addr);
            }
            let reopen_dir = state_dir.to_path_buf();
            let (reopen_store, reopen_events) = (store.clone(), events.clone());
            let raft_id = raft_id_of(&settings.node_id);
            let reopen = move || {
                let storage =
                    RedbStorage::open(reopen_dir.join(RAFT_FILE)).map_err(|e| e.to_string())?;
                let machine = StoreMachine::new(reopen_store.clone(), reopen_events.clone());
                RaftReplica::restart(replica_config(raft_id), storage, machine)
                    .map_err(|e| e.to_string())
            };
            let tick = Duration::from_millis(settings.raft_tick_ms.max(1));
            let (raft_transport, raft_requests) =
                (transport.clone(), transport_actor.clone().recipient());
            let raft_store = store.clone();
            let raft_environment = environment.clone();
            // Its own thread: persisting a Ready waits for the disk (fdatasync), and the
            // transport, the dispatcher's heartbeats and the CLI must not wait with it.
            let raft_thread = Arbiter::new();
            let raft = Supervisor::start_in_arbiter(&raft_thread.handle(), move |_| {
                RaftActor::new(
                    replica,
                    Box::new(reopen),
                    RaftWiring {
                        store: raft_store,
                        events,
                        transport: raft_transport,
                        requests: raft_requests,
                        tick_period: tick,
                        peers,
                        environment: raft_environment,
                    },
                )
            });
            let control = ControlActor::new(
                settings.node_id.clone(),
                store.clone(),
                raft.clone(),
                transport_actor.clone().recipient(),
                environment.rng("control/ids"),
            )
            .start();
            (
                Some(ManagerParts {
                    raft: raft.clone(),
                    control,
                    store,
                    environment: environment.clone(),
                }),
                Some(raft),
            )
        }
        None => (None, None),
    };
    node_context.run(NodeActor::new(manager_parts, heartbeat, enable_chaos));
    node_address.do_send(AttachTransport {
        transport: transport.clone(),
        sender: transport_actor.clone().recipient(),
    });
    let mut managers: Vec<SocketAddr> = settings
        .manager_addrs
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if settings.role == Role::Manager {
        if let Ok(own) = settings.advertise_addr.parse() {
            managers.insert(0, own);
        }
    }
    let description = NodeDescription {
        hostname: settings.hostname.clone(),
        addr: settings.advertise_addr.clone(),
        engine_version,
        resources: machine_resources(),
        labels: settings.labels.iter().cloned().collect(),
    };
    let requests = transport_actor.recipient();
    let worker_state = state_dir.to_path_buf();
    let worker = Supervisor::start(move |_| {
        WorkerActor::new(description, managers, requests, heartbeat, worker_state)
    });
    worker.do_send(AttachRuntime(runtime));
    node_address.do_send(AttachWorker(worker.clone()));
    Ok(RunningNode {
        settings,
        transport,
        raft,
        worker,
        store: store_handle,
        sim,
    })
}

/// Joins `count` hollow workers (`flotilla-node sim`): each is a real node to the managers,
/// with its own identity, certificate, endpoint, heartbeats and status reports, running the
/// sim runtime. Node `i` listens on `base.ip():base.port()+i` with state under
/// `state_dir/hollow-i`. Joins run a few at a time.
pub async fn hollow_nodes(
    template: NodeOptions,
    token: &str,
    manager: SocketAddr,
    count: usize,
) -> Result<Vec<RunningNode>, DaemonError> {
    const JOINS_IN_FLIGHT: usize = 8;
    let mut nodes = Vec::with_capacity(count);
    let indexes: Vec<usize> = (0..count).collect();
    for batch in indexes.chunks(JOINS_IN_FLIGHT) {
        let joins = batch.iter().map(|i| {
            let port = template.listen.port().checked_add(*i as u16);
            let mut options = template.clone();
            options.runtime = "sim".to_string();
            options.hostname = Some(format!("hollow-{i}"));
            options.state_dir = template.state_dir.join(format!("hollow-{i}"));
            async move {
                let port = port.ok_or_else(|| {
                    DaemonError::StateDir("not enough ports above the base port".into())
                })?;
                options.listen = SocketAddr::new(template.listen.ip(), port);
                join(options, token, manager).await
            }
        });
        for joined in futures::future::join_all(joins).await {
            nodes.push(joined?);
        }
    }
    Ok(nodes)
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Waits for SIGINT or SIGTERM, then shuts the node down cleanly: a leader hands leadership
/// over first, and the endpoint tells its peers it is going.
pub async fn wait_for_shutdown(node: RunningNode) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    if let Some(raft) = &node.raft {
        if let Ok(status) = raft.send(GetStatus).await {
            if status.leadership.is_leader && status.voters.len() > 1 {
                raft.do_send(TransferLeadership { to: None });
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match raft.send(GetStatus).await {
                        Ok(status) if !status.leadership.is_leader => break,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        }
    }
    let stopping = node.worker.send(StopAllTasks {
        grace_ms: SHUTDOWN_TASK_GRACE_MS,
    });
    if tokio::time::timeout(
        Duration::from_millis(SHUTDOWN_TASK_GRACE_MS + 2_000),
        stopping,
    )
    .await
    .is_err()
    {
        tracing::warn!("some tasks did not stop in time");
    }
    node.transport.shutdown().await;
}

/// Grace period for each task when the node shuts down cleanly.
pub const SHUTDOWN_TASK_GRACE_MS: u64 = 3_000;

/// Writes the credentials and role of a promotion or demotion into the state directory and
/// replaces this process with `flotilla-node start` on it. Only returns on failure.
pub fn restart_in_role(state_dir: &Path, change: RoleChange) -> Result<(), DaemonError> {
    use std::os::unix::process::CommandExt;
    let node_file = state_dir.join(NODE_FILE);
    let mut settings: NodeSettings = state::read_toml(&node_file)?;
    if change.credentials.identity()?.node_id != settings.node_id {
        return Err(DaemonError::Cluster(
            "new credentials name another node".into(),
        ));
    }
    state::write_toml(&state_dir.join(CREDENTIALS_FILE), &change.credentials)?;
    if change.role == Role::Worker {
        // A demoted manager's Raft state is history; a later promotion starts afresh.
        let raft = state_dir.join(RAFT_FILE);
        if raft.exists() {
            std::fs::rename(&raft, state_dir.join("raft.redb.demoted")).map_err(|e| {
                DaemonError::StateDir(format!("cannot set aside {}: {e}", raft.display()))
            })?;
        }
    }
    settings.role = change.role;
    state::write_toml(&node_file, &settings)?;
    let program = std::env::current_exe()
        .map_err(|e| DaemonError::StateDir(format!("cannot find this program: {e}")))?;
    let mut command = std::process::Command::new(program);
    command.arg("start").arg("--state-dir").arg(state_dir);
    if std::env::args().any(|arg| arg == "--enable-chaos") {
        command.arg("--enable-chaos");
    }
    let error = command.exec();
    Err(DaemonError::StateDir(format!("cannot restart: {error}")))
}
