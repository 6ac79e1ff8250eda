//! The routing mesh's ingress proxy (SPEC §8): every node listens on its advertise IP at each
//! port published in ingress mode and forwards each TCP connection (each UDP flow) to a
//! running task of the publishing service, on any node, round robin.
//!
//! The proxy is plain tokio: `copy_bidirectional` per connection, one socket per UDP port
//! with a flow table. It knows nothing of actors or the store: [`Mesh::apply`] hands it a
//! [`RoutingTable`] (from the node's own store on managers, from gossip everywhere) and it
//! opens, retargets and closes listeners to match. A node that stops getting tables keeps
//! forwarding by the last one it had. Connections already open when their task leaves the
//! table are not cut: they finish on their own, within the task's stop grace period.
//!
//! Files: this one holds the handle and the listener set; `tcp` and `udp` the two forwarders;
//! `proxy_protocol` the PROXY v2 header.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::core::ports::PortProtocol;
use crate::core::routing::{Backend, Route, RoutingTable};

pub mod proxy_protocol;
mod tcp;
mod udp;

/// How long the mesh waits for a backend to accept a TCP connection before trying the next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A UDP flow (client address -> backend) with no datagram either way for this long is
/// forgotten.
pub const UDP_FLOW_IDLE: Duration = Duration::from_secs(60);

/// Counters of what the mesh forwarded (for metrics and `node inspect`).
#[derive(Debug, Default)]
pub struct MeshStats {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// TCP connections that found no backend that accepted them.
    pub refused: AtomicU64,
    /// Bytes forwarded client -> backend (TCP and UDP).
    pub bytes_in: AtomicU64,
    /// Bytes forwarded backend -> client (TCP and UDP).
    pub bytes_out: AtomicU64,
    /// UDP flows opened.
    pub udp_flows: AtomicU64,
}

/// One published port's live state: its current backends and the round-robin cursor.
pub(crate) struct Listener {
    route: RwLock<Route>,
    next: AtomicUsize,
}

impl Listener {
    fn new(route: Route) -> Listener {
        Listener {
            route: RwLock::new(route),
            next: AtomicUsize::new(0),
        }
    }

    /// The backends to try for one connection: all of them, starting at the round-robin
    /// cursor, so a backend that refuses is followed by the others.
    pub(crate) fn candidates(&self) -> (Vec<Backend>, bool) {
        let route = self
            .route
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = route.backends.len();
        if count == 0 {
            return (Vec::new(), route.proxy_protocol);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let ordered = route.backends[start..]
            .iter()
            .chain(&route.backends[..start])
            .cloned()
            .collect();
        (ordered, route.proxy_protocol)
    }
}

struct Bound {
    listener: Arc<Listener>,
    task: JoinHandle<()>,
}

/// Why a published port is not served on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindFailure {
    /// The published port.
    pub published: u16,
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// What the operating system said.
    pub error: String,
}

/// The node's ingress proxy; cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    ip: IpAddr,
    stats: Arc<MeshStats>,
    state: Mutex<State>,
    /// The version of the table in use, for those waiting for a task to leave it.
    applied: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    version: u64,
    table: Arc<RoutingTable>,
    bound: HashMap<(u16, PortProtocol), Bound>,
    failures: HashMap<(u16, PortProtocol), BindFailure>,
}

