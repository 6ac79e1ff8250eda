//! What a manager does with an admin write: the same `flotilla::core::control_plan` calls as
//! the control actor, with IDs from the leader's seeded generator. `join` is the admission
//! path's node record (the control actor builds it inline).

use flotilla::core::control_plan::{
    plan_node_remove, plan_node_update, plan_service_create, plan_service_remove,
    plan_service_scale, WritePlan,
};
use flotilla::core::model::{Availability, Node, NodeDescription, NodeRole, NodeStatus, Resources};
use flotilla::core::rollout::UpdateOrder;
use flotilla::core::spec::{ServiceMode, ServiceSpec};
use flotilla::core::store::{Command, Store};
use rand::Rng;

use crate::messages::AdminOp;

/// The commands an admin write turns into, validated against the store as it is now.
pub fn plan_admin_write<R: Rng + ?Sized>(
    store: &Store,
    op: &AdminOp,
    rng: &mut R,
) -> Result<Vec<Command>, String> {
    let plan: Result<WritePlan, _> = match op {
        AdminOp::Join { node_id } => {
            return Ok(vec![Command::UpsertNode(Node {
                id: node_id.clone(),
                hostname: node_id.clone(),
                role: NodeRole::Worker,
                status: NodeStatus::Unknown,
                availability: Availability::Active,
                labels: Default::default(),
                addr: description_of(node_id).addr,
                engine_version: String::new(),
                resources: Default::default(),
                meta: Default::default(),
            })])
        }
        AdminOp::ServiceCreate { name, replicas } => {
            let mut spec = ServiceSpec::new(name, "busybox");
            spec.mode = ServiceMode::Replicated {
                replicas: *replicas,
            };
            plan_service_create(store, &spec, rng)
        }
        AdminOp::ServiceScale { name, replicas } => {
            plan_service_scale(store, &[(name.clone(), *replicas)])
        }
        AdminOp::ServiceRemove { name } => plan_service_remove(store, std::slice::from_ref(name)),
        AdminOp::ServiceUpdate {
            name,
            image,
            start_first,
            parallelism,
        } => {
            // As the CLI does: read the service, change the spec, send it with the version read.
            let service = store
                .service_by_name(name)
                .ok_or_else(|| format!("no such service: {name}"))?;
            let mut spec = service.spec.clone();
            spec.image = image.clone();
            spec.update.parallelism = *parallelism;
            spec.update.monitor_ms = 500;
            spec.update.order = if *start_first {
                UpdateOrder::StartFirst
            } else {
                UpdateOrder::StopFirst
            };
            return Ok(vec![Command::UpdateService {
                service_id: service.id.clone(),
                spec,
                expected_version: Some(service.meta.version),
            }]);
        }
        AdminOp::NodeAvailability {
            node_id,
            availability,
        } => plan_node_update(
            store,
            node_id,
            Some(*availability),
            &Default::default(),
            &[],
        ),
        AdminOp::NodeRemove { node_id } => {
            plan_node_remove(store, std::slice::from_ref(node_id), false)
        }
    };
    plan.map(|plan| plan.commands).map_err(|e| e.to_string())
}

/// What a simulated worker reports about itself in every heartbeat.
pub fn description_of(node_id: &str) -> NodeDescription {
    NodeDescription {
        hostname: node_id.to_string(),
        addr: format!("sim-{node_id}:4242"),
        engine_version: "sim".to_string(),
        resources: Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        },
        labels: Default::default(),
    }
}
