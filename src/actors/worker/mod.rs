//! The worker actor (every node): heartbeats the leader, receives the node's assignment set,
//! and reports task status changes in batches.
//!
//! It talks to whichever manager it believes leads; a manager that does not lead answers
//! `NotLeader` with the leader's address, and an unreachable one makes the worker try the next
//! manager it knows. Task replicas are reconciled from the assignment set by the replica
//! supervisor (see `replica.rs`), which the worker feeds.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::replica::{CrashReplica, ReplicaActor, Retire, STOP_GRACE_MS};
use crate::actors::transport::Request;
use crate::core::model::TaskState;
use crate::core::store::TaskStatusUpdate;
use crate::net::message::{
    AssignmentSet, Heartbeat, Message as WireMessage, NodeDescription, RoleChange,
};
use crate::net::transport::TransportError;
use crate::runtime::{ContainerRuntime, RuntimeKind};

/// A new assignment set arrived (pushed by the leader or in a heartbeat answer).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyAssignments(pub AssignmentSet);

/// A replica reports a task status change; sent to the managers in the next batch.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportStatus(pub TaskStatusUpdate);

/// Chaos: crash the worker actor itself (`worker`) or one replica actor (`replica`, by task ID).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CrashActor {
    /// `worker` or `replica`.
    pub kind: String,
    /// The task ID, for `replica`.
    pub id: Option<String>,
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

#[derive(Message)]
#[rtype(result = "()")]
struct Beat;

#[derive(Message)]
#[rtype(result = "()")]
struct FlushStatuses;

/// The worker actor. See the module documentation.
pub struct WorkerActor {
    description: NodeDescription,
    managers: Vec<SocketAddr>,
    target: usize,
    transport: Recipient<Request>,
    period: Duration,
    assignments: AssignmentSet,
    /// Whether `assignments` came from the leader (not only from the state directory).
    authoritative: bool,
    state_dir: PathBuf,
    runtime: Option<Arc<dyn ContainerRuntime>>,
    replicas: HashMap<String, Addr<ReplicaActor>>,
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
    /// A worker that heartbeats `managers` every `period`.
    pub fn new(
        description: NodeDescription,
        managers: Vec<SocketAddr>,
        transport: Recipient<Request>,
        period: Duration,
        state_dir: PathBuf,
    ) -> Self {
        // The last set the leader sent survives restarts, so replicas re-attach at once.
        let assignments = load_assignments(&state_dir).unwrap_or(AssignmentSet {
            version: 0,
            tasks: Vec::new(),
        });
        Self {
            description,
            managers,
            target: 0,
            transport,
            period,
            assignments,
            authoritative: false,
            state_dir,
            runtime: None,
            replicas: HashMap::new(),
            beat_in_flight: false,
            beat_timer: None,
            refusals: 0,
            unsent: HashMap::new(),
            flush_in_flight: false,
            saving: false,
            save_again: false,
        }
    }

    fn current_manager(&self) -> Option<SocketAddr> {
        self.managers
            .get(self.target % self.managers.len().max(1))
            .copied()
    }

    fn try_next_manager(&mut self) {
        self.target = self.target.wrapping_add(1);
    }

    fn follow_leader(&mut self, leader_addr: Option<String>) {
        match leader_addr.and_then(|addr| addr.parse::<SocketAddr>().ok()) {
            Some(leader) => match self.managers.iter().position(|m| *m == leader) {
                Some(index) => self.target = index,
                None => {
                    self.managers.push(leader);
                    self.target = self.managers.len() - 1;
                }
            },
            None => self.try_next_manager(),
        }
    }

    fn learn_managers(&mut self, addrs: &[String]) {
        let current = self.current_manager();
        let mut learned: Vec<SocketAddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
        if learned.is_empty() {
            return;
        }
        learned.sort();
        learned.dedup();
        self.managers = learned;
        self.target = current
            .and_then(|c| self.managers.iter().position(|m| *m == c))
            .unwrap_or(0);
    }

    fn apply(&mut self, ctx: &mut Context<Self>, set: AssignmentSet) {
        let changed = set.version != self.assignments.version;
        self.authoritative = true;
        if !changed {
            return;
        }
        self.assignments = set;
        self.persist(ctx);
        self.reconcile(ctx);
    }

