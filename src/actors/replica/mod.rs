//! The replica actor: one task's one attempt, driven through a container runtime.
//!
//! It starts the task's container (or finds it, if it already runs), waits for it to exit and
//! reports every state change to the worker, which batches them to the managers. A container's
//! death is the task's failure; the managers replace the task (SPEC §3) and the replica never
//! restarts the container itself. It runs under an actix `Supervisor`: when the actor crashes,
//! `restarting` makes it re-attach to the same container, found by task ID, instead of starting
//! a second one; if the container is gone by then, the task is reported failed.
//!
//! Health (SPEC §7, `docs/health.md`): a task that may have a health check stays `starting`
//! until the runtime first reports it healthy, and only then is reported `running`; once the
//! runtime reports it unhealthy it is reported `failed` (`task: unhealthy container` on docker,
//! `task: unhealthy` elsewhere) and stopped with its grace period. The runtime counts failures
//! (the engine on docker, `core::health` on the process runtime); this actor only polls.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::raft::system_now_ms;
use crate::core::model::{Task, TaskState, TaskStatus};
use crate::core::ports::TaskEndpoint;
use crate::core::rollout::HealthTest;
use crate::core::store::TaskStatusUpdate;
use crate::net::mesh::Mesh;
use crate::runtime::files::TaskFile;
use crate::runtime::{
    ContainerRuntime, ContainerSpec, ExitStatus, Health, PortBinding, RuntimeError, RuntimeKind,
};

mod endpoints;

pub use endpoints::{DRAIN_BOUND, DRAIN_SETTLE};

/// Longest time between two reads of a task's health, in ms: often enough that an unhealthy
/// task is replaced well within SPEC §6's `interval × retries + 1 s`, rare enough that a docker
/// inspect per task is cheap. A shorter check interval polls at that interval instead.
pub const HEALTH_POLL_MS_MAX: u64 = 500;
/// Time between two reads of the health of a task that has not been healthy yet, in ms.
const HEALTH_POLL_STARTING_MS: u64 = 50;
/// Shortest time between two reads of a task's health, in ms (no busy loop whatever the spec).
const HEALTH_POLL_MS_MIN: u64 = 10;
/// The failure error of an unhealthy task on docker, as Docker Swarm words it (SPEC §7).
pub const UNHEALTHY_CONTAINER_ERROR: &str = "task: unhealthy container";
/// The failure error of an unhealthy task on the process (and sim) runtime (SPEC §7).
pub const UNHEALTHY_ERROR: &str = "task: unhealthy";

/// The task should no longer run: take it out of the routing mesh (if it is in it), stop its
/// container (if any) with its grace period, remove it, and end.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Retire;

/// A replica reports a task status change; the worker sends it to the managers
/// in its next batch. Declared here, where it is sent, so that the replica does not depend on
/// the worker that supervises it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportStatus(pub TaskStatusUpdate);

/// Chaos: stop as if the actor had crashed (its supervisor restarts it).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct CrashReplica;

/// What attaching or starting found.
enum Attached {
    Running {
        runtime_id: String,
    },
    Exited {
        runtime_id: String,
        exit: ExitStatus,
    },
    Vanished,
    Rejected(String),
    Failed(String),
}

/// The replica actor. See the module documentation.
pub struct ReplicaActor {
    task: Task,
    runtime: Arc<dyn ContainerRuntime>,
    reports: Recipient<ReportStatus>,
    runtime_id: Option<String>,
    restarted: bool,
    /// Never start a container, only re-attach (see [`ReplicaActor::adopt_only`]).
    adopt_only: bool,
    retiring: bool,
    finished: bool,
    /// `running` was reported for the current container (after its first healthy check, when
    /// it has a health check).
    running_reported: bool,
    /// The node's advertise IP, where published target ports are bound (SPEC §8).
    host_ip: Option<IpAddr>,
    /// Where this attempt's published target ports are reached, reported with `running`.
    endpoints: Vec<TaskEndpoint>,
    /// The node's routing mesh, which must stop routing to the task before it is stopped.
    mesh: Option<Mesh>,
    /// The task's secrets and configs, in memory (SPEC §9).
    files: Vec<TaskFile>,
    /// Why the task may not start: a file it references was not delivered (see
    /// [`ReplicaActor::with_undelivered`]).
    undelivered: Option<String>,
}

