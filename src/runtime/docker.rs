//! The Docker runtime: the local Docker Engine through bollard.
//!
//! Exit detection does not poll: each runtime instance keeps one `docker events` subscription
//! filtered to `type=container`, `event=die` and `label=com.flotilla.node.id=<its node>`, and
//! fans each `die` out to the waiters of that container through an exit board. A waiter
//! subscribes before it inspects the container, and the subscription replays events from just
//! before it connected (`since`), so an exit can neither slip between the two nor be lost while
//! the stream reconnects. See `docs/runtime.md`.
//!
//! A task's secrets and configs (SPEC §9) are written into its directory on a host tmpfs
//! (`files.rs`; the engine runs on this machine, so it sees the same paths) and each is
//! bind-mounted read-only at `/run/secrets/<target>` (configs: `/<target>` or the absolute
//! target). The directory goes when the container is removed or fails to start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummaryStateEnum, HostConfig, Mount,
    MountType,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::task::JoinHandle;

use super::docker_events;
use super::docker_health::{health_config, health_of};
use super::docker_status::{ended_status, status_code};
use super::exit_board::{next_status, ExitBoard};
use super::files::{self, Ownership, TaskFilesDir};
use super::{
    check_spec, ContainerRuntime, ContainerSpec, ExitStatus, Health, RunningInfo, RuntimeError,
    RuntimeHandle, RuntimeKind, LABEL_NODE_ID, LABEL_TASK_ID,
};

/// Upper bound on waiting for a SIGKILLed container to be reported dead, in ms.
const KILL_WAIT_MS_MAX: u64 = 10_000;

/// Runs tasks as containers of the local Docker Engine; see the module docs.
pub struct DockerRuntime {
    node_id: String,
    docker: Docker,
    board: Arc<ExitBoard>,
    events_task: JoinHandle<()>,
    /// Root of the per-task secrets and configs directories (on a host tmpfs); shared with
    /// the events task, which removes the directory of a container destroyed by someone else.
    files_root: Arc<RwLock<PathBuf>>,
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        self.events_task.abort();
    }
}

