//! Container runtimes behind one trait: docker (bollard), process, and sim.
//!
//! # Layout
//!
//! - this file: the runtime-level [`ContainerSpec`], [`ExitStatus`], [`RunningInfo`], the
//!   [`ContainerRuntime`] trait, [`RuntimeError`] and [`select`] for `--runtime auto|docker|process`.
//! - [`docker`]: the Docker Engine through bollard; exit detection from one `docker events`
//!   subscription per runtime instance (`docker_events.rs`).
//! - [`process`]: plain OS processes, one process group per task, records on disk
//!   (`process_record.rs`) so a restarted node adopts what still runs; `procfs.rs` holds the
//!   Linux bits (process identity from `/proc/<pid>/stat`, pidfds, `killpg`).
//! - `exit_board.rs`: exit statuses fanned out to any number of cancel-safe waiters.
//! - [`sim`]: starts nothing; for hollow nodes and the in-process cluster harness.
//!
//! A runtime instance belongs to one node: it only starts, lists, stops and removes containers
//! or processes labelled with that node's ID, because several nodes may share one Docker Engine
//! (or one state directory's parent) and one node's orphan clean-up must never touch another's.
//!
//! The trait returns boxed futures rather than using `async fn` so that it stays object safe
//! and can be held as `Arc<dyn ContainerRuntime>` without the `async-trait` crate.

pub mod docker;
mod docker_events;
mod docker_health;
mod docker_status;
mod error;
mod exit_board;
pub mod files;
pub mod metered;
pub mod process;
mod process_health;
mod process_record;
mod procfs;
mod select;
pub mod sim;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub use error::RuntimeError;
use futures::future::BoxFuture;
pub use select::select;

use crate::core::ports::PortProtocol;
use crate::core::rollout::HealthCheck;

/// Label carrying the service ID (SPEC §3).
pub const LABEL_SERVICE_ID: &str = "com.flotilla.service.id";
/// Label carrying the service name (SPEC §3).
pub const LABEL_SERVICE_NAME: &str = "com.flotilla.service.name";
/// Label carrying the task ID (SPEC §3).
pub const LABEL_TASK_ID: &str = "com.flotilla.task.id";
/// Label carrying the task slot, or the node ID for global services (SPEC §3).
pub const LABEL_TASK_SLOT: &str = "com.flotilla.task.slot";
/// Label carrying the ID of the node that owns the container (SPEC §3).
pub const LABEL_NODE_ID: &str = "com.flotilla.node.id";

/// Exit code reported for a process or container killed by SIGKILL (128 + 9), as Docker does.
pub const EXIT_CODE_SIGKILL: i64 = 137;

/// Everything a runtime needs to start one task's container; independent of `core` types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name, `<service>.<slot>.<task-id>` (global: `<service>.<node-id>.<task-id>`).
    pub name: String,
    /// Image reference; the process runtime records it but does not use it.
    pub image: String,
    /// Command and arguments; empty means the image's default (docker only).
    pub command: Vec<String>,
    /// Extra environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Labels, including the five `com.flotilla.*` labels of SPEC §3.
    pub labels: BTreeMap<String, String>,
    /// ID of the node that runs the task; must equal the runtime's node ID.
    pub node_id: String,
    /// ID of the task this container is the one attempt of.
    pub task_id: String,
    /// Memory limit in bytes, if any.
    pub memory_limit_bytes: Option<u64>,
    /// CPU limit in billionths of a CPU, if any.
    pub nano_cpus_limit: Option<u64>,
    /// Grace period between SIGTERM and SIGKILL when the task is stopped, in milliseconds;
    /// the caller passes it to [`ContainerRuntime::stop`].
    pub stop_grace_ms: u64,
    /// The task's health check (SPEC §7): docker turns it into the container's HEALTHCHECK,
    /// the process runtime runs a `Shell` check on the host; read back with
    /// [`ContainerRuntime::health`]. A plain data type of `core`, shared rather than copied.
    pub health: HealthCheck,
    /// Published target ports and the host address each is bound to (SPEC §8): docker binds
    /// the container's target port there; a process gets the host port in `PORT` and
    /// `FLOTILLA_PORT_<target>` (the address in `FLOTILLA_HOST_IP`) and listens there itself.
    pub ports: Vec<PortBinding>,
    /// The task's secrets and configs (SPEC §9): the runtime writes them into a per-task
    /// directory on a tmpfs, mounts them read-only (docker) or names the directories in
    /// `FLOTILLA_SECRETS_DIR` / `FLOTILLA_CONFIGS_DIR` (process), and removes them with the
    /// container.
    pub files: Vec<files::TaskFile>,
}

