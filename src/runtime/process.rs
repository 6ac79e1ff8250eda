//! The process runtime: each task is a plain OS process on the host, in its own process group.
//!
//! `command[0]` is looked up on PATH and run with the remaining arguments (the image is recorded,
//! not used). Output goes to `<state_dir>/tasks/<task_id>.{out,err}`. Every started process is
//! recorded in `<state_dir>/processes/<task_id>.json` with its PID and start time so that a node
//! restarted by `flotilla-node start` can adopt what still runs. See `docs/runtime.md`.
//!
//! The runtime ID is the OS process ID, which is also the process group ID.
//!
//! A task's secrets and configs (SPEC §9) are written before it is spawned into its directory
//! on a tmpfs (`files.rs`), named in `FLOTILLA_SECRETS_DIR` and `FLOTILLA_CONFIGS_DIR`, and
//! removed when its exit is observed, when it is removed, and when its start fails. An adopted
//! process keeps the directory it was started with.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::process::Command;

use super::exit_board::{next_status, ExitBoard};
use super::files::{self, Ownership, TaskFilesDir};
use super::process_health::{spawn_checker, HealthBoard};
pub use super::process_record::ProcessRecord;
use super::process_record::{check_task_file_name, RecordStore};
use super::procfs::{self, PidFd};
use super::{
    check_spec, ContainerRuntime, ContainerSpec, ExitStatus, Health, RunningInfo, RuntimeError,
    RuntimeHandle, RuntimeKind, LABEL_NODE_ID, LABEL_SERVICE_ID, LABEL_SERVICE_NAME, LABEL_TASK_ID,
    LABEL_TASK_SLOT,
};

/// Upper bound on waiting for a SIGKILLed process group leader to be reported gone, in ms.
/// SIGKILL cannot be caught; only a process stuck in uninterruptible sleep takes this long.
const KILL_WAIT_MS_MAX: u64 = 10_000;

/// Environment variables a task process gets, from the spec's labels (SPEC §3).
const ENV_FROM_LABEL: [(&str, &str); 5] = [
    ("FLOTILLA_SERVICE_ID", LABEL_SERVICE_ID),
    ("FLOTILLA_SERVICE_NAME", LABEL_SERVICE_NAME),
    ("FLOTILLA_TASK_ID", LABEL_TASK_ID),
    ("FLOTILLA_TASK_SLOT", LABEL_TASK_SLOT),
    ("FLOTILLA_NODE_ID", LABEL_NODE_ID),
];

/// Runs tasks as host processes; see the module docs.
pub struct ProcessRuntime {
    node_id: String,
    store: RecordStore,
    board: Arc<ExitBoard>,
    /// Health verdicts of the processes whose `Shell` check this instance runs.
    health: Arc<HealthBoard>,
    /// Root of the per-task secrets and configs directories (on a tmpfs).
    files_root: PathBuf,
}

/// Where the liveness of a record came from.
enum Liveness {
    /// Running (a watcher tracks it).
    Running,
    /// Ended with this status.
    Ended(ExitStatus),
}

impl ProcessRuntime {
    /// A process runtime for `node_id` keeping records and logs under `state_dir`, and task
    /// files under `FLOTILLA_FILES_ROOT` or `/dev/shm/flotilla` ([`files::files_root_from_env`]).
    pub fn new(node_id: &str, state_dir: &Path) -> Result<Self, RuntimeError> {
        Ok(Self {
            node_id: node_id.to_string(),
            store: RecordStore::open(node_id, state_dir)?,
            board: Arc::new(ExitBoard::default()),
            health: Arc::new(HealthBoard::default()),
            files_root: files::files_root_from_env(),
        })
    }

