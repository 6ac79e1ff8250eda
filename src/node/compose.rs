//! The composition root: the actors of one node, created and wired together. Every start
//! (`init`, `join`, `start`, hollow nodes) ends here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::control::ControlActor;
use crate::actors::environment::NodeEnvironment;
use crate::actors::node::{AttachGossip, AttachTransport, AttachWorker, ManagerParts, NodeActor};
use crate::actors::raft::{RaftActor, RaftWiring};
use crate::actors::revocation::{store_revocation_check, RevocationEnforcer};
use crate::actors::routing::{AnnounceVia, RoutingActor, RoutingSource};
use crate::actors::transport::TransportActor;
use crate::actors::worker::{AttachRuntime, WorkerActor};
use crate::consensus::store_machine::{raft_id_of, StoreMachine};
use crate::consensus::{RaftMember, RedbStorage};
use crate::core::model::NodeRole;
use crate::core::secrets::Keyring;
use crate::metrics::NodeMetrics;
use crate::net::control_proof::ProofVerifier;
use crate::net::mesh::Mesh;
use crate::net::message::NodeDescription;
use crate::net::tls::{Credentials, Role};
use crate::net::transport::{Transport, TransportConfig};
use crate::node::credential_keeper::CredentialKeeper;
use crate::node::daemon::{DaemonError, RunningNode};
use crate::node::key_keeper::{KeyFetch, KeyKeeper};
use crate::node::locked::UnlockedEndpoint;
use crate::node::metrics::{self, MetricsListen, MetricsSources};
use crate::node::raft_start::{replica_config, ManagerStart};
use crate::node::role_restart::RoleRestarter;
use crate::node::settings::machine_resources;
use crate::node::state::{NodeSettings, RAFT_FILE};
use crate::runtime::metered::MeteredRuntime;
use crate::runtime::sim::SimRuntime;
use crate::runtime::{ContainerRuntime, RuntimeChoice};

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

/// `FLOTILLA_CERT_VALIDITY_SECS`, when set: the validity of the node certificates this
/// process signs (tests of expiry and renewal; the default is 90 days).
pub const CERT_VALIDITY_ENV: &str = "FLOTILLA_CERT_VALIDITY_SECS";

/// Reads [`CERT_VALIDITY_ENV`] (every start path calls it before signing anything).
pub(crate) fn configure_cert_validity() {
    let Ok(text) = std::env::var(CERT_VALIDITY_ENV) else {
        return;
    };
    match text.trim().parse::<u64>() {
        Ok(seconds) if seconds > 0 => {
            crate::net::tls::set_node_cert_validity(Duration::from_secs(seconds))
        }
        _ => {
            tracing::warn!(value = %text, "{CERT_VALIDITY_ENV} is not a positive number of seconds; ignored")
        }
    }
}