impl ReplicaActor {
    /// A replica for `task`, reporting to `reports`.
    pub fn new(
        task: Task,
        runtime: Arc<dyn ContainerRuntime>,
        reports: Recipient<ReportStatus>,
    ) -> Self {
        Self {
            task,
            runtime,
            reports,
            runtime_id: None,
            restarted: false,
            adopt_only: false,
            retiring: false,
            finished: false,
            running_reported: false,
            host_ip: None,
            endpoints: Vec::new(),
            mesh: None,
            files: Vec::new(),
            undelivered: None,
        }
    }

    /// Give the task its secrets and configs, delivered by the leader.
    pub fn with_files(mut self, files: Vec<TaskFile>) -> Self {
        self.files = files;
        self
    }

    /// A file the task references was not delivered (`message` names it): starting the task
    /// fails with `message` rather than running it without the file. Re-attaching to what
    /// already runs (its files are already in place) is unaffected.
    pub fn with_undelivered(mut self, message: String) -> Self {
        self.undelivered = Some(message);
        self
    }

    /// Drain the task out of `mesh`, the node's routing mesh, before stopping it.
    pub fn with_mesh(mut self, mesh: Mesh) -> Self {
        self.mesh = Some(mesh);
        self
    }

    /// Bind published target ports on `ip`, the node's advertise IP.
    pub fn with_host_ip(mut self, ip: IpAddr) -> Self {
        self.host_ip = Some(ip);
        self
    }

    /// A replica that only re-attaches: if the task's container is gone, the task is reported
    /// failed instead of started. For tasks a restarted node knows only from the assignment set
    /// it saved before it went down: whatever their recorded state, they may have run already
    /// (the saved set keeps the state they had when it was sent, usually `assigned`), and a
    /// task is one container attempt that is never started again in place (SPEC §3).
    pub fn adopt_only(mut self) -> Self {
        self.adopt_only = true;
        self
    }

    fn spec(&self) -> ContainerSpec {
        let task = &self.task;
        let mut env: Vec<(String, String)> = task
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(task.flotilla_env());
        let limits = &task.spec.resources.limits;
        ContainerSpec {
            name: task.container_name(),
            image: task.spec.image.clone(),
            command: task.spec.command.clone(),
            env,
            labels: task.container_labels(),
            node_id: task.node_id.clone().unwrap_or_default(),
            task_id: task.id.clone(),
            memory_limit_bytes: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
            nano_cpus_limit: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
            stop_grace_ms: task.spec.stop_grace_ms,
            health: task.spec.health.clone(),
            ports: self
                .endpoints
                .iter()
                .map(|endpoint| PortBinding {
                    target: endpoint.target,
                    protocol: endpoint.protocol,
                    host_ip: endpoint.addr.ip(),
                    host_port: endpoint.addr.port(),
                })
                .collect(),
            files: self.files.clone(),
        }
    }

    /// False when the task certainly has no health check, so `running` is reported at once
    /// without asking the runtime: `--no-healthcheck`, or the image's (absent) check on a
    /// runtime without images.
    fn may_have_health_check(&self) -> bool {
        match self.task.spec.health.test {
            HealthTest::Disabled => false,
            HealthTest::Shell(_) => true,
            HealthTest::Inherit => self.runtime.kind() == RuntimeKind::Docker,
        }
    }

    fn health_poll_period(&self) -> Duration {
        let interval_ms = self.task.spec.health.interval_ms();
        // Until the first healthy answer a slot (of a rollout, or a replacement) waits on this
        // task: read often, so a task is running within ~50 ms of its first passing check
        // (a rolling update of 10 slots lost 5 s to a 500 ms period). Few tasks start at
        // once, so the inspects stay cheap; a running task is read at the longer period.
        let longest = if self.running_reported {
            HEALTH_POLL_MS_MAX
        } else {
            HEALTH_POLL_STARTING_MS
        };
        Duration::from_millis(interval_ms.clamp(HEALTH_POLL_MS_MIN, longest))
    }

    fn report_running_once(&mut self) {
        if !self.running_reported {
            self.running_reported = true;
            self.report(TaskState::Running, "running", None, None);
        }
    }

