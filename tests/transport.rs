//! The QUIC transport over real loopback sockets: mutual TLS, authorization by certificate
//! role, and that bad peers lose only their own connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use flotilla::net::codec::{self, MAX_FRAME_BYTES};
use flotilla::net::message::{ErrorKind, JoinAccepted, Message as WireMessage, RaftEnvelope};
use flotilla::net::tls::{self, ClusterCa, Credentials, Role};
use flotilla::net::token::{JoinToken, TokenError};
use flotilla::net::transport::{
    self, Expect, Inbound, InboundLimits, Transport, TransportConfig, TransportError, CLOSE_BUSY,
    CLOSE_MALFORMED, CLOSE_UNAUTHENTICATED, STREAM_TIMED_OUT,
};
use quinn::crypto::rustls::QuicClientConfig;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers pings with pongs and accepts anything else it is allowed to see.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Echo {
    type Result = Option<WireMessage>;

    fn handle(&mut self, inbound: Inbound, _: &mut Context<Self>) -> Self::Result {
        Some(match inbound.message {
            WireMessage::Ping { nonce, payload } => WireMessage::Pong { nonce, payload },
            WireMessage::Join(request) => WireMessage::JoinAccepted(JoinAccepted {
                node_id: "new".into(),
                role: Role::Worker,
                cert_pem: String::new(),
                ca_pem: String::new(),
                manager_addrs: vec![request.advertise_addr],
                data_key: None,
            }),
            other => WireMessage::Pong {
                nonce: 0,
                payload: other.kind_name().as_bytes().to_vec(),
            },
        })
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

fn start_node(credentials: Credentials) -> Transport {
    let echo = Echo.start();
    Transport::bind(
        TransportConfig {
            listen: loopback(),
            credentials,
        },
        echo.recipient(),
    )
    .expect("transport binds")
}

fn ping(nonce: u64) -> WireMessage {
    WireMessage::Ping {
        nonce,
        payload: nonce.to_le_bytes().to_vec(),
    }
}

async fn assert_pings(client: &Transport, server: SocketAddr) {
    let reply = client
        .request(server, ping(7), TIMEOUT)
        .await
        .expect("ping answered");
    assert_eq!(
        reply,
        WireMessage::Pong {
            nonce: 7,
            payload: 7u64.to_le_bytes().to_vec()
        }
    );
}

/// A raw quinn client for misbehaving on purpose.
async fn raw_connection(
    rustls_config: rustls::ClientConfig,
    server: SocketAddr,
) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client(loopback()).expect("client endpoint");
    let crypto = QuicClientConfig::try_from(rustls_config).expect("quic client config");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connection = endpoint
        .connect(server, tls::SERVER_NAME)
        .expect("connect starts")
        .await
        .expect("handshake");
    (endpoint, connection)
}

#[actix_rt::test]
async fn ten_thousand_requests_over_mutual_tls() {
    let ca = ClusterCa::create("c1").expect("ca");
    let server = start_node(ca.issue("server", Role::Manager, 0).expect("cert"));
    let client = start_node(ca.issue("client", Role::Worker, 0).expect("cert"));
    let server_addr = server.local_addr().expect("addr");
    let workers = 16u64;
    let per_worker = 10_000 / workers;
    let mut handles = Vec::new();
    for worker in 0..workers {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_worker {
                let nonce = worker * per_worker + i;
                let reply = client.request(server_addr, ping(nonce), TIMEOUT).await?;
                assert_eq!(
                    reply,
                    WireMessage::Pong {
                        nonce,
                        payload: nonce.to_le_bytes().to_vec()
                    }
                );
            }
            Ok::<_, TransportError>(())
        }));
    }
    for handle in handles {
        handle.await.expect("task").expect("all requests answered");
    }
    client.shutdown().await;
    server.shutdown().await;
}

