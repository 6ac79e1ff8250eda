//! The replica actor: one task's one attempt, driven through a container runtime.
//!
//! It starts the task's container (or finds it, if it already runs), waits for it to exit and
//! reports every state change to the worker, which batches them to the managers. A container's
//! death is the task's failure; the managers replace the task (SPEC §3) and the replica never
//! restarts the container itself. It runs under an actix `Supervisor`: when the actor crashes,
//! `restarting` makes it re-attach to the same container, found by task ID, instead of starting
//! a second one; if the container is gone by then, the task is reported failed.

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::raft::system_now_ms;
use crate::core::model::{Task, TaskState, TaskStatus};
use crate::core::store::TaskStatusUpdate;
use crate::runtime::{ContainerRuntime, ContainerSpec, ExitStatus, RuntimeError};

/// Default time between SIGTERM and SIGKILL (SPEC §5).
pub const STOP_GRACE_MS: u64 = 10_000;

/// The task should no longer run: stop its container (if any), remove it, and end.
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
        }
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
            stop_grace_ms: STOP_GRACE_MS,
        }
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
        };
        self.reports.do_send(ReportStatus(update));
    }

    fn attach_or_start(&mut self, ctx: &mut Context<Self>) {
        let runtime = self.runtime.clone();
        let spec = self.spec();
        let task_id = self.task.id.clone();
        let reattaching =
            self.restarted || self.adopt_only || self.task.status.state >= TaskState::Starting;
        if !reattaching {
            self.report(TaskState::Starting, "starting", None, None);
        }
        async move {
            match runtime.find(&task_id).await {
                Ok(Some(info)) if info.running => {
                    return Attached::Running {
                        runtime_id: info.runtime_id,
                    }
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
                actor.report(TaskState::Running, "running", None, None);
                if actor.retiring {
                    actor.stop_and_remove(ctx);
                } else {
                    actor.wait_for_exit(ctx);
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
        async move { runtime.stop(&runtime_id, STOP_GRACE_MS).await }
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
#[path = "replica_tests.rs"]
mod tests;