impl DockerRuntime {
    /// Connect to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`), check it answers a
    /// ping within `ping_timeout`, and start following this node's container events. Task
    /// files go under `FLOTILLA_FILES_ROOT` or `/dev/shm/flotilla`
    /// ([`files::files_root_from_env`]).
    /// Must be called inside a tokio runtime that outlives the returned value.
    pub async fn connect(node_id: &str, ping_timeout: Duration) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(|error| {
            RuntimeError::DockerUnavailable {
                reason: error.to_string(),
            }
        })?;
        match tokio::time::timeout(ping_timeout, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                return Err(RuntimeError::DockerUnavailable {
                    reason: error.to_string(),
                })
            }
            Err(_elapsed) => {
                return Err(RuntimeError::DockerUnavailable {
                    reason: format!("no answer to ping within {} ms", ping_timeout.as_millis()),
                })
            }
        }
        let board = Arc::new(ExitBoard::default());
        let files_root = Arc::new(RwLock::new(files::files_root_from_env()));
        let events_task = tokio::spawn(docker_events::follow_events(
            docker.clone(),
            node_id.to_string(),
            Arc::clone(&board),
            Arc::clone(&files_root),
        ));
        Ok(Self {
            node_id: node_id.to_string(),
            docker,
            board,
            events_task,
            files_root,
        })
    }

    /// The same runtime with task secrets and configs under `root` (which must be on a tmpfs
    /// the engine can see) instead of the environment's or default root.
    pub fn with_files_root(self, root: impl Into<PathBuf>) -> Self {
        *self
            .files_root
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = root.into();
        self
    }

    fn files_root(&self) -> PathBuf {
        docker_events::read_root(&self.files_root)
    }

    /// The host directory that holds (or would hold) `task_id`'s secrets and configs.
    pub fn files_dir(&self, task_id: &str) -> Result<TaskFilesDir, RuntimeError> {
        TaskFilesDir::new(&self.files_root(), &self.node_id, task_id)
    }

    /// Write `spec`'s files on the host and return the read-only bind mounts that show them
    /// in the container; no mounts and no directory when it has none. A directory left by an
    /// earlier attempt is replaced, unless a container of the task still exists (its mounts
    /// point there): that is the name conflict a retried start would hit anyway.
    async fn write_files(
        &self,
        spec: &ContainerSpec,
    ) -> Result<Option<(TaskFilesDir, Vec<Mount>)>, RuntimeError> {
        if spec.files.is_empty() {
            return Ok(None);
        }
        let dir = self.files_dir(&spec.task_id)?;
        if dir.dir.exists() {
            if self.find_task(&spec.task_id).await?.is_some() {
                return Err(RuntimeError::NameConflict {
                    name: spec.name.clone(),
                });
            }
            dir.remove()?;
        }
        let Some(dir) = files::write_task_files(
            &self.files_root(),
            &self.node_id,
            &spec.task_id,
            &spec.files,
            Ownership::FromSpec,
        )?
        else {
            return Ok(None);
        };
        let mounts = spec
            .files
            .iter()
            .map(|file| Mount {
                target: Some(file.container_path()),
                source: Some(dir.host_path(file).display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            })
            .collect();
        Ok(Some((dir, mounts)))
    }

    /// The bollard client, for tests and tools that need to look at the engine directly.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Inspect `runtime_id` if it exists and is labelled with this node's ID.
    async fn inspect_own(
        &self,
        runtime_id: &str,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        match self.docker.inspect_container(runtime_id, None).await {
            Ok(response) => {
                let node_label = response
                    .config
                    .as_ref()
                    .and_then(|config| config.labels.as_ref())
                    .and_then(|labels| labels.get(LABEL_NODE_ID));
                if node_label.map(String::as_str) == Some(self.node_id.as_str()) {
                    Ok(Some(response))
                } else {
                    Err(RuntimeError::NotFound {
                        runtime_id: runtime_id.to_string(),
                    })
                }
            }
            Err(error) if status_code(&error) == Some(404) => Ok(None),
            Err(source) => Err(RuntimeError::Docker {
                operation: "inspect",
                source,
            }),
        }
    }

    async fn start_container(&self, spec: &ContainerSpec) -> Result<RuntimeHandle, RuntimeError> {
        check_spec(spec, &self.node_id)?;
        files::check_targets(&spec.files)?;
        // Everything that can refuse the spec before the files are written.
        let mut body = container_body(spec)?;
        let files_dir = match self.write_files(spec).await? {
            Some((dir, mounts)) => {
                if let Some(host_config) = body.host_config.as_mut() {
                    host_config.mounts = Some(mounts);
                }
                Some(dir)
            }
            None => None,
        };
        let started = self.create_and_start(spec, body).await;
        if started.is_err() {
            // Whatever failed, no container uses the files any more.
            if let Some(Err(error)) = files_dir.as_ref().map(TaskFilesDir::remove) {
                tracing::warn!(%error, "could not remove the files of a failed start");
            }
        }
        started
    }

    async fn create_and_start(
        &self,
        spec: &ContainerSpec,
        body: ContainerCreateBody,
    ) -> Result<RuntimeHandle, RuntimeError> {
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        // No pull: there is no registry to pull from, and a pull that hangs would only delay
        // the failure the scheduler needs to see.
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|source| match status_code(&source) {
                Some(404) => RuntimeError::ImageNotFound {
                    image: spec.image.clone(),
                },
                Some(409) => RuntimeError::NameConflict {
                    name: spec.name.clone(),
                },
                _ => RuntimeError::Docker {
                    operation: "create",
                    source,
                },
            })?;
        if let Err(source) = self.docker.start_container(&created.id, None).await {
            // A created-but-never-started container would only be clutter for orphan clean-up.
            let _ = self.remove_container(&created.id).await;
            return Err(RuntimeError::Docker {
                operation: "start",
                source,
            });
        }
        Ok(RuntimeHandle {
            runtime_id: created.id,
        })
    }

    async fn wait_container(&self, runtime_id: &str) -> Result<ExitStatus, RuntimeError> {
        let mut waiter = Waiter::new(&self.board, runtime_id);
        // Subscribed first, inspected second: a die after this point reaches the receiver.
        match self.inspect_own(runtime_id).await? {
            None => {
                if let Some(Some(status)) = self.board.status(runtime_id) {
                    return Ok(status);
                }
                return Ok(ExitStatus::unknown(format!(
                    "container {runtime_id} no longer exists"
                )));
            }
            Some(response) => {
                if let Some(status) = ended_status(&response) {
                    return Ok(status);
                }
            }
        }
        Ok(waiter
            .next()
            .await
            .unwrap_or_else(|| ExitStatus::unknown("removed")))
    }

    /// Send `signal` to the container; false when it does not run (any more).
    async fn kill(&self, runtime_id: &str, signal: &str) -> Result<bool, RuntimeError> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        match self.docker.kill_container(runtime_id, Some(options)).await {
            Ok(()) => Ok(true),
            Err(error) if matches!(status_code(&error), Some(404 | 409)) => Ok(false),
            Err(source) => Err(RuntimeError::Docker {
                operation: "kill",
                source,
            }),
        }
    }

    async fn stop_container(&self, runtime_id: &str, grace_ms: u64) -> Result<(), RuntimeError> {
        // Our own TERM, wait, KILL rather than `docker stop`, whose grace period has a
        // resolution of whole seconds.
        let mut waiter = Waiter::new(&self.board, runtime_id);
        match self.inspect_own(runtime_id).await? {
            None => return Ok(()),
            Some(response) if ended_status(&response).is_some() => return Ok(()),
            Some(_) => {}
        }
        if grace_ms > 0 && self.kill(runtime_id, "SIGTERM").await? {
            let graceful = tokio::time::timeout(Duration::from_millis(grace_ms), waiter.next());
            if graceful.await.is_ok() {
                return Ok(());
            }
        }
        if self.kill(runtime_id, "SIGKILL").await? {
            let killed =
                tokio::time::timeout(Duration::from_millis(KILL_WAIT_MS_MAX), waiter.next());
            if killed.await.is_err() {
                tracing::warn!(
                    runtime_id,
                    "container not reported dead {KILL_WAIT_MS_MAX} ms after SIGKILL"
                );
            }
        }
        Ok(())
    }

    async fn remove_container(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let result = match self
            .docker
            .remove_container(runtime_id, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if status_code(&error) == Some(404) => Ok(()),
            Err(source) => Err(RuntimeError::Docker {
                operation: "remove",
                source,
            }),
        };
        self.board.forget_if_unwatched(runtime_id);
        result
    }

    async fn remove_own(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        let Some(response) = self.inspect_own(runtime_id).await? else {
            self.board.forget_if_unwatched(runtime_id);
            return Ok(());
        };
        self.remove_container(runtime_id).await?;
        // After the container: its mounts no longer hold the files.
        let task_id = response
            .config
            .as_ref()
            .and_then(|config| config.labels.as_ref())
            .and_then(|labels| labels.get(LABEL_TASK_ID));
        // A label that cannot name a task directory (set by hand, say) has no files to remove.
        match task_id.map(|task_id| self.files_dir(task_id)) {
            Some(Ok(files_dir)) => files_dir.remove(),
            _ => Ok(()),
        }
    }

    async fn list_filtered(&self, labels: Vec<String>) -> Result<Vec<RunningInfo>, RuntimeError> {
        let mut filters = HashMap::new();
        filters.insert("label", labels);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|source| RuntimeError::Docker {
                operation: "list",
                source,
            })?;
        Ok(summaries
            .into_iter()
            .filter_map(|summary| {
                let labels = summary.labels.unwrap_or_default();
                if labels.get(LABEL_NODE_ID) != Some(&self.node_id) {
                    return None;
                }
                Some(RunningInfo {
                    runtime_id: summary.id?,
                    task_id: labels.get(LABEL_TASK_ID).cloned().unwrap_or_default(),
                    running: matches!(
                        summary.state,
                        Some(
                            ContainerSummaryStateEnum::RUNNING
                                | ContainerSummaryStateEnum::PAUSED
                                | ContainerSummaryStateEnum::RESTARTING
                        )
                    ),
                    exit: None,
                    labels: labels.into_iter().collect(),
                })
            })
            .collect())
    }

    async fn find_task(&self, task_id: &str) -> Result<Option<RunningInfo>, RuntimeError> {
        let mut found = self
            .list_filtered(vec![
                format!("{LABEL_NODE_ID}={}", self.node_id),
                format!("{LABEL_TASK_ID}={task_id}"),
            ])
            .await?;
        // There should be one; if a crash left two, the running one is the one to adopt.
        found.sort_by_key(|info| !info.running);
        let Some(first) = found.into_iter().next() else {
            return Ok(None);
        };
        self.inspect_info(&first.runtime_id).await
    }

    async fn inspect_info(&self, runtime_id: &str) -> Result<Option<RunningInfo>, RuntimeError> {
        let Some(response) = self.inspect_own(runtime_id).await? else {
            return Ok(None);
        };
        let labels = response
            .config
            .as_ref()
            .and_then(|config| config.labels.clone())
            .unwrap_or_default();
        let exit = ended_status(&response);
        Ok(Some(RunningInfo {
            runtime_id: response
                .id
                .clone()
                .unwrap_or_else(|| runtime_id.to_string()),
            task_id: labels.get(LABEL_TASK_ID).cloned().unwrap_or_default(),
            running: exit.is_none(),
            exit,
            labels: labels.into_iter().collect(),
        }))
    }
}