#[actix_rt::test]
async fn one_way_messages_arrive() {
    struct Collect(tokio::sync::mpsc::UnboundedSender<WireMessage>);
    impl Actor for Collect {
        type Context = Context<Self>;
    }
    impl Handler<Inbound> for Collect {
        type Result = Option<WireMessage>;
        fn handle(&mut self, inbound: Inbound, _: &mut Context<Self>) -> Self::Result {
            assert!(!inbound.expects_reply);
            let _ = self.0.send(inbound.message);
            None
        }
    }
    let ca = ClusterCa::create("c1").expect("ca");
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let server = Transport::bind(
        TransportConfig {
            listen: loopback(),
            credentials: ca.issue("server", Role::Manager, 0).expect("cert"),
        },
        Collect(sender).start().recipient(),
    )
    .expect("binds");
    let client = start_node(ca.issue("client", Role::Worker, 0).expect("cert"));
    let server_addr = server.local_addr().expect("addr");
    for nonce in 0..100 {
        client.send(server_addr, ping(nonce)).await.expect("sent");
    }
    let mut nonces = Vec::new();
    while nonces.len() < 100 {
        match tokio::time::timeout(TIMEOUT, received.recv()).await {
            Ok(Some(WireMessage::Ping { nonce, .. })) => nonces.push(nonce),
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    nonces.sort_unstable();
    assert_eq!(nonces, (0..100).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn a_client_without_a_certificate_is_refused_and_others_are_still_served() {
    let ca = ClusterCa::create("c1").expect("ca");
    let server = start_node(ca.issue("server", Role::Manager, 0).expect("cert"));
    let server_addr = server.local_addr().expect("addr");
    let (anonymous, _) = tls::pinned_client_config(ca.digest()).expect("config");
    let outcome =
        transport::request_with(loopback(), anonymous, server_addr, ping(1), TIMEOUT).await;
    match outcome {
        Err(TransportError::Remote(error)) => assert_eq!(error.kind, ErrorKind::Unauthenticated),
        other => panic!("expected an unauthenticated refusal, got {other:?}"),
    }
    let client = start_node(ca.issue("client", Role::Worker, 0).expect("cert"));
    assert_pings(&client, server_addr).await;
}

#[actix_rt::test]
async fn a_certificate_from_another_ca_is_refused_and_others_are_still_served() {
    let ca = ClusterCa::create("c1").expect("ca");
    let server = start_node(ca.issue("server", Role::Manager, 0).expect("cert"));
    let server_addr = server.local_addr().expect("addr");
    // A node of another cluster that trusts our CA (so only the server side can refuse).
    let stranger_ca = ClusterCa::create("c2").expect("ca");
    let mut stranger = stranger_ca
        .issue("stranger", Role::Manager, 0)
        .expect("cert");
    stranger.ca_pem = ca.cert_pem().to_string();
    let outcome = transport::request_with(
        loopback(),
        stranger.client_config().expect("config"),
        server_addr,
        ping(1),
        TIMEOUT,
    )
    .await;
    assert!(
        matches!(
            outcome,
            Err(TransportError::Unreachable { .. } | TransportError::Connection { .. })
        ),
        "expected the handshake to fail, got {outcome:?}"
    );
    let client = start_node(ca.issue("client", Role::Worker, 0).expect("cert"));
    assert_pings(&client, server_addr).await;
}

#[actix_rt::test]
async fn a_worker_may_not_send_raft_messages() {
    let ca = ClusterCa::create("c1").expect("ca");
    let server = start_node(ca.issue("server", Role::Manager, 0).expect("cert"));
    let server_addr = server.local_addr().expect("addr");
    let raft = WireMessage::Raft(RaftEnvelope {
        from: 2,
        to: 1,
        bytes: vec![1, 2, 3],
    });
    let worker = start_node(ca.issue("worker", Role::Worker, 0).expect("cert"));
    match worker.request(server_addr, raft.clone(), TIMEOUT).await {
        Err(TransportError::Remote(error)) => {
            assert_eq!(error.kind, ErrorKind::Forbidden);
            assert!(error.message.contains("worker"), "{}", error.message);
        }
        other => panic!("expected a forbidden error, got {other:?}"),
    }
    // The worker's connection survives the refusal, and a manager may send the same message.
    assert_pings(&worker, server_addr).await;
    let manager = start_node(ca.issue("manager", Role::Manager, 0).expect("cert"));
    assert!(manager.request(server_addr, raft, TIMEOUT).await.is_ok());
}

/// A worker certificate posing as a manager server gets nothing from a node that expects a
/// manager, and a message for node A sent to node B's address never reaches B, on a new
/// connection or a reused one.
#[actix_rt::test]
async fn a_message_goes_only_to_the_server_whose_certificate_it_expects() {
    let ca = ClusterCa::create("c1").expect("ca");
    let worker_b = start_node(ca.issue("worker-b", Role::Worker, 0).expect("cert"));
    let addr = worker_b.local_addr().expect("addr");
    let leader = start_node(ca.issue("leader", Role::Manager, 0).expect("cert"));
    let refused = |outcome: Result<WireMessage, TransportError>, expected: &str| match outcome {
        Err(TransportError::WrongPeer {
            expected: said,
            found,
            ..
        }) => {
            assert_eq!(said, expected);
            assert_eq!(found, "worker worker-b");
        }
        other => panic!("expected a wrong-peer refusal, got {other:?}"),
    };
    let as_manager = leader
        .request_expecting(addr, Expect::Role(Role::Manager), ping(1), TIMEOUT)
        .await;
    refused(as_manager, "a manager certificate");
    let for_a = leader
        .request_expecting(addr, Expect::Node("worker-a".into()), ping(2), TIMEOUT)
        .await;
    refused(for_a, "node worker-a");
    let set_for_a =
        WireMessage::Assignments(flotilla::core::assignment::AssignmentSet::empty("worker-a"));
    match leader
        .send_expecting(addr, Expect::Node("worker-a".into()), set_for_a)
        .await
    {
        Err(TransportError::WrongPeer { .. }) => {}
        other => panic!("expected a wrong-peer refusal, got {other:?}"),
    }
    // The right peer is reached on the same connection, and the check holds on every reuse.
    let for_b = leader
        .request_expecting(addr, Expect::Node("worker-b".into()), ping(3), TIMEOUT)
        .await;
    assert!(
        matches!(for_b, Ok(WireMessage::Pong { nonce: 3, .. })),
        "{for_b:?}"
    );
    let again = leader
        .request_expecting(addr, Expect::Role(Role::Manager), ping(4), TIMEOUT)
        .await;
    refused(again, "a manager certificate");
    // A real manager passes the same check.
    let manager = start_node(ca.issue("manager-2", Role::Manager, 0).expect("cert"));
    let manager_addr = manager.local_addr().expect("addr");
    let reply = worker_b
        .request_expecting(manager_addr, Expect::Role(Role::Manager), ping(5), TIMEOUT)
        .await;
    assert!(
        matches!(reply, Ok(WireMessage::Pong { nonce: 5, .. })),
        "{reply:?}"
    );
}

async fn send_raw_and_expect_close(
    server_addr: SocketAddr,
    credentials: &Credentials,
    bytes: Vec<u8>,
) {
    let (_endpoint, connection) =
        raw_connection(credentials.client_config().expect("config"), server_addr).await;
    let (mut send, _recv) = connection.open_bi().await.expect("stream");
    send.write_all(&bytes).await.expect("write");
    let _ = send.finish();
    let reason = tokio::time::timeout(TIMEOUT, connection.closed())
        .await
        .expect("the server closes the connection");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(CLOSE_MALFORMED));
        }
        other => panic!("expected an application close, got {other:?}"),
    }
}

#[actix_rt::test]
async fn bad_frames_close_only_their_own_connection() {
    let ca = ClusterCa::create("c1").expect("ca");
    let server = start_node(ca.issue("server", Role::Manager, 0).expect("cert"));
    let server_addr = server.local_addr().expect("addr");
    let bystander = start_node(ca.issue("bystander", Role::Worker, 0).expect("cert"));
    assert_pings(&bystander, server_addr).await;
    let credentials = ca.issue("rogue", Role::Worker, 0).expect("cert");

    // Oversized: a length prefix past the limit.
    let oversized = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
    send_raw_and_expect_close(server_addr, &credentials, oversized).await;
    assert_pings(&bystander, server_addr).await;

    // Random bytes with a plausible length.
    let mut garbage = 64u32.to_be_bytes().to_vec();
    garbage.extend((0..64u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    send_raw_and_expect_close(server_addr, &credentials, garbage).await;
    assert_pings(&bystander, server_addr).await;

    // A well-formed frame still works on a fresh connection from the same peer.
    let (_endpoint, connection) =
        raw_connection(credentials.client_config().expect("config"), server_addr).await;
    let (mut send, mut recv) = connection.open_bi().await.expect("stream");
    send.write_all(&codec::encode(&ping(3)).expect("encode"))
        .await
        .expect("write");
    let _ = send.finish();
    let reply = recv.read_to_end(1024).await.expect("reply");
    let (message, _) = codec::decode_frame(&reply).expect("decodes");
    assert!(matches!(message, WireMessage::Pong { nonce: 3, .. }));
}

#[actix_rt::test]
async fn a_joining_node_pins_the_ca_by_digest() {
    let ca = ClusterCa::create("c1").expect("ca");
    let server = start_node(ca.issue("server", Role::Manager, 0).expect("cert"));
    let server_addr = server.local_addr().expect("addr");
    let join = WireMessage::Join(flotilla::net::message::JoinRequest {
        secret: "s".into(),
        csr_der: vec![],
        hostname: "h".into(),
        advertise_addr: "127.0.0.9:4240".into(),
    });

    let (config, verifier) = tls::pinned_client_config(ca.digest()).expect("config");
    let reply = transport::request_with(loopback(), config, server_addr, join.clone(), TIMEOUT)
        .await
        .expect("a matching pin connects");
    assert!(matches!(reply, WireMessage::JoinAccepted(_)));
    assert_eq!(verifier.verified_ca_pem().as_deref(), Some(ca.cert_pem()));

    let other = ClusterCa::create("c2").expect("ca");
    let token = JoinToken::new(other.digest(), "x".repeat(25));
    let (config, verifier) = tls::pinned_client_config(token.ca_digest).expect("config");
    let outcome = transport::request_with(loopback(), config, server_addr, join, TIMEOUT).await;
    assert!(outcome.is_err(), "a mismatched pin must not connect");
    assert!(verifier.saw_mismatch());
    assert_eq!(
        token.check_ca_digest(&ca.digest()),
        Err(TokenError::CaMismatch)
    );
}

#[actix_rt::test]
async fn certificates_carry_node_id_and_role() {
    let ca = ClusterCa::create("c1").expect("ca");
    let credentials = ca.issue("node-abc", Role::Manager, 0).expect("cert");
    let identity = credentials.identity().expect("identity");
    assert_eq!(identity.node_id, "node-abc");
    assert_eq!(identity.role, Role::Manager);

    let (key_pem, csr) = tls::generate_request().expect("csr");
    let cert_pem = ca
        .sign_request(&csr, "joined", Role::Worker, 0)
        .expect("signed");
    let joined = Credentials {
        cert_pem,
        key_pem,
        ca_pem: ca.cert_pem().to_string(),
    };
    assert_eq!(joined.identity().expect("identity").role, Role::Worker);
    assert!(ca.sign_request(b"not a csr", "x", Role::Worker, 0).is_err());

    let reloaded = ClusterCa::load(ca.cert_pem(), ca.key_pem()).expect("reload");
    assert_eq!(reloaded.digest(), ca.digest());
    let server = start_node(
        reloaded
            .issue("after-reload", Role::Manager, 0)
            .expect("cert"),
    );
    let client = start_node(credentials);
    assert_pings(&client, server.local_addr().expect("addr")).await;
}

/// Runs an echo node on its own thread and actix System until `stop` fires; then the System
/// is dropped without closing anything, as if the process had been killed.
fn echo_node_on_own_thread(
    credentials: Credentials,
    listen: SocketAddr,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_sender, addr_receiver) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let transport = Transport::bind(
                TransportConfig {
                    listen,
                    credentials,
                },
                Echo.start().recipient(),
            )
            .expect("transport binds");
            addr_sender
                .send(transport.local_addr().expect("addr"))
                .expect("test waits for the address");
            let _ = stopped.await;
        });
    });
    let addr = addr_receiver.recv().expect("node started");
    (addr, stop, thread)
}