/// One target port of a task and where on its node it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBinding {
    /// The port the task listens on in its container.
    pub target: u16,
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// The node's advertise IP.
    pub host_ip: IpAddr,
    /// The host port (ephemeral for ingress ports, the published one in host mode).
    pub host_port: u16,
}

impl ContainerSpec {
    /// The spec's labels with the node and task labels forced to `node_id` and `task_id`, so a
    /// runtime never creates something it would not later recognise as its own.
    pub fn effective_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(LABEL_NODE_ID.to_string(), self.node_id.clone());
        labels.insert(LABEL_TASK_ID.to_string(), self.task_id.clone());
        labels
    }
}

/// What a container's health check says, as [`ContainerRuntime::health`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// It has no health check (none configured, `--no-healthcheck`, or an image without one).
    None,
    /// No check has passed yet.
    Starting,
    /// The checks pass (or have not failed `retries` times in a row since the last success).
    Healthy,
    /// `retries` consecutive checks failed; `output` is what the last one printed.
    Unhealthy {
        /// Output of the last check, bounded (`core::health::HEALTH_OUTPUT_BYTES_MAX`).
        output: String,
    },
}

/// What a successful start returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeHandle {
    /// The container ID (docker), the OS process ID (process) or `sim-<n>` (sim).
    pub runtime_id: String,
}

/// How a container or process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, `128 + signal` when killed by a signal; `None` when it could not be learnt
    /// (a process adopted after a node restart is not our child, so its status is not ours).
    pub exit_code: Option<i64>,
    /// Human-readable reason, e.g. `exited with code 1` or `killed by signal 9`.
    pub message: String,
}

impl ExitStatus {
    /// Status of a normal exit with `code`.
    pub fn from_code(code: i64) -> Self {
        Self {
            exit_code: Some(code),
            message: format!("exited with code {code}"),
        }
    }

    /// Status of a death by `signal`; the code is `128 + signal`, as Docker reports it.
    pub fn from_signal(signal: i32) -> Self {
        Self {
            exit_code: Some(128 + i64::from(signal)),
            message: format!("killed by signal {signal}"),
        }
    }

    /// Status whose code is unknown, with the reason why.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self {
            exit_code: None,
            message: message.into(),
        }
    }

    /// True when the exit code is known and zero.
    pub fn is_success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// What a runtime knows about one of its node's containers, for adoption and orphan clean-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningInfo {
    /// The runtime ID, as [`RuntimeHandle::runtime_id`].
    pub runtime_id: String,
    /// The task ID from the `com.flotilla.task.id` label.
    pub task_id: String,
    /// True while the container or process runs.
    pub running: bool,
    /// How it ended, when it no longer runs and the runtime knows (docker fills it in `find`
    /// and `inspect`, not in `list`, which would cost one inspect per container).
    pub exit: Option<ExitStatus>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// Which runtime an instance is; shown as `runtime` in task JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// The Docker Engine through bollard.
    Docker,
    /// Plain OS processes on the host.
    Process,
    /// Simulated containers that run nothing.
    Sim,
}

