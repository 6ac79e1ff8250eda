//! TCP forwarding: accept on the published port, connect to a backend (the next one if it
//! refuses or does not answer in time, so a task that just stopped costs no request), send
//! the PROXY header if asked, then copy both ways until both sides are done.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{proxy_protocol, Listener, MeshStats, CONNECT_TIMEOUT};

/// Binds `addr` and serves it until the returned task is aborted.
pub(super) fn serve(
    addr: SocketAddr,
    listener: Arc<Listener>,
    stats: Arc<MeshStats>,
) -> std::io::Result<JoinHandle<()>> {
    let socket = bind(addr)?;
    Ok(tokio::spawn(async move {
        loop {
            let (client, peer) = match socket.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: keep serving once it passes.
                    tracing::warn!(%addr, %error, "routing mesh accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let (listener, stats) = (listener.clone(), stats.clone());
            tokio::spawn(async move {
                if let Err(error) = forward(client, peer, addr, &listener, &stats).await {
                    tracing::debug!(%peer, %addr, %error, "routing mesh connection ended");
                }
            });
        }
    }))
}

/// A listening socket built by hand so that it can be bound while old connections of a
/// previous listener on the port linger (`SO_REUSEADDR`, as every server does).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: &Listener,
    stats: &MeshStats,
) -> std::io::Result<()> {
    let (candidates, proxy_header) = listener.candidates();
    let mut backend = None;
    for candidate in &candidates {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(candidate.addr)).await {
            Ok(Ok(stream)) => {
                backend = Some(stream);
                break;
            }
            Ok(Err(error)) => {
                tracing::debug!(backend = %candidate.addr, %error, "backend refused; trying the next")
            }
            Err(_) => tracing::debug!(backend = %candidate.addr, "backend connect timed out"),
        }
    }
    let Some(mut backend) = backend else {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown().await;
        return Ok(());
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    if proxy_header {
        backend
            .write_all(&proxy_protocol::header(peer, local))
            .await?;
    }
    let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut backend).await?;
    stats.bytes_in.fetch_add(up, Ordering::Relaxed);
    stats.bytes_out.fetch_add(down, Ordering::Relaxed);
    Ok(())
}
