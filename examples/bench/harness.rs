//! Process harness for the benchmarks: real `flotilla-node` processes on loopback addresses,
//! driven through the real `flotilla` CLI. Everything a run starts is registered in one global
//! registry, so the same cleanup runs on drop, on error and on SIGINT/SIGTERM/SIGHUP: SIGKILL
//! to every node, SIGKILL to the process group of every task the process runtime recorded,
//! `docker rm -f` of every container labelled by one of our nodes, and removal of the temp dir.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// What the cleanup must undo.
#[derive(Default)]
struct Registry {
    pids: Vec<i32>,
    state_dirs: Vec<PathBuf>,
    temp_dirs: Vec<PathBuf>,
    docker_node_ids: Vec<String>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: Vec::new(),
    state_dirs: Vec::new(),
    temp_dirs: Vec::new(),
    docker_node_ids: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Blocks the termination signals in this (main) thread and every thread it starts, and lets
/// one thread wait for them and run the cleanup. Call first thing in `main`.
pub fn install_signal_cleanup() {
    // SAFETY: plain libc signal-mask calls on a local sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set_copy = set;
        std::thread::spawn(move || {
            let mut signal: libc::c_int = 0;
            libc::sigwait(&set_copy, &mut signal);
            eprintln!("bench: signal {signal}, cleaning up");
            cleanup_all();
            std::process::exit(128 + signal);
        });
    }
}

/// Kills and removes everything registered so far (idempotent).
pub fn cleanup_all() {
    let mut registry = registry();
    for pid in registry.pids.drain(..) {
        // SAFETY: sending a signal has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    for dir in &registry.state_dirs {
        kill_recorded_tasks(dir);
    }
    registry.state_dirs.clear();
    for node_id in registry.docker_node_ids.drain(..) {
        remove_containers_of(&node_id);
    }
    for dir in registry.temp_dirs.drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `docker rm -f` of every container a node labelled as its own.
pub fn remove_containers_of(node_id: &str) {
    let Ok(output) = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.flotilla.node.id={node_id}"))
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// SIGKILL to the process group of every task the process runtime recorded under `state_dir`
/// (a node killed with SIGKILL leaves its tasks running, as a real host would).
fn kill_recorded_tasks(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("processes")) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(pid) = record["pid"].as_i64().filter(|pid| *pid > 1) {
            // SAFETY: sending a signal has no memory effects.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A UDP port free on 127.0.0.1 right now.
pub fn free_udp_port() -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?.port())
}

/// One process we started.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// Peak and current memory and CPU time of one process, from /proc.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Footprint {
    pub vm_hwm_mib: f64,
    pub vm_rss_mib: f64,
    pub cpu_s: f64,
}

pub fn footprint(pid: i32) -> Footprint {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let tick = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime is field 14, stime field 15 (1-based); `after` starts at field 3.
    Footprint {
        vm_hwm_mib: round1(field("VmHWM:")),
        vm_rss_mib: round1(field("VmRSS:")),
        cpu_s: round1((tick(11) + tick(12)) / ticks),
    }
}

pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// The run's temp dir, binaries and processes.
pub struct Harness {
    pub dir: PathBuf,
    pub node_bin: PathBuf,
    pub cli_bin: PathBuf,
    pub procs: Vec<Proc>,
    pub config: PathBuf,
}