impl RuntimeKind {
    /// Lower-case name: `docker`, `process` or `sim`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Process => "process",
            RuntimeKind::Sim => "sim",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `--runtime` option: `auto` (default), `docker` or `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RuntimeChoice {
    /// Docker when the engine answers a ping within [`AUTO_PING_TIMEOUT_MS`], else process.
    #[default]
    Auto,
    /// Always Docker; fails when the engine does not answer.
    Docker,
    /// Always plain processes.
    Process,
}

impl FromStr for RuntimeChoice {
    type Err = RuntimeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(RuntimeChoice::Auto),
            "docker" => Ok(RuntimeChoice::Docker),
            "process" => Ok(RuntimeChoice::Process),
            other => Err(RuntimeError::UnknownRuntime {
                name: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for RuntimeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeChoice::Auto => "auto",
            RuntimeChoice::Docker => "docker",
            RuntimeChoice::Process => "process",
        })
    }
}

/// How long `auto` waits for the Docker Engine to answer a ping before choosing process.
pub const AUTO_PING_TIMEOUT_MS: u64 = 1_000;

/// One node's way of running containers. All methods only act on containers or processes
/// labelled with the runtime's own node ID.
///
/// Every future is cancel-safe: dropping one leaves the runtime consistent (a dropped
/// [`wait`](ContainerRuntime::wait) just stops listening; a dropped `start` may leave a created
/// container behind, which [`list`](ContainerRuntime::list) finds for clean-up).
pub trait ContainerRuntime: Send + Sync {
    /// Which runtime this is.
    fn kind(&self) -> RuntimeKind;

    /// The node ID this instance acts for.
    fn node_id(&self) -> &str;

    /// Engine version for `node ls` (e.g. `docker 27.5.1`, `process linux 6.8.0`).
    fn version(&self) -> BoxFuture<'_, Result<String, RuntimeError>>;

    /// Create and start the task's container; resolves once it runs.
    fn start<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<RuntimeHandle, RuntimeError>>;

    /// Resolve when the container exits (at once if it already has).
    fn wait<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, RuntimeError>>;

    /// SIGTERM, then SIGKILL after `grace_ms`; resolves once it no longer runs.
    /// Stopping something that already exited succeeds.
    fn stop<'a>(
        &'a self,
        runtime_id: &'a str,
        grace_ms: u64,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Kill if needed and forget the container (docker `rm -f`; process: record and logs).
    /// Removing something already gone succeeds.
    fn remove<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// The container of `task_id` on this node, running or not, for re-attach after a restart.
    fn find<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>>;

    /// What this runtime knows about `runtime_id`, if it is one of this node's.
    fn inspect<'a>(
        &'a self,
        runtime_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>>;

    /// Every container labelled with this node's ID, running or not, for orphan clean-up.
    fn list(&self) -> BoxFuture<'_, Result<Vec<RunningInfo>, RuntimeError>>;

    /// What `runtime_id`'s health check says now: docker reads the engine's own count from
    /// inspect (`State.Health.Status`), the process runtime its checker's, sim has no checks
    /// that can fail. [`Health::None`] when it has no check, or no longer exists.
    ///
    /// The default, for a runtime (or test wrapper) that runs no checks, is always
    /// [`Health::None`]: its tasks are `running` as soon as they start.
    fn health<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<Health, RuntimeError>> {
        let _ = runtime_id;
        Box::pin(async { Ok(Health::None) })
    }

    /// `runtime_id` was found running, not started here (a node restart adopted it): resume
    /// `spec`'s health check on it. Docker runs checks itself, so only the process runtime,
    /// whose checker lived in the node process that started the task, needs this; a task
    /// checked already is left as it is. The default does nothing.
    fn resume_health<'a>(
        &'a self,
        runtime_id: &'a str,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let _ = (runtime_id, spec);
        Box::pin(async { Ok(()) })
    }
}

/// Check that `spec` belongs to `node_id` and names a task; shared by every runtime's `start`.
fn check_spec(spec: &ContainerSpec, node_id: &str) -> Result<(), RuntimeError> {
    if spec.node_id != node_id {
        return Err(RuntimeError::ForeignNode {
            spec_node_id: spec.node_id.clone(),
            runtime_node_id: node_id.to_string(),
        });
    }
    if spec.task_id.is_empty() {
        return Err(RuntimeError::InvalidSpec {
            reason: "task_id is empty".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_parses_the_three_names_and_rejects_others() {
        assert_eq!(
            "auto".parse::<RuntimeChoice>().ok(),
            Some(RuntimeChoice::Auto)
        );
        assert_eq!(
            "docker".parse::<RuntimeChoice>().ok(),
            Some(RuntimeChoice::Docker)
        );
        assert_eq!(
            "process".parse::<RuntimeChoice>().ok(),
            Some(RuntimeChoice::Process)
        );
        let error = "podman"
            .parse::<RuntimeChoice>()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("unknown runtime podman (expected auto, docker or process)")
        );
    }

    #[test]
    fn exit_status_from_signal_follows_docker() {
        let status = ExitStatus::from_signal(9);
        assert_eq!(status.exit_code, Some(EXIT_CODE_SIGKILL));
        assert_eq!(status.message, "killed by signal 9");
        assert!(!status.is_success());
        assert!(ExitStatus::from_code(0).is_success());
    }
}
