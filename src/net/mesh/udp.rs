//! UDP forwarding: one socket on the published port; each client address is a flow with its
//! own socket connected to the backend it was given, so replies go back to that client and
//! a flow keeps its backend. Idle flows are forgotten after [`UDP_FLOW_IDLE`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::{Listener, MeshStats, UDP_FLOW_IDLE};

/// Most flows one published UDP port keeps at once; a new client beyond it is dropped.
const UDP_FLOWS_MAX: usize = 4_096;
/// Largest datagram forwarded.
const DATAGRAM_MAX: usize = 65_535;

struct Flow {
    socket: Arc<UdpSocket>,
    last_seen: Instant,
}

/// Binds `addr` and serves it until the returned task is aborted.
pub(super) fn serve(
    addr: SocketAddr,
    listener: Arc<Listener>,
    stats: Arc<MeshStats>,
) -> std::io::Result<JoinHandle<()>> {
    let std_socket = std::net::UdpSocket::bind(addr)?;
    std_socket.set_nonblocking(true)?;
    let socket = Arc::new(UdpSocket::from_std(std_socket)?);
    Ok(tokio::spawn(async move {
        let flows: Arc<Mutex<HashMap<SocketAddr, Flow>>> = Arc::default();
        let mut buffer = vec![0u8; DATAGRAM_MAX];
        loop {
            let (length, client) = match socket.recv_from(&mut buffer).await {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%addr, %error, "routing mesh udp receive failed");
                    continue;
                }
            };
            let datagram = &buffer[..length];
            let flow = flow_for(&flows, client, &listener, &socket, &stats).await;
            if let Some(flow) = flow {
                if flow.send(datagram).await.is_ok() {
                    stats.bytes_in.fetch_add(length as u64, Ordering::Relaxed);
                }
            }
        }
    }))
}

/// The flow of `client`, opened (to the next backend) if it has none yet.
async fn flow_for(
    flows: &Arc<Mutex<HashMap<SocketAddr, Flow>>>,
    client: SocketAddr,
    listener: &Listener,
    front: &Arc<UdpSocket>,
    stats: &Arc<MeshStats>,
) -> Option<Arc<UdpSocket>> {
    {
        let mut table = flows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flow) = table.get_mut(&client) {
            flow.last_seen = Instant::now();
            return Some(flow.socket.clone());
        }
        let now = Instant::now();
        table.retain(|_, flow| now.duration_since(flow.last_seen) < UDP_FLOW_IDLE);
        if table.len() >= UDP_FLOWS_MAX {
            return None;
        }
    }
    let (candidates, _) = listener.candidates();
    let backend = candidates.first()?;
    let local = match backend.addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(backend.addr).await.ok()?;
    let socket = Arc::new(socket);
    stats.udp_flows.fetch_add(1, Ordering::Relaxed);
    flows.lock().unwrap_or_else(|p| p.into_inner()).insert(
        client,
        Flow {
            socket: socket.clone(),
            last_seen: Instant::now(),
        },
    );
    let (reply, front, flows, stats) =
        (socket.clone(), front.clone(), flows.clone(), stats.clone());
    tokio::spawn(async move {
        let mut buffer = vec![0u8; DATAGRAM_MAX];
        loop {
            match tokio::time::timeout(UDP_FLOW_IDLE, reply.recv(&mut buffer)).await {
                Ok(Ok(length)) => {
                    if front.send_to(&buffer[..length], client).await.is_ok() {
                        stats.bytes_out.fetch_add(length as u64, Ordering::Relaxed);
                    }
                    if let Some(flow) = flows
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(&client)
                    {
                        flow.last_seen = Instant::now();
                    }
                }
                // An ICMP refusal (the backend went away) or idle: end the flow; the
                // client's next datagram opens a new one to a live backend.
                Ok(Err(_)) | Err(_) => {
                    flows
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&client);
                    return;
                }
            }
        }
    });
    Some(socket)
}
