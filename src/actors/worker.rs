//! The worker actor (every node): heartbeats the leader, receives the node's assignment set,
//! and reports task status changes in batches.
//!
//! It talks to whichever manager it believes leads; a manager that does not lead answers
//! `NotLeader` with the leader's address, and an unreachable one makes the worker try the next
//! manager it knows. Task replicas are reconciled from the assignment set by the replica
//! supervisor (see `replica.rs`), which the worker feeds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::transport::Request;
use crate::core::store::TaskStatusUpdate;
use crate::net::message::{AssignmentSet, Heartbeat, Message as WireMessage, NodeDescription};
use crate::net::transport::TransportError;

/// A new assignment set arrived (pushed by the leader or in a heartbeat answer).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyAssignments(pub AssignmentSet);

/// A replica reports a task status change; sent to the managers in the next batch.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportStatus(pub TaskStatusUpdate);

/// Where the worker hands assignment sets for reconciling (the replica supervisor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetAssignmentSink(pub Recipient<ApplyAssignments>);

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
    sink: Option<Recipient<ApplyAssignments>>,
    beat_in_flight: bool,
    /// Latest unsent status per task: bounded by the number of tasks on the node.
    unsent: HashMap<String, TaskStatusUpdate>,
    flush_in_flight: bool,
}

impl WorkerActor {
    /// A worker that heartbeats `managers` every `period`.
    pub fn new(
        description: NodeDescription,
        managers: Vec<SocketAddr>,
        transport: Recipient<Request>,
        period: Duration,
    ) -> Self {
        Self {
            description,
            managers,
            target: 0,
            transport,
            period,
            assignments: AssignmentSet {
                version: 0,
                tasks: Vec::new(),
            },
            sink: None,
            beat_in_flight: false,
            unsent: HashMap::new(),
            flush_in_flight: false,
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

    fn apply(&mut self, set: AssignmentSet) {
        if set.version == self.assignments.version {
            return;
        }
        self.assignments = set.clone();
        if let Some(sink) = &self.sink {
            if sink.try_send(ApplyAssignments(set)).is_err() {
                // The supervisor is busy or restarting; the next heartbeat resends the set.
                self.assignments.version = 0;
            }
        }
    }
}

impl Actor for WorkerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        ctx.notify(Beat);
        ctx.run_interval(self.period, |_, ctx| ctx.notify(Beat));
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
                        actor.learn_managers(&ack.manager_addrs);
                        if let Some(set) = ack.assignments {
                            actor.apply(set);
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
                        tracing::warn!(%error, "heartbeat refused");
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

    fn handle(&mut self, ApplyAssignments(set): ApplyAssignments, _: &mut Context<Self>) {
        self.apply(set);
    }
}

impl Handler<SetAssignmentSink> for WorkerActor {
    type Result = ();

    fn handle(&mut self, SetAssignmentSink(sink): SetAssignmentSink, _: &mut Context<Self>) {
        let _ = sink.try_send(ApplyAssignments(self.assignments.clone()));
        self.sink = Some(sink);
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
