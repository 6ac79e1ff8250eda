//! Building quinn endpoints with this project's settings, and the one-shot request of a node
//! (or CLI) that has no endpoint of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, VarInt};
use rustls::pki_types::CertificateDer;

use super::{
    TransportError, CONNECTION_RECEIVE_WINDOW_BYTES, IDLE_TIMEOUT, KEEP_ALIVE_INTERVAL,
    MAX_CONCURRENT_STREAMS, MAX_UDP_PAYLOAD, SEND_WINDOW_BYTES, STREAM_RECEIVE_WINDOW_BYTES,
};
use crate::net::message::Message;
use crate::net::stream::{read_frame, write_frame, StreamError};
use crate::net::tls::{self, PeerIdentity, Role, TlsError};

pub(super) fn quic_transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config.max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS));
    config.max_concurrent_uni_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS));
    // quinn's connection receive window is unlimited by default: bound what a peer may have
    // in flight towards us (docs/wire.md, "Limits on what peers send").
    config.stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW_BYTES));
    config.receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW_BYTES));
    config.send_window(SEND_WINDOW_BYTES);
    config.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    // IDLE_TIMEOUT fits a VarInt of milliseconds by construction.
    config.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    config
}

/// A quinn endpoint on `addr` with this project's endpoint settings ([`MAX_UDP_PAYLOAD`]).
/// An endpoint configuration that survives a restart of the node: the stateless-reset key and
/// the key that makes connection IDs recognizable are derived from the node's private key. A
/// peer still holding a connection to the previous process then gets a stateless reset for
/// its next packet (a keep-alive at the latest) and reconnects, instead of writing into the
/// dead connection until its idle timeout (a restarted manager heard nothing from the leader
/// for ~9 s). Without a secret (the CLI's one-shot endpoints) the keys are random.
fn endpoint_config(secret: Option<&[u8]>) -> quinn::EndpointConfig {
    let Some(secret) = secret else {
        return quinn::EndpointConfig::default();
    };
    let derive = |label: &[u8]| {
        let mut input = label.to_vec();
        input.extend_from_slice(secret);
        ring::digest::digest(&ring::digest::SHA256, &input)
    };
    let reset = derive(b"flotilla quic stateless reset v1\0");
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset.as_ref(),
    )));
    let cid = derive(b"flotilla quic connection ids v1\0");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

pub(super) fn bind_endpoint(
    addr: SocketAddr,
    server_config: Option<quinn::ServerConfig>,
    reset_secret: Option<&[u8]>,
) -> Result<Endpoint, TransportError> {
    let setup = |e: &dyn std::fmt::Display| TransportError::Setup(format!("bind {addr}: {e}"));
    let mut endpoint_config = endpoint_config(reset_secret);
    endpoint_config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .map_err(|e| setup(&e))?;
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| setup(&e))?;
    let runtime = quinn::default_runtime().ok_or_else(|| setup(&"no async runtime"))?;
    Endpoint::new(endpoint_config, server_config, socket, runtime).map_err(|e| setup(&e))
}

pub(super) fn client_config(
    rustls_config: rustls::ClientConfig,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(rustls_config)
        .map_err(|e| TransportError::Setup(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(quic_transport_config()));
    Ok(config)
}

/// The verified identity of the peer on a connection; `Ok(None)` if it showed no certificate.
/// A certificate of another cluster than `cluster_id` is an error.
pub(super) fn connection_identity(
    connection: &Connection,
    cluster_id: &str,
) -> Result<Option<PeerIdentity>, TlsError> {
    match peer_leaf(connection) {
        Some(leaf) => tls::identity_in_cluster(&leaf, cluster_id).map(Some),
        None => Ok(None),
    }
}

/// The leaf certificate the peer showed, if any (verified by the handshake).
fn peer_leaf(connection: &Connection) -> Option<CertificateDer<'static>> {
    let chain = connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    chain.first().cloned()
}

