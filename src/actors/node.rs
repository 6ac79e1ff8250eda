//! The node actor: every message that reaches this node goes through it, to the actor that
//! handles it. It also starts the leader-only components (the dispatcher) when this manager
//! gains leadership and stops them when it loses it.

use std::time::Duration;

use actix::prelude::*;

use crate::actors::control::{Admit, Control, ControlActor};
use crate::actors::dispatcher::{DispatcherActor, NodeHeartbeat, NodeTaskStatuses, StopDispatcher};
use crate::actors::environment::NodeEnvironment;
use crate::actors::orchestrator::{CrashService, OrchestratorActor, StopOrchestrator};
use crate::actors::raft::{LeadershipChanged, RaftActor, StepRaft, Subscribe};
use crate::actors::scheduler::{SchedulerActor, StopScheduler};
use crate::actors::transport::SendMessage;
use crate::actors::worker::{ApplyAssignments, WorkerActor};
use crate::consensus::store_machine::SharedStore;
use crate::core::model::NodeRole;
use crate::net::message::{ChaosRequest, ErrorKind, Message as WireMessage, WireError};
use crate::net::tls::Role;
use crate::net::transport::{Inbound, Transport};

/// The exact refusal of SPEC §2 for control commands sent to a worker.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

/// The error chaos commands get on a node started without `--enable-chaos`.
pub const CHAOS_DISABLED: &str =
    "chaos commands are disabled on this node; start it with --enable-chaos to allow them";

/// The manager half of a node.
pub struct ManagerParts {
    /// The Raft actor.
    pub raft: Addr<RaftActor>,
    /// The control actor.
    pub control: Addr<ControlActor>,
    /// The applied store.
    pub store: SharedStore,
    /// The clock and seed the leader components run with.
    pub environment: NodeEnvironment,
}

/// Plug the worker half in once it is started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachWorker(pub Addr<WorkerActor>);

/// The node actor. See the module documentation.
pub struct NodeActor {
    manager: Option<ManagerParts>,
    worker: Option<Addr<WorkerActor>>,
    dispatcher: Option<Addr<DispatcherActor>>,
    orchestrator: Option<Addr<OrchestratorActor>>,
    scheduler: Option<Addr<SchedulerActor>>,
    leadership: Option<LeadershipChanged>,
    transport: Option<Transport>,
    transport_actor: Option<Recipient<SendMessage>>,
    heartbeat_period: Duration,
    chaos_enabled: bool,
    /// A thread of its own for the CPU-heavy leader work (reconciling, scheduling), so that
    /// heartbeats, Raft and the transport on the main thread are never starved by it.
    leader_work: Option<Arbiter>,
}

/// Plug the transport in once the endpoint is bound (it needs this actor's address first).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachTransport {
    /// The endpoint handle (for fault injection).
    pub transport: Transport,
    /// The transport actor (for the dispatcher's pushes).
    pub sender: Recipient<SendMessage>,
}

impl NodeActor {
    /// A node actor; `manager` is `None` on workers.
    pub fn new(
        manager: Option<ManagerParts>,
        heartbeat_period: Duration,
        chaos_enabled: bool,
    ) -> Self {
        Self {
            manager,
            worker: None,
            dispatcher: None,
            orchestrator: None,
            scheduler: None,
            leadership: None,
            transport: None,
            transport_actor: None,
            heartbeat_period,
            chaos_enabled,
            leader_work: None,
        }
    }

    fn not_leader(&self) -> WireMessage {
        WireMessage::NotLeader {
            leader_addr: self.leadership.as_ref().and_then(|l| l.leader_addr.clone()),
        }
    }