    /// Read the container's health; report `running` on the first healthy answer (or at once
    /// when it has no check) and fail the task when it is unhealthy. Ends when the task ends.
    fn poll_health(&mut self, ctx: &mut Context<Self>) {
        if self.finished || self.retiring {
            return;
        }
        let Some(runtime_id) = self.runtime_id.clone() else {
            return;
        };
        let runtime = self.runtime.clone();
        async move { runtime.health(&runtime_id).await }
            .into_actor(self)
            .map(|result, actor, ctx| {
                if actor.finished || actor.retiring {
                    return;
                }
                match result {
                    // No check (or none any more): nothing to wait for or to watch.
                    Ok(Health::None) => {
                        actor.report_running_once();
                        return;
                    }
                    Ok(Health::Starting) => {}
                    Ok(Health::Healthy) => actor.report_running_once(),
                    Ok(Health::Unhealthy { output }) => {
                        actor.unhealthy(ctx, &output);
                        return;
                    }
                    Err(error) => {
                        // Transient (an engine hiccup): the exit waiter sees a real death.
                        tracing::debug!(task = %actor.task.id, %error, "reading health failed");
                    }
                }
                ctx.run_later(actor.health_poll_period(), |actor, ctx| {
                    actor.poll_health(ctx)
                });
            })
            .spawn(ctx);
    }

    fn unhealthy(&mut self, ctx: &mut Context<Self>, output: &str) {
        self.finished = true;
        let error = match self.runtime.kind() {
            RuntimeKind::Docker => UNHEALTHY_CONTAINER_ERROR,
            RuntimeKind::Process | RuntimeKind::Sim => UNHEALTHY_ERROR,
        };
        tracing::info!(task = %self.task.id, output, "task unhealthy; stopping it");
        self.report(
            TaskState::Failed,
            "unhealthy",
            Some(error.to_string()),
            None,
        );
        self.stop_and_remove(ctx);
    }

    fn report(
        &self,
        state: TaskState,
        message: &str,
        error: Option<String>,
        exit_code: Option<i64>,
    ) {
        let update = TaskStatusUpdate {
            task_id: self.task.id.clone(),
            status: TaskStatus {
                state,
                since_ms: system_now_ms(),
                message: message.to_string(),
                error,
                exit_code,
            },
            runtime: Some(self.runtime.kind().to_string()),
            runtime_id: self.runtime_id.clone(),
            endpoints: (state == TaskState::Running && !self.endpoints.is_empty())
                .then(|| self.endpoints.clone()),
        };
        self.reports.do_send(ReportStatus(update));
    }

    fn attach_or_start(&mut self, ctx: &mut Context<Self>) {
        let reattaching =
            self.restarted || self.adopt_only || self.task.status.state >= TaskState::Starting;
        if let Err(message) = self.choose_endpoints(reattaching) {
            self.finished = true;
            self.report(TaskState::Rejected, "rejected", Some(message), None);
            return;
        }
        let runtime = self.runtime.clone();
        let spec = self.spec();
        let task_id = self.task.id.clone();
        let undelivered = self.undelivered.clone();
        if !reattaching {
            self.report(TaskState::Starting, "starting", None, None);
        }
        async move {
            match runtime.find(&task_id).await {
                Ok(Some(info)) if info.running => {
                    // Adopted after a node restart: its health check must run again.
                    if let Err(error) = runtime.resume_health(&info.runtime_id, &spec).await {
                        tracing::warn!(task = %task_id, %error, "health check not resumed");
                    }
                    return Attached::Running {
                        runtime_id: info.runtime_id,
                    };
                }
                Ok(Some(info)) => {
                    let exit = match info.exit {
                        Some(exit) => exit,
                        None => match runtime.inspect(&info.runtime_id).await {
                            Ok(Some(RunningInfoExit {
                                exit: Some(exit), ..
                            })) => exit,
                            _ => ExitStatus::unknown("exit status unknown"),
                        },
                    };
                    return Attached::Exited {
                        runtime_id: info.runtime_id,
                        exit,
                    };
                }
                Ok(None) if reattaching => return Attached::Vanished,
                Ok(None) => {}
                Err(error) => return Attached::Failed(error.to_string()),
            }
            if let Some(message) = undelivered {
                return Attached::Failed(message);
            }
            match runtime.start(&spec).await {
                Ok(handle) => Attached::Running {
                    runtime_id: handle.runtime_id,
                },
                Err(error @ RuntimeError::ImageNotFound { .. }) => {
                    Attached::Rejected(error.to_string())
                }
                Err(error) => Attached::Failed(error.to_string()),
            }
        }
        .into_actor(self)
        .map(|attached, actor, ctx| match attached {
            Attached::Running { runtime_id } => {
                actor.runtime_id = Some(runtime_id);
                if actor.retiring {
                    actor.report_running_once();
                    actor.stop_and_remove(ctx);
                } else {
                    actor.wait_for_exit(ctx);
                    if actor.may_have_health_check() {
                        // Stays `starting` until the first healthy check (SPEC §7).
                        actor.poll_health(ctx);
                    } else {
                        actor.report_running_once();
                    }
                }
            }
            Attached::Exited { runtime_id, exit } => {
                actor.runtime_id = Some(runtime_id);
                actor.exited(ctx, exit);
            }
            Attached::Vanished => {
                actor.finished = true;
                let message =
                    "the container is gone (it ended while its replica actor or node restarted)";
                actor.report(TaskState::Failed, "failed", Some(message.into()), None);
                actor.remove(ctx);
            }
            Attached::Rejected(message) => {
                actor.finished = true;
                actor.report(TaskState::Rejected, "rejected", Some(message), None);
                actor.remove(ctx);
            }
            Attached::Failed(message) => {
                actor.finished = true;
                actor.report(TaskState::Failed, "failed", Some(message), None);
                actor.remove(ctx);
            }
        })
        .spawn(ctx);
    }