/// Sends one request to a manager from a node that has no endpoint of its own yet (joining):
/// a temporary client endpoint on `bind` with the given TLS client configuration. A server
/// whose certificate is not a manager's is refused before anything is sent.
pub async fn request_with(
    bind: SocketAddr,
    rustls_config: rustls::ClientConfig,
    addr: SocketAddr,
    message: Message,
    timeout: Duration,
) -> Result<Message, TransportError> {
    request_within(
        bind,
        rustls_config,
        addr,
        &[Role::Manager],
        message,
        timeout,
        timeout,
    )
    .await
}

/// [`request_with`] to a server whose certificate must name one of `expected` (else
/// [`TransportError::WrongServerRole`], nothing sent), giving up with
/// [`TransportError::Unreachable`] when the handshake has not finished within
/// `connect_timeout`. In both cases the request was never sent, so the caller may try another
/// peer without risking a second copy of a write (the CLI's manager failover).
pub async fn request_within(
    bind: SocketAddr,
    rustls_config: rustls::ClientConfig,
    addr: SocketAddr,
    expected: &[Role],
    message: Message,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<Message, TransportError> {
    let mut endpoint = bind_endpoint(bind, None, None)?;
    endpoint.set_default_client_config(client_config(rustls_config)?);
    let exchange = async {
        let connecting =
            endpoint
                .connect(addr, tls::SERVER_NAME)
                .map_err(|e| TransportError::Unreachable {
                    addr,
                    reason: e.to_string(),
                })?;
        let connection = match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(connected) => connected.map_err(|e| TransportError::Unreachable {
                addr,
                reason: e.to_string(),
            })?,
            Err(_) => {
                return Err(TransportError::Unreachable {
                    addr,
                    reason: format!("no handshake within {} ms", connect_timeout.as_millis()),
                })
            }
        };
        // The chain was verified against the cluster CA; the role must be the one expected (a
        // worker certificate never poses as a manager).
        // The chain ends at the caller's cluster CA, so the cluster is the caller's already.
        let found = peer_leaf(&connection)
            .and_then(|leaf| tls::identity_from_der(&leaf).ok())
            .map(|identity| identity.role);
        if !found.is_some_and(|role| expected.contains(&role)) {
            connection.close(VarInt::from_u32(0), b"wrong server role");
            return Err(TransportError::WrongServerRole {
                addr,
                expected: expected.to_vec(),
                found,
            });
        }
        let failed = |e: StreamError| TransportError::Connection {
            addr,
            reason: e.to_string(),
        };
        let (mut send, mut recv) =
            connection
                .open_bi()
                .await
                .map_err(|e| TransportError::Connection {
                    addr,
                    reason: e.to_string(),
                })?;
        write_frame(&mut send, &message).await.map_err(failed)?;
        let reply = read_frame(&mut recv).await.map_err(failed)?;
        Ok((connection, reply))
    };
    let outcome = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((connection, reply))) => {
            close_and_flush(&connection).await;
            Ok(Ok(reply))
        }
        failed => {
            endpoint.close(VarInt::from_u32(0), b"done");
            let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
            failed.map(|result| result.map(|(_, reply)| reply))
        }
    };
    match outcome {
        Err(_) => Err(TransportError::Timeout {
            addr,
            timeout_ms: timeout.as_millis() as u64,
        }),
        Ok(Err(error)) => Err(error),
        Ok(Ok(Message::Error(error))) => Err(TransportError::Remote(error)),
        Ok(Ok(reply)) => Ok(reply),
    }
}

/// Longest wait for a closing connection's CONNECTION_CLOSE to leave (see [`close_and_flush`]).
pub const CLOSE_FLUSH_MAX: Duration = Duration::from_millis(50);

/// Closes `connection` and waits until its CONNECTION_CLOSE has been handed to the socket (the
/// connection's sent-datagram count moves), so the peer frees the connection at once instead of
/// after its idle timeout. Not `Endpoint::wait_idle`: that also waits out the draining period
/// (3 PTO, about 85 ms on loopback because of the peer's 25 ms `max_ack_delay`), which every
/// CLI command would pay after it already has its answer.
async fn close_and_flush(connection: &Connection) {
    let sent_before = connection.stats().udp_tx.datagrams;
    connection.close(VarInt::from_u32(0), b"done");
    let deadline = Instant::now() + CLOSE_FLUSH_MAX;
    while connection.stats().udp_tx.datagrams == sent_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
