//! The orchestrator (leader only): supervises one [`ServiceActor`] per service and routes store
//! events to the service actors they concern. On start it reconciles every service, so nothing
//! that happened under the previous leader is missed.

use std::collections::{BTreeSet, HashMap};

use actix::prelude::*;

use crate::actors::environment::NodeEnvironment;
use crate::actors::raft::{RaftActor, StoreEvents, Subscribe};
use crate::actors::service::{Crash, Reconcile, ServiceActor};
use crate::consensus::store_machine::SharedStore;
use crate::core::events::{Delivery, EventCursor};
use crate::core::model::TaskState;
use crate::core::orchestrator::{services_affected_by_node, services_to_reconcile};
use crate::core::store::Event;
use crate::core::updater::waits_for_running;
use crate::metrics::NodeMetrics;

/// Stop the orchestrator and its service actors (leadership lost).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopOrchestrator;

/// Chaos: crash the service actor of a service (by name, ID or prefix).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct CrashService(pub String);

/// The orchestrator actor. See the module documentation.
pub struct OrchestratorActor {
    store: SharedStore,
    raft: Addr<RaftActor>,
    services: HashMap<String, Addr<ServiceActor>>,
    environment: NodeEnvironment,
    events: EventCursor,
    metrics: NodeMetrics,
}

impl OrchestratorActor {
    /// An orchestrator over `store`, proposing through `raft`.
    pub fn new(store: SharedStore, raft: Addr<RaftActor>, environment: NodeEnvironment) -> Self {
        Self {
            store,
            raft,
            services: HashMap::new(),
            environment,
            events: EventCursor::at(0),
            metrics: NodeMetrics::default(),
        }
    }

    /// The same orchestrator, timing its full reconciles into `metrics`.
    pub fn with_metrics(mut self, metrics: NodeMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn nudge(&mut self, service_id: &str) {
        let actor = self
            .services
            .entry(service_id.to_string())
            .or_insert_with(|| {
                let (store, raft, id) = (
                    self.store.clone(),
                    self.raft.clone(),
                    service_id.to_string(),
                );
                let environment = self.environment.clone();
                Supervisor::start(move |_| ServiceActor::new(id, store, raft, environment))
            });
        actor.do_send(Reconcile);
    }

    /// Every service with something to do, from the store as it is now (on start, and when
    /// events were missed); the cursor moves to the index that read covers.
    fn reconcile_all(&mut self) {
        let started = std::time::Instant::now();
        let (all, applied_index) = {
            let store = self.store.read();
            (services_to_reconcile(&store), store.applied_index())
        };
        self.events = EventCursor::at(applied_index);
        for service_id in all {
            self.nudge(&service_id);
        }
        self.retire_finished();
        self.metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Service actors of services that are gone and have no tasks left are stopped for good.
    fn retire_finished(&mut self) {
        let store = self.store.read();
        let gone: Vec<String> = self
            .services
            .keys()
            .filter(|id| store.service(id).is_none() && store.tasks_of_service(id).is_empty())
            .cloned()
            .collect();
        drop(store);
        for id in gone {
            if let Some(actor) = self.services.remove(&id) {
                // With its last address gone, the supervisor does not restart it.
                actor.do_send(Crash);
            }
        }
    }
}

impl Actor for OrchestratorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.raft.do_send(Subscribe {
            events: Some(ctx.address().recipient()),
            leadership: None,
        });
        self.reconcile_all();
        tracing::info!("orchestrator started");
    }
}

impl Handler<StoreEvents> for OrchestratorActor {
    type Result = ();

    fn handle(&mut self, StoreEvents(batch): StoreEvents, _: &mut Context<Self>) {
        let events = match self.events.accept(&batch) {
            Delivery::Events(events) => events,
            Delivery::Nothing => return,
            Delivery::Reconcile { missed_from } => {
                tracing::info!(
                    missed_from,
                    "orchestrator missed store events; reconciling every service"
                );
                return self.reconcile_all();
            }
        };
        let mut services = BTreeSet::new();
        let mut nodes = BTreeSet::new();
        let mut progressed = BTreeSet::new();
        for event in events {
            match event {
                Event::ServiceCreated { service_id }
                | Event::ServiceUpdated { service_id }
                | Event::ServiceRemoved { service_id } => {
                    services.insert(service_id.clone());
                }
                // A worker's progress on a live task changes no plan: skipping it keeps the
                // per-service reconcile (linear in the service's tasks) off the hot path of
                // thousands of status reports.
                // ... unless the service is rolling out: its updater waits for new tasks
                // to run (checked below, against the store, once per batch).
                Event::TaskUpdated(task) if task.is_progress() => {
                    if task.state == TaskState::Running {
                        progressed.insert(task.service_id.clone());
                    }
                }
                Event::TaskCreated(task) | Event::TaskUpdated(task) | Event::TaskRemoved(task) => {
                    services.insert(task.service_id.clone());
                }
                Event::NodeChanged { node_id } | Event::NodeRemoved { node_id } => {
                    nodes.insert(node_id.clone());
                }
                Event::ClusterChanged
                | Event::CertificatesRevoked { .. }
                | Event::SecretChanged { .. }
                | Event::SecretRemoved { .. }
                | Event::AutolockChanged => {}
            }
        }
        if !progressed.is_empty() {
            let store = self.store.read();
            services.extend(
                progressed
                    .into_iter()
                    .filter(|id| waits_for_running(&store, id)),
            );
        }
        if !nodes.is_empty() {
            let store = self.store.read();
            for node_id in &nodes {
                services.extend(services_affected_by_node(&store, node_id));
            }
        }
        for service_id in &services {
            self.nudge(service_id);
        }
        self.retire_finished();
    }
}

impl Handler<CrashService> for OrchestratorActor {
    type Result = Result<(), String>;

    fn handle(&mut self, CrashService(query): CrashService, _: &mut Context<Self>) -> Self::Result {
        let service_id = self
            .store
            .read()
            .resolve_service(&query)
            .map(|service| service.id.clone())
            .map_err(|e| e.to_string())?;
        let actor = self
            .services
            .get(&service_id)
            .ok_or_else(|| format!("no service actor for {query}"))?;
        actor.do_send(Crash);
        Ok(())
    }
}

impl Handler<StopOrchestrator> for OrchestratorActor {
    type Result = ();

    fn handle(&mut self, _: StopOrchestrator, ctx: &mut Context<Self>) {
        for (_, actor) in self.services.drain() {
            actor.do_send(Crash);
        }
        tracing::info!("orchestrator stopped");
        ctx.stop();
    }
}
