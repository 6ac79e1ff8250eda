//! `update` and `unhealthy` (SPEC §6 rows for §7), one manager and two workers with the
//! process runtime.
//!
//! `update`: a service of N (`--replicas`, default 10) `sleep` replicas with a health check
//! (`true` every `--health-interval-ms`, default 1000) is updated start-first, parallelism 1,
//! monitor `--monitor-ms` (default 0, so the wall time is the rollout's own). Reported: wall
//! time from `service update` to `update_status.state == completed`, per-task start + health
//! (new task created -> running, which a task with a health check only reports once healthy),
//! and the goal `1.2 × N × median(start + health)` beside it.
//!
//! `unhealthy`: a service whose health check is `test ! -e DIR/sick-$FLOTILLA_TASK_ID`
//! (interval `--health-interval-ms`, retries 3); for each of `--kills` rounds a running
//! task's sick file is created and the time until a new task of its slot runs (healthy) is
//! measured, against the goal `interval × retries + 1 s`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use super::harness::{self, unix_ms, Harness};
use super::{bin_dir, init_manager, join_node, ms_stats, Args};

fn cluster(args: &Args) -> anyhow::Result<(Harness, String)> {
    let mut h = Harness::new(bin_dir(args))?;
    let port = harness::free_udp_port()?;
    let addrs: Vec<String> = (1..=3).map(|i| format!("127.0.0.{i}:{port}")).collect();
    let host = addrs[0].clone();
    init_manager(&mut h, &addrs[0], "process", &[])?;
    let token = h
        .cli_ok(&host, &["swarm", "join-token", "-q", "worker"])?
        .trim()
        .to_string();
    for (i, addr) in addrs.iter().enumerate().skip(1) {
        join_node(
            &mut h,
            &format!("worker{i}"),
            addr,
            "process",
            &token,
            &host,
            &[],
        )?;
    }
    h.wait_until(
        "3 nodes are ready",
        Duration::from_secs(60),
        Duration::from_millis(200),
        |h| Ok(h.ready_nodes(&host)? >= 3),
    )?;
    Ok((h, host))
}

fn inspect(h: &Harness, host: &str, service: &str) -> anyhow::Result<Value> {
    h.cli_json(host, &["service", "inspect", service])?
        .into_iter()
        .next()
        .context("no such service")
}

fn wait_running(h: &mut Harness, host: &str, service: &str, n: u64) -> anyhow::Result<()> {
    h.wait_until(
        "the service runs",
        Duration::from_secs(120),
        Duration::from_millis(100),
        |h| {
            let list = h.cli_json(host, &["service", "ls", "--format", "json"])?;
            Ok(list
                .iter()
                .any(|s| s["name"] == service && s["replicas_running"] == n))
        },
    )?;
    Ok(())
}

pub(crate) fn update(args: &Args) -> anyhow::Result<Value> {
    let n = args.number("--replicas", 10)?;
    let interval = args.number("--health-interval-ms", 1000)?;
    let monitor = args.number("--monitor-ms", 0)?;
    let (mut h, host) = cluster(args)?;
    let interval_flag = format!("{interval}ms");
    let monitor_flag = format!("{monitor}ms");
    let replicas = n.to_string();
    h.cli_ok(
        &host,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "roll",
            "--replicas",
            &replicas,
            "--health-cmd",
            "true",
            "--health-interval",
            &interval_flag,
            "busybox",
            "sleep",
            "1000000",
        ],
    )?;
    wait_running(&mut h, &host, "roll", n)?;
    let started_ms = unix_ms();
    let started = Instant::now();
    h.cli_ok(
        &host,
        &[
            "service",
            "update",
            "-d",
            "--update-order",
            "start-first",
            "--update-parallelism",
            "1",
            "--update-monitor",
            &monitor_flag,
            "--env-add",
            "V=2",
            "roll",
        ],
    )?;
    let waited = h.wait_until(
        "the update completes",
        Duration::from_secs(600),
        Duration::from_millis(50),
        |h| Ok(inspect(h, &host, "roll")?["update_status"]["state"] == "completed"),
    )?;
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let version = inspect(&h, &host, "roll")?["spec_version"].clone();
    let tasks = h.cli_json(&host, &["service", "ps", "roll", "--format", "json"])?;
    let per_task: Vec<f64> = tasks
        .iter()
        .filter(|t| t["spec_version"] == version && t["current_state"] == "running")
        .filter_map(|t| {
            let created = t["created_at_ms"].as_u64()?;
            let running = t["started_at_ms"].as_u64()?;
            (created >= started_ms).then(|| running.saturating_sub(created) as f64)
        })
        .collect();
    let mut sorted = per_task.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = harness::percentile(&sorted, 0.5);
    Ok(json!({
        "scenario": "update",
        "runtime": "process",
        "replicas": n,
        "order": "start-first",
        "health_interval_ms": interval,
        "monitor_ms": monitor,
        "wall_ms": wall_ms.round(),
        "observed_ms": (waited.as_secs_f64() * 1000.0).round(),
        "start_plus_health_ms": ms_stats(per_task),
        "goal_ms": (1.2 * n as f64 * median).round(),
        "new_tasks_running": sorted.len(),
    }))
}

pub(crate) fn unhealthy(args: &Args) -> anyhow::Result<Value> {
    let kills = args.number("--kills", 6)?;
    let interval = args.number("--health-interval-ms", 1000)?;
    let retries = 3u64;
    let (mut h, host) = cluster(args)?;
    let marks = h.dir.join("sick");
    std::fs::create_dir_all(&marks)?;
    let check = format!("test ! -e {}/sick-$FLOTILLA_TASK_ID", marks.display());
    let interval_flag = format!("{interval}ms");
    h.cli_ok(
        &host,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "sick",
            "--replicas",
            "3",
            "--health-cmd",
            &check,
            "--health-interval",
            &interval_flag,
            "--health-retries",
            "3",
            "busybox",
            "sleep",
            "1000000",
        ],
    )?;
    wait_running(&mut h, &host, "sick", 3)?;
    let mut delays = Vec::new();
    for round in 0..kills {
        let slot = round % 3 + 1;
        let tasks = h.cli_json(&host, &["service", "ps", "sick", "--format", "json"])?;
        let old = tasks
            .iter()
            .find(|t| t["slot"] == slot && t["current_state"] == "running")
            .and_then(|t| t["id"].as_str())
            .context("no running task in the slot")?
            .to_string();
        let sick_at = unix_ms();
        std::fs::write(marks.join(format!("sick-{old}")), b"")?;
        let mut replaced_at = 0;
        h.wait_until(
            "the unhealthy task is replaced and healthy",
            Duration::from_secs(120),
            Duration::from_millis(20),
            |h| {
                let tasks = h.cli_json(&host, &["service", "ps", "sick", "--format", "json"])?;
                let new = tasks.iter().find(|t| {
                    t["slot"] == slot && t["current_state"] == "running" && t["id"] != old.as_str()
                });
                if let Some(started) = new.and_then(|t| t["started_at_ms"].as_u64()) {
                    replaced_at = started;
                    return Ok(true);
                }
                Ok(false)
            },
        )?;
        delays.push(replaced_at.saturating_sub(sick_at) as f64);
    }
    Ok(json!({
        "scenario": "unhealthy",
        "runtime": "process",
        "rounds": kills,
        "health_interval_ms": interval,
        "health_retries": retries,
        "sick_to_replaced_healthy_ms": ms_stats(delays),
        "goal_ms": interval * retries + 1000,
    }))
}