    /// The same runtime with task secrets and configs under `root` (which must be on a tmpfs)
    /// instead of the environment's or default root.
    pub fn with_files_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.files_root = root.into();
        self
    }

    /// The directory that holds (or would hold) `task_id`'s secrets and configs.
    pub fn files_dir(&self, task_id: &str) -> Result<TaskFilesDir, RuntimeError> {
        TaskFilesDir::new(&self.files_root, &self.node_id, task_id)
    }

    /// Path of the stdout log of `task_id`.
    pub fn stdout_path(&self, task_id: &str) -> PathBuf {
        self.store.stdout_path(task_id)
    }

    /// Path of the stderr log of `task_id`.
    pub fn stderr_path(&self, task_id: &str) -> PathBuf {
        self.store.stderr_path(task_id)
    }

    /// The record whose process is `runtime_id`, preferring one that still runs (a stale record
    /// may carry a PID that was since reused).
    fn record_by_runtime_id(
        &self,
        runtime_id: &str,
    ) -> Result<Option<ProcessRecord>, RuntimeError> {
        let Ok(pid) = runtime_id.parse::<i32>() else {
            return Ok(None);
        };
        let mut candidates: Vec<ProcessRecord> = self
            .store
            .read_all()?
            .into_iter()
            .filter(|record| record.pid == pid)
            .collect();
        // Live first, then one this instance tracks (our exited child), then the rest.
        candidates.sort_by_key(|record| {
            (
                !procfs::is_same_live_process(record.pid, record.start_time_ticks),
                self.board.status(&record.board_key()).is_none(),
            )
        });
        Ok(candidates.into_iter().next())
    }

    /// Make sure an exit watcher follows `record`'s process and report what is known now.
    /// Adopts (pidfd watcher) a live process started by an earlier instance of this node.
    fn watch(&self, record: &ProcessRecord) -> Liveness {
        let key = record.board_key();
        if let Some(status) = self.board.status(&key) {
            return match status {
                Some(status) => Liveness::Ended(status),
                None => Liveness::Running,
            };
        }
        // Open the pidfd before checking the start time: if the check passes, the fd is known
        // to refer to the recorded process and not to a later one that reused the PID.
        let pidfd = PidFd::open(record.pid);
        if !procfs::is_same_live_process(record.pid, record.start_time_ticks) {
            return Liveness::Ended(ExitStatus::unknown(
                "process no longer exists (it exited, or its PID was reused, while the node was \
                 down); exit code unknown",
            ));
        }
        let (_receiver, created) = self.board.subscribe(&key);
        if !created {
            return Liveness::Running;
        }
        let board = Arc::clone(&self.board);
        let (pid, start_time_ticks) = (record.pid, record.start_time_ticks);
        // The adopted task's files stay as they were written until it ends.
        let files_dir = self.files_dir(&record.task_id).ok();
        match pidfd {
            Ok(pidfd) => {
                tokio::spawn(async move {
                    let status = match pidfd.exited().await {
                        Ok(()) => ExitStatus::unknown(
                            "exited; exit code unknown (process adopted after a node restart)",
                        ),
                        Err(error) => {
                            ExitStatus::unknown(format!("lost track of process: {error}"))
                        }
                    };
                    procfs::kill_group_leftovers(pid, start_time_ticks);
                    remove_files_of_ended(files_dir.as_ref());
                    board.publish(&key, status);
                });
            }
            Err(error) => {
                // Kernels before 5.3 have no pidfd_open: poll /proc instead.
                tracing::info!(%error, pid = record.pid, "no pidfd; polling /proc for exit");
                tokio::spawn(async move {
                    const ADOPTED_POLL_MS: u64 = 200;
                    while procfs::is_same_live_process(pid, start_time_ticks) {
                        tokio::time::sleep(Duration::from_millis(ADOPTED_POLL_MS)).await;
                    }
                    procfs::kill_group_leftovers(pid, start_time_ticks);
                    remove_files_of_ended(files_dir.as_ref());
                    board.publish(
                        &key,
                        ExitStatus::unknown(
                            "exited; exit code unknown (process adopted after a node restart)",
                        ),
                    );
                });
            }
        }
        Liveness::Running
    }

    fn info(&self, record: &ProcessRecord) -> RunningInfo {
        let (running, exit) = match self.watch(record) {
            Liveness::Running => (true, None),
            Liveness::Ended(status) => (false, Some(status)),
        };
        RunningInfo {
            runtime_id: record.pid.to_string(),
            task_id: record.task_id.clone(),
            running,
            exit,
            labels: record.labels.clone(),
        }
    }

    async fn start_process(&self, spec: &ContainerSpec) -> Result<RuntimeHandle, RuntimeError> {
        check_spec(spec, &self.node_id)?;
        check_task_file_name(&spec.task_id)?;
        // Before anything exists: a bad target must not leave logs, files or a process.
        files::check_targets(&spec.files)?;
        if spec.command.is_empty() {
            return Err(no_command());
        }
        if let Some(existing) = self.store.read(&spec.task_id)? {
            if let Liveness::Running = self.watch(&existing) {
                return Err(RuntimeError::AlreadyRunning {
                    task_id: spec.task_id.clone(),
                    runtime_id: existing.pid.to_string(),
                });
            }
        }
        let files_dir = self.write_files(spec)?;
        match self.spawn_task(spec, files_dir.clone()).await {
            Ok(handle) => Ok(handle),
            Err(error) => {
                remove_files_of_ended(files_dir.as_ref());
                Err(error)
            }
        }
    }

    /// Write `spec`'s secrets and configs into the task's directory, replacing one left by an
    /// earlier attempt of the task (whose process, the caller checked, no longer runs).
    fn write_files(&self, spec: &ContainerSpec) -> Result<Option<TaskFilesDir>, RuntimeError> {
        if spec.files.is_empty() {
            return Ok(None);
        }
        self.files_dir(&spec.task_id)?.remove()?;
        files::write_task_files(
            &self.files_root,
            &self.node_id,
            &spec.task_id,
            &spec.files,
            Ownership::NodeUser,
        )
    }

    /// Spawn `spec`'s process with its files already in `files_dir`, record it and follow it;
    /// the watcher removes `files_dir` once the process has ended.
    async fn spawn_task(
        &self,
        spec: &ContainerSpec,
        files_dir: Option<TaskFilesDir>,
    ) -> Result<RuntimeHandle, RuntimeError> {
        let Some((program, args)) = spec.command.split_first() else {
            return Err(no_command());
        };
        let labels = spec.effective_labels();
        let env = task_env(spec, &labels, files_dir.as_ref());
        let (stdout, stderr) = self.store.create_logs(&spec.task_id)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Its own group, so stop signals reach everything it forks and nothing of ours.
            .process_group(0)
            // The process must outlive this node process so a restarted node can adopt it.
            .kill_on_drop(false);
        command.envs(env.iter().map(|(key, value)| (key, value)));
        let mut child = command.spawn().map_err(|source| RuntimeError::Spawn {
            command: program.clone(),
            source,
        })?;
        let pid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| RuntimeError::InvalidSpec {
                reason: "spawned process has no PID".to_string(),
            })?;
        // Not yet reaped (nobody has polled `child.wait()`), so even a process that already
        // exited still has its /proc entry as a zombie.
        let start_time_ticks = procfs::read_stat(pid)
            .map(|stat| stat.start_time_ticks)
            .unwrap_or(0);
        let record = ProcessRecord {
            task_id: spec.task_id.clone(),
            node_id: self.node_id.clone(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            command: spec.command.clone(),
            pid,
            start_time_ticks,
            labels,
            format_version: crate::core::format::PROCESS_RECORD.current,
        };
        let runtime_id = pid.to_string();
        // Track before anything can fail so the waiter below always has a slot to publish to.
        let key = record.board_key();
        self.board.forget(&key);
        self.board.track(&key);
        let checked_key = key.clone();
        let board = Arc::clone(&self.board);
        // Until `child.wait()` reaps it, the exited leader stays a zombie that keeps its PID
        // (and so its group ID) reserved: learn of the exit through a pidfd first, kill what it
        // left in its group while no other process can have that ID, then reap.
        let pidfd = PidFd::open(pid);
        tokio::spawn(async move {
            let leftovers_killed = match &pidfd {
                Ok(pidfd) => pidfd.exited().await.is_ok(),
                Err(_) => false,
            };
            if leftovers_killed {
                procfs::kill_group_leftovers(pid, start_time_ticks);
            }
            let status = match child.wait().await {
                Ok(status) => exit_status_of(status),
                Err(error) => {
                    ExitStatus::unknown(format!("waiting for the process failed: {error}"))
                }
            };
            if !leftovers_killed {
                procfs::kill_group_leftovers(pid, start_time_ticks);
            }
            // Removed before the exit is published: whoever learns of it sees no files left.
            remove_files_of_ended(files_dir.as_ref());
            board.publish(&key, status);
        });
        if let Err(error) = self.store.write(&record) {
            // Without a record the process could never be adopted or cleaned up: do not run it.
            let _ = procfs::signal_group(pid, libc::SIGKILL);
            return Err(error);
        }
        // The check gets the process's own environment (SPEC §7), FLOTILLA_* included.
        spawn_checker(
            &self.board,
            &self.health,
            &runtime_id,
            &checked_key,
            &spec.health,
            env,
        );
        Ok(RuntimeHandle { runtime_id })
    }

    /// Wait for the exit of the process under board `key` with a deadline; `None` if the
    /// deadline passed first.
    async fn wait_until(&self, key: &str, timeout_ms: u64) -> Option<ExitStatus> {
        let mut receiver = self.board.subscribe_existing(key)?;
        tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            next_status(&mut receiver),
        )
        .await
        .ok()
        .flatten()
    }

    async fn wait_process(&self, runtime_id: &str) -> Result<ExitStatus, RuntimeError> {
        let record = self.known_record(runtime_id)?;
        if let Liveness::Ended(status) = self.watch(&record) {
            return Ok(status);
        }
        let mut receiver = self
            .board
            .subscribe_existing(&record.board_key())
            .ok_or_else(|| RuntimeError::NotFound {
                runtime_id: runtime_id.to_string(),
            })?;
        Ok(next_status(&mut receiver)
            .await
            .unwrap_or_else(|| ExitStatus::unknown("removed")))
    }

    fn known_record(&self, runtime_id: &str) -> Result<ProcessRecord, RuntimeError> {
        self.record_by_runtime_id(runtime_id)?
            .ok_or_else(|| RuntimeError::NotFound {
                runtime_id: runtime_id.to_string(),
            })
    }

    async fn stop_process(&self, runtime_id: &str, grace_ms: u64) -> Result<(), RuntimeError> {
        let record = self.known_record(runtime_id)?;
        self.stop_record(&record, grace_ms).await
    }

    async fn stop_record(&self, record: &ProcessRecord, grace_ms: u64) -> Result<(), RuntimeError> {
        if let Liveness::Ended(_) = self.watch(record) {
            // Never signal a PID that no longer names the recorded process.
            return Ok(());
        }
        let pgid = record.pid;
        let key = record.board_key();
        if grace_ms > 0
            && signal(pgid, libc::SIGTERM)?
            && self.wait_until(&key, grace_ms).await.is_some()
        {
            // The leader is gone; take down anything it left in its group too.
            signal(pgid, libc::SIGKILL)?;
            return Ok(());
        }
        signal(pgid, libc::SIGKILL)?;
        if self.wait_until(&key, KILL_WAIT_MS_MAX).await.is_none()
            && self.board.status(&key) == Some(None)
        {
            tracing::warn!(
                pid = pgid,
                "process group survived SIGKILL for {KILL_WAIT_MS_MAX} ms"
            );
        }
        Ok(())
    }

    async fn remove_process(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        let Some(record) = self.record_by_runtime_id(runtime_id)? else {
            return Ok(());
        };
        self.stop_record(&record, 0).await?;
        // Before the record: if this fails, a retried remove still finds the task.
        if let Ok(files_dir) = self.files_dir(&record.task_id) {
            files_dir.remove()?;
        }
        self.store.remove(&record.task_id)?;
        self.board.forget(&record.board_key());
        Ok(())
    }
}