impl Mesh {
    /// A mesh that listens on `ip` (the node's advertise IP). Must be created inside a tokio
    /// runtime, which runs its listeners.
    pub fn new(ip: IpAddr) -> Mesh {
        Mesh {
            inner: Arc::new(Inner {
                ip,
                stats: Arc::new(MeshStats::default()),
                state: Mutex::new(State::default()),
                applied: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// What it forwarded so far.
    pub fn stats(&self) -> Arc<MeshStats> {
        self.inner.stats.clone()
    }

    /// The version of the table it forwards by (0: none yet).
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// The table it forwards by.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.lock().table.clone()
    }

    /// Ports it could not bind (another process holds them), with the reason.
    pub fn bind_failures(&self) -> Vec<BindFailure> {
        let mut failures: Vec<BindFailure> = self.lock().failures.values().cloned().collect();
        failures.sort_by_key(|failure| (failure.published, failure.protocol));
        failures
    }

    /// Whether the table it forwards by sends anything to `task_id`.
    pub fn routes_to(&self, task_id: &str) -> bool {
        self.lock().table.routes.iter().any(|route| {
            route
                .backends
                .iter()
                .any(|backend| backend.task_id == task_id)
        })
    }

    /// Waits until the table in use sends nothing to `task_id`, at most `bound`; `true` when
    /// it left (or was never in it), `false` when the bound passed first. A stopping task's
    /// replica waits for this before it signals the task (SPEC §8: a task leaves the routing
    /// table before it is stopped).
    pub async fn drained(&self, task_id: &str, bound: Duration) -> bool {
        let mut applied = self.inner.applied.subscribe();
        let left = async {
            loop {
                if !self.routes_to(task_id) {
                    return;
                }
                if applied.changed().await.is_err() {
                    // The mesh is gone: nothing routes any more.
                    return;
                }
            }
        };
        tokio::time::timeout(bound, left).await.is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forward by `table` from now on, unless it is older than the one in use. Opens
    /// listeners for new ports (a port that cannot be bound is logged and reported by
    /// [`Mesh::bind_failures`]; the others are served), retargets existing ones and closes
    /// those no longer published. Returns whether the table was taken.
    pub fn apply(&self, table: RoutingTable) -> bool {
        let mut state = self.lock();
        if table.version < state.version {
            return false;
        }
        state.version = table.version;
        let mut keep: HashMap<(u16, PortProtocol), ()> = HashMap::new();
        for route in &table.routes {
            let key = (route.published, route.protocol);
            keep.insert(key, ());
            if let Some(bound) = state.bound.get(&key) {
                *bound
                    .listener
                    .route
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = route.clone();
                continue;
            }
            let listener = Arc::new(Listener::new(route.clone()));
            let addr = SocketAddr::new(self.inner.ip, route.published);
            let started = match route.protocol {
                PortProtocol::Tcp => tcp::serve(addr, listener.clone(), self.inner.stats.clone()),
                PortProtocol::Udp => udp::serve(addr, listener.clone(), self.inner.stats.clone()),
            };
            match started {
                Ok(task) => {
                    state.failures.remove(&key);
                    tracing::info!(%addr, service = %route.service_name, protocol = %route.protocol, "routing mesh listening");
                    state.bound.insert(key, Bound { listener, task });
                }
                Err(error) => {
                    let error = error.to_string();
                    if !state.failures.contains_key(&key) {
                        tracing::error!(
                            %addr,
                            protocol = %route.protocol,
                            service = %route.service_name,
                            %error,
                            "published port cannot be bound on this node; the other ports are served"
                        );
                    }
                    state.failures.insert(
                        key,
                        BindFailure {
                            published: route.published,
                            protocol: route.protocol,
                            error,
                        },
                    );
                }
            }
        }
        let gone: Vec<(u16, PortProtocol)> = state
            .bound
            .keys()
            .filter(|key| !keep.contains_key(key))
            .copied()
            .collect();
        for key in gone {
            if let Some(bound) = state.bound.remove(&key) {
                // Stops accepting; connections already forwarded run on by themselves.
                bound.task.abort();
                tracing::info!(port = key.0, protocol = %key.1, "routing mesh port closed");
            }
        }
        state.failures.retain(|key, _| keep.contains_key(key));
        state.table = Arc::new(table);
        let version = state.version;
        drop(state);
        self.inner.applied.send_replace(version);
        true
    }

    /// Closes every listener (node shutdown).
    pub fn close(&self) {
        let mut state = self.lock();
        for (_, bound) in state.bound.drain() {
            bound.task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
