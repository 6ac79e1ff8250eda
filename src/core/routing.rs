//! The routing table of the mesh (SPEC §8): for each port published in ingress mode, the
//! endpoints of the tasks that may receive its traffic. Managers derive it from the store;
//! gossip spreads it; every node's ingress proxy forwards by it.
//!
//! A task is a backend while the managers want it running and its worker reported it running
//! (after its first healthy check, when it has one). Its desired state changes before its
//! worker is told to stop it, so a stopping task leaves the table before it is signalled.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::model::TaskState;
use super::ports::{PortProtocol, PublishMode};
use super::store::Store;

/// One ingress-published port and where its traffic may go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The port every node listens on.
    pub published: u16,
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// Send a PROXY protocol v2 header to the backend first.
    pub proxy_protocol: bool,
    /// The publishing service's ID.
    pub service_id: String,
    /// The publishing service's name (for logs and metrics).
    pub service_name: String,
    /// Running tasks' endpoints for the route's target port, ordered by task ID.
    pub backends: Vec<Backend>,
}

/// One task endpoint a route forwards to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The task.
    pub task_id: String,
    /// Its node's advertise IP and the host port its target port is reached at.
    pub addr: SocketAddr,
}

/// The whole table, as decided at one Raft index (higher wins).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct RoutingTable {
    /// The applied index of the store it was derived from.
    pub version: u64,
    /// One route per ingress-published port and protocol, ordered by port.
    pub routes: Vec<Route>,
}

impl RoutingTable {
    /// The table the store says now.
    pub fn from_store(store: &Store) -> RoutingTable {
        let mut routes = Vec::new();
        for service in store.services().values() {
            for port in &service.spec.ports {
                if port.mode != PublishMode::Ingress {
                    continue;
                }
                let mut backends: Vec<Backend> = store
                    .tasks_of_service(&service.id)
                    .into_iter()
                    .filter(|task| {
                        task.desired_state == TaskState::Running
                            && task.status.state == TaskState::Running
                    })
                    .filter_map(|task| {
                        task.endpoints
                            .iter()
                            .find(|e| e.target == port.target && e.protocol == port.protocol)
                            .map(|endpoint| Backend {
                                task_id: task.id.clone(),
                                addr: endpoint.addr,
                            })
                    })
                    .collect();
                backends.sort_by(|a, b| a.task_id.cmp(&b.task_id));
                routes.push(Route {
                    published: port.published,
                    protocol: port.protocol,
                    proxy_protocol: port.proxy_protocol,
                    service_id: service.id.clone(),
                    service_name: service.spec.name.clone(),
                    backends,
                });
            }
        }
        routes.sort_by_key(|route| (route.published, route.protocol));
        RoutingTable {
            version: store.applied_index(),
            routes,
        }
    }

