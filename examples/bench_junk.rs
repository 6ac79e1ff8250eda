//! RSS under a junk storm: a node's transport, in a child process, is flooded from many
//! loopback clients with what a hostile peer can send, and its resident memory is sampled
//! before, at the peak during, and after the storm. Then a legitimate ping must still be
//! answered. Not a timed test: it prints numbers (docs/PERFORMANCE.md, "RSS under a junk
//! storm").
//!
//! `cargo run --release --example bench_junk [-- --connections 16 --streams 64 --seconds 10]`
//! prints JSON lines: one per phase (`before`, `peak`, `after`) and a summary.
//!
//! The storm, from `--connections` certificate holders (worker certificates) and twice the
//! node's certificate-less limit of joining connections at once:
//! - random junk bytes on a stream (closes the connection: malformed);
//! - a length prefix of 16 MiB followed by nothing, never finished (half-open);
//! - a 16 MiB prefix followed by 256 KiB of junk and never finished (partial frames, one-way
//!   and request streams);
//! - many streams per connection (`--streams`), reconnecting whenever the node closes one;
//! - certificate-less connections sending junk, 16 MiB prefixes and non-Join frames.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::net::codec;
use flotilla::net::message::Message;
use flotilla::net::tls::{self, ClusterCa, Credentials, Role};
use flotilla::net::transport::{
    DeliveryFuture, Inbound, InboundHandler, Transport, TransportConfig,
    MAX_UNAUTHENTICATED_CONNECTIONS,
};
use quinn::crypto::rustls::QuicClientConfig;
use rand::{Rng, SeedableRng};

#[path = "common/mod.rs"]
mod common;

/// Answers pings; refuses nothing else it is allowed to see (the transport does the checks).
struct Echo;

impl InboundHandler for Echo {
    fn deliver(&self, inbound: Inbound) -> DeliveryFuture {
        Box::pin(async move {
            Ok(Some(match inbound.message {
                Message::Ping { nonce, payload } => Message::Pong { nonce, payload },
                _ => Message::Ack,
            }))
        })
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))
}

fn read_credentials(dir: &Path) -> anyhow::Result<Credentials> {
    Ok(Credentials {
        cert_pem: std::fs::read_to_string(dir.join("cert.pem"))?,
        key_pem: std::fs::read_to_string(dir.join("key.pem"))?,
        ca_pem: std::fs::read_to_string(dir.join("ca.pem"))?,
    })
}

/// The child: serves until its stdin closes (the parent exits or is done).
async fn serve(dir: &Path) -> anyhow::Result<()> {
    let transport = Transport::bind(
        TransportConfig {
            listen: "127.0.0.1:0".parse()?,
            credentials: read_credentials(dir)?,
        },
        Echo,
    )?;
    println!("ADDR {}", transport.local_addr()?);
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    Ok(())
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    closed_by_node: AtomicU64,
    refused_at_handshake: AtomicU64,
    streams: AtomicU64,
    bytes_sent: AtomicU64,
}

fn client_endpoint(rustls_config: rustls::ClientConfig) -> anyhow::Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let crypto = QuicClientConfig::try_from(rustls_config)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    Ok(endpoint)
}

fn junk(rng: &mut rand::rngs::StdRng, bytes: usize) -> Vec<u8> {
    let mut data = vec![0u8; bytes];
    rng.fill(&mut data[..]);
    data
}

fn prefix_16_mib() -> Vec<u8> {
    (codec::MAX_FRAME_BYTES as u32).to_be_bytes().to_vec()
}

/// One stream of the storm; which kind depends on `kind`. Streams left open are kept in
/// `held` so they stay half-open until the connection goes.
async fn one_stream(
    connection: &quinn::Connection,
    kind: u64,
    rng: &mut rand::rngs::StdRng,
    held: &mut Vec<quinn::SendStream>,
    counters: &Counters,
) -> Result<(), quinn::ConnectionError> {
    let mut send = match kind % 5 {
        0..=2 => connection.open_bi().await?.0,
        _ => connection.open_uni().await?,
    };
    counters.streams.fetch_add(1, Ordering::Relaxed);
    let data = match kind % 5 {
        // Random junk, finished.
        0 => junk(rng, 4096),
        // A 16 MiB prefix and nothing else.
        1 | 3 => prefix_16_mib(),
        // A 16 MiB prefix and a quarter MiB of junk.
        _ => {
            let mut data = prefix_16_mib();
            data.extend(junk(rng, 256 * 1024));
            data
        }
    };
    // The node may stop reading (budget spent, windows full): don't wait for it forever.
    if let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_millis(500), send.write_all(&data)).await
    {
        counters
            .bytes_sent
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }
    if kind.is_multiple_of(5) {
        let _ = send.finish();
    } else {
        held.push(send);
    }
    Ok(())
}