/// The environment a task process (and its health check) gets on top of the node's: the
/// `FLOTILLA_*` variables from the labels (SPEC §3), then the spec's own.
fn task_env(
    spec: &ContainerSpec,
    labels: &std::collections::BTreeMap<String, String>,
    files_dir: Option<&TaskFilesDir>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = ENV_FROM_LABEL
        .iter()
        .map(|(variable, label)| {
            let value = labels.get(*label).cloned().unwrap_or_default();
            (variable.to_string(), value)
        })
        .collect();
    env.extend(spec.env.iter().cloned());
    // SPEC §8: the task listens on the host port it is given, not on its target port.
    // The address too: the port is free on the node's advertise IP, not on every address.
    if let Some(first) = spec.ports.first() {
        env.push(("PORT".to_string(), first.host_port.to_string()));
        env.push(("FLOTILLA_HOST_IP".to_string(), first.host_ip.to_string()));
    }
    for port in &spec.ports {
        env.push((
            format!("FLOTILLA_PORT_{}", port.target),
            port.host_port.to_string(),
        ));
    }
    // SPEC §9: both directories whenever the task has any file, so a task can rely on them.
    if let Some(files_dir) = files_dir {
        env.extend(files_dir.env());
    }
    env
}

/// Remove the files of a task whose process has ended (or never started); a failure is only
/// logged, since nobody is left to report it to, and `remove` tries again.
fn remove_files_of_ended(files_dir: Option<&TaskFilesDir>) {
    if let Some(files_dir) = files_dir {
        if let Err(error) = files_dir.remove() {
            tracing::warn!(%error, "could not remove an ended task's secrets and configs");
        }
    }
}