    /// Saves the assignment set in the background (the write waits for the disk, and
    /// heartbeats must not wait with it); sets that arrive meanwhile are coalesced into one more
    /// save of the latest. Skipped for the sim runtime, whose containers die with the process,
    /// so there is nothing to re-attach after a restart.
    fn persist(&mut self, ctx: &mut Context<Self>) {
        if self
            .runtime
            .as_ref()
            .is_some_and(|runtime| runtime.kind() == RuntimeKind::Sim)
        {
            return;
        }
        if self.saving {
            self.save_again = true;
            return;
        }
        self.saving = true;
        self.save_again = false;
        let (state_dir, set) = (self.state_dir.clone(), self.assignments.clone());
        actix_rt::task::spawn_blocking(move || save_assignments(&state_dir, &set))
            .into_actor(self)
            .map(|result, actor, ctx| {
                actor.saving = false;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "cannot save the assignment set"),
                    Err(error) => tracing::warn!(%error, "assignment save task failed"),
                }
                if actor.save_again {
                    actor.persist(ctx);
                }
            })
            .spawn(ctx);
    }

    /// Starts replicas for assigned tasks, retires those no longer wanted, and (once the set
    /// is the leader's) removes containers of tasks this node no longer has.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        let mut wanted = HashSet::new();
        for task in &self.assignments.tasks {
            if task.desired_state != TaskState::Running || task.status.state.is_terminal() {
                continue;
            }
            wanted.insert(task.id.clone());
            if !self.replicas.contains_key(&task.id) {
                let (task, runtime) = (task.clone(), runtime.clone());
                let task_id = task.id.clone();
                let reports = ctx.address().recipient();
                // Until the leader has spoken, the set is the one saved before this node went
                // down: its tasks may have run already, so only re-attach to them.
                let adopt_only = !self.authoritative;
                let replica = Supervisor::start(move |_| {
                    let replica = ReplicaActor::new(task, runtime, reports);
                    if adopt_only {
                        replica.adopt_only()
                    } else {
                        replica
                    }
                });
                self.replicas.insert(task_id, replica);
            }
        }
        let retired: Vec<String> = self
            .replicas
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for task_id in retired {
            if let Some(replica) = self.replicas.remove(&task_id) {
                // With the worker's address gone, the supervisor lets it end for good.
                replica.do_send(Retire);
            }
        }
        if self.authoritative {
            self.remove_orphans(ctx, runtime);
        }
    }

    /// Removes containers of this node whose task has no replica actor. Which containers are
    /// orphans is decided against the replicas the worker has *when the listing returns*, not
    /// when it was asked for: a newer assignment set may have started replicas meanwhile, and
    /// a sweep deciding on an older set would remove their fresh containers (seen as tasks
    /// failing right after they started when a service was created or scaled).
    fn remove_orphans(&mut self, ctx: &mut Context<Self>, runtime: Arc<dyn ContainerRuntime>) {
        let listing = runtime.clone();
        async move { listing.list().await }
            .into_actor(self)
            .map(move |found, actor, ctx| {
                let Ok(found) = found else {
                    return;
                };
                let orphans: Vec<_> = found
                    .into_iter()
                    .filter(|info| !actor.replicas.contains_key(&info.task_id))
                    .collect();
                if orphans.is_empty() {
                    return;
                }
                async move {
                    for info in orphans {
                        tracing::info!(task = %info.task_id, "removing a container of a task this node no longer has");
                        if info.running {
                            let _ = runtime.stop(&info.runtime_id, STOP_GRACE_MS).await;
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

impl WorkerActor {
    /// The leader decides the heartbeat period (it judges liveness by it).
    fn adopt_period(&mut self, ctx: &mut Context<Self>, period_ms: u64) {
        let period = Duration::from_millis(period_ms.max(10));
        if period == self.period {
            return;
        }
        tracing::info!(period_ms, "heartbeat period set by the leader");
        self.period = period;
        if let Some(timer) = self.beat_timer.take() {
            ctx.cancel_future(timer);
        }
        self.beat_timer = Some(ctx.run_interval(period, |_, ctx| ctx.notify(Beat)));
    }

    /// Promoted or demoted: keep the new credentials and role, then restart this process as
    /// `flotilla-node start` so every actor comes up in the new role. Task processes and
    /// containers survive the restart and are adopted again.
    fn change_role(&mut self, change: RoleChange) {
        tracing::info!(role = %change.role, "role changed; restarting in the new role");
        if let Err(error) = crate::node::daemon::restart_in_role(&self.state_dir, change) {
            tracing::error!(%error, "cannot restart in the new role");
        }
    }
}

const ASSIGNMENTS_FILE: &str = "assignments.json";

fn load_assignments(state_dir: &std::path::Path) -> Option<AssignmentSet> {
    let text = std::fs::read(state_dir.join(ASSIGNMENTS_FILE)).ok()?;
    match serde_json::from_slice(&text) {
        Ok(set) => Some(set),
        Err(error) => {
            tracing::warn!(%error, "ignoring an unreadable assignment set");
            None
        }
    }
}

fn save_assignments(state_dir: &std::path::Path, set: &AssignmentSet) -> Result<(), String> {
    let bytes = serde_json::to_vec(set).map_err(|e| e.to_string())?;
    crate::node::state::write_private(&state_dir.join(ASSIGNMENTS_FILE), &bytes)
        .map_err(|e| e.to_string())
}

impl Actor for WorkerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        ctx.notify(Beat);
        self.beat_timer = Some(ctx.run_interval(self.period, |_, ctx| ctx.notify(Beat)));
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

impl Handler<Beat> for WorkerActor {
    type Result = ();

    fn handle(&mut self, _: Beat, ctx: &mut Context<Self>) {
        if self.beat_in_flight {
            return;
        }
        let Some(manager) = self.current_manager() else {
            return;
        };
        self.beat_in_flight = true;
        let request = Request {
            to: manager,
            message: WireMessage::Heartbeat(Heartbeat {
                description: self.description.clone(),
                assignments_version: self.assignments.version,
            }),
            timeout: (self.period * 2).min(Duration::from_secs(5)),
        };
        self.transport
            .send(request)
            .into_actor(self)
            .map(|result, actor, ctx| {
                actor.beat_in_flight = false;
                match result {
                    Ok(Ok(WireMessage::HeartbeatAck(ack))) => {
                        actor.refusals = 0;
                        if let Some(change) = ack.role_change {
                            actor.change_role(change);
                            return;
                        }
                        actor.learn_managers(&ack.manager_addrs);
                        actor.adopt_period(ctx, ack.period_ms);
                        match ack.assignments {
                            Some(set) => actor.apply(ctx, set),
                            // The leader confirmed our version: it is authoritative.
                            None if !actor.authoritative => {
                                actor.authoritative = true;
                                actor.reconcile(ctx);
                            }
                            None => {}
                        }
                        if !actor.unsent.is_empty() {
                            ctx.notify(FlushStatuses);
                        }
                    }
                    Ok(Ok(WireMessage::NotLeader { leader_addr })) => {
                        actor.follow_leader(leader_addr);
                        ctx.notify(Beat);
                    }
                    Ok(Ok(other)) => {
                        tracing::debug!(reply = other.kind_name(), "unexpected heartbeat answer");
                    }
                    Ok(Err(TransportError::Remote(error))) => {
                        // Normal for a moment after init or join, until the registration
                        // is applied; worth a warning only if it lasts.
                        actor.refusals += 1;
                        if actor.refusals > 3 {
                            tracing::warn!(%error, "heartbeat refused");
                        } else {
                            tracing::debug!(%error, "heartbeat refused");
                        }
                        actor.try_next_manager();
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "heartbeat failed; trying another manager");
                        actor.try_next_manager();
                    }
                    Err(error) => tracing::warn!(%error, "transport actor unavailable"),
                }
            })
            .spawn(ctx);
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
        match (crash.kind.as_str(), crash.id) {
            ("replica", Some(task_id)) => match self.replicas.get(&task_id) {
                Some(replica) => replica.do_send(CrashReplica),
                None => tracing::warn!(task = %task_id, "chaos: no replica actor for that task"),
            },
            ("worker", _) => ctx.stop(),
            (kind, id) => tracing::warn!(kind, ?id, "chaos: nothing to crash"),
        }
    }
}

impl Handler<GetAssignments> for WorkerActor {
    type Result = MessageResult<GetAssignments>;

    fn handle(&mut self, _: GetAssignments, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.assignments.clone())
    }
}

impl Handler<ReportStatus> for WorkerActor {
    type Result = ();

    fn handle(&mut self, ReportStatus(update): ReportStatus, ctx: &mut Context<Self>) {
        let keep = match self.unsent.get(&update.task_id) {
            Some(previous) => update.status.state >= previous.status.state,
            None => true,
        };
        if keep {
            self.unsent.insert(update.task_id.clone(), update);
        }
        ctx.notify(FlushStatuses);
    }
}

impl Handler<FlushStatuses> for WorkerActor {
    type Result = ();

    fn handle(&mut self, _: FlushStatuses, ctx: &mut Context<Self>) {
        if self.flush_in_flight || self.unsent.is_empty() {
            return;
        }
        let Some(manager) = self.current_manager() else {
            return;
        };
        self.flush_in_flight = true;
        let batch: Vec<TaskStatusUpdate> = self.unsent.drain().map(|(_, update)| update).collect();
        let request = Request {
            to: manager,
            message: WireMessage::TaskStatuses(batch.clone()),
            timeout: Duration::from_secs(5),
        };
        self.transport
            .send(request)
            .into_actor(self)
            .map(move |result, actor, ctx| {
                actor.flush_in_flight = false;
                let delivered = matches!(result, Ok(Ok(WireMessage::Ack)));
                if !delivered {
                    if let Ok(Ok(WireMessage::NotLeader { leader_addr })) = result {
                        actor.follow_leader(leader_addr);
                    }
                    // Put back what was not delivered, unless newer news arrived meanwhile.
                    for update in batch {
                        actor.unsent.entry(update.task_id.clone()).or_insert(update);
                    }
                    return;
                }
                if !actor.unsent.is_empty() {
                    ctx.notify(FlushStatuses);
                }
            })
            .spawn(ctx);
    }
}