    fn route(&mut self, inbound: Inbound) -> ResponseFuture<Option<WireMessage>> {
        let error = |kind, text: &str| {
            let reply = Some(WireMessage::Error(WireError::new(kind, text)));
            Box::pin(async move { reply }) as ResponseFuture<Option<WireMessage>>
        };
        let ready = |reply: Option<WireMessage>| {
            Box::pin(async move { reply }) as ResponseFuture<Option<WireMessage>>
        };
        let from = inbound.from.clone();
        let remote = inbound.remote;
        let expects_reply = inbound.expects_reply;
        match inbound.message {
            WireMessage::Ping { nonce, payload } => {
                ready(Some(WireMessage::Pong { nonce, payload }))
            }
            WireMessage::Raft(envelope) => {
                let Some(manager) = &self.manager else {
                    return error(ErrorKind::NotManager, NOT_A_MANAGER);
                };
                // Queued at once, in arrival order (the ordered channel's order must survive).
                // Snapshots come as requests: the sender must learn they arrived.
                let raft = manager.raft.clone();
                if !expects_reply {
                    raft.do_send(StepRaft { envelope, remote });
                    return ready(None);
                }
                Box::pin(async move {
                    let stepped = raft.send(StepRaft { envelope, remote }).await.is_ok();
                    stepped.then_some(WireMessage::Ack)
                })
            }
            WireMessage::Control(request) | WireMessage::Forwarded(request) => {
                let Some(manager) = &self.manager else {
                    return error(ErrorKind::NotManager, NOT_A_MANAGER);
                };
                let control = manager.control.clone();
                Box::pin(async move {
                    Some(match control.send(Control { request }).await {
                        Ok(Ok(reply)) => WireMessage::ControlReply(reply),
                        Ok(Err(error)) => WireMessage::Error(error),
                        Err(e) => {
                            WireMessage::Error(WireError::new(ErrorKind::Internal, e.to_string()))
                        }
                    })
                })
            }
            WireMessage::Join(request) => {
                let Some(manager) = &self.manager else {
                    return error(ErrorKind::NotManager, NOT_A_MANAGER);
                };
                let control = manager.control.clone();
                Box::pin(async move {
                    Some(match control.send(Admit { request }).await {
                        Ok(Ok(accepted)) => WireMessage::JoinAccepted(accepted),
                        Ok(Err(error)) => WireMessage::Error(error),
                        Err(e) => {
                            WireMessage::Error(WireError::new(ErrorKind::Internal, e.to_string()))
                        }
                    })
                })
            }
            WireMessage::Heartbeat(heartbeat) => {
                let (Some(dispatcher), Some(peer)) = (&self.dispatcher, from) else {
                    return ready(Some(self.not_leader()));
                };
                let role = if peer.role == Role::Manager {
                    NodeRole::Manager
                } else {
                    NodeRole::Worker
                };
                let dispatcher = dispatcher.clone();
                Box::pin(async move {
                    let beat = NodeHeartbeat {
                        node_id: peer.node_id,
                        role,
                        heartbeat,
                    };
                    Some(match dispatcher.send(beat).await {
                        Ok(Ok(ack)) => WireMessage::HeartbeatAck(ack),
                        Ok(Err(error)) => WireMessage::Error(error),
                        Err(_) => WireMessage::NotLeader { leader_addr: None },
                    })
                })
            }
            WireMessage::TaskStatuses(updates) => {
                let (Some(dispatcher), Some(peer)) = (&self.dispatcher, from) else {
                    return ready(Some(self.not_leader()));
                };
                let dispatcher = dispatcher.clone();
                Box::pin(async move {
                    let report = NodeTaskStatuses {
                        node_id: peer.node_id,
                        updates,
                    };
                    Some(match dispatcher.send(report).await {
                        Ok(Ok(())) => WireMessage::Ack,
                        Ok(Err(error)) => WireMessage::Error(error),
                        Err(_) => WireMessage::NotLeader { leader_addr: None },
                    })
                })
            }
            WireMessage::Assignments(set) => {
                if let Some(worker) = &self.worker {
                    worker.do_send(ApplyAssignments(set));
                }
                ready(None)
            }
            WireMessage::Chaos(request) => {
                if !self.chaos_enabled {
                    return error(ErrorKind::Forbidden, CHAOS_DISABLED);
                }
                ready(Some(self.chaos(request)))
            }
            other => {
                let text = format!("{} is not a request", other.kind_name());
                error(ErrorKind::BadRequest, &text)
            }
        }
    }

    fn chaos(&mut self, request: ChaosRequest) -> WireMessage {
        match request {
            ChaosRequest::SetFault { peer_node_id, rule } => {
                if let Some(transport) = &self.transport {
                    transport.faults().set(&peer_node_id, rule);
                }
                WireMessage::Ack
            }
            ChaosRequest::KillActor { kind, id } => self.kill_actor(&kind, id),
        }
    }

