//! Chaos requests, honoured only on nodes started with `--enable-chaos`: stop an actor as if
//! it had crashed, or cut, delay and drop traffic to a peer.

use super::NodeActor;
use crate::actors::dispatcher::StopDispatcher;
use crate::actors::orchestrator::{CrashService, StopOrchestrator};
use crate::actors::raft::CrashRaft;
use crate::actors::scheduler::StopScheduler;
use crate::actors::worker::CrashActor;
use crate::net::message::{ChaosKind, ChaosRequest, ErrorKind, Message as WireMessage, WireError};

/// The error chaos commands get on a node started without `--enable-chaos`.
pub const CHAOS_DISABLED: &str =
    "chaos commands are disabled on this node; start it with --enable-chaos to allow them";

impl NodeActor {
    pub(super) fn chaos(&mut self, request: ChaosRequest) -> WireMessage {
        match request {
            ChaosRequest::SetFault { peer_node_id, rule } => {
                if let Some(transport) = &self.transport {
                    transport.faults().set(&peer_node_id, rule);
                }
                WireMessage::Ack
            }
            ChaosRequest::KillActor { kind, id } => self.kill_actor(kind, id),
        }
    }

    /// Stops one actor as if it had crashed. Leader-only components are started again at
    /// once, as a supervisor would, and reconcile from the store when they start.
    fn kill_actor(&mut self, kind: ChaosKind, id: Option<String>) -> WireMessage {
        let refused =
            |text: String| WireMessage::Error(WireError::new(ErrorKind::BadRequest, text));
        let leader_only = |what: &str| {
            refused(format!(
                "no {what} runs on this node (it runs on the leader only)"
            ))
        };
        match kind {
            ChaosKind::Dispatcher => match self.dispatcher.take() {
                Some(actor) => actor.do_send(StopDispatcher),
                None => return leader_only("dispatcher"),
            },
            ChaosKind::Scheduler => match self.scheduler.take() {
                Some(actor) => actor.do_send(StopScheduler),
                None => return leader_only("scheduler"),
            },
            ChaosKind::Orchestrator => match self.orchestrator.take() {
                Some(actor) => actor.do_send(StopOrchestrator),
                None => return leader_only("orchestrator"),
            },
            ChaosKind::Service => {
                let (Some(orchestrator), Some(service)) = (&self.orchestrator, id) else {
                    return leader_only("service actor (or no service given)");
                };
                orchestrator.do_send(CrashService(service));
                return WireMessage::Ack;
            }
            ChaosKind::Raft => {
                let Some(manager) = &self.manager else {
                    return refused("no raft actor runs on this node (it is not a manager)".into());
                };
                manager.raft.do_send(CrashRaft);
                return WireMessage::Ack;
            }
            ChaosKind::Replica | ChaosKind::Worker => {
                let Some(worker) = &self.worker else {
                    return refused("no worker runs on this node".into());
                };
                match (kind, id) {
                    (ChaosKind::Replica, Some(task_id)) => {
                        worker.do_send(CrashActor::Replica(task_id))
                    }
                    (ChaosKind::Replica, None) => {
                        tracing::warn!("chaos: no task given, no replica to crash")
                    }
                    _ => worker.do_send(CrashActor::Worker),
                }
                return WireMessage::Ack;
            }
        }
        self.start_leader_components();
        WireMessage::Ack
    }
}
