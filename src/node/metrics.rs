//! The Prometheus endpoint (`--metrics-listen`, SPEC §11): `GET /metrics` in the text format,
//! every value read when it is scraped (the store, the Raft actor's status), so nothing on the
//! hot paths pays for a metric nobody scrapes.
//!
//! Defaults (SPEC §10, §11): a manager serves on its advertise IP, port 9323; a worker serves
//! nothing unless given an address. A default port already in use costs one warning and the
//! node runs without the endpoint; an address given explicitly that cannot be bound stops the
//! start. Every metric is listed in `docs/metrics.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use actix::Addr;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::actors::raft::{GetStatus, RaftActor};
use crate::consensus::store_machine::SharedStore;
use crate::core::model::{NodeRole, TaskState};
use crate::core::secrets::SecretKind;
use crate::core::spec::ServiceMode;
use crate::core::store::Store;
use crate::net::admin::lowercase;

/// Why the endpoint could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// An address given explicitly could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bound socket could not be handed to the runtime.
    #[error("metrics listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// The default metrics port of a manager (Docker's metrics-addr convention).
pub const DEFAULT_METRICS_PORT: u16 = 9323;

/// Where a node serves its metrics, as `--metrics-listen` gives it (kept in `node.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    /// Managers: the advertise IP, port 9323, if free; workers: none.
    Default,
    /// `off`.
    Off,
    /// `IP:PORT`: bound or the start fails.
    At(SocketAddr),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "" | "default" => Ok(MetricsListen::Default),
            "off" => Ok(MetricsListen::Off),
            _ => text
                .parse()
                .map(MetricsListen::At)
                .map_err(|_| format!("{text:?}: expected IP:PORT, default or off")),
        }
    }
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsListen::Default => f.write_str("default"),
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::At(addr) => write!(f, "{addr}"),
        }
    }
}

/// What a scrape reads.
#[derive(Clone)]
pub struct MetricsSources {
    /// This node's ID.
    pub node_id: String,
    /// Its role.
    pub role: NodeRole,
    /// On managers: the applied store.
    pub store: Option<SharedStore>,
    /// On managers: the Raft actor.
    pub raft: Option<Addr<RaftActor>>,
    /// The latencies and errors the node's parts measured.
    pub measured: crate::metrics::NodeMetrics,
    /// What the routing mesh forwarded (not on hollow nodes).
    pub mesh: Option<std::sync::Arc<crate::net::mesh::MeshStats>>,
}

/// Binds the endpoint `listen` asks for on a node of `role` advertised at `advertise`;
/// `Ok(None)`: no endpoint (off, a worker's default, or a busy default port).
pub fn bind(
    listen: MetricsListen,
    advertise: &str,
    role: NodeRole,
) -> Result<Option<std::net::TcpListener>, MetricsError> {
    let (addr, explicit) = match (listen, role) {
        (MetricsListen::Off, _) | (MetricsListen::Default, NodeRole::Worker) => return Ok(None),
        (MetricsListen::At(addr), _) => (addr, true),
        (MetricsListen::Default, NodeRole::Manager) => {
            let Ok(advertise) = advertise.parse::<SocketAddr>() else {
                tracing::warn!(
                    advertise,
                    "no metrics endpoint: the advertise address has no IP"
                );
                return Ok(None);
            };
            (SocketAddr::new(advertise.ip(), DEFAULT_METRICS_PORT), false)
        }
    };
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => Ok(Some(listener)),
        Err(error) if !explicit => {
            tracing::warn!(%addr, %error, "default metrics port unavailable; running without the metrics endpoint");
            Ok(None)
        }
        Err(source) => Err(MetricsError::Bind { addr, source }),
    }
}

/// Refuses an explicit `--metrics-listen` that cannot be bound, before `init` or `join`
/// changes anything.
pub fn check_explicit(listen: MetricsListen) -> Result<(), MetricsError> {
    match listen {
        MetricsListen::At(_) => bind(listen, "", NodeRole::Manager).map(drop),
        MetricsListen::Default | MetricsListen::Off => Ok(()),
    }
}

/// Serves `listener` on the current tokio runtime until the process ends.
pub fn serve(listener: std::net::TcpListener, sources: MetricsSources) -> Result<(), MetricsError> {
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let sources = sources.clone();
            async move { scrape(&sources).await }
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(())
}

