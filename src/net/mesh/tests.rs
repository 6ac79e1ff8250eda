use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::*;
use crate::core::routing::{Backend, Route, RoutingTable};

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn free_port() -> u16 {
    std::net::TcpListener::bind((LOOPBACK, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A TCP backend that answers each connection's first read with `name:` and what it read;
/// with `read_proxy_header`, it first takes a PROXY v2 header and answers with the client
/// address it names.
async fn backend(name: &'static str, read_proxy_header: bool) -> SocketAddr {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 1024];
                let Ok(length) = stream.read(&mut buffer).await else {
                    return;
                };
                let answer = if read_proxy_header {
                    match proxy_protocol::parse(&buffer[..length]) {
                        Some((client, _)) => format!("{name}:{client}"),
                        None => format!("{name}:no header"),
                    }
                } else {
                    format!("{name}:{}", String::from_utf8_lossy(&buffer[..length]))
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

fn table(
    version: u64,
    published: u16,
    protocol: PortProtocol,
    backends: &[SocketAddr],
) -> RoutingTable {
    RoutingTable {
        version,
        routes: vec![Route {
            published,
            protocol,
            proxy_protocol: false,
            service_id: "s1".into(),
            service_name: "web".into(),
            backends: backends
                .iter()
                .enumerate()
                .map(|(index, addr)| Backend {
                    task_id: format!("t{index}"),
                    addr: *addr,
                })
                .collect(),
        }],
    }
}

async fn ask(port: u16, text: &str) -> String {
    let mut stream = TcpStream::connect((LOOPBACK, port))
        .await
        .expect("connect to mesh");
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

#[tokio::test]
async fn connections_are_balanced_and_a_dead_backend_is_skipped() {
    let (a, b) = (backend("a", false).await, backend("b", false).await);
    let dead: SocketAddr = (LOOPBACK, free_port()).into();
    let port = free_port();
    let mesh = Mesh::new(LOOPBACK);
    assert!(mesh.apply(table(5, port, PortProtocol::Tcp, &[a, dead, b])));
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..30 {
        let answer = ask(port, &format!("r{round}")).await;
        assert!(answer.ends_with(&format!(":r{round}")), "{answer}");
        *seen.entry(answer[..1].to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both live backends serve: {seen:?}");
    assert!(
        seen.values().all(|count| *count >= 10),
        "balanced: {seen:?}"
    );
    assert_eq!(mesh.stats().refused.load(Ordering::Relaxed), 0);

    // An older table is ignored; a newer one without the route closes the port.
    assert!(!mesh.apply(table(4, port, PortProtocol::Tcp, &[])));
    assert!(mesh.routes_to("t0"));
    assert!(mesh.apply(RoutingTable {
        version: 6,
        routes: Vec::new()
    }));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        TcpStream::connect((LOOPBACK, port)).await.is_err(),
        "closed"
    );
    mesh.close();
}

#[tokio::test]
async fn no_backend_closes_the_connection_and_counts_it() {
    let port = free_port();
    let mesh = Mesh::new(LOOPBACK);
    mesh.apply(table(1, port, PortProtocol::Tcp, &[]));
    assert_eq!(ask(port, "hello").await, "");
    assert_eq!(mesh.stats().refused.load(Ordering::Relaxed), 1);
    mesh.close();
}

#[tokio::test]
async fn proxy_protocol_v2_tells_the_backend_the_client_address() {
    let a = backend("a", true).await;
    let port = free_port();
    let mesh = Mesh::new(LOOPBACK);
    let mut routes = table(1, port, PortProtocol::Tcp, &[a]);
    routes.routes[0].proxy_protocol = true;
    mesh.apply(routes);
    let mut stream = TcpStream::connect((LOOPBACK, port)).await.expect("connect");
    let client = stream.local_addr().expect("local addr");
    stream.write_all(b"x").await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert_eq!(answer, format!("a:{client}"));
    mesh.close();
}

#[tokio::test]
async fn a_port_in_use_is_reported_and_the_others_are_served() {
    let a = backend("a", false).await;
    let taken = std::net::TcpListener::bind((LOOPBACK, 0)).expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let free = free_port();
    let mesh = Mesh::new(LOOPBACK);
    let mut both = table(1, taken_port, PortProtocol::Tcp, &[a]);
    both.routes
        .push(table(1, free, PortProtocol::Tcp, &[a]).routes.remove(0));
    mesh.apply(both);
    let failures = mesh.bind_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].published, taken_port);
    assert!(failures[0].error.contains("in use"), "{failures:?}");
    assert_eq!(ask(free, "ok").await, "a:ok");
    mesh.close();
}

#[tokio::test]
async fn udp_flows_reach_a_backend_and_replies_come_back() {
    let backend = UdpSocket::bind((LOOPBACK, 0)).await.expect("bind");
    let backend_addr = backend.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        while let Ok((length, from)) = backend.recv_from(&mut buffer).await {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buffer[..length]);
            let _ = backend.send_to(&reply, from).await;
        }
    });
    let port = {
        let socket = std::net::UdpSocket::bind((LOOPBACK, 0)).expect("bind");
        socket.local_addr().expect("addr").port()
    };
    let mesh = Mesh::new(LOOPBACK);
    mesh.apply(table(1, port, PortProtocol::Udp, &[backend_addr]));
    let client = UdpSocket::bind((LOOPBACK, 0)).await.expect("bind");
    client.connect((LOOPBACK, port)).await.expect("connect");
    for text in ["one", "two"] {
        client.send(text.as_bytes()).await.expect("send");
        let mut buffer = [0u8; 512];
        let length =
            tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buffer))
                .await
                .expect("a reply in time")
                .expect("recv");
        assert_eq!(&buffer[..length], format!("echo:{text}").as_bytes());
    }
    assert_eq!(
        mesh.stats().udp_flows.load(Ordering::Relaxed),
        1,
        "one flow"
    );
    mesh.close();
}

#[tokio::test]
async fn drained_waits_until_a_table_without_the_task_is_applied() {
    let a = backend("a", false).await;
    let port = free_port();
    let mesh = Mesh::new(LOOPBACK);
    assert!(
        mesh.drained("t0", Duration::from_millis(1)).await,
        "not routed yet"
    );
    mesh.apply(table(1, port, PortProtocol::Tcp, &[a]));
    assert!(
        !mesh.drained("t0", Duration::from_millis(50)).await,
        "still routed: the bound passes"
    );
    let waiter = {
        let mesh = mesh.clone();
        tokio::spawn(async move { mesh.drained("t0", Duration::from_secs(30)).await })
    };
    // A newer table that still routes to it does not end the wait; one without it does.
    mesh.apply(table(2, port, PortProtocol::Tcp, &[a]));
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    mesh.apply(table(3, port, PortProtocol::Tcp, &[]));
    assert!(waiter.await.expect("waiter"), "drained once the task left");
    mesh.close();
}