    /// The route of `published`/`protocol`, if any.
    pub fn route(&self, published: u16, protocol: PortProtocol) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| route.published == published && route.protocol == protocol)
    }

    /// Whether `other` routes the same (ignoring the version).
    pub fn same_routes(&self, other: &RoutingTable) -> bool {
        self.routes == other.routes
    }

    /// Encodes the table for gossip (bincode 2).
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("invariant: routing table types use only serde features bincode supports")
    }

    /// Decodes [`RoutingTable::encode`]'s bytes; at most `limit` bytes are allocated.
    pub fn decode(bytes: &[u8]) -> Result<RoutingTable, String> {
        let config = bincode::config::standard().with_limit::<{ 64 << 20 }>();
        bincode::serde::decode_from_slice(bytes, config)
            .map(|(table, _)| table)
            .map_err(|error| format!("malformed routing table: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::TaskStatus;
    use crate::core::ports::{parse_publish, TaskEndpoint};
    use crate::core::store::{Command, TaskStatusUpdate};
    use crate::core::testkit::{node, service, Harness};
    use crate::core::CoreError;

    fn published(text: &str) -> crate::core::ports::PortConfig {
        parse_publish(text).expect("publish spec")
    }

    fn running(task_id: &str, addr: &str) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: task_id.to_string(),
            status: TaskStatus {
                state: TaskState::Running,
                since_ms: 1,
                ..TaskStatus::default()
            },
            runtime: None,
            runtime_id: None,
            endpoints: Some(vec![TaskEndpoint {
                target: 80,
                protocol: PortProtocol::Tcp,
                addr: addr.parse().expect("addr"),
            }]),
        }
    }

    fn web(harness: &mut Harness) -> crate::core::model::Service {
        let mut web = service("s1", "web", 2);
        web.spec.ports = vec![
            published("8080:80"),
            published("published=9000,target=90,mode=host"),
        ];
        harness.apply(Command::CreateService(web.clone()));
        let tasks: Vec<_> = (1..=2)
            .map(|slot| {
                let mut task = crate::core::model::Task::new(
                    format!("t{slot}"),
                    harness.store.service("s1").expect("service"),
                    Some(slot),
                    Some("n1".into()),
                );
                task.status.state = TaskState::Assigned;
                task
            })
            .collect();
        harness.apply(Command::CreateTasks(tasks));
        web
    }

    #[test]
    fn running_tasks_with_endpoints_are_backends_and_stopping_ones_are_not() {
        let mut harness = Harness::with_nodes(vec![node("n1")]);
        web(&mut harness);
        let table = RoutingTable::from_store(&harness.store);
        assert_eq!(
            table.routes.len(),
            1,
            "host-mode ports are not routed: {table:?}"
        );
        assert!(table.routes[0].backends.is_empty(), "nothing runs yet");

        harness.apply(Command::UpdateTaskStatuses(vec![
            running("t1", "127.0.0.1:40001"),
            running("t2", "127.0.0.2:40002"),
        ]));
        harness.store.set_applied_index(harness.index);
        let table = RoutingTable::from_store(&harness.store);
        let route = table.route(8080, PortProtocol::Tcp).expect("route");
        assert_eq!(route.service_name, "web");
        let addrs: Vec<String> = route.backends.iter().map(|b| b.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:40001", "127.0.0.2:40002"]);
        assert_eq!(table.version, harness.index);

        // Desired shutdown (a scale-down, a rollout's old task) removes it at once.
        harness.apply(Command::SetTaskDesiredStates(vec![(
            "t1".into(),
            TaskState::Shutdown,
        )]));
        let table = RoutingTable::from_store(&harness.store);
        let route = table.route(8080, PortProtocol::Tcp).expect("route");
        assert_eq!(route.backends.len(), 1);
        assert_eq!(route.backends[0].task_id, "t2");

        let decoded = RoutingTable::decode(&table.encode()).expect("round trip");
        assert_eq!(decoded, table);
        assert!(RoutingTable::decode(&[0xFF; 3]).is_err());
    }

    #[test]
    fn a_published_port_is_unique_in_the_cluster() {
        let mut harness = Harness::with_nodes(vec![node("n1")]);
        web(&mut harness);
        let mut other = service("s2", "api", 1);
        other.spec.ports = vec![published("8080:8080")];
        let refused = harness
            .store
            .check(&Command::CreateService(other.clone()))
            .expect_err("clash");
        assert!(
            matches!(refused, CoreError::PortInUse { port: 8080, ref service, .. } if service == "web"),
            "{refused}"
        );
        assert_eq!(
            refused.to_string(),
            "port '8080/tcp' is already in use by service 'web'"
        );
        // Another protocol on the same number is another port.
        other.spec.ports = vec![published("8080:8080/udp")];
        harness.apply(Command::CreateService(other.clone()));
        // An update of the owner may keep its own port; another service may not take it.
        let mut spec = harness.store.service("s1").expect("web").spec.clone();
        spec.env.insert("A".into(), "1".into());
        assert!(harness
            .store
            .check(&Command::UpdateService {
                service_id: "s1".into(),
                spec,
                expected_version: None
            })
            .is_ok());
        let mut api = other.spec.clone();
        api.ports.push(published("9000:90"));
        assert!(harness
            .store
            .check(&Command::UpdateService {
                service_id: "s2".into(),
                spec: api,
                expected_version: None
            })
            .is_err());
    }
}
