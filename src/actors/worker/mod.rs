//! The worker actor (every node): heartbeats the leader, receives the node's assignment set,
//! and reports task status changes in batches.
//!
//! Task replicas are reconciled from the assignment set by the replica supervisor (see
//! `replica.rs`), which the worker feeds; which replicas to start or retire, and which
//! containers are orphans, is decided in [`crate::core::assignment`]. This actor keeps the
//! mailbox, the timers and the I/O.
//!
//! - [`leader_link`]: heartbeats, following the leader, status batches.
//! - [`persist`]: the saved copy of the assignment set (never its files).
//! - `files`: the secrets and configs delivered with the set, in memory only.

mod files;
mod leader_link;
pub mod persist;
mod renewal;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::WeakAddr;

pub use leader_link::ReportStatus;
pub use renewal::CredentialsRenewed;

use crate::actors::environment::system_now_ms;
use crate::actors::replica::{CrashReplica, ReplicaActor, Retire};
use crate::actors::transport::Request;
use crate::core::assignment::{self, Arrival, AssignmentSet};
use crate::core::model::{TaskState, TaskStatus};
use crate::core::rollout::STOP_GRACE_MS_DEFAULT;
use crate::core::store::TaskStatusUpdate;
use crate::net::mesh::Mesh;
use crate::net::message::{NodeDescription, RoleChange};
use crate::runtime::ContainerRuntime;

/// A new assignment set arrived (pushed by the leader or in a heartbeat answer).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyAssignments(pub AssignmentSet);

/// Chaos: crash the worker actor itself or one replica actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum CrashActor {
    /// The worker actor (its supervisor restarts it).
    Worker,
    /// The replica actor of this task ID.
    Replica(String),
}

/// The runtime is ready (selecting it may take a Docker ping); replicas start from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachRuntime(pub Arc<dyn ContainerRuntime>);

/// The node is shutting down cleanly: stop every task it runs (as dockerd does without
/// live-restore). Answered when they are stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAllTasks {
    /// Grace period per task between SIGTERM and SIGKILL.
    pub grace_ms: u64,
}

/// Ask for the latest assignment set (for `node ps` style checks and tests).
#[derive(Message)]
#[rtype(result = "AssignmentSet")]
pub struct GetAssignments;

/// Sent by the worker (not handled by it): the leader promoted or demoted this node. The
/// receiver, given with [`WorkerActor::with_role_changes`], belongs to whoever composed the
/// node; the daemon's keeps the new credentials and restarts the process in the new role.
/// The worker cannot do that itself: restarting a node is the composition root's business.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RoleChanged(pub RoleChange);

/// The worker actor. See the module documentation.
pub struct WorkerActor {
    /// This node's ID (from its certificate): the only node whose assignment sets it applies.
    node_id: String,
    description: NodeDescription,
    managers: Vec<SocketAddr>,
    target: usize,
    transport: Recipient<Request>,
    role_changes: Option<Recipient<RoleChanged>>,
    renewal: Option<renewal::Renewal>,
    /// The node's routing mesh, handed to replicas (they drain out of it before stopping).
    mesh: Option<Mesh>,
    period: Duration,
    /// The held set, without its files (they are in `files`).
    assignments: AssignmentSet,
    /// The secrets and configs the leader delivered for the held set's tasks, in memory only.
    files: files::HeldFiles,
    /// Whether `assignments` came from the leader (not only from the state directory).
    authoritative: bool,
    state_dir: PathBuf,
    runtime: Option<Arc<dyn ContainerRuntime>>,
    replicas: HashMap<String, Addr<ReplicaActor>>,
    /// Replicas told to retire that are still draining or stopping their container. Weak, so
    /// that their supervisors let them end; while one lives, its container is not an orphan
    /// and its task is not settled for it.
    retiring: HashMap<String, WeakAddr<ReplicaActor>>,
    beat_in_flight: bool,
    beat_timer: Option<SpawnHandle>,
    refusals: u32,
    /// Latest unsent status per task: bounded by the number of tasks on the node.
    unsent: HashMap<String, TaskStatusUpdate>,
    flush_in_flight: bool,
    /// Whether the assignment set is being saved, and whether a newer one waits to be.
    saving: bool,
    save_again: bool,
}

impl WorkerActor {
    /// The node's advertise IP, where tasks' published target ports are bound.
    fn host_ip(&self) -> Option<std::net::IpAddr> {
        self.description
            .addr
            .parse::<SocketAddr>()
            .map(|addr| addr.ip())
            .ok()
    }

