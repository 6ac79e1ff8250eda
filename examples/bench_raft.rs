//! Raft benchmark: commits per second and commit latency with three managers over loopback QUIC.
//!
//! `cargo run --release --example bench_raft [-- --commits N --in-flight C --warmup W]`
//! prints one JSON object.
//!
//! Three real manager nodes (`flotilla::node::daemon::init` / `join`, real QUIC with mutual TLS,
//! real redb logs fsynced in temporary directories) run in this process, each on its own actix
//! arbiter (thread), on 127.0.0.1-3. The main thread keeps `--in-flight` proposals outstanding
//! against the leader's Raft actor and times each from send to acknowledgement (applied on the
//! leader, so committed by a quorum). Raft batches what accumulates between two Readys into one
//! append and one fsync; nothing else batches.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::Context as _;
use futures::stream::{self, StreamExt};
use tokio::sync::oneshot;

use flotilla::actors::raft::{GetStatus, Propose, RaftActor};
use flotilla::client::Client;
use flotilla::core::model::{Availability, Node, NodeRole, NodeStatus, Resources};
use flotilla::core::store::Command;
use flotilla::net::admin::{AdminReply, AdminRequest};
use flotilla::node::daemon::{self, NodeOptions, RunningNode};

/// Distinct synthetic node records the proposals overwrite (keeps the store small, so the
/// numbers measure consensus rather than a growing state machine).
const SYNTHETIC_NODES: usize = 1_000;

fn options(ip: u8, port: u16, state_dir: &Path) -> anyhow::Result<NodeOptions> {
    let listen: SocketAddr = format!("127.0.0.{ip}:{port}").parse()?;
    Ok(NodeOptions {
        listen,
        advertise_addr: None,
        state_dir: state_dir.to_path_buf(),
        hostname: Some(format!("bench-manager-{ip}")),
        runtime: "process".into(),
        labels: Vec::new(),
        enable_chaos: false,
        raft_tick_ms: daemon::DEFAULT_RAFT_TICK_MS,
        heartbeat_ms: daemon::DEFAULT_HEARTBEAT_MS,
        sim_task_start_ms: 20,
        metrics_listen: flotilla::node::metrics::MetricsListen::Off,
    })
}

/// A manager running on its own arbiter until `stop` fires.
struct ManagerThread {
    raft: Addr<RaftActor>,
    stop: Option<oneshot::Sender<()>>,
    arbiter: Arbiter,
}

impl Drop for ManagerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.arbiter.stop();
    }
}

enum Start {
    Init(NodeOptions),
    Join(NodeOptions, String, SocketAddr),
}

/// Starts a node on a new arbiter; the node lives (and its endpoint stays open) until stopped.
async fn start_manager(start: Start) -> anyhow::Result<ManagerThread> {
    let arbiter = Arbiter::new();
    let (started_tx, started_rx) = oneshot::channel::<Result<Addr<RaftActor>, String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // `init` and `join` hold a thread-local RNG across awaits, so their futures are not Send:
    // hand the arbiter a closure that spawns them locally.
    let spawned = arbiter.spawn_fn(move || {
        actix_rt::spawn(async move {
            let running: Result<RunningNode, String> = match start {
                Start::Init(options) => daemon::init(options)
                    .await
                    .map(|(_, running)| running)
                    .map_err(|e| e.to_string()),
                Start::Join(options, token, manager) => daemon::join(options, &token, manager)
                    .await
                    .map_err(|e| e.to_string()),
            };
            match running {
                Ok(node) => match node.raft.clone() {
                    Some(raft) => {
                        let _ = started_tx.send(Ok(raft));
                        let _ = stop_rx.await;
                        node.transport.shutdown().await;
                    }
                    None => {
                        let _ = started_tx.send(Err("the node is not a manager".into()));
                    }
                },
                Err(error) => {
                    let _ = started_tx.send(Err(error));
                }
            }
        });
    });
    if !spawned {
        anyhow::bail!("the arbiter is not running");
    }
    let thread = |raft| ManagerThread {
        raft,
        stop: Some(stop_tx),
        arbiter,
    };
    match started_rx.await {
        Ok(Ok(raft)) => Ok(thread(raft)),
        Ok(Err(error)) => anyhow::bail!("starting a manager failed: {error}"),
        Err(_) => anyhow::bail!("the manager's arbiter ended before it started"),
    }
}