/// A receiver on the board that lets go of its slot when dropped (cancel-safety of `wait`).
struct Waiter<'a> {
    board: &'a ExitBoard,
    runtime_id: String,
    receiver: Option<tokio::sync::watch::Receiver<Option<ExitStatus>>>,
}

impl<'a> Waiter<'a> {
    fn new(board: &'a ExitBoard, runtime_id: &str) -> Self {
        let (receiver, _created) = board.subscribe(runtime_id);
        Self {
            board,
            runtime_id: runtime_id.to_string(),
            receiver: Some(receiver),
        }
    }

    async fn next(&mut self) -> Option<ExitStatus> {
        next_status(self.receiver.as_mut()?).await
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        drop(self.receiver.take());
        // Docker keeps the status; the board only needs the slot while someone waits.
        self.board.forget_if_unwatched(&self.runtime_id);
    }
}

/// The create body for `spec`, without mounts.
fn container_body(spec: &ContainerSpec) -> Result<ContainerCreateBody, RuntimeError> {
    let memory = optional_i64(spec.memory_limit_bytes, "memory_limit_bytes")?;
    let nano_cpus = optional_i64(spec.nano_cpus_limit, "nano_cpus_limit")?;
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(
            spec.env
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect(),
        ),
        labels: Some(
            spec.effective_labels()
                .into_iter()
                .collect::<HashMap<_, _>>(),
        ),
        exposed_ports: (!spec.ports.is_empty()).then(|| {
            spec.ports
                .iter()
                .map(|port| format!("{}/{}", port.target, port.protocol))
                .collect()
        }),
        host_config: Some(HostConfig {
            memory,
            nano_cpus,
            port_bindings: (!spec.ports.is_empty()).then(|| port_bindings(&spec.ports)),
            ..Default::default()
        }),
        healthcheck: health_config(&spec.health)?,
        ..Default::default()
    })
}

