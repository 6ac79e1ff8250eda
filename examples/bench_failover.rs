//! Failover benchmark: SIGKILL the leader of three manager processes, measure how long until
//! another manager reports a leader and until a write is acknowledged through another manager.
//!
//! `cargo run --release --example bench_failover [-- --kills 20 --bin-dir target/release]`
//! prints one JSON object per kill, then a summary object.
//!
//! Real `flotilla-node` processes on 127.0.0.1-3 (one UDP port), default timings (100 ms
//! tick), driven through the real `flotilla` CLI. After each kill two probes race, each
//! starting a CLI command every `--probe-interval-ms` (at most `--probes-max` outstanding, so a
//! command stuck on the dead leader does not hide a manager that can already answer):
//! `node ls --format json` on a surviving manager until it names a surviving leader, and
//! `service create -d --name wK-A busybox true` on a surviving manager until one succeeds.
//! Times run from the kill to the exit of the first command that succeeded, so they include
//! one CLI process start and one QUIC + TLS handshake (tens of milliseconds). The killed node
//! is then restarted with `flotilla-node start` and the next kill waits until all three
//! managers are ready again.

#[path = "common/mod.rs"]
mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

const MANAGERS: usize = 3;

/// Kills the child if this benchmark dies (SIGKILL included), so no node outlives it.
fn kill_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

struct NodeProcess {
    ip: String,
    state_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The cluster; dropping it kills every node process and removes the temporary directory.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    node_bin: PathBuf,
    cli_bin: PathBuf,
    nodes: Vec<NodeProcess>,
    /// Print the tail of every node's log when dropped (cleared once the run succeeds).
    print_logs_on_drop: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        if self.print_logs_on_drop {
            for node in &self.nodes {
                let text = std::fs::read_to_string(&node.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("----- {} ({}) -----", node.log.display(), node.ip);
                eprintln!("{}", lines[lines.len().saturating_sub(30)..].join("\n"));
            }
        }
    }
}

impl Cluster {
    fn new(bin_dir: &Path) -> anyhow::Result<Cluster> {
        let node_bin = bin_dir.join("flotilla-node");
        let cli_bin = bin_dir.join("flotilla");
        for bin in [&node_bin, &cli_bin] {
            if !bin.exists() {
                anyhow::bail!(
                    "{} not found: run `cargo build --release --bins` or pass --bin-dir",
                    bin.display()
                );
            }
        }
        Ok(Cluster {
            dir: tempfile::Builder::new()
                .prefix("bench-failover")
                .tempdir()?,
            port: common::free_udp_port()?,
            node_bin,
            cli_bin,
            nodes: Vec::new(),
            print_logs_on_drop: true,
        })
    }

    fn addr(&self, index: usize) -> String {
        format!("{}:{}", self.nodes[index].ip, self.port)
    }

    fn config(&self) -> PathBuf {
        self.nodes[0].state_dir.join("client.toml")
    }

    fn spawn(&mut self, index: usize, args: &[String]) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let mut command = Command::new(&self.node_bin);
        command
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("FLOTILLA_BENCH_LOG").unwrap_or_else(|_| "flotilla=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        kill_with_parent(&mut command);
        node.child = Some(command.spawn().context("spawn flotilla-node")?);
        Ok(())
    }

    fn add_node(&mut self, command: &str, extra: &[String]) -> anyhow::Result<usize> {
        let index = self.nodes.len();
        self.nodes.push(NodeProcess {
            ip: format!("127.0.0.{}", index + 1),
            state_dir: self.dir.path().join(format!("node{}", index + 1)),
            log: self.dir.path().join(format!("node{}.log", index + 1)),
            child: None,
        });
        let mut args = vec![command.to_string()];
        args.extend(extra.iter().cloned());
        args.extend([
            "--listen".to_string(),
            self.addr(index),
            "--state-dir".to_string(),
            self.nodes[index].state_dir.display().to_string(),
            "--hostname".to_string(),
            format!("node{}", index + 1),
            "--runtime".to_string(),
            "process".to_string(),
        ]);
        if command == "join" {
            args.push(self.addr(0));
        }
        self.spawn(index, &args)?;
        Ok(index)
    }

    fn cli_command(&self, host: usize, args: &[&str]) -> Command {
        let mut command = Command::new(&self.cli_bin);
        command
            .arg("--config")
            .arg(self.config())
            .arg("--host")
            .arg(self.addr(host))
            .args(args)
            .env_remove("FLOTILLA_HOST")
            .env_remove("FLOTILLA_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        kill_with_parent(&mut command);
        command
    }

    fn cli(&self, host: usize, args: &[&str]) -> anyhow::Result<Output> {
        Ok(self.cli_command(host, args).output()?)
    }

    fn nodes_json(&self, host: usize) -> Option<Vec<Value>> {
        let output = self.cli(host, &["node", "ls", "--format", "json"]).ok()?;
        parse_nodes(&output)
    }

    fn index_of_addr(&self, addr: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|i| self.addr(*i) == addr)
    }