#[actix_rt::test]
async fn a_peer_restarted_on_the_same_address_is_reached_without_waiting_for_the_idle_timeout() {
    let ca = ClusterCa::create("c1").expect("ca");
    let server_credentials = ca.issue("server", Role::Manager, 0).expect("cert");
    let client = start_node(ca.issue("client", Role::Worker, 0).expect("cert"));
    let (addr, stop, thread) = echo_node_on_own_thread(server_credentials.clone(), loopback());
    assert_pings(&client, addr).await;

    // Crash: no CONNECTION_CLOSE reaches the client, which still holds the old connection.
    stop.send(()).expect("node running");
    thread.join().expect("node thread");
    let (_, stop, thread) = echo_node_on_own_thread(server_credentials, addr);

    // The new process answers the old connection's packets with a stateless reset (its keys
    // come from the node's private key), so the stale connection fails fast instead of
    // swallowing requests until the idle timeout (10 s), and the next request reconnects.
    let per_attempt = Duration::from_secs(3);
    let first = client.request(addr, ping(1), per_attempt).await;
    let answered = match first {
        Ok(reply) => reply,
        Err(error) => {
            assert!(
                !matches!(error, TransportError::Timeout { .. }),
                "the stale connection swallowed the request: {error}"
            );
            client
                .request(addr, ping(1), per_attempt)
                .await
                .expect("answered over a new connection")
        }
    };
    assert_eq!(
        answered,
        WireMessage::Pong {
            nonce: 1,
            payload: 1u64.to_le_bytes().to_vec()
        }
    );
    stop.send(()).expect("node running");
    thread.join().expect("node thread");
}