    /// A worker that heartbeats `managers` every `period`. Without
    /// [`with_role_changes`](Self::with_role_changes), a promotion or demotion is only logged.
    pub fn new(
        node_id: String,
        description: NodeDescription,
        managers: Vec<SocketAddr>,
        transport: Recipient<Request>,
        period: Duration,
        state_dir: PathBuf,
    ) -> Self {
        // The last set the leader sent survives restarts, so replicas re-attach at once. A
        // saved set naming another node (a state directory copied between nodes) is not ours.
        let assignments = persist::load_assignments(&state_dir)
            .filter(|set| set.node_id == node_id || set.node_id.is_empty())
            .map(|mut set| {
                set.node_id = node_id.clone();
                set
            })
            .unwrap_or_else(|| AssignmentSet::empty(&node_id));
        Self {
            node_id,
            description,
            managers,
            target: 0,
            transport,
            role_changes: None,
            renewal: None,
            mesh: None,
            period,
            assignments,
            files: files::HeldFiles::default(),
            authoritative: false,
            state_dir,
            runtime: None,
            replicas: HashMap::new(),
            retiring: HashMap::new(),
            beat_in_flight: false,
            beat_timer: None,
            refusals: 0,
            unsent: HashMap::new(),
            flush_in_flight: false,
            saving: false,
            save_again: false,
        }
    }

    /// Renew `credentials` (this node's) when they are due, handing the new ones to `keeper`
    /// (see [`CredentialsRenewed`]). A certificate without a readable identity is not renewed.
    pub fn with_renewal(
        mut self,
        credentials: crate::net::tls::Credentials,
        keeper: Recipient<CredentialsRenewed>,
    ) -> Self {
        match renewal::Renewal::new(credentials, keeper) {
            Ok(renewal) => self.renewal = Some(renewal),
            Err(error) => tracing::warn!(%error, "certificate renewal disabled"),
        }
        self
    }

    /// Give replicas the node's routing mesh to drain out of before they stop.
    pub fn with_mesh(mut self, mesh: Mesh) -> Self {
        self.mesh = Some(mesh);
        self
    }

    /// Where to report a promotion or demotion (see [`RoleChanged`]).
    pub fn with_role_changes(mut self, recipient: Recipient<RoleChanged>) -> Self {
        self.role_changes = Some(recipient);
        self
    }

    fn apply(&mut self, ctx: &mut Context<Self>, mut set: AssignmentSet) {
        match assignment::judge(&self.node_id, &self.assignments, &set) {
            Arrival::NotOurs => {
                tracing::warn!(
                    named = %set.node_id,
                    sequence = set.sequence,
                    "assignment set for another node refused"
                );
            }
            Arrival::Stale => {
                tracing::debug!(
                    sequence = set.sequence,
                    held = self.assignments.sequence,
                    "older assignment set ignored"
                );
            }
            Arrival::Confirm => {
                self.assignments.sequence = set.sequence;
                let had_files = self.files.delivered_by_leader();
                self.files.take(set.files, &self.assignments);
                // The same set, but now the leader's: what only its set may do (the orphan
                // sweep, settling stopped tasks) is due, and its files are here.
                if !std::mem::replace(&mut self.authoritative, true) || !had_files {
                    self.reconcile(ctx);
                }
            }
            Arrival::Replace => {
                self.authoritative = true;
                let files = std::mem::take(&mut set.files);
                self.assignments = set;
                self.files.take(files, &self.assignments);
                self.persist(ctx);
                self.reconcile(ctx);
            }
        }
    }