fn optional_i64(value: Option<u64>, field: &str) -> Result<Option<i64>, RuntimeError> {
    value
        .map(|value| {
            i64::try_from(value).map_err(|_| RuntimeError::InvalidSpec {
                reason: format!("{field} {value} is too large"),
            })
        })
        .transpose()
}

impl ContainerRuntime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn version(&self) -> BoxFuture<'_, Result<String, RuntimeError>> {
        async move {
            let version = self
                .docker
                .version()
                .await
                .map_err(|source| RuntimeError::Docker {
                    operation: "version",
                    source,
                })?;
            Ok(format!(
                "docker {}",
                version.version.unwrap_or_else(|| "unknown".to_string())
            ))
        }
        .boxed()
    }

    fn start<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<RuntimeHandle, RuntimeError>> {
        self.start_container(spec).boxed()
    }

    fn wait<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, RuntimeError>> {
        self.wait_container(runtime_id).boxed()
    }

    fn stop<'a>(
        &'a self,
        runtime_id: &'a str,
        grace_ms: u64,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.stop_container(runtime_id, grace_ms).boxed()
    }

    fn remove<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.remove_own(runtime_id).boxed()
    }

    fn find<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        self.find_task(task_id).boxed()
    }

    fn inspect<'a>(
        &'a self,
        runtime_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        self.inspect_info(runtime_id).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RunningInfo>, RuntimeError>> {
        async move {
            self.list_filtered(vec![format!("{LABEL_NODE_ID}={}", self.node_id)])
                .await
        }
        .boxed()
    }

    fn health<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<Health, RuntimeError>> {
        async move {
            Ok(self
                .inspect_own(runtime_id)
                .await?
                .map_or(Health::None, |response| health_of(&response)))
        }
        .boxed()
    }
}

/// Docker's `PortBindings` for the task's ports: each target port on the node's advertise IP
/// at the host port chosen for it (SPEC §8).
fn port_bindings(
    ports: &[super::PortBinding],
) -> HashMap<String, Option<Vec<bollard::models::PortBinding>>> {
    let mut bindings: HashMap<String, Option<Vec<bollard::models::PortBinding>>> = HashMap::new();
    for port in ports {
        bindings
            .entry(format!("{}/{}", port.target, port.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(bollard::models::PortBinding {
                host_ip: Some(port.host_ip.to_string()),
                host_port: Some(port.host_port.to_string()),
            });
    }
    bindings
}