// ---- Limits on what peers send (docs/wire.md, "Limits on what peers send") ----

fn start_node_with(credentials: Credentials, limits: InboundLimits) -> Transport {
    Transport::bind_with_limits(
        TransportConfig {
            listen: loopback(),
            credentials,
        },
        limits,
        Echo.start().recipient(),
    )
    .expect("transport binds")
}

/// A certificate-less connection, as a joining node makes.
async fn anonymous_connection(
    ca: &ClusterCa,
    server: SocketAddr,
) -> (quinn::Endpoint, quinn::Connection) {
    let (config, _) = tls::pinned_client_config(ca.digest()).expect("config");
    raw_connection(config, server).await
}

async fn assert_closed_with(connection: &quinn::Connection, code: u32) {
    let reason = tokio::time::timeout(TIMEOUT, connection.closed())
        .await
        .expect("the server closes the connection");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(code), "{close:?}");
        }
        other => panic!("expected an application close with code {code}, got {other:?}"),
    }
}

fn join_frame() -> Vec<u8> {
    codec::encode(&WireMessage::Join(flotilla::net::message::JoinRequest {
        secret: "s".into(),
        csr_der: vec![],
        hostname: "h".into(),
        advertise_addr: "127.0.0.9:4240".into(),
    }))
    .expect("encode")
}

