//! Where a replica's published target ports are reached (SPEC §8), and the drain that takes
//! a task out of the routing mesh before it is signalled to stop.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::ReplicaActor;
use crate::core::ports::{PortProtocol, PublishMode, TaskEndpoint};

/// How long a stopping task waits for the node's mesh to stop routing to it before it is
/// signalled anyway (the table normally arrives within milliseconds; a node cut from its
/// managers and peers never learns it, and must still stop its tasks).
pub const DRAIN_BOUND: Duration = Duration::from_secs(2);

/// Once this node's mesh stopped routing to a task, how long the others are given to catch up
/// before the task is signalled: a manager applies the change a Raft round after the leader,
/// a worker learns it by gossip (milliseconds on a LAN, see `docs/PERFORMANCE.md`). A
/// connection that still reaches the task after that finds its listener closed and the mesh
/// tries the next backend; only one accepted in that instant is lost.
pub const DRAIN_SETTLE: Duration = Duration::from_millis(250);

impl ReplicaActor {
    /// Chooses where each published target port is reached: the published port itself in
    /// host mode, a free ephemeral port of the node's advertise IP for the routing mesh.
    /// A re-attached task keeps the endpoints this actor or its record already names, and
    /// is never given new ones (its container is bound to the old ones).
    pub(super) fn choose_endpoints(&mut self, reattaching: bool) -> Result<(), String> {
        if !self.endpoints.is_empty() {
            return Ok(());
        }
        if !self.task.endpoints.is_empty() {
            self.endpoints = self.task.endpoints.clone();
            return Ok(());
        }
        if self.task.spec.ports.is_empty() || reattaching {
            return Ok(());
        }
        let ip = self.host_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut endpoints: Vec<TaskEndpoint> = Vec::new();
        for port in &self.task.spec.ports {
            if endpoints
                .iter()
                .any(|e| e.target == port.target && e.protocol == port.protocol)
            {
                continue;
            }
            let host_port = match port.mode {
                PublishMode::Host => port.published,
                PublishMode::Ingress => free_port(ip, port.protocol).map_err(|error| {
                    format!("no free port on {ip} for target {}: {error}", port.target)
                })?,
            };
            endpoints.push(TaskEndpoint {
                target: port.target,
                protocol: port.protocol,
                addr: SocketAddr::new(ip, host_port),
            });
        }
        self.endpoints = endpoints;
        Ok(())
    }

    /// Whether the task has an endpoint the routing mesh forwards to.
    pub(super) fn in_mesh(&self) -> bool {
        self.task
            .spec
            .ports
            .iter()
            .any(|port| port.mode == PublishMode::Ingress)
            && !self.endpoints.is_empty()
    }
}

/// A port of `ip` that nothing is bound to now, from the kernel's ephemeral range: bound and
/// released at once, so the task (or docker) can bind it next.
fn free_port(ip: IpAddr, protocol: PortProtocol) -> std::io::Result<u16> {
    let addr = SocketAddr::new(ip, 0);
    match protocol {
        PortProtocol::Tcp => Ok(std::net::TcpListener::bind(addr)?.local_addr()?.port()),
        PortProtocol::Udp => Ok(std::net::UdpSocket::bind(addr)?.local_addr()?.port()),
    }
}