    /// Carries out the replica plan for the set held (see [`assignment::plan_replicas`]).
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        self.retiring
            .retain(|_, replica| replica.upgrade().is_some());
        let plan = assignment::plan_replicas(
            &self.assignments,
            self.replicas
                .keys()
                .chain(self.retiring.keys())
                .map(String::as_str),
            self.authoritative,
        );
        for task in plan.start {
            let task_id = task.id.clone();
            let (runtime, reports) = (runtime.clone(), ctx.address().recipient());
            let adopt_only = plan.adopt_only;
            let host_ip = self.host_ip();
            let mesh = self.mesh.clone();
            let files = self.files.for_task(&task);
            if let Some(message) = &files.undelivered {
                if !adopt_only {
                    tracing::warn!(task = %task_id, "{message}; the task fails to start");
                }
            }
            let replica = Supervisor::start(move |_| {
                let mut replica =
                    ReplicaActor::new(task, runtime, reports).with_files(files.files.clone());
                if let Some(message) = files.undelivered.clone() {
                    replica = replica.with_undelivered(message);
                }
                if let Some(ip) = host_ip {
                    replica = replica.with_host_ip(ip);
                }
                if let Some(mesh) = mesh {
                    replica = replica.with_mesh(mesh);
                }
                if adopt_only {
                    replica.adopt_only()
                } else {
                    replica
                }
            });
            self.replicas.insert(task_id, replica);
        }
        for task_id in plan.retire {
            if let Some(replica) = self.replicas.remove(&task_id) {
                // With the worker's address gone, the supervisor lets it end for good.
                replica.do_send(Retire);
                self.retiring.insert(task_id, replica.downgrade());
            }
        }
        for task_id in plan.settle {
            tracing::info!(task = %task_id, "reporting a stopped task this node no longer holds");
            ctx.address().do_send(ReportStatus(TaskStatusUpdate {
                task_id,
                status: TaskStatus {
                    state: TaskState::Shutdown,
                    since_ms: system_now_ms(),
                    message: "shutdown".to_string(),
                    error: None,
                    exit_code: None,
                },
                runtime: Some(runtime.kind().to_string()),
                runtime_id: None,
                endpoints: None,
            }));
        }
        if plan.sweep_orphans {
            self.remove_orphans(ctx, runtime);
        }
    }

    /// Whether a replica actor (running or still retiring) holds `task_id`'s container.
    fn has_replica(&self, task_id: &str) -> bool {
        self.replicas.contains_key(task_id)
            || self
                .retiring
                .get(task_id)
                .is_some_and(|replica| replica.upgrade().is_some())
    }

    /// Removes containers of this node whose task has no replica actor, decided when the
    /// listing returns (see [`assignment::orphans`] for why).
    fn remove_orphans(&mut self, ctx: &mut Context<Self>, runtime: Arc<dyn ContainerRuntime>) {
        let listing = runtime.clone();
        async move { listing.list().await }
            .into_actor(self)
            .map(move |found, actor, ctx| {
                let Ok(found) = found else {
                    return;
                };
                let orphans = assignment::orphans(
                    found,
                    |info| info.task_id.as_str(),
                    |task_id| actor.has_replica(task_id),
                );
                if orphans.is_empty() {
                    return;
                }
                async move {
                    for info in orphans {
                        tracing::info!(task = %info.task_id, "removing a container of a task this node no longer has");
                        if info.running {
                            // An orphan's task (and so its grace period) is unknown here.
                            let _ = runtime.stop(&info.runtime_id, STOP_GRACE_MS_DEFAULT).await;
                        }
                        let _ = runtime.remove(&info.runtime_id).await;
                    }
                }
                .into_actor(actor)
                .spawn(ctx);
            })
            .spawn(ctx);
    }
}

impl Actor for WorkerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        ctx.notify(leader_link::Beat);
        self.beat_timer =
            Some(ctx.run_interval(self.period, |_, ctx| ctx.notify(leader_link::Beat)));
    }
}

impl Supervised for WorkerActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Replica actors live on under their own supervisors; the restarted worker adopts them
        // again from the assignment set (their addresses are kept) and resumes heartbeats.
        tracing::info!("worker actor restarting");
        self.beat_in_flight = false;
        self.flush_in_flight = false;
        // The restart dropped the save's completion; save again on the next set.
        self.saving = false;
    }
}

impl Handler<ApplyAssignments> for WorkerActor {
    type Result = ();

    fn handle(&mut self, ApplyAssignments(set): ApplyAssignments, ctx: &mut Context<Self>) {
        self.apply(ctx, set);
    }
}

impl Handler<AttachRuntime> for WorkerActor {
    type Result = ();

    fn handle(&mut self, AttachRuntime(runtime): AttachRuntime, ctx: &mut Context<Self>) {
        self.runtime = Some(runtime);
        self.reconcile(ctx);
    }
}

impl Handler<StopAllTasks> for WorkerActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, stop: StopAllTasks, _: &mut Context<Self>) -> Self::Result {
        // No replica may start anything from now on.
        self.replicas.clear();
        self.retiring.clear();
        let runtime = self.runtime.take();
        Box::pin(
            async move {
                let Some(runtime) = runtime else {
                    return;
                };
                let Ok(found) = runtime.list().await else {
                    return;
                };
                let stops = found.into_iter().map(|info| {
                    let runtime = runtime.clone();
                    async move {
                        if info.running {
                            let _ = runtime.stop(&info.runtime_id, stop.grace_ms).await;
                        }
                        let _ = runtime.remove(&info.runtime_id).await;
                    }
                });
                futures::future::join_all(stops).await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<CrashActor> for WorkerActor {
    type Result = ();

    fn handle(&mut self, crash: CrashActor, ctx: &mut Context<Self>) {
        match crash {
            CrashActor::Replica(task_id) => match self.replicas.get(&task_id) {
                Some(replica) => replica.do_send(CrashReplica),
                None => tracing::warn!(task = %task_id, "chaos: no replica actor for that task"),
            },
            CrashActor::Worker => ctx.stop(),
        }
    }
}

impl Handler<GetAssignments> for WorkerActor {
    type Result = MessageResult<GetAssignments>;

    fn handle(&mut self, _: GetAssignments, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.assignments.clone())
    }
}