async fn join_on(connection: &quinn::Connection) -> WireMessage {
    let (mut send, mut recv) = connection.open_bi().await.expect("stream");
    send.write_all(&join_frame()).await.expect("write");
    let _ = send.finish();
    let reply = recv.read_to_end(64 * 1024).await.expect("reply");
    codec::decode_frame(&reply).expect("decodes").0
}

#[actix_rt::test]
async fn a_certificate_less_connection_sending_a_non_join_frame_is_closed() {
    let ca = ClusterCa::create("c1").expect("ca");
    let server = start_node(ca.issue("server", Role::Manager, 0).expect("cert"));
    let server_addr = server.local_addr().expect("addr");
    let (_endpoint, connection) = anonymous_connection(&ca, server_addr).await;
    let (mut send, _recv) = connection.open_bi().await.expect("stream");
    send.write_all(&codec::encode(&ping(1)).expect("encode"))
        .await
        .expect("write");
    let _ = send.finish();
    assert_closed_with(&connection, CLOSE_UNAUTHENTICATED).await;

    // A one-way stream is refused too, whatever it carries.
    let (_endpoint, connection) = anonymous_connection(&ca, server_addr).await;
    let mut send = connection.open_uni().await.expect("stream");
    send.write_all(&join_frame()).await.expect("write");
    let _ = send.finish();
    assert_closed_with(&connection, CLOSE_UNAUTHENTICATED).await;

    // A Join is answered, and a second request stream on the same connection closes it.
    let (_endpoint, connection) = anonymous_connection(&ca, server_addr).await;
    assert!(matches!(
        join_on(&connection).await,
        WireMessage::JoinAccepted(_)
    ));
    let (mut send, _recv) = connection.open_bi().await.expect("stream");
    send.write_all(&join_frame()).await.expect("write");
    let _ = send.finish();
    assert_closed_with(&connection, CLOSE_UNAUTHENTICATED).await;

    let client = start_node(ca.issue("client", Role::Worker, 0).expect("cert"));
    assert_pings(&client, server_addr).await;
}