impl Harness {
    pub fn new(bin_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let bin_dir = match bin_dir {
            Some(dir) => dir,
            None => std::env::current_exe()?
                .parent()
                .and_then(Path::parent)
                .context("cannot find the binaries next to the example")?
                .to_path_buf(),
        };
        let node_bin = bin_dir.join("flotilla-node");
        let cli_bin = bin_dir.join("flotilla");
        for bin in [&node_bin, &cli_bin] {
            if !bin.exists() {
                bail!(
                    "{} not found: run `cargo build --release --bins` or pass --bin-dir",
                    bin.display()
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("flotilla-bench.")
            .tempdir()?
            .keep();
        registry().temp_dirs.push(dir.clone());
        Ok(Self {
            config: dir.join("mgr1").join("client.toml"),
            dir,
            node_bin,
            cli_bin,
            procs: Vec::new(),
        })
    }

    /// Starts `flotilla-node ARGS`, logging to `<dir>/<name>.log`; returns its index.
    pub fn spawn(&mut self, name: &str, args: &[String]) -> anyhow::Result<usize> {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(&self.node_bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().context("spawn flotilla-node")?;
        registry().pids.push(child.id() as i32);
        if let Some(i) = args.iter().position(|a| a == "--state-dir") {
            registry().state_dirs.push(PathBuf::from(&args[i + 1]));
        }
        self.procs.push(Proc {
            name: name.to_string(),
            log,
            child,
        });
        Ok(self.procs.len() - 1)
    }

    /// Fails if any started process has exited (with the tail of its log).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for proc in &mut self.procs {
            if let Some(status) = proc.child.try_wait()? {
                bail!(
                    "{} exited ({status}); log tail:\n{}",
                    proc.name,
                    tail(&proc.log, 30)
                );
            }
        }
        Ok(())
    }

    pub fn cli(&self, host: &str, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(&self.cli_bin)
            .arg("--config")
            .arg(&self.config)
            .arg("--host")
            .arg(host)
            .args(args)
            .env_remove("FLOTILLA_HOST")
            .env_remove("FLOTILLA_CONFIG")
            .output()?)
    }

    pub fn cli_ok(&self, host: &str, args: &[&str]) -> anyhow::Result<String> {
        let output = self.cli(host, args)?;
        if !output.status.success() {
            bail!(
                "flotilla {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn cli_json(&self, host: &str, args: &[&str]) -> anyhow::Result<Vec<Value>> {
        let output = self.cli(host, args)?;
        if !output.status.success() {
            bail!(
                "flotilla {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Polls `condition` every `every` until it holds; fails after `timeout` or when a node dies.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        every: Duration,
        mut condition: impl FnMut(&Self) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if condition(self).unwrap_or(false) {
                return Ok(started.elapsed());
            }
            self.check_alive()?;
            if started.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting until {what}");
            }
            std::thread::sleep(every);
        }
    }

    /// `node ls --format json` from `host`, counting ready nodes.
    pub fn ready_nodes(&self, host: &str) -> anyhow::Result<usize> {
        Ok(self
            .cli_json(host, &["node", "ls", "--format", "json"])?
            .iter()
            .filter(|n| n["status"] == "ready")
            .count())
    }

    pub fn node_id(state_dir: &Path) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(state_dir.join("node.toml"))?;
        let settings: toml::Value = toml::from_str(&text)?;
        Ok(settings["node_id"]
            .as_str()
            .context("node_id in node.toml")?
            .to_string())
    }

    /// Marks a node as running docker containers that the cleanup must remove.
    pub fn register_docker_node(&self, node_id: &str) {
        registry().docker_node_ids.push(node_id.to_string());
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for proc in &self.procs {
                eprintln!("----- {} -----\n{}", proc.name, tail(&proc.log, 20));
            }
        }
        cleanup_all();
        for proc in &mut self.procs {
            let _ = proc.child.wait();
        }
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// RFC 3339 UTC (`2026-11-26T15:06:20.123Z`, also with `+00:00`) to Unix milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = (
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
    );
    let time = time.trim_end_matches('Z').trim_end_matches("+00:00");
    let mut time_parts = time.split(':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let seconds: f64 = time_parts.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = (days * 86_400 + hour * 3600 + minute * 60) * 1000 + (seconds * 1000.0).round() as i64;
    u64::try_from(ms).ok()
}

/// p-th percentile (0..1) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(
            super::parse_rfc3339_ms("1970-01-01T00:00:01.5Z"),
            Some(1500)
        );
        assert_eq!(
            super::parse_rfc3339_ms("2026-11-26T00:00:00Z"),
            Some(1_795_651_200_000)
        );
    }
}
