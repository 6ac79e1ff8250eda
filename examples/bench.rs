//! Scale and healing benchmarks with real `flotilla-node` processes on loopback, driven through
//! the real `flotilla` CLI. Prints ONE JSON object. Benchmarks, not tests: nothing is asserted.
//!
//! ```text
//! cargo build --release --bins --examples
//! cargo run --release --example bench -- converge --workers 100 --replicas 3000
//! cargo run --release --example bench -- heal --runtime process --kills 20
//! cargo run --release --example bench -- heal --runtime docker --kills 20
//! cargo run --release --example bench -- update --replicas 10
//! cargo run --release --example bench -- unhealthy --kills 6
//! ```
//!
//! `update` and `unhealthy`: see `bench/rollout.rs`.
//!
//! `converge` (also `footprint`: same run, the JSON carries both): 3 managers on
//! 127.0.0.1/2/3 with their own worker role drained, one `flotilla-node sim` process with W
//! hollow workers on 127.0.0.100 from port 20000, then `service create -d --replicas R busybox
//! sleep 1000000`; time until `service ls` shows R running, per-task delay created -> running
//! (running `state_since` minus the service's `created_at`), peak RSS and CPU of the leader and
//! of the sim process.
//!
//! `heal`: 1 manager + 2 workers with the process or docker runtime; services of 3 replicas; each
//! kill (SIGKILL of the task's PID, or `docker rm -f` of its container) is timed until a new task
//! of that slot runs. Every slot is killed once (a fresh service every 3 kills), so each kill
//! measures the first-replacement path and not the restart backoff of a slot killed again.
//!
//! Options: `--bin-dir DIR` (default: next to this example), `--timeout S`, `--poll-ms N`,
//! `--sim-listen IP:PORT`, `--heartbeat-ms N` (hollow workers), `--raft-tick-ms N` (managers).

#[path = "bench/harness.rs"]
mod harness;
#[path = "bench/rollout.rs"]
mod rollout;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use harness::{footprint, parse_rfc3339_ms, percentile, round1, unix_ms, Harness};
use serde_json::{json, Value};

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    fn number(&self, name: &str, default: u64) -> anyhow::Result<u64> {
        match self.value(name) {
            Some(v) => v.parse().with_context(|| format!("{name} {v}")),
            None => Ok(default),
        }
    }
}

fn main() -> anyhow::Result<()> {
    harness::install_signal_cleanup();
    let args = Args(std::env::args().skip(1).collect());
    let scenario = args
        .0
        .first()
        .cloned()
        .context("usage: bench converge|footprint|heal|update|unhealthy [options]")?;
    let result = match scenario.as_str() {
        "converge" | "footprint" => converge(&args),
        "heal" => heal(&args),
        "update" => rollout::update(&args),
        "unhealthy" => rollout::unhealthy(&args),
        other => bail!("unknown scenario {other}: converge, footprint, heal, update or unhealthy"),
    };
    harness::cleanup_all();
    let value = result?;
    println!("{}", serde_json::to_string(&value)?);
    Ok(())
}

fn bin_dir(args: &Args) -> Option<PathBuf> {
    args.value("--bin-dir").map(PathBuf::from)
}

fn ms_stats(mut values: Vec<f64>) -> Value {
    values.sort_by(|a, b| a.total_cmp(b));
    json!({
        "n": values.len(),
        "p50": percentile(&values, 0.50).round(),
        "p90": percentile(&values, 0.90).round(),
        "p99": percentile(&values, 0.99).round(),
        "max": values.last().copied().unwrap_or(f64::NAN).round(),
    })
}

/// Starts the first manager (`init`) at `addr` and waits until the CLI can use it.
fn init_manager(
    h: &mut Harness,
    addr: &str,
    runtime: &str,
    extra: &[String],
) -> anyhow::Result<usize> {
    let state = h.dir.join("mgr1");
    let index = h.spawn(
        "mgr1",
        &[
            &[
                "init".into(),
                "--listen".into(),
                addr.into(),
                "--state-dir".into(),
                state.display().to_string(),
                "--hostname".into(),
                "mgr1".into(),
                "--runtime".into(),
                runtime.into(),
            ],
            extra,
        ]
        .concat(),
    )?;
    let config = h.config.clone();
    let host = addr.to_string();
    h.wait_until(
        "the first manager answers",
        Duration::from_secs(30),
        Duration::from_millis(100),
        |h| Ok(config.exists() && h.cli(&host, &["node", "ls"])?.status.success()),
    )?;
    Ok(index)
}

