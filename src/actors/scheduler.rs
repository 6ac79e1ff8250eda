//! The scheduler (leader only): places unassigned tasks on nodes.
//!
//! It is a thin shell over `core::scheduler`, which decides over a read view of the store and
//! returns a plan. Runs are coalesced: events that arrive while a plan is being proposed cause
//! one more run afterwards. Pending reasons are only proposed when they change, so a task that
//! fits nowhere does not make the scheduler wake itself forever.

use actix::prelude::*;

use crate::actors::raft::{Propose, RaftActor, StoreEvents, Subscribe};
use crate::consensus::store_machine::SharedStore;
use crate::core::events::{Delivery, EventCursor};
use crate::metrics::NodeMetrics;

use crate::core::scheduler::scheduling_round;
use crate::core::store::Event;

/// Tasks placed per proposal; bigger backlogs take several rounds.
pub const SCHEDULE_BATCH_MAX: usize = 10_000;

/// Stop the scheduler (leadership lost, or chaos).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopScheduler;

#[derive(Message)]
#[rtype(result = "()")]
struct Run;

/// The scheduler actor. See the module documentation.
pub struct SchedulerActor {
    store: SharedStore,
    raft: Addr<RaftActor>,
    in_flight: bool,
    dirty: bool,
    events: EventCursor,
    metrics: NodeMetrics,
}

impl SchedulerActor {
    /// A scheduler over `store`, proposing through `raft`.
    pub fn new(store: SharedStore, raft: Addr<RaftActor>) -> Self {
        Self {
            store,
            raft,
            in_flight: false,
            dirty: false,
            events: EventCursor::at(0),
            metrics: NodeMetrics::default(),
        }
    }

    /// The same scheduler, timing its rounds into `metrics`.
    pub fn with_metrics(mut self, metrics: NodeMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            self.dirty = true;
            return;
        }
        self.dirty = false;
        let started = std::time::Instant::now();
        let commands = scheduling_round(&self.store.read(), SCHEDULE_BATCH_MAX);
        if commands.is_empty() {
            return;
        }
        self.in_flight = true;
        let (raft, metrics) = (self.raft.clone(), self.metrics.clone());
        async move {
            for command in commands {
                if let Ok(Err(error)) = raft.send(Propose { command }).await {
                    tracing::debug!(%error, "scheduling plan not applied");
                }
            }
            metrics
                .schedule_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        .into_actor(self)
        .map(|_, actor, ctx| {
            actor.in_flight = false;
            if actor.dirty {
                actor.run(ctx);
            }
        })
        .spawn(ctx);
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        // Every run reads the whole backlog: the view starts current to the store as it is.
        self.events = EventCursor::at(self.store.read().applied_index());
        self.raft.do_send(Subscribe {
            events: Some(ctx.address().recipient()),
            leadership: None,
        });
        tracing::info!("scheduler started");
        self.run(ctx);
    }
}

impl Handler<StoreEvents> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, StoreEvents(batch): StoreEvents, ctx: &mut Context<Self>) {
        let events = match self.events.accept(&batch) {
            Delivery::Events(events) => events,
            Delivery::Nothing => return,
            Delivery::Reconcile { missed_from } => {
                // A run reads every unassigned task: it is the full reconcile.
                tracing::debug!(
                    missed_from,
                    "scheduler missed store events; running in full"
                );
                return self.run(ctx);
            }
        };
        let relevant = events.iter().any(|event| {
            matches!(
                event,
                Event::TaskCreated(_)
                    | Event::TaskUpdated(_)
                    | Event::TaskRemoved(_)
                    | Event::NodeChanged { .. }
                    | Event::NodeRemoved { .. }
            )
        });
        if relevant {
            self.run(ctx);
        }
    }
}

impl Handler<Run> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _: Run, ctx: &mut Context<Self>) {
        self.run(ctx);
    }
}

impl Handler<StopScheduler> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _: StopScheduler, ctx: &mut Context<Self>) {
        tracing::info!("scheduler stopped");
        ctx.stop();
    }
}