    fn wait_for_exit(&mut self, ctx: &mut Context<Self>) {
        let Some(runtime_id) = self.runtime_id.clone() else {
            return;
        };
        let runtime = self.runtime.clone();
        async move { runtime.wait(&runtime_id).await }
            .into_actor(self)
            .map(|result, actor, ctx| {
                let exit = result.unwrap_or_else(|error| ExitStatus {
                    exit_code: None,
                    message: error.to_string(),
                });
                actor.exited(ctx, exit);
            })
            .spawn(ctx);
    }

    fn exited(&mut self, ctx: &mut Context<Self>, exit: ExitStatus) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.retiring {
            self.report(TaskState::Shutdown, "shutdown", None, exit.exit_code);
        } else if exit.exit_code == Some(0) {
            self.report(TaskState::Complete, "finished", None, Some(0));
        } else {
            let message = format!("task: non-zero exit ({})", exit.message);
            self.report(TaskState::Failed, "failed", Some(message), exit.exit_code);
        }
        self.remove(ctx);
    }

    fn remove(&mut self, ctx: &mut Context<Self>) {
        let Some(runtime_id) = self.runtime_id.clone() else {
            if self.retiring {
                ctx.stop();
            }
            return;
        };
        let runtime = self.runtime.clone();
        async move { runtime.remove(&runtime_id).await }
            .into_actor(self)
            .map(|result, actor, ctx| {
                if let Err(error) = result {
                    tracing::debug!(task = %actor.task.id, %error, "remove failed");
                }
                if actor.retiring {
                    ctx.stop();
                }
            })
            .spawn(ctx);
    }

    fn stop_and_remove(&mut self, ctx: &mut Context<Self>) {
        let Some(runtime_id) = self.runtime_id.clone() else {
            self.finished = true;
            self.report(TaskState::Shutdown, "shutdown", None, None);
            ctx.stop();
            return;
        };
        let runtime = self.runtime.clone();
        let grace_ms = self.task.spec.stop_grace_ms;
        // Out of the routing table first (SPEC §8): no new connection may reach a task that
        // is shutting down; those in flight get the grace period.
        let drain = self.mesh.clone().filter(|_| self.in_mesh());
        let task_id = self.task.id.clone();
        async move {
            if let Some(mesh) = drain {
                if mesh.drained(&task_id, DRAIN_BOUND).await {
                    tokio::time::sleep(DRAIN_SETTLE).await;
                } else {
                    tracing::warn!(task = %task_id, "the routing mesh still routes to a stopping task; stopping it anyway");
                }
            }
            runtime.stop(&runtime_id, grace_ms).await
        }
            .into_actor(self)
            .map(|_, actor, ctx| {
                // The wait future (if any) reports the exit; report here if it is not running.
                if !actor.finished {
                    actor.finished = true;
                    actor.report(TaskState::Shutdown, "shutdown", None, None);
                }
                actor.remove(ctx);
            })
            .spawn(ctx);
    }
}

use crate::runtime::RunningInfo as RunningInfoExit;

impl Actor for ReplicaActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.attach_or_start(ctx);
    }
}

impl Supervised for ReplicaActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!(task = %self.task.id, "replica actor restarting; re-attaching");
        self.restarted = true;
        // The re-attached container is reported `running` again (when healthy, if checked).
        self.running_reported = false;
    }
}

impl Handler<Retire> for ReplicaActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        if self.retiring {
            return;
        }
        self.retiring = true;
        if self.finished {
            self.remove(ctx);
        } else if self.runtime_id.is_some() {
            self.stop_and_remove(ctx);
        }
        // Otherwise attach_or_start is in flight and stops the container when it is known.
    }
}

impl Handler<CrashReplica> for ReplicaActor {
    type Result = ();

    fn handle(&mut self, _: CrashReplica, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests;
