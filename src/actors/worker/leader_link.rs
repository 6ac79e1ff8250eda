//! The worker's link to the leader: heartbeats, following the leader between managers, and
//! batches of task status reports.
//!
//! The worker talks to whichever manager it believes leads; a manager that does not lead
//! answers `NotLeader` with the leader's address, and an unreachable one makes the worker try
//! the next manager it knows.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;

use super::{RoleChanged, WorkerActor};
use crate::actors::transport::Request;
use crate::core::store::TaskStatusUpdate;
use crate::net::message::{Heartbeat, Message as WireMessage, RoleChange};
use crate::net::tls::Role;
use crate::net::transport::{Expect, TransportError};

pub use crate::actors::replica::ReportStatus;

/// Time to send a heartbeat (every period, and at once after a `NotLeader`).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Beat;

/// Time to send the unsent status reports.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct FlushStatuses;

/// Refused heartbeats in a row that are normal (a registration not applied yet) before the
/// worker warns about them.
const QUIET_REFUSALS: u32 = 3;

impl WorkerActor {
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

    /// Promoted or demoted: hand the change to whoever composed this node (it keeps the new
    /// credentials and restarts the process in the new role; task processes and containers
    /// survive that and are adopted again). Until it does, heartbeats go on, and each answer
    /// repeats the change, so a failed restart is tried again.
    fn change_role(&mut self, change: RoleChange) {
        tracing::info!(role = %change.role, "role changed; restarting in the new role");
        match &self.role_changes {
            Some(recipient) => recipient.do_send(RoleChanged(change)),
            None => tracing::error!("this worker has no one to report a role change to"),
        }
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
            expect: Expect::Role(Role::Manager),
            message: WireMessage::Heartbeat(Heartbeat {
                description: self.description.clone(),
                // 0 while the files of a saved set's tasks have not come from a leader: it
                // then sends the whole set, files included (see `files`).
                assignments_version: self.files.reported_version(&self.assignments),
                node_id: self.node_id.clone(),
                renewal_csr_der: self
                    .renewal
                    .as_mut()
                    .and_then(|renewal| renewal.request(std::time::SystemTime::now())),
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
                        if let (Some(cert_pem), Some(renewal)) =
                            (ack.renewed_cert_pem, actor.renewal.as_mut())
                        {
                            renewal.accept(cert_pem);
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
                        if actor.refusals > QUIET_REFUSALS {
                            tracing::warn!(%error, "heartbeat refused");
                        } else {
                            tracing::debug!(%error, "heartbeat refused");
                        }
                        actor.try_next_manager();
                    }
                    Ok(Err(error @ TransportError::Revoked { .. })) => {
                        tracing::error!(%error, "this node's certificate is revoked: it was removed from the swarm (join again with a new state directory)");
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

impl Handler<ReportStatus> for WorkerActor {
    type Result = ();

    fn handle(&mut self, ReportStatus(update): ReportStatus, ctx: &mut Context<Self>) {
        // A late report of an earlier state (replicas report asynchronously) must not
        // overwrite a later one that is still unsent.
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
            expect: Expect::Role(Role::Manager),
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