/// Starts every actor of the node described by `settings`; `manager` is its Raft replica, on
/// managers, and `keyring` holds its data key. `endpoint` is the endpoint an autolocked
/// manager bound and was unlocked on (`None`: bind one here).
pub(crate) async fn run(
    settings: NodeSettings,
    state_dir: &Path,
    credentials: Credentials,
    manager: Option<ManagerStart>,
    keyring: Keyring,
    enable_chaos: bool,
    endpoint: Option<UnlockedEndpoint>,
) -> Result<RunningNode, DaemonError> {
    configure_cert_validity();
    // Bound first: an explicit address that cannot be had stops the start before anything
    // runs.
    let node_role = match settings.role {
        Role::Manager => NodeRole::Manager,
        _ => NodeRole::Worker,
    };
    let metrics_listen = settings
        .metrics_listen
        .parse::<MetricsListen>()
        .map_err(|reason| {
            DaemonError::StateDir(format!("metrics_listen in node.toml: {reason}"))
        })?;
    let metrics_listener = metrics::bind(metrics_listen, &settings.advertise_addr, node_role)?;
    let node_metrics = NodeMetrics::default();
    let (runtime, sim) = select_runtime(&settings, state_dir).await?;
    let runtime: Arc<dyn ContainerRuntime> =
        Arc::new(MeteredRuntime::new(runtime, node_metrics.clone()));
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
    // Control commands must carry the admin's proof, checked against the cluster CA.
    let proofs = ProofVerifier::new(&credentials.ca_pem)?;
    let own_credentials = credentials.clone();
    let transport = match endpoint {
        Some(endpoint) => {
            if endpoint.credentials != credentials {
                // Re-issued at start-up after the unlock.
                endpoint.transport.reload_credentials(&credentials)?;
            }
            endpoint.gate.open(node_address.clone().recipient());
            endpoint.transport
        }
        None => Transport::bind(
            TransportConfig {
                listen,
                credentials,
            },
            node_address.clone().recipient(),
        )?,
    };
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
                RaftMember::restart(replica_config(raft_id), storage, machine)
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
            let raft_metrics = node_metrics.clone();
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
                        metrics: raft_metrics,
                    },
                )
            });
            // Every manager refuses revoked certificates, at the handshake and on live
            // connections when a revocation applies.
            transport.set_revocation_check(store_revocation_check(store.clone()));
            RevocationEnforcer::new(raft.clone(), transport.clone()).start();
            KeyKeeper::new(
                state_dir.to_path_buf(),
                store.clone(),
                keyring.clone(),
                raft.clone(),
                KeyFetch {
                    requests: transport_actor.clone().recipient(),
                    own_addr: settings.advertise_addr.clone(),
                    manager_addrs: settings.manager_addrs.clone(),
                },
            )
            .start();
            let control = ControlActor::new(
                settings.node_id.clone(),
                store.clone(),
                raft.clone(),
                transport_actor.clone().recipient(),
                environment.rng("control/ids"),
                proofs,
                keyring.clone(),
            )
            .start();
            (
                Some(ManagerParts {
                    raft: raft.clone(),
                    control,
                    store,
                    environment: environment.clone(),
                    keyring: keyring.clone(),
                    metrics: node_metrics.clone(),
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
    // The routing mesh (SPEC §8): every node forwards its published ports; managers derive
    // the table from their store, everyone takes it from gossip too. Hollow nodes (the sim
    // runtime) run no tasks anyone could reach, and share one address: they have none.
    let mesh = (sim.is_none())
        .then(|| advertise_ip(&settings.advertise_addr))
        .flatten()
        .map(Mesh::new);
    let mesh_stats = mesh.as_ref().map(Mesh::stats);
    let routing = mesh.clone().map(|mesh| {
        let source = raft
            .clone()
            .zip(store_handle.clone())
            .map(|(raft, store)| RoutingSource { store, raft });
        RoutingActor::new(mesh, source).start()
    });
    // Gossip (issue 17): every node, manager or worker, joins through the managers; the
    // tables it learns go to the routing actor, which hands the leader's to it.
    let gossip = crate::node::gossip_start::start_gossip(
        &settings,
        &environment,
        &managers,
        &transport_actor,
        routing.clone().map(|routing| routing.recipient()),
    );
    if let Some(gossip) = &gossip {
        node_address.do_send(AttachGossip(gossip.clone()));
        if let Some(routing) = &routing {
            routing.do_send(AnnounceVia(gossip.clone().recipient()));
        }
        if let Some(raft) = &raft {
            // Managers learn removals from the store and tell gossip.
            raft.do_send(crate::actors::raft::Subscribe {
                events: Some(gossip.clone().recipient()),
                leadership: None,
            });
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
    let worker_node_id = settings.node_id.clone();
    // The worker reports a promotion or demotion; restarting the process is this layer's job.
    let role_changes = RoleRestarter::new(state_dir.to_path_buf())
        .start()
        .recipient();
    // Renewed certificates are kept on disk and swapped into the endpoint here too.
    let renewed = CredentialKeeper::new(state_dir.to_path_buf(), transport.clone())
        .start()
        .recipient();
    let worker = Supervisor::start(move |_| {
        let worker = WorkerActor::new(
            worker_node_id,
            description,
            managers,
            requests,
            heartbeat,
            worker_state,
        )
        .with_role_changes(role_changes)
        .with_renewal(own_credentials, renewed);
        match mesh {
            Some(mesh) => worker.with_mesh(mesh),
            None => worker,
        }
    });
    worker.do_send(AttachRuntime(runtime));
    node_address.do_send(AttachWorker(worker.clone()));
    if let Some(listener) = metrics_listener {
        let sources = MetricsSources {
            node_id: settings.node_id.clone(),
            role: node_role,
            store: store_handle.clone(),
            raft: raft.clone(),
            measured: node_metrics,
            mesh: mesh_stats,
        };
        metrics::serve(listener, sources)?;
    }
    Ok(RunningNode {
        settings,
        transport,
        raft,
        worker,
        store: store_handle,
        sim,
        routing,
        gossip,
    })
}

/// The IP of an advertise address (`host:port`), where the node's mesh listens.
fn advertise_ip(advertise_addr: &str) -> Option<std::net::IpAddr> {
    match advertise_addr.parse::<SocketAddr>() {
        Ok(addr) => Some(addr.ip()),
        Err(_) => {
            tracing::warn!(
                advertise_addr,
                "advertise address is not ip:port; no routing mesh on this node"
            );
            None
        }
    }
}