    fn alive(&self, index: usize) -> bool {
        self.nodes[index].child.is_some()
    }

    /// The leader's index, as the first live manager that answers sees it.
    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| self.alive(*i))
            .find_map(|host| self.nodes_json(host))
            .and_then(|nodes| leader_addr(&nodes))
            .and_then(|addr| self.index_of_addr(&addr))
    }

    /// Every manager process answers, and each sees three ready managers and one live leader.
    fn all_ready(&self) -> bool {
        (0..self.nodes.len()).all(|host| {
            self.alive(host)
                && self.nodes_json(host).is_some_and(|nodes| {
                    let ready = nodes
                        .iter()
                        .filter(|n| n["role"] == "manager" && n["status"] == "ready")
                        .count();
                    ready == MANAGERS && leader_addr(&nodes).is_some()
                })
        })
    }

    fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Cluster) -> bool,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if condition(self) {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("timed out after {timeout:?} waiting until {what}")
    }

    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        let args = [
            "start".to_string(),
            "--state-dir".to_string(),
            self.nodes[index].state_dir.display().to_string(),
        ];
        self.spawn(index, &args)
    }
}

fn parse_nodes(output: &Output) -> Option<Vec<Value>> {
    if !output.status.success() {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

fn leader_addr(nodes: &[Value]) -> Option<String> {
    nodes
        .iter()
        .find(|n| n["manager_status"] == "leader")
        .and_then(|n| n["addr"].as_str().map(str::to_string))
}

/// Starts `attempt(k)` every `interval` (at most `outstanding_max` running) until one exits
/// and `accept` approves its output; returns the time from `since` to that exit. Commands
/// still running at the end are killed.
fn race(
    since: Instant,
    interval: Duration,
    outstanding_max: usize,
    timeout: Duration,
    mut attempt: impl FnMut(usize) -> Command,
    accept: impl Fn(&Output) -> bool,
) -> anyhow::Result<Option<Duration>> {
    let mut running: Vec<Child> = Vec::new();
    let mut started = 0usize;
    let mut next_start = Instant::now();
    let result = loop {
        if since.elapsed() > timeout {
            break None;
        }
        if running.len() < outstanding_max && Instant::now() >= next_start {
            running.push(attempt(started).spawn()?);
            started += 1;
            next_start = Instant::now() + interval;
        }
        let mut found = None;
        let mut index = 0;
        while index < running.len() {
            if running[index].try_wait()?.is_some() {
                let elapsed = since.elapsed();
                let output = running.swap_remove(index).wait_with_output()?;
                if accept(&output) {
                    found = Some(elapsed);
                    break;
                }
            } else {
                index += 1;
            }
        }
        if found.is_some() {
            break found;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    for mut child in running {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(result)
}

/// Seconds since midnight (UTC) of a log line's leading RFC 3339 timestamp
/// (`2026-11-27T07:05:01.123456Z ...`).
fn log_time_of_day(line: &str) -> Option<f64> {
    // Skip colour escapes (`ESC [ ... m`) a node may have written before the timestamp.
    let mut stamp = line.split_whitespace().next()?;
    while let Some(rest) = stamp.strip_prefix('\u{1b}') {
        stamp = rest.split_once('m')?.1;
    }
    let stamp = stamp.split('\u{1b}').next()?;
    let time = stamp.split_once('T')?.1.strip_suffix('Z')?;
    let mut parts = time.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// Seconds since midnight (UTC) now.
fn now_time_of_day() -> f64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_secs_f64() % 86_400.0
}

/// Seconds from `killed_at` (time of day) to the first "became leader" line a node logged
/// after byte `offset` of its log: the election alone, without the CLI's round trip.
fn elected_after(log: &Path, offset: u64, killed_at: f64) -> Option<f64> {
    let text = std::fs::read(log).ok()?;
    let tail = text.get(usize::try_from(offset).ok()?..)?;
    String::from_utf8_lossy(tail)
        .lines()
        .filter(|line| line.contains("leadership") && line.contains("is_leader=true"))
        .find_map(log_time_of_day)
        .map(|at| (at - killed_at).rem_euclid(86_400.0))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return 0.0;
    }
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let kills: usize = common::argument("--kills", 20)?;
    let interval = Duration::from_millis(common::argument("--probe-interval-ms", 50)?);
    let probes_max: usize = common::argument("--probes-max", 6)?;
    let bin_dir = match common::string_argument("--bin-dir")? {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .context("no directory above the example's")?,
    };
    let mut cluster = Cluster::new(&bin_dir)?;
    cluster.add_node("init", &[])?;
    let config = cluster.config();
    cluster.wait_until("the first manager answers", Duration::from_secs(30), |c| {
        config.exists() && c.nodes_json(0).is_some()
    })?;
    let token_output = cluster.cli(0, &["swarm", "join-token", "-q", "manager"])?;
    if !token_output.status.success() {
        anyhow::bail!(
            "join-token failed: {}",
            String::from_utf8_lossy(&token_output.stderr)
        );
    }
    let token = String::from_utf8_lossy(&token_output.stdout)
        .trim()
        .to_string();
    // One join at a time: a manager join is a membership change, and Raft takes one at a time.
    for _ in 1..MANAGERS {
        let index = cluster.add_node("join", &["--token".to_string(), token.clone()])?;
        cluster.wait_until(
            "the joined manager is ready",
            Duration::from_secs(30),
            |c| {
                c.nodes_json(0).is_some_and(|nodes| {
                    nodes
                        .iter()
                        .filter(|n| n["role"] == "manager" && n["status"] == "ready")
                        .count()
                        > index
                })
            },
        )?;
    }
    cluster.wait_until("three managers are ready", Duration::from_secs(60), |c| {
        c.all_ready()
    })?;

    let mut leader_s = Vec::new();
    let mut write_s = Vec::new();
    let mut elected_s = Vec::new();
    for kill in 1..=kills {
        let leader = cluster.leader().context("no leader before the kill")?;
        let others: Vec<usize> = (0..MANAGERS).filter(|i| *i != leader).collect();
        let leader_address = cluster.addr(leader);
        let log_offsets: Vec<u64> = cluster
            .nodes
            .iter()
            .map(|node| std::fs::metadata(&node.log).map_or(0, |m| m.len()))
            .collect();
        let killed_at_wall = now_time_of_day();
        cluster.nodes[leader]
            .child
            .as_mut()
            .context("the leader has no process")?
            .kill()?;
        let killed_at = Instant::now();
        cluster.kill(leader);
        let timeout = Duration::from_secs(30);
        let cluster_ref = &cluster;
        let (new_leader, write) = std::thread::scope(|scope| {
            let leader_probe = scope.spawn(|| {
                race(
                    killed_at,
                    interval,
                    probes_max,
                    timeout,
                    |k| cluster_ref.cli_command(others[k % 2], &["node", "ls", "--format", "json"]),
                    |output| {
                        parse_nodes(output)
                            .and_then(|nodes| leader_addr(&nodes))
                            .is_some_and(|addr| addr != leader_address)
                    },
                )
            });
            let write_probe = scope.spawn(|| {
                race(
                    killed_at,
                    interval,
                    probes_max,
                    timeout,
                    |k| {
                        let name = format!("w{kill}-{k}");
                        cluster_ref.cli_command(
                            others[k % 2],
                            &[
                                "service", "create", "-d", "--name", &name, "busybox", "true",
                            ],
                        )
                    },
                    |output| output.status.success(),
                )
            });
            (leader_probe.join(), write_probe.join())
        });
        let new_leader = new_leader
            .map_err(|_| anyhow::anyhow!("leader probe panicked"))??
            .context("no new leader within 30 s")?;
        let write = write
            .map_err(|_| anyhow::anyhow!("write probe panicked"))??
            .context("no acknowledged write within 30 s")?;
        leader_s.push(new_leader.as_secs_f64());
        write_s.push(write.as_secs_f64());
        let elected = others
            .iter()
            .filter_map(|i| elected_after(&cluster.nodes[*i].log, log_offsets[*i], killed_at_wall))
            .reduce(f64::min);
        if let Some(elected) = elected {
            elected_s.push(elected);
        }
        cluster.restart(leader)?;
        let back = cluster.wait_until(
            "the killed manager is back and all three are ready",
            Duration::from_secs(60),
            |c| c.all_ready(),
        )?;
        println!(
            "{}",
            serde_json::json!({
                "benchmark": "failover_kill",
                "kill": kill,
                "killed": leader_address,
                "leader_ms": common::round3(new_leader.as_secs_f64() * 1e3),
                "write_ms": common::round3(write.as_secs_f64() * 1e3),
                "elected_ms": elected.map(|s| common::round3(s * 1e3)),
                "rejoin_ms": common::round3(back.as_secs_f64() * 1e3),
            })
        );
    }
    let worst = |values: &[f64]| values.iter().copied().fold(0.0, f64::max);
    let (leader_worst, write_worst) = (worst(&leader_s), worst(&write_s));
    println!(
        "{}",
        serde_json::json!({
            "benchmark": "failover",
            "managers": MANAGERS,
            "kills": kills,
            "leader_ms_median": common::round3(median(&mut leader_s) * 1e3),
            "leader_ms_worst": common::round3(leader_worst * 1e3),
            "write_ms_median": common::round3(median(&mut write_s) * 1e3),
            "write_ms_worst": common::round3(write_worst * 1e3),
            "elected_ms_median": common::round3(median(&mut elected_s) * 1e3),
            "probe_interval_ms": interval.as_millis() as u64,
        })
    );
    if let Some(dir) = common::string_argument("--keep-logs")? {
        std::fs::create_dir_all(&dir)?;
        for node in &cluster.nodes {
            if let Some(name) = node.log.file_name() {
                std::fs::copy(&node.log, Path::new(&dir).join(name))?;
            }
        }
    }
    cluster.print_logs_on_drop = false;
    Ok(())
}