async fn scrape(
    sources: &MetricsSources,
) -> (
    axum::http::StatusCode,
    [(axum::http::header::HeaderName, &'static str); 1],
    String,
) {
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )];
    let raft = match &sources.raft {
        Some(raft) => raft.send(GetStatus).await.ok(),
        None => None,
    };
    let store = sources.store.as_ref().map(SharedStore::read);
    let registry = registry(sources, raft.as_ref(), store.as_deref());
    drop(store);
    let mut text = String::new();
    match encode(&mut text, &registry) {
        Ok(()) => (axum::http::StatusCode::OK, content_type, text),
        Err(error) => {
            let mut message = String::new();
            let _ = write!(message, "cannot encode metrics: {error}");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                content_type,
                message,
            )
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node_id: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeStatusLabels {
    status: String,
    availability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

fn gauge_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let gauge = Gauge::<i64>::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, gauge);
}

fn as_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The registry of one scrape.
fn registry(
    sources: &MetricsSources,
    raft: Option<&crate::actors::raft::RaftStatus>,
    store: Option<&Store>,
) -> Registry {
    let mut registry = Registry::with_prefix("flotilla");
    let info =
        gauge_family::<NodeLabels>(&mut registry, "node_info", "This node: its ID and role.");
    info.get_or_create(&NodeLabels {
        node_id: sources.node_id.clone(),
        role: lowercase(&sources.role),
    })
    .set(1);
    sources
        .measured
        .register(&mut registry, sources.raft.is_some());
    if let Some(mesh) = &sources.mesh {
        register_mesh(&mut registry, mesh);
    }
    if let Some(status) = raft {
        gauge(
            &mut registry,
            "raft_term",
            "The Raft term this manager is in",
            status.leadership.term,
        );
        gauge(
            &mut registry,
            "raft_commit_index",
            "The highest Raft index known committed",
            status.commit_index,
        );
        gauge(
            &mut registry,
            "raft_applied_index",
            "The highest Raft index applied to the store",
            status.applied_index,
        );
        gauge(
            &mut registry,
            "raft_leader",
            "1 when this manager leads the Raft group, else 0",
            u64::from(status.leadership.is_leader),
        );
        gauge(
            &mut registry,
            "raft_voters",
            "Voting members of the Raft group",
            status.voters.len() as u64,
        );
    }
    let Some(store) = store else {
        return registry;
    };
    let objects = gauge_family::<KindLabels>(
        &mut registry,
        "store_objects",
        "Objects in the store, by kind.",
    );
    for (kind, count) in [
        ("node", store.nodes().len()),
        ("service", store.services().len()),
        ("task", store.tasks().len()),
        ("secret", store.secrets(SecretKind::Secret).len()),
        ("config", store.secrets(SecretKind::Config).len()),
    ] {
        objects
            .get_or_create(&KindLabels { kind: kind.into() })
            .set(as_i64(count));
    }
    let tasks = gauge_family::<StateLabels>(
        &mut registry,
        "tasks",
        "Tasks in the store, by current state.",
    );
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for task in store.tasks().values() {
        *by_state
            .entry(task.status.state.as_str().to_string())
            .or_default() += 1;
    }
    for (state, count) in by_state {
        tasks
            .get_or_create(&StateLabels { state })
            .set(as_i64(count));
    }
    let nodes = gauge_family::<NodeStatusLabels>(
        &mut registry,
        "nodes",
        "Nodes, by status and availability.",
    );
    for node in store.nodes().values() {
        nodes
            .get_or_create(&NodeStatusLabels {
                status: lowercase(&node.status),
                availability: lowercase(&node.availability),
            })
            .inc();
    }
    let desired = gauge_family::<ServiceLabels>(
        &mut registry,
        "service_replicas_desired",
        "Replicas a replicated service asks for.",
    );
    let running = gauge_family::<ServiceLabels>(
        &mut registry,
        "service_tasks_running",
        "Tasks of a service whose current state is running.",
    );
    for service in store.services().values() {
        let labels = ServiceLabels {
            service: service.spec.name.clone(),
        };
        if let ServiceMode::Replicated { replicas } = service.spec.mode {
            desired
                .get_or_create(&labels)
                .set(i64::try_from(replicas).unwrap_or(i64::MAX));
        }
        let count = store
            .tasks_of_service(&service.id)
            .into_iter()
            .filter(|task| task.status.state == TaskState::Running)
            .count();
        running.get_or_create(&labels).set(as_i64(count));
    }
    registry
}

fn register_mesh(registry: &mut Registry, mesh: &crate::net::mesh::MeshStats) {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, help, value) in [
        (
            "mesh_connections",
            "TCP connections the routing mesh accepted",
            &mesh.connections,
        ),
        (
            "mesh_refused",
            "TCP connections that found no backend",
            &mesh.refused,
        ),
        (
            "mesh_bytes_in",
            "Bytes the mesh forwarded client to backend",
            &mesh.bytes_in,
        ),
        (
            "mesh_bytes_out",
            "Bytes the mesh forwarded backend to client",
            &mesh.bytes_out,
        ),
        (
            "mesh_udp_flows",
            "UDP flows the mesh opened",
            &mesh.udp_flows,
        ),
    ] {
        registry.register(name, help, ConstCounter::new(value.load(Relaxed)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values_parse_and_print_back() {
        for text in ["default", "off", "127.0.0.1:9323"] {
            let parsed: MetricsListen = text.parse().expect(text);
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!("".parse::<MetricsListen>(), Ok(MetricsListen::Default));
        let error = "9323".parse::<MetricsListen>().expect_err("no IP");
        assert!(error.contains("IP:PORT"), "{error}");
    }

    #[test]
    fn a_store_scrape_counts_objects_and_tasks_by_state() {
        use crate::core::store::Command;
        use crate::core::testkit::{node, service, Harness};
        let mut h = Harness::with_nodes(vec![node("n1")]);
        h.apply(Command::CreateService(service("s1", "web", 2)));
        let sources = MetricsSources {
            node_id: "n1".into(),
            role: NodeRole::Manager,
            store: None,
            raft: None,
            measured: crate::metrics::NodeMetrics::default(),
            mesh: None,
        };
        let mut text = String::new();
        encode(&mut text, &registry(&sources, None, Some(&h.store))).expect("encodes");
        assert!(
            text.contains("flotilla_node_info{node_id=\"n1\",role=\"manager\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_store_objects{kind=\"service\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_store_objects{kind=\"node\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_service_replicas_desired{service=\"web\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_service_tasks_running{service=\"web\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