#[actix_rt::test]
async fn the_certificate_less_connection_past_the_limit_is_refused() {
    let ca = ClusterCa::create("c1").expect("ca");
    let limits = InboundLimits {
        max_unauthenticated_connections: 2,
        ..InboundLimits::default()
    };
    let server = start_node_with(ca.issue("server", Role::Manager, 0).expect("cert"), limits);
    let server_addr = server.local_addr().expect("addr");
    let first = anonymous_connection(&ca, server_addr).await;
    let second = anonymous_connection(&ca, server_addr).await;
    // Both are served (a Join answered proves the server counted them before the third).
    assert!(matches!(
        join_on(&first.1).await,
        WireMessage::JoinAccepted(_)
    ));
    assert!(matches!(
        join_on(&second.1).await,
        WireMessage::JoinAccepted(_)
    ));
    let third = anonymous_connection(&ca, server_addr).await;
    assert_closed_with(&third.1, CLOSE_BUSY).await;

    // Certificate holders are not counted, and a freed place is given again.
    let client = start_node(ca.issue("client", Role::Worker, 0).expect("cert"));
    assert_pings(&client, server_addr).await;
    first.1.close(quinn::VarInt::from_u32(0), b"done");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (_endpoint, connection) = anonymous_connection(&ca, server_addr).await;
        let (mut send, mut recv) = connection.open_bi().await.expect("stream");
        let _ = send.write_all(&join_frame()).await;
        let _ = send.finish();
        if let Ok(reply) = recv.read_to_end(64 * 1024).await {
            let (message, _) = codec::decode_frame(&reply).expect("decodes");
            assert!(matches!(message, WireMessage::JoinAccepted(_)));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed connection's place was never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_certificate_less_connection_is_closed_after_its_deadline() {
    let ca = ClusterCa::create("c1").expect("ca");
    let limits = InboundLimits {
        unauthenticated_deadline: Duration::from_millis(300),
        ..InboundLimits::default()
    };
    let server = start_node_with(ca.issue("server", Role::Manager, 0).expect("cert"), limits);
    let (_endpoint, connection) =
        anonymous_connection(&ca, server.local_addr().expect("addr")).await;
    // It does nothing wrong; it just stays.
    assert_closed_with(&connection, CLOSE_UNAUTHENTICATED).await;
}

#[actix_rt::test]
async fn a_half_open_stream_is_reset_after_its_deadline_and_the_connection_lives() {
    let ca = ClusterCa::create("c1").expect("ca");
    let limits = InboundLimits {
        frame_timeout: Duration::from_millis(300),
        stream_idle_timeout: Duration::from_millis(600),
        ..InboundLimits::default()
    };
    let server = start_node_with(ca.issue("server", Role::Manager, 0).expect("cert"), limits);
    let server_addr = server.local_addr().expect("addr");
    let credentials = ca.issue("slow", Role::Worker, 0).expect("cert");
    let (_endpoint, connection) =
        raw_connection(credentials.client_config().expect("config"), server_addr).await;

    // A request whose frame announces 16 MiB and sends ten bytes of it.
    let (mut send, mut recv) = connection.open_bi().await.expect("stream");
    let mut partial = (MAX_FRAME_BYTES as u32).to_be_bytes().to_vec();
    partial.extend_from_slice(&[1; 10]);
    send.write_all(&partial).await.expect("write");
    let stopped = tokio::time::timeout(TIMEOUT, send.stopped())
        .await
        .expect("the server stops the stream");
    assert_eq!(
        stopped.expect("stopped, not lost"),
        Some(quinn::VarInt::from_u32(STREAM_TIMED_OUT))
    );
    match tokio::time::timeout(TIMEOUT, recv.read_to_end(1024)).await {
        Ok(Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)))) => {
            assert_eq!(code, quinn::VarInt::from_u32(STREAM_TIMED_OUT));
        }
        other => panic!("expected the reply stream reset, got {other:?}"),
    }

    // An ordered channel that went quiet after one frame is stopped after the idle timeout.
    let mut channel = connection.open_uni().await.expect("stream");
    channel
        .write_all(&codec::encode(&ping(5)).expect("encode"))
        .await
        .expect("write");
    let stopped = tokio::time::timeout(TIMEOUT, channel.stopped())
        .await
        .expect("the server stops the idle stream");
    assert_eq!(
        stopped.expect("stopped, not lost"),
        Some(quinn::VarInt::from_u32(STREAM_TIMED_OUT))
    );

    // The connection itself is still served.
    assert!(connection.close_reason().is_none());
    let (mut send, mut recv) = connection.open_bi().await.expect("stream");
    send.write_all(&codec::encode(&ping(3)).expect("encode"))
        .await
        .expect("write");
    let _ = send.finish();
    let reply = recv.read_to_end(1024).await.expect("reply");
    let (message, _) = codec::decode_frame(&reply).expect("decodes");
    assert!(matches!(message, WireMessage::Pong { nonce: 3, .. }));
}

#[actix_rt::test]
async fn a_frame_near_the_limit_still_travels_within_the_windows() {
    // A Raft snapshot travels as one request frame of up to 16 MiB: the windows and the
    // connection budget must let it through.
    let ca = ClusterCa::create("c1").expect("ca");
    let server = start_node(ca.issue("server", Role::Manager, 0).expect("cert"));
    let client = start_node(ca.issue("client", Role::Manager, 0).expect("cert"));
    let payload: Vec<u8> = (0..MAX_FRAME_BYTES - 1024).map(|i| i as u8).collect();
    let reply = client
        .request(
            server.local_addr().expect("addr"),
            WireMessage::Ping {
                nonce: 9,
                payload: payload.clone(),
            },
            Duration::from_secs(30),
        )
        .await
        .expect("a large ping is answered");
    assert_eq!(reply, WireMessage::Pong { nonce: 9, payload });
}
