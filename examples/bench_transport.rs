//! Transport benchmark: request/response latency and throughput over loopback QUIC with mTLS.
//!
//! `cargo run --release --example bench_transport [-- --requests N --concurrency C --payload B]`
//! prints one JSON object. Compare runs made in the same invocation; the machine is shared.

use std::time::{Duration, Instant};

use actix::prelude::*;
use flotilla::net::message::Message as WireMessage;
use flotilla::net::tls::{ClusterCa, Role};
use flotilla::net::transport::{Inbound, Transport, TransportConfig};

struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Echo {
    type Result = Option<WireMessage>;

    fn handle(&mut self, inbound: Inbound, _: &mut Context<Self>) -> Self::Result {
        match inbound.message {
            WireMessage::Ping { nonce, payload } => Some(WireMessage::Pong { nonce, payload }),
            _ => None,
        }
    }
}

fn argument(name: &str, default: usize) -> anyhow::Result<usize> {
    let arguments: Vec<String> = std::env::args().collect();
    match arguments.iter().position(|a| a == name) {
        Some(i) => Ok(arguments
            .get(i + 1)
            .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let requests = argument("--requests", 20_000)?;
    let concurrency = argument("--concurrency", 32)?.max(1);
    let payload_bytes = argument("--payload", 64)?;
    let ca = ClusterCa::create("bench")?;
    let listen = "127.0.0.1:0".parse()?;
    let server = Transport::bind(
        TransportConfig {
            listen,
            credentials: ca.issue("server", Role::Manager, 0)?,
        },
        Echo.start().recipient(),
    )?;
    let client = Transport::bind(
        TransportConfig {
            listen,
            credentials: ca.issue("client", Role::Worker, 0)?,
        },
        Echo.start().recipient(),
    )?;
    let server_addr = server.local_addr()?;
    let timeout = Duration::from_secs(10);
    let payload = vec![0xab; payload_bytes];

    // Latency: one request at a time.
    let mut latencies = Vec::with_capacity(requests / 4);
    for nonce in 0..(requests / 4) as u64 {
        let started = Instant::now();
        client
            .request(
                server_addr,
                WireMessage::Ping {
                    nonce,
                    payload: payload.clone(),
                },
                timeout,
            )
            .await?;
        latencies.push(started.elapsed());
    }
    latencies.sort_unstable();

    // Throughput: `concurrency` requests in flight.
    let started = Instant::now();
    let per_task = requests / concurrency;
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let client = client.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let nonce = (task * per_task + i) as u64;
                client
                    .request(
                        server_addr,
                        WireMessage::Ping {
                            nonce,
                            payload: payload.clone(),
                        },
                        timeout,
                    )
                    .await?;
            }
            Ok::<_, flotilla::net::transport::TransportError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let completed = per_task * concurrency;

    // One-way: messages per second handed to the peer's actor.
    let oneway_count = requests;
    let started_oneway = Instant::now();
    for nonce in 0..oneway_count as u64 {
        client
            .send(
                server_addr,
                WireMessage::Ping {
                    nonce,
                    payload: payload.clone(),
                },
            )
            .await?;
    }
    let oneway_elapsed = started_oneway.elapsed();

    let result = serde_json::json!({
        "benchmark": "transport",
        "payload_bytes": payload_bytes,
        "sequential_requests": latencies.len(),
        "latency_us_p50": percentile(&latencies, 0.50),
        "latency_us_p99": percentile(&latencies, 0.99),
        "concurrency": concurrency,
        "concurrent_requests": completed,
        "requests_per_second": completed as f64 / elapsed.as_secs_f64(),
        "oneway_messages": oneway_count,
        "oneway_sent_per_second": oneway_count as f64 / oneway_elapsed.as_secs_f64(),
    });
    println!("{result}");
    client.shutdown().await;
    server.shutdown().await;
    Ok(())
}