    /// Stops one actor as if it had crashed. Leader-only components are started again at
    /// once, as a supervisor would, and reconcile from the store when they start.
    fn kill_actor(&mut self, kind: &str, id: Option<String>) -> WireMessage {
        let refused =
            |text: String| WireMessage::Error(WireError::new(ErrorKind::BadRequest, text));
        let leader_only = |what: &str| {
            refused(format!(
                "no {what} runs on this node (it runs on the leader only)"
            ))
        };
        match kind {
            "dispatcher" => match self.dispatcher.take() {
                Some(actor) => actor.do_send(StopDispatcher),
                None => return leader_only("dispatcher"),
            },
            "scheduler" => match self.scheduler.take() {
                Some(actor) => actor.do_send(StopScheduler),
                None => return leader_only("scheduler"),
            },
            "orchestrator" => match self.orchestrator.take() {
                Some(actor) => actor.do_send(StopOrchestrator),
                None => return leader_only("orchestrator"),
            },
            "service" => {
                let (Some(orchestrator), Some(service)) = (&self.orchestrator, id) else {
                    return leader_only("service actor (or no service given)");
                };
                orchestrator.do_send(CrashService(service));
                return WireMessage::Ack;
            }
            "raft" => {
                let Some(manager) = &self.manager else {
                    return refused("no raft actor runs on this node (it is not a manager)".into());
                };
                manager.raft.do_send(crate::actors::raft::CrashRaft);
                return WireMessage::Ack;
            }
            "replica" | "worker" => {
                let Some(worker) = &self.worker else {
                    return refused("no worker runs on this node".into());
                };
                worker.do_send(crate::actors::worker::CrashActor {
                    kind: kind.to_string(),
                    id,
                });
                return WireMessage::Ack;
            }
            other => return refused(format!("cannot kill actor kind {other:?}")),
        }
        self.start_leader_components();
        WireMessage::Ack
    }

    fn start_leader_components(&mut self) {
        let (Some(manager), Some(sender)) = (&self.manager, &self.transport_actor) else {
            return;
        };
        if self.dispatcher.is_none() {
            self.dispatcher = Some(
                DispatcherActor::new(
                    manager.store.clone(),
                    manager.raft.clone(),
                    sender.clone(),
                    self.heartbeat_period,
                    manager.environment.clone(),
                )
                .start(),
            );
        }
        let arbiter = self.leader_work.get_or_insert_with(Arbiter::new).handle();
        if self.scheduler.is_none() {
            let (store, raft) = (manager.store.clone(), manager.raft.clone());
            self.scheduler = Some(SchedulerActor::start_in_arbiter(&arbiter, move |_| {
                SchedulerActor::new(store, raft)
            }));
        }
        if self.orchestrator.is_none() {
            let (store, raft) = (manager.store.clone(), manager.raft.clone());
            let environment = manager.environment.clone();
            self.orchestrator = Some(OrchestratorActor::start_in_arbiter(&arbiter, move |_| {
                OrchestratorActor::new(store, raft, environment)
            }));
        }
    }

    fn stop_leader_components(&mut self) {
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.do_send(StopDispatcher);
        }
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.do_send(StopScheduler);
        }
        if let Some(orchestrator) = self.orchestrator.take() {
            orchestrator.do_send(StopOrchestrator);
        }
    }
}

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        if let Some(manager) = &self.manager {
            manager.raft.do_send(Subscribe {
                events: None,
                leadership: Some(ctx.address().recipient()),
            });
        }
    }
}

impl Handler<Inbound> for NodeActor {
    type Result = ResponseFuture<Option<WireMessage>>;

    fn handle(&mut self, inbound: Inbound, _: &mut Context<Self>) -> Self::Result {
        self.route(inbound)
    }
}

impl Handler<LeadershipChanged> for NodeActor {
    type Result = ();

    fn handle(&mut self, leadership: LeadershipChanged, _: &mut Context<Self>) {
        let is_leader = leadership.is_leader;
        self.leadership = Some(leadership);
        if is_leader {
            self.start_leader_components();
        } else {
            self.stop_leader_components();
        }
    }
}

impl Handler<AttachTransport> for NodeActor {
    type Result = ();

    fn handle(&mut self, attach: AttachTransport, _: &mut Context<Self>) {
        self.transport = Some(attach.transport);
        self.transport_actor = Some(attach.sender);
        if self.leadership.as_ref().is_some_and(|l| l.is_leader) {
            self.start_leader_components();
        }
    }
}

impl Handler<AttachWorker> for NodeActor {
    type Result = ();

    fn handle(&mut self, AttachWorker(worker): AttachWorker, _: &mut Context<Self>) {
        self.worker = Some(worker);
    }
}