async fn manager_token(state_dir: &Path, host: SocketAddr) -> anyhow::Result<String> {
    let client = Client::load(&state_dir.join("client.toml"), Some(&host.to_string()))?;
    match client
        .control(AdminRequest::JoinToken {
            role: NodeRole::Manager,
            rotate: false,
        })
        .await?
    {
        AdminReply::Token(token) => Ok(token),
        _ => anyhow::bail!("unexpected answer to join-token"),
    }
}

/// Waits until every manager sees the same leader and the leader counts three voters.
async fn wait_for_three_voters(managers: &[ManagerThread]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut statuses = Vec::new();
        for manager in managers {
            statuses.push(manager.raft.send(GetStatus).await?);
        }
        let leaders: Vec<usize> = (0..statuses.len())
            .filter(|i| statuses[*i].leadership.is_leader)
            .collect();
        if let [leader] = leaders[..] {
            let leader_id = statuses[leader].raft_id;
            let agreed = statuses
                .iter()
                .all(|s| s.leadership.leader_id == Some(leader_id));
            if agreed && statuses[leader].voters.len() == managers.len() {
                return Ok(leader);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("three managers did not agree on a leader within 30 s")
}

fn synthetic_node(sequence: usize) -> Command {
    let id = format!("benchnode{:016}", sequence % SYNTHETIC_NODES);
    Command::UpsertNode(Node {
        hostname: format!("host-{id}"),
        id,
        role: NodeRole::Worker,
        // Down already: the heartbeat monitor leaves records that cannot go down alone.
        status: NodeStatus::Down,
        availability: Availability::Active,
        labels: Default::default(),
        addr: "127.0.0.250:9".into(),
        engine_version: format!("bench-{sequence}"),
        resources: Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        },
        meta: Default::default(),
    })
}

/// Proposes `count` commands with `in_flight` outstanding; returns per-proposal latencies and
/// the wall time of the whole batch.
async fn propose_all(
    raft: &Addr<RaftActor>,
    first: usize,
    count: usize,
    in_flight: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = stream::iter(first..first + count)
        .map(|sequence| {
            let raft = raft.clone();
            async move {
                let sent = Instant::now();
                raft.send(Propose {
                    command: synthetic_node(sequence),
                })
                .await
                .context("the raft actor's mailbox")?
                .context("proposal")?;
                Ok(sent.elapsed())
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(results.len());
    for result in results {
        latencies.push(result?);
    }
    Ok((latencies, elapsed))
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let commits: usize = common::argument("--commits", 20_000)?;
    let in_flight: usize = common::argument::<usize>("--in-flight", 256)?.max(1);
    let warmup: usize = common::argument("--warmup", 2_000)?;
    let dir = tempfile::Builder::new().prefix("bench-raft").tempdir()?;
    let port = common::free_udp_port()?;

    let first_dir = dir.path().join("m1");
    let mut managers = vec![start_manager(Start::Init(options(1, port, &first_dir)?)).await?];
    let first_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let token = manager_token(&first_dir, first_addr).await?;
    for ip in 2..=3u8 {
        let state_dir = dir.path().join(format!("m{ip}"));
        let joined = start_manager(Start::Join(
            options(ip, port, &state_dir)?,
            token.clone(),
            first_addr,
        ))
        .await?;
        managers.push(joined);
    }
    let leader = wait_for_three_voters(&managers).await?;
    let raft = managers[leader].raft.clone();

    propose_all(&raft, 0, warmup, in_flight).await?;
    let (mut latencies, elapsed) = propose_all(&raft, warmup, commits, in_flight).await?;
    latencies.sort();
    let report = serde_json::json!({
        "benchmark": "raft",
        "managers": managers.len(),
        "in_flight": in_flight,
        "commits": commits,
        "seconds": common::round3(elapsed.as_secs_f64()),
        "commits_per_second": (commits as f64 / elapsed.as_secs_f64()).round(),
        "latency_ms_p50": common::round3(common::percentile_ms(&latencies, 0.50)),
        "latency_ms_p99": common::round3(common::percentile_ms(&latencies, 0.99)),
    });
    println!("{report}");

    // Stop every manager (endpoint shutdown, arbiter stop) before the directory goes.
    drop(managers);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(dir);
    Ok(())
}