fn no_command() -> RuntimeError {
    RuntimeError::InvalidSpec {
        reason: "the process runtime needs a command".to_string(),
    }
}

/// Send `signal_number` to group `pgid`; `Ok(false)` when the group is already gone.
fn signal(pgid: i32, signal_number: i32) -> Result<bool, RuntimeError> {
    procfs::signal_group(pgid, signal_number).map_err(|source| RuntimeError::Signal {
        signal: signal_number,
        pgid,
        source,
    })
}

fn exit_status_of(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::from_code(i64::from(code)),
        (None, Some(signal)) => ExitStatus::from_signal(signal),
        (None, None) => ExitStatus::unknown(format!("ended: {status}")),
    }
}

impl ContainerRuntime for ProcessRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn version(&self) -> BoxFuture<'_, Result<String, RuntimeError>> {
        async { Ok(format!("process (linux {})", procfs::kernel_release())) }.boxed()
    }

    fn start<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<RuntimeHandle, RuntimeError>> {
        self.start_process(spec).boxed()
    }

    fn wait<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, RuntimeError>> {
        self.wait_process(runtime_id).boxed()
    }

    fn stop<'a>(
        &'a self,
        runtime_id: &'a str,
        grace_ms: u64,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.stop_process(runtime_id, grace_ms).boxed()
    }

    fn remove<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.remove_process(runtime_id).boxed()
    }

    fn find<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        async move {
            if check_task_file_name(task_id).is_err() {
                return Ok(None);
            }
            Ok(self.store.read(task_id)?.map(|record| self.info(&record)))
        }
        .boxed()
    }

    fn inspect<'a>(
        &'a self,
        runtime_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        async move {
            Ok(self
                .record_by_runtime_id(runtime_id)?
                .map(|record| self.info(&record)))
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RunningInfo>, RuntimeError>> {
        async move {
            Ok(self
                .store
                .read_all()?
                .iter()
                .map(|record| self.info(record))
                .collect())
        }
        .boxed()
    }

    fn health<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<Health, RuntimeError>> {
        // Processes this instance started have a checker; adopted ones get one from
        // `resume_health` (the check is not in the record: the replica has the spec).
        async move { Ok(self.health.get(runtime_id)) }.boxed()
    }

    fn resume_health<'a>(
        &'a self,
        runtime_id: &'a str,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let record = self.known_record(runtime_id)?;
            let key = record.board_key();
            if self.health.checks(runtime_id, &key) {
                return Ok(());
            }
            // The watcher must exist before the checker subscribes to the exit.
            if let Liveness::Ended(_) = self.watch(&record) {
                return Ok(());
            }
            let files_dir = if spec.files.is_empty() {
                None
            } else {
                Some(self.files_dir(&record.task_id)?)
            };
            let env = task_env(spec, &record.labels, files_dir.as_ref());
            spawn_checker(
                &self.board,
                &self.health,
                runtime_id,
                &key,
                &spec.health,
                env,
            );
            Ok(())
        }
        .boxed()
    }
}
