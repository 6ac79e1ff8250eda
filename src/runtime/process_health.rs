//! Health checks on the process runtime: a `Shell` check runs as `/bin/sh -c CMD` on the host
//! with the task's environment, every interval, killed (and failed) when it outlives its
//! timeout. The results feed a pure [`HealthTracker`]; [`HealthBoard`] keeps each task's verdict
//! for `ContainerRuntime::health`. One checker task per task process, which ends with it.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::exit_board::{next_status, ExitBoard};
use super::procfs;
use super::Health;
use crate::core::health::{
    early_window_ms, HealthState, HealthTracker, HEALTH_OUTPUT_BYTES_MAX, STARTING_PROBE_MS,
};
use crate::core::rollout::{HealthCheck, HealthTest};

/// The shell a check runs in, as Docker's `CMD-SHELL`.
const SHELL: &str = "/bin/sh";

/// The verdict of each checked task process, by runtime ID (PID), with the exit board key of
/// the process it is about (a PID alone could name a later process). Read on every health poll,
/// so it is in memory rather than found through the records on disk. Bounded by the node's
/// tasks: an entry lives as long as its process's checker.
#[derive(Default)]
pub(crate) struct HealthBoard {
    verdicts: Mutex<HashMap<String, (String, Health)>>,
}

impl HealthBoard {
    fn verdicts(&self) -> MutexGuard<'_, HashMap<String, (String, Health)>> {
        // Every mutation is one insert or remove: a poisoned map is still consistent.
        self.verdicts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The verdict for `runtime_id`; [`Health::None`] for a process without a checker.
    pub(crate) fn get(&self, runtime_id: &str) -> Health {
        self.verdicts()
            .get(runtime_id)
            .map_or(Health::None, |(_, health)| health.clone())
    }

    /// Whether process `runtime_id` (exit board `key`) has a checker already.
    pub(crate) fn checks(&self, runtime_id: &str, key: &str) -> bool {
        self.verdicts()
            .get(runtime_id)
            .is_some_and(|(of, _)| of == key)
    }

    fn set(&self, runtime_id: &str, key: &str, health: Health) {
        self.verdicts()
            .insert(runtime_id.to_string(), (key.to_string(), health));
    }

    fn forget(&self, runtime_id: &str, key: &str) {
        let mut verdicts = self.verdicts();
        if verdicts.get(runtime_id).is_some_and(|(of, _)| of == key) {
            verdicts.remove(runtime_id);
        }
    }
}

/// Start checking process `runtime_id` (exit board `key`) if `check` is a shell command; `env`
/// is the process's own extra environment (FLOTILLA_* and the spec's). The checker stops when
/// the process's exit is published (or the key is forgotten).
pub(crate) fn spawn_checker(
    exits: &Arc<ExitBoard>,
    verdicts: &Arc<HealthBoard>,
    runtime_id: &str,
    key: &str,
    check: &HealthCheck,
    env: Vec<(String, String)>,
) {
    let HealthTest::Shell(command) = &check.test else {
        return;
    };
    let Some(mut exit) = exits.subscribe_existing(key) else {
        return;
    };
    verdicts.set(runtime_id, key, Health::Starting);
    let (verdicts, command) = (Arc::clone(verdicts), command.clone());
    let (runtime_id, key) = (runtime_id.to_string(), key.to_string());
    let interval = Duration::from_millis(check.interval_ms());
    let timeout = Duration::from_millis(check.timeout_ms());
    let started = Instant::now();
    let early_window = Duration::from_millis(early_window_ms(check));
    let probe = Duration::from_millis(STARTING_PROBE_MS).min(interval);
    let mut tracker = HealthTracker::new(check, 0);
    tokio::spawn(async move {
        // As Docker: the regular checks run one interval apart, the first one interval after
        // the start. Before it, early probes may find the task healthy sooner (`core::health`).
        let mut regular_at = interval;
        loop {
            let now = started.elapsed();
            let early = tracker.state() == HealthState::Starting && now < early_window;
            let wake = if early {
                (now + probe).min(regular_at)
            } else {
                regular_at.max(now)
            };
            tokio::select! {
                _ = next_status(&mut exit) => break,
                () = tokio::time::sleep(wake.saturating_sub(now)) => {}
            }
            let regular = wake >= regular_at;
            let check_started_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (passed, output) = tokio::select! {
                _ = next_status(&mut exit) => break,
                result = run_check(&command, &env, timeout) => result,
            };
            if regular {
                regular_at = started.elapsed() + interval;
            } else if !passed {
                continue;
            }
            let health = match tracker.record(check_started_ms, passed, &output) {
                HealthState::Starting => Health::Starting,
                HealthState::Healthy => Health::Healthy,
                HealthState::Unhealthy => Health::Unhealthy {
                    output: tracker.last_output().to_string(),
                },
            };
            verdicts.set(&runtime_id, &key, health);
        }
        verdicts.forget(&runtime_id, &key);
    });
}

/// Run `command` once; (passed, output). A check that cannot start, exits non-zero or outlives
/// `timeout` fails; on timeout its whole process group is killed.
async fn run_check(command: &str, env: &[(String, String)], timeout: Duration) -> (bool, String) {
    let mut child = match Command::new(SHELL)
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills whatever the check forked too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return (false, format!("health check did not start: {error}")),
    };
    let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let finished = tokio::time::timeout(timeout, async {
        let (out, err, status) =
            tokio::join!(read_bounded(stdout), read_bounded(stderr), child.wait());
        (out, err, status)
    })
    .await;
    match finished {
        Ok((out, err, Ok(status))) => (status.success(), format!("{out}{err}")),
        Ok((_, _, Err(error))) => (
            false,
            format!("waiting for the health check failed: {error}"),
        ),
        Err(_elapsed) => {
            if let Some(pid) = pid {
                let _ = procfs::signal_group(pid, libc::SIGKILL);
            }
            let _ = child.wait().await;
            (
                false,
                format!(
                    "health check exceeded its timeout of {} ms",
                    timeout.as_millis()
                ),
            )
        }
    }
}

/// Up to [`HEALTH_OUTPUT_BYTES_MAX`] bytes of `pipe`; the rest is drained and dropped so the
/// check never blocks on a full pipe.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut chunk = [0_u8; 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let room = HEALTH_OUTPUT_BYTES_MAX.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..read.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
