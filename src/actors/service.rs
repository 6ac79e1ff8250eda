//! The service actor (leader only): keeps one service's tasks true to its spec.
//!
//! It reconciles from the store (never from messages about state): on every nudge it takes a
//! read view, asks `core::orchestrator` for a plan, and proposes the plan's commands. Nudges
//! that arrive while a plan is in flight are coalesced into one more reconcile afterwards. A
//! delayed restart (backoff) asks to be woken when it is due. It also drives the service's
//! rolling update (`core::updater`), which needs the same view and the same wake-ups. It runs under an actix
//! `Supervisor`: when it crashes it is restarted with fresh state and reconciles fully.

use std::time::Duration;

use actix::prelude::*;
use rand::rngs::StdRng;

use crate::actors::environment::NodeEnvironment;
use crate::actors::raft::{Propose, RaftActor};
use crate::consensus::store_machine::SharedStore;
use crate::core::orchestrator::reconcile_service;
use crate::core::restart::RestartTracker;
use crate::core::updater::plan_rollout;

/// Something about this service (or its tasks or nodes) changed: reconcile.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Reconcile;

/// Chaos: stop as if the actor had crashed (its supervisor restarts it).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Crash;

/// The service actor. See the module documentation.
pub struct ServiceActor {
    service_id: String,
    store: SharedStore,
    raft: Addr<RaftActor>,
    restarts: RestartTracker,
    rng: StdRng,
    environment: NodeEnvironment,
    in_flight: bool,
    dirty: bool,
    wake: Option<SpawnHandle>,
}

impl ServiceActor {
    /// The actor for `service_id`, drawing its randomness (backoff jitter) from a generator
    /// of its own derived from the node's seed.
    pub fn new(
        service_id: String,
        store: SharedStore,
        raft: Addr<RaftActor>,
        environment: NodeEnvironment,
    ) -> Self {
        Self {
            rng: environment.rng(&format!("service/{service_id}")),
            environment,
            service_id,
            store,
            raft,
            restarts: RestartTracker::new(),
            in_flight: false,
            dirty: false,
            wake: None,
        }
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            self.dirty = true;
            return;
        }
        self.dirty = false;
        let now_ms = self.environment.unix_ms();
        let (plan, rollout) = {
            let store = self.store.read();
            let plan = reconcile_service(
                &store,
                &self.service_id,
                now_ms,
                &mut self.restarts,
                &mut self.rng,
            );
            (
                plan,
                plan_rollout(&store, &self.service_id, now_ms, &mut self.rng),
            )
        };
        let wake_at_ms = match (plan.wake_at_ms, rollout.wake_at_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(wake_at_ms) = wake_at_ms {
            if let Some(handle) = self.wake.take() {
                ctx.cancel_future(handle);
            }
            let delay = Duration::from_millis(wake_at_ms.saturating_sub(now_ms));
            self.wake = Some(ctx.run_later(delay, |actor, ctx| {
                actor.wake = None;
                actor.reconcile(ctx);
            }));
        }
        if plan.is_empty() && rollout.commands.is_empty() {
            return;
        }
        self.in_flight = true;
        let raft = self.raft.clone();
        let mut commands = plan.into_commands();
        commands.extend(rollout.commands);
        async move {
            for command in commands {
                match raft.send(Propose { command }).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(error.to_string()),
                    Err(error) => return Err(error.to_string()),
                }
            }
            Ok(())
        }
        .into_actor(self)
        .map(|result, actor, ctx| {
            actor.in_flight = false;
            if let Err(error) = result {
                // A half-applied plan heals on the next reconcile; try again soon.
                tracing::debug!(service = %actor.service_id, %error, "plan not fully applied");
                actor.dirty = true;
                ctx.run_later(Duration::from_millis(100), |actor, ctx| {
                    actor.reconcile(ctx)
                });
                return;
            }
            if actor.dirty {
                actor.reconcile(ctx);
            }
        })
        .spawn(ctx);
    }
}

impl Actor for ServiceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.reconcile(ctx);
    }
}

impl Supervised for ServiceActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!(service = %self.service_id, "service actor restarting");
        self.restarts = RestartTracker::new();
        self.in_flight = false;
        self.dirty = false;
        self.wake = None;
    }
}

impl Handler<Reconcile> for ServiceActor {
    type Result = ();

    fn handle(&mut self, _: Reconcile, ctx: &mut Context<Self>) {
        self.reconcile(ctx);
    }
}

impl Handler<Crash> for ServiceActor {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