/// One client: connects, opens `streams` junk streams, waits for the node to close it or for
/// the storm to end, and does it again.
async fn storm_client(
    seed: u64,
    rustls_config: rustls::ClientConfig,
    node: std::net::SocketAddr,
    streams: u64,
    until: Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let endpoint = client_endpoint(rustls_config)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    while Instant::now() < until {
        let connection = match endpoint.connect(node, tls::SERVER_NAME)?.await {
            Ok(connection) => connection,
            Err(_) => {
                counters
                    .refused_at_handshake
                    .fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let mut held = Vec::new();
        for stream in 0..streams {
            // Junk (kind 0) closes the connection at once; send it only sometimes, last.
            let kind = if stream + 1 == streams && rng.random_bool(0.5) {
                0
            } else {
                1 + rng.random_range(0..4)
            };
            if one_stream(&connection, kind, &mut rng, &mut held, &counters)
                .await
                .is_err()
            {
                break;
            }
        }
        let remaining = until.saturating_duration_since(Instant::now());
        if tokio::time::timeout(remaining, connection.closed())
            .await
            .is_ok()
        {
            counters.closed_by_node.fetch_add(1, Ordering::Relaxed);
        }
        connection.close(quinn::VarInt::from_u32(0), b"storm");
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"storm over");
    Ok(())
}

async fn storm(dir: &Path) -> anyhow::Result<()> {
    let connections: u64 = common::argument("--connections", 16)?;
    let streams: u64 = common::argument("--streams", 64)?;
    let seconds: u64 = common::argument("--seconds", 10)?;

    let ca = ClusterCa::create("bench-junk")?;
    let server = ca.issue("node", Role::Manager, 0)?;
    std::fs::write(dir.join("cert.pem"), &server.cert_pem)?;
    std::fs::write(dir.join("key.pem"), &server.key_pem)?;
    std::fs::write(dir.join("ca.pem"), &server.ca_pem)?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--serve")
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("child has no pid"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let node: std::net::SocketAddr = loop {
        let line = lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the node exited before it listened"))?;
        if let Some(addr) = line.strip_prefix("ADDR ") {
            break addr.parse()?;
        }
    };

    let legit = Transport::bind(
        TransportConfig {
            listen: "127.0.0.1:0".parse()?,
            credentials: ca.issue("legit", Role::Worker, 0)?,
        },
        Echo,
    )?;
    let ping = |nonce| Message::Ping {
        nonce,
        payload: vec![1; 64],
    };
    legit.request(node, ping(1), Duration::from_secs(5)).await?;
    let before_kib = rss_kib(pid)?;
    println!(
        "{}",
        serde_json::json!({"benchmark": "junk", "phase": "before", "rss_kib": before_kib})
    );

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for i in 0..connections {
        let config = ca
            .issue(&format!("hostile-{i}"), Role::Worker, 0)?
            .client_config()?;
        clients.push(tokio::spawn(storm_client(
            i,
            config,
            node,
            streams,
            until,
            counters.clone(),
        )));
    }
    let anonymous = 2 * MAX_UNAUTHENTICATED_CONNECTIONS as u64;
    for i in 0..anonymous {
        let (config, _) = tls::pinned_client_config(ca.digest())?;
        clients.push(tokio::spawn(storm_client(
            1_000 + i,
            config,
            node,
            4,
            until,
            counters.clone(),
        )));
    }
    let mut peak_kib = before_kib;
    let mut pings_during = 0u64;
    let mut pings_failed_during = 0u64;
    let mut ping_latencies = Vec::new();
    while Instant::now() < until {
        peak_kib = peak_kib.max(rss_kib(pid)?);
        let sent = Instant::now();
        match legit.request(node, ping(2), Duration::from_secs(2)).await {
            Ok(_) => {
                pings_during += 1;
                ping_latencies.push(sent.elapsed());
            }
            Err(_) => pings_failed_during += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ping_latencies.sort_unstable();
    for client in clients {
        let _ = tokio::time::timeout(Duration::from_secs(5), client).await;
    }
    peak_kib = peak_kib.max(rss_kib(pid)?);
    println!(
        "{}",
        serde_json::json!({"benchmark": "junk", "phase": "peak", "rss_kib": peak_kib})
    );
    // Let the node drop what the closed connections held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kib = rss_kib(pid)?;
    println!(
        "{}",
        serde_json::json!({"benchmark": "junk", "phase": "after", "rss_kib": after_kib})
    );
    let answered_at = Instant::now();
    let answered = legit.request(node, ping(3), Duration::from_secs(5)).await;
    let ping_ms = answered_at.elapsed().as_secs_f64() * 1e3;
    println!(
        "{}",
        serde_json::json!({
            "benchmark": "junk",
            "phase": "summary",
            "seconds": seconds,
            "hostile_clients": connections,
            "anonymous_clients": anonymous,
            "streams_per_connection": streams,
            "connections": counters.connections.load(Ordering::Relaxed),
            "closed_by_node": counters.closed_by_node.load(Ordering::Relaxed),
            "refused_at_handshake": counters.refused_at_handshake.load(Ordering::Relaxed),
            "streams": counters.streams.load(Ordering::Relaxed),
            "bytes_sent": counters.bytes_sent.load(Ordering::Relaxed),
            "rss_kib_before": before_kib,
            "rss_kib_peak": peak_kib,
            "rss_kib_after": after_kib,
            "legit_pings_during": pings_during,
            "legit_pings_failed_during": pings_failed_during,
            "legit_ping_ms_p50_during": common::percentile_ms(&ping_latencies, 0.5),
            "legit_ping_ms_max_during": common::percentile_ms(&ping_latencies, 1.0),
            "ping_after_ok": answered.is_ok(),
            "ping_after_ms": (ping_ms * 1000.0).round() / 1000.0,
        })
    );
    legit.shutdown().await;
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    answered
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("the node stopped answering: {e}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Some(dir) = common::string_argument("--serve")? {
        return serve(Path::new(&dir)).await;
    }
    let dir = tempfile::tempdir()?;
    storm(dir.path()).await
}
