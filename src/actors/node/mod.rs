//! The node actor: every message that reaches this node goes through it, to the actor that
//! handles it. It also starts the leader-only components (the dispatcher, scheduler and
//! orchestrator) when this manager gains leadership and stops them when it loses it.
//!
//! - [`routing`]: which actor each inbound wire message goes to, and what is refused.
//! - [`leader`]: starting and stopping the leader-only components.
//! - [`chaos`]: chaos requests (`--enable-chaos`): crashing actors, injecting faults.
//! - [`gossip`]: gossip traffic, to the gossip actor.

mod chaos;
mod gossip;
mod leader;
mod routing;

use std::time::Duration;

use actix::prelude::*;

use crate::actors::control::ControlActor;
use crate::actors::dispatcher::DispatcherActor;
use crate::actors::environment::NodeEnvironment;
use crate::actors::gossip::GossipActor;
use crate::actors::orchestrator::OrchestratorActor;
use crate::actors::raft::{LeadershipChanged, RaftActor, Subscribe};
use crate::actors::scheduler::SchedulerActor;
use crate::actors::transport::SendMessage;
use crate::actors::worker::WorkerActor;
use crate::consensus::store_machine::SharedStore;
use crate::net::message::Message as WireMessage;
use crate::net::transport::{Inbound, Transport};

pub use chaos::CHAOS_DISABLED;
pub use routing::NOT_A_MANAGER;

/// Plug the worker half in once it is started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachWorker(pub Addr<WorkerActor>);

/// Plug the gossip actor in once it is started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachGossip(pub Addr<GossipActor>);

/// Plug the transport in once the endpoint is bound (it needs this actor's address first).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachTransport {
    /// The endpoint handle (for fault injection).
    pub transport: Transport,
    /// The transport actor (for the dispatcher's pushes).
    pub sender: Recipient<SendMessage>,
}

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
    /// The cluster's data key (the dispatcher opens secrets with it).
    pub keyring: crate::core::secrets::Keyring,
    /// Where the leader components' timings go.
    pub metrics: crate::metrics::NodeMetrics,
}

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
    gossip: Option<Addr<GossipActor>>,
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
            gossip: None,
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
        // A new leader starts its components only once it applied an entry of its term: on
        // an older view a reconcile could create a second task in a slot its predecessor
        // already filled. Until then (or if it leads a new term without having stepped down
        // in between) nothing leader-only runs.
        let caught_up = leadership.is_leader && leadership.caught_up;
        self.leadership = Some(leadership);
        if caught_up {
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
        if self
            .leadership
            .as_ref()
            .is_some_and(|l| l.is_leader && l.caught_up)
        {
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

impl Handler<AttachGossip> for NodeActor {
    type Result = ();

    fn handle(&mut self, AttachGossip(gossip): AttachGossip, _: &mut Context<Self>) {
        self.gossip = Some(gossip);
    }
}