fn join_node(
    h: &mut Harness,
    name: &str,
    addr: &str,
    runtime: &str,
    token: &str,
    manager: &str,
    extra: &[String],
) -> anyhow::Result<usize> {
    let state = h.dir.join(name);
    h.spawn(
        name,
        &[
            &[
                "join".into(),
                "--token".into(),
                token.into(),
                "--listen".into(),
                addr.into(),
                "--state-dir".into(),
                state.display().to_string(),
                "--hostname".into(),
                name.into(),
                "--runtime".into(),
                runtime.into(),
            ],
            extra,
            &[manager.into()],
        ]
        .concat(),
    )
}

fn services(h: &Harness, host: &str) -> anyhow::Result<Vec<Value>> {
    h.cli_json(host, &["service", "ls", "--format", "json"])
}

fn converge(args: &Args) -> anyhow::Result<Value> {
    let workers = args.number("--workers", 100)? as usize;
    let replicas = args.number("--replicas", 3_000)?;
    let timeout = Duration::from_secs(args.number("--timeout", 900)?);
    let poll = Duration::from_millis(args.number("--poll-ms", 250)?);
    let sim_listen = args.value("--sim-listen").unwrap_or("127.0.0.100:20000");
    let heartbeat_ms = args.number("--heartbeat-ms", 1000)?;
    let raft_tick_ms = args.number("--raft-tick-ms", 100)?;
    let extra = vec!["--raft-tick-ms".to_string(), raft_tick_ms.to_string()];
    let mut h = Harness::new(bin_dir(args))?;
    let port = harness::free_udp_port()?;
    let addrs: Vec<String> = (1..=3).map(|i| format!("127.0.0.{i}:{port}")).collect();
    let leader_host = addrs[0].clone();

    let started = Instant::now();
    init_manager(&mut h, &addrs[0], "sim", &extra)?;
    let manager_token = h
        .cli_ok(&addrs[0], &["swarm", "join-token", "-q", "manager"])?
        .trim()
        .to_string();
    for i in 1..3 {
        join_node(
            &mut h,
            &format!("mgr{}", i + 1),
            &addrs[i],
            "sim",
            &manager_token,
            &addrs[0],
            &extra,
        )?;
    }
    h.wait_until(
        "3 managers are ready",
        Duration::from_secs(60),
        Duration::from_millis(200),
        |h| Ok(h.ready_nodes(&leader_host)? >= 3),
    )?;
    for node in h.cli_json(&leader_host, &["node", "ls", "--format", "json"])? {
        let id = node["id"].as_str().context("node id")?;
        h.cli_ok(
            &leader_host,
            &["node", "update", "--availability", "drain", id],
        )?;
    }
    let managers_s = started.elapsed().as_secs_f64();

    let worker_token = h
        .cli_ok(&leader_host, &["swarm", "join-token", "-q", "worker"])?
        .trim()
        .to_string();
    let sim_state = h.dir.join("sim");
    let join_started = Instant::now();
    let sim = h.spawn(
        "sim",
        &[
            "sim".into(),
            "--token".into(),
            worker_token,
            "--workers".into(),
            workers.to_string(),
            "--listen".into(),
            sim_listen.into(),
            "--state-dir".into(),
            sim_state.display().to_string(),
            "--heartbeat-ms".into(),
            heartbeat_ms.to_string(),
            addrs[0].clone(),
        ],
    )?;
    let join_timeout = Duration::from_secs(120 + workers as u64 / 10);
    h.wait_until(
        "the hollow workers are ready",
        join_timeout,
        Duration::from_millis(1000),
        |h| Ok(h.ready_nodes(&leader_host)? >= 3 + workers),
    )?;
    let join_s = join_started.elapsed().as_secs_f64();

    // The leader is the manager whose advertised address `node ls` marks as leader.
    let nodes = h.cli_json(&leader_host, &["node", "ls", "--format", "json"])?;
    let leader_addr = nodes
        .iter()
        .find(|n| n["manager_status"] == "leader")
        .and_then(|n| n["addr"].as_str())
        .context("no leader in node ls")?
        .to_string();
    let leader = addrs
        .iter()
        .position(|a| *a == leader_addr)
        .context("leader address is not one of ours")?;
    let leader_pid = h.procs[leader].pid();
    let sim_pid = h.procs[sim].pid();
    let leader_idle = footprint(leader_pid);
    let sim_idle = footprint(sim_pid);

    // Create and wait.
    let create_ms = unix_ms();
    let create_started = Instant::now();
    let replicas_text = replicas.to_string();
    let created = h.cli(
        &leader_host,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "scale",
            "--replicas",
            &replicas_text,
            "busybox",
            "sleep",
            "1000000",
        ],
    )?;
    let create_cli_ms = create_started.elapsed().as_millis() as u64;
    if !created.status.success() {
        bail!(
            "service create failed after {create_cli_ms} ms: {}",
            String::from_utf8_lossy(&created.stderr).trim()
        );
    }
    let mut milestones: Vec<(String, f64)> = Vec::new();
    let marks = [
        ("first", 1u64),
        ("p50", replicas / 2),
        ("p90", replicas * 9 / 10),
    ];
    let mut next_mark = 0;
    let mut running = 0u64;
    let mut polls = 0u64;
    let mut poll_failures = 0u64;
    let mut peak_leader = leader_idle;
    let mut converged = false;
    let mut stop_reason = String::new();
    while create_started.elapsed() < timeout {
        if let Err(error) = h.check_alive() {
            stop_reason = error.to_string();
            break;
        }
        polls += 1;
        match services(&h, &leader_host) {
            Ok(list) => {
                running = list
                    .iter()
                    .find(|s| s["name"] == "scale")
                    .and_then(|s| s["replicas_running"].as_u64())
                    .unwrap_or(0);
            }
            Err(_) => poll_failures += 1,
        }
        let now_s = create_started.elapsed().as_secs_f64();
        while next_mark < marks.len() && running >= marks[next_mark].1.max(1) {
            milestones.push((marks[next_mark].0.to_string(), now_s));
            next_mark += 1;
        }
        let current = footprint(leader_pid);
        if current.vm_rss_mib > peak_leader.vm_rss_mib {
            peak_leader = current;
        }
        if running >= replicas {
            converged = true;
            break;
        }
        std::thread::sleep(poll);
    }
    let converge_s = create_started.elapsed().as_secs_f64();
    if !converged && stop_reason.is_empty() {
        stop_reason = format!("timeout after {timeout:?} with {running}/{replicas} running");
    }
    let leader_converged = footprint(leader_pid);
    let leader_now = h
        .cli_json(&leader_host, &["node", "ls", "--format", "json"])
        .ok()
        .and_then(|nodes| {
            nodes
                .iter()
                .find(|n| n["manager_status"] == "leader")
                .and_then(|n| n["hostname"].as_str().map(str::to_string))
        });
    let leader_changed = leader_now.as_deref() != Some(h.procs[leader].name.as_str());
    let sim_converged = footprint(sim_pid);

    // Per-task delay from `service ps`.
    let ps_started = Instant::now();
    let ps = h.cli(
        &leader_host,
        &["service", "ps", "scale", "--format", "json"],
    )?;
    let ps_ms = ps_started.elapsed().as_millis() as u64;
    let mut delays = Value::Null;
    let mut scheduling = Value::Null;
    let mut ps_error = Value::Null;
    if ps.status.success() {
        let tasks: Vec<Value> = serde_json::from_slice(&ps.stdout)?;
        let service = services(&h, &leader_host)?
            .into_iter()
            .find(|s| s["name"] == "scale")
            .context("service scale")?;
        let created_at = service["created_at"]
            .as_str()
            .and_then(parse_rfc3339_ms)
            .context("created_at")?;
        let values: Vec<f64> = tasks
            .iter()
            .filter(|t| t["current_state"] == "running")
            .filter_map(|t| t["state_since"].as_str().and_then(parse_rfc3339_ms))
            .map(|since| since as f64 - created_at as f64)
            .collect();
        delays = ms_stats(values);
        delays["created_at_minus_cli_start_ms"] = json!(created_at as i64 - create_ms as i64);
        // Per task, from its own timestamps: created -> assigned (orchestrator + scheduler)
        // and assigned -> running (dispatch, worker, runtime, status report).
        let stamps = |t: &Value| {
            Some((
                t["created_at_ms"].as_u64()?,
                t["assigned_at_ms"].as_u64()?,
                t["started_at_ms"].as_u64()?,
            ))
        };
        let running: Vec<(u64, u64, u64)> = tasks
            .iter()
            .filter(|t| t["current_state"] == "running")
            .filter_map(stamps)
            .collect();
        scheduling = json!({
            "created_to_assigned_ms": ms_stats(
                running.iter().map(|(c, a, _)| a.saturating_sub(*c) as f64).collect()
            ),
            "assigned_to_running_ms": ms_stats(
                running.iter().map(|(_, a, r)| r.saturating_sub(*a) as f64).collect()
            ),
        });
    } else {
        ps_error = json!(String::from_utf8_lossy(&ps.stderr).trim().to_string());
    }
    let errors_in_leader_log = std::fs::read_to_string(&h.procs[leader].log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .count();
    Ok(json!({
        "scenario": "converge",
        "workers": workers,
        "replicas": replicas,
        "converged": converged,
        "running": running,
        "stop_reason": if stop_reason.is_empty() { Value::Null } else { json!(stop_reason) },
        "converge_s": round2(converge_s),
        "milestones_s": milestones.iter().map(|(k, v)| (k.clone(), json!(round2(*v)))).collect::<serde_json::Map<_, _>>(),
        "replicas_per_s": round1(running as f64 / converge_s),
        "task_delay_ms": delays,
        "scheduling_delay_ms": scheduling,
        "create_cli_ms": create_cli_ms,
        "service_ps_ms": ps_ms,
        "service_ps_bytes": ps.stdout.len(),
        "service_ps_error": ps_error,
        "polls": polls,
        "poll_failures": poll_failures,
        "setup_s": {"managers": round1(managers_s), "hollow_join": round1(join_s)},
        "footprint": {
            "leader_idle": leader_idle,
            "leader_converged": leader_converged,
            "leader_cpu_s_during_converge": round1(leader_converged.cpu_s - leader_idle.cpu_s),
            "sim_idle": sim_idle,
            "sim_converged": sim_converged,
            "sim_cpu_s_during_converge": round1(sim_converged.cpu_s - sim_idle.cpu_s),
            "followers": (0..3).filter(|i| *i != leader).map(|i| footprint(h.procs[i].pid())).collect::<Vec<_>>(),
        },
        "leader_log_warn_error_lines": errors_in_leader_log,
        "heartbeat_ms": heartbeat_ms,
        "raft_tick_ms": raft_tick_ms,
        "leader_changed": leader_changed,
    }))
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The running task of `service` in `slot`: (task id, runtime id).
fn running_in_slot(tasks: &[Value], slot: u64) -> Option<(String, String)> {
    tasks
        .iter()
        .filter(|t| t["slot"] == slot && t["current_state"] == "running")
        .find(|t| t["desired_state"] == "running")
        .and_then(|t| {
            Some((
                t["id"].as_str()?.to_string(),
                t["runtime_id"].as_str()?.to_string(),
            ))
        })
}

fn heal(args: &Args) -> anyhow::Result<Value> {
    let runtime = args.value("--runtime").unwrap_or("process").to_string();
    let kills = args.number("--kills", 20)?;
    let poll = Duration::from_millis(args.number("--poll-ms", 20)?);
    if runtime != "process" && runtime != "docker" {
        bail!("--runtime process|docker");
    }
    if runtime == "docker" {
        let ping = std::process::Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output();
        if !ping.map(|o| o.status.success()).unwrap_or(false) {
            bail!("docker does not answer");
        }
    }
    let mut h = Harness::new(bin_dir(args))?;
    let port = harness::free_udp_port()?;
    let addrs: Vec<String> = (1..=3).map(|i| format!("127.0.0.{i}:{port}")).collect();
    let host = addrs[0].clone();
    init_manager(&mut h, &addrs[0], &runtime, &[])?;
    let token = h
        .cli_ok(&host, &["swarm", "join-token", "-q", "worker"])?
        .trim()
        .to_string();
    for i in 1..3 {
        join_node(
            &mut h,
            &format!("worker{i}"),
            &addrs[i],
            &runtime,
            &token,
            &addrs[0],
            &[],
        )?;
    }
    h.wait_until(
        "3 nodes are ready",
        Duration::from_secs(60),
        Duration::from_millis(200),
        |h| Ok(h.ready_nodes(&host)? >= 3),
    )?;
    if runtime == "docker" {
        for name in ["mgr1", "worker1", "worker2"] {
            h.register_docker_node(&Harness::node_id(&h.dir.join(name))?);
        }
    }

    let services_needed = kills.div_ceil(3);
    for k in 0..services_needed {
        let name = format!("heal{k}");
        h.cli_ok(
            &host,
            &[
                "service",
                "create",
                "-d",
                "--name",
                &name,
                "--replicas",
                "3",
                "busybox",
                "sleep",
                "1000000",
            ],
        )?;
    }
    h.wait_until(
        "every heal service runs 3 replicas",
        Duration::from_secs(120),
        Duration::from_millis(200),
        |h| {
            let list = services(h, &host)?;
            Ok(list.len() as u64 == services_needed
                && list.iter().all(|s| s["replicas_running"] == 3))
        },
    )?;

    let mut state_delays = Vec::new();
    let mut observed_delays = Vec::new();
    let mut kill_command_ms = Vec::new();
    let mut raw = Vec::new();
    for i in 0..kills {
        let service = format!("heal{}", i / 3);
        let slot = i % 3 + 1;
        let ps = |h: &Harness| h.cli_json(&host, &["service", "ps", &service, "--format", "json"]);
        let tasks = ps(&h)?;
        let (old_id, runtime_id) =
            running_in_slot(&tasks, slot).context("no running task in the slot")?;
        let killed_at = unix_ms();
        let kill_started = Instant::now();
        if runtime == "process" {
            let pid: i32 = runtime_id.parse().context("runtime_id is a PID")?;
            // SAFETY: sending a signal has no memory effects.
            if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
                bail!("kill {pid} failed");
            }
        } else {
            let status = std::process::Command::new("docker")
                .args(["rm", "-f", &runtime_id])
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                bail!("docker rm -f {runtime_id} failed");
            }
        }
        kill_command_ms.push(kill_started.elapsed().as_secs_f64() * 1000.0);
        let mut new_task: Option<Value> = None;
        let waited = h.wait_until("the replacement runs", Duration::from_secs(60), poll, |h| {
            let tasks = ps(h)?;
            new_task = tasks.into_iter().find(|t| {
                t["slot"] == slot && t["current_state"] == "running" && t["id"] != old_id
            });
            Ok(new_task.is_some())
        })?;
        let task = new_task.context("replacement")?;
        let since = task["state_since"]
            .as_str()
            .and_then(parse_rfc3339_ms)
            .context("state_since")?;
        let state_delay = since as f64 - killed_at as f64;
        state_delays.push(state_delay);
        observed_delays.push(waited.as_secs_f64() * 1000.0);
        raw.push(json!({"service": service, "slot": slot, "state_ms": state_delay, "observed_ms": (waited.as_secs_f64() * 1000.0).round()}));
    }
    let mut per_node: HashMap<String, u64> = HashMap::new();
    for service in services(&h, &host)? {
        if let Some(name) = service["name"].as_str() {
            for t in h.cli_json(&host, &["service", "ps", name, "--format", "json"])? {
                if t["current_state"] == "running" {
                    *per_node
                        .entry(t["node_hostname"].as_str().unwrap_or("?").to_string())
                        .or_default() += 1;
                }
            }
        }
    }
    Ok(json!({
        "scenario": "heal",
        "runtime": runtime,
        "kills": kills,
        "kill_to_running_ms": ms_stats(state_delays),
        "kill_to_observed_ms": ms_stats(observed_delays),
        "kill_command_ms": ms_stats(kill_command_ms),
        "running_per_node": per_node,
        "raw": raw,
    }))
}
