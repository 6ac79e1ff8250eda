//! Routing mesh benchmark (SPEC §6, issue 17): what the ingress proxy adds to a 1 KiB
//! request/response on loopback, against the same traffic sent to the backend directly.
//!
//! `cargo run --release --example bench_mesh [-- --requests N --concurrency C]` prints one
//! JSON line per case (`connection-per-request` latency, `persistent` latency, and
//! `throughput` with C clients on persistent connections), each with the direct and the mesh
//! numbers of the same run and their ratio. The backend echoes 1 KiB for every 1 KiB read.

#[path = "common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use flotilla::core::ports::PortProtocol;
use flotilla::core::routing::{Backend, Route, RoutingTable};
use flotilla::net::mesh::Mesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::argument;

const SIZE: usize = 1024;
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A backend that answers each 1 KiB it reads with 1 KiB, on every connection.
async fn backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut buffer = vec![0u8; SIZE];
                while stream.read_exact(&mut buffer).await.is_ok() {
                    if stream.write_all(&buffer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn round_trip(stream: &mut TcpStream, buffer: &mut [u8]) -> anyhow::Result<()> {
    stream.write_all(buffer).await?;
    stream.read_exact(buffer).await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

struct Latency {
    p50_us: f64,
    p99_us: f64,
}

fn summarise(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    Latency {
        p50_us: percentile(&samples, 0.50),
        p99_us: percentile(&samples, 0.99),
    }
}

/// Each request on a new connection (connect, 1 KiB each way, close).
async fn per_connection(target: SocketAddr, requests: usize) -> anyhow::Result<Latency> {
    let mut buffer = vec![7u8; SIZE];
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let mut stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        round_trip(&mut stream, &mut buffer).await?;
        samples.push(started.elapsed());
    }
    Ok(summarise(samples))
}

/// Requests one after another on one connection.
async fn persistent(target: SocketAddr, requests: usize) -> anyhow::Result<Latency> {
    let mut buffer = vec![7u8; SIZE];
    let mut stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        round_trip(&mut stream, &mut buffer).await?;
        samples.push(started.elapsed());
    }
    Ok(summarise(samples))
}

/// Requests per second with `clients` persistent connections for `requests` in all.
async fn throughput(target: SocketAddr, clients: usize, requests: usize) -> anyhow::Result<f64> {
    let each = requests / clients;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        handles.push(tokio::spawn(async move {
            let mut buffer = vec![7u8; SIZE];
            let mut stream = TcpStream::connect(target).await?;
            stream.set_nodelay(true)?;
            for _ in 0..each {
                round_trip(&mut stream, &mut buffer).await?;
            }
            anyhow::Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok((each * clients) as f64 / started.elapsed().as_secs_f64())
}

fn print_latency(case: &str, direct: &Latency, mesh: &Latency, requests: usize) {
    println!(
        "{}",
        serde_json::json!({
            "bench": "mesh",
            "case": case,
            "requests": requests,
            "bytes_each_way": SIZE,
            "direct_p50_us": direct.p50_us,
            "direct_p99_us": direct.p99_us,
            "mesh_p50_us": mesh.p50_us,
            "mesh_p99_us": mesh.p99_us,
            "added_p50_us": mesh.p50_us - direct.p50_us,
            "added_p99_us": mesh.p99_us - direct.p99_us,
        })
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests = argument("--requests", 20_000)?;
    let clients = argument("--concurrency", 16)?;
    let backend = backend().await?;
    let published = {
        let probe = std::net::TcpListener::bind((LOOPBACK, 0))?;
        probe.local_addr()?.port()
    };
    let mesh = Mesh::new(LOOPBACK);
    mesh.apply(RoutingTable {
        version: 1,
        routes: vec![Route {
            published,
            protocol: PortProtocol::Tcp,
            proxy_protocol: false,
            service_id: "bench".into(),
            service_name: "bench".into(),
            backends: vec![Backend {
                task_id: "t1".into(),
                addr: backend,
            }],
        }],
    });
    if let Some(failure) = mesh.bind_failures().first() {
        anyhow::bail!("mesh could not listen: {}", failure.error);
    }
    let through_mesh = SocketAddr::new(LOOPBACK, published);

    // Warm both paths, then measure them alternately in the same run.
    persistent(backend, 1_000).await?;
    persistent(through_mesh, 1_000).await?;

    let connections = (requests / 4).max(100);
    let direct = per_connection(backend, connections).await?;
    let meshed = per_connection(through_mesh, connections).await?;
    print_latency("connection-per-request", &direct, &meshed, connections);

    let direct = persistent(backend, requests).await?;
    let meshed = persistent(through_mesh, requests).await?;
    print_latency("persistent", &direct, &meshed, requests);

    let direct = throughput(backend, clients, requests * 2).await?;
    let meshed = throughput(through_mesh, clients, requests * 2).await?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "mesh",
            "case": "throughput",
            "clients": clients,
            "bytes_each_way": SIZE,
            "direct_rps": direct,
            "mesh_rps": meshed,
            "mesh_over_direct": meshed / direct,
        })
    );
    mesh.close();
    Ok(())
}
