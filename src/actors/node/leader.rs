//! The leader-only components: started when this manager gains leadership (or one of them
//! was killed by chaos), stopped when it loses it. Each does a full reconcile from the store
//! when it starts, so starting one again is always safe.

use actix::prelude::*;

use super::NodeActor;
use crate::actors::dispatcher::{DispatcherActor, StopDispatcher};
use crate::actors::orchestrator::{OrchestratorActor, StopOrchestrator};
use crate::actors::scheduler::{SchedulerActor, StopScheduler};

impl NodeActor {
    /// Starts whichever leader component is not running; a no-op before the manager half and
    /// the transport are attached.
    pub(super) fn start_leader_components(&mut self) {
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
                    manager.keyring.clone(),
                )
                .with_metrics(manager.metrics.clone())
                .start(),
            );
        }
        let arbiter = self.leader_work.get_or_insert_with(Arbiter::new).handle();
        if self.scheduler.is_none() {
            let (store, raft) = (manager.store.clone(), manager.raft.clone());
            let metrics = manager.metrics.clone();
            self.scheduler = Some(SchedulerActor::start_in_arbiter(&arbiter, move |_| {
                SchedulerActor::new(store, raft).with_metrics(metrics)
            }));
        }
        if self.orchestrator.is_none() {
            let (store, raft) = (manager.store.clone(), manager.raft.clone());
            let environment = manager.environment.clone();
            let metrics = manager.metrics.clone();
            self.orchestrator = Some(OrchestratorActor::start_in_arbiter(&arbiter, move |_| {
                OrchestratorActor::new(store, raft, environment).with_metrics(metrics)
            }));
        }
    }

    pub(super) fn stop_leader_components(&mut self) {
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
