//! Commands on the leader: reads after a barrier, roles to `roles`, and writes planned by
//! `core::control_plan` and proposed one command at a time.

use super::errors::{core, mailbox, wire_error};
use super::reads::{answer_read, is_read, join_token};
use super::roles::set_roles;
use super::routing::RequestContext;
use crate::actors::raft::{LinearizableRead, Propose};
use crate::core::control_plan::{self, WritePlan};
use crate::core::CoreError;
use crate::net::control::{ControlReply, ControlRequest};
use crate::net::message::{ErrorKind, WireError};
use crate::net::token;

/// Carries out `request` on this manager, the leader.
pub(super) async fn on_leader(
    context: &RequestContext,
    request: &ControlRequest,
) -> Result<ControlReply, WireError> {
    let (store, raft, node_id) = (&context.store, &context.raft, &context.node_id);
    if let ControlRequest::NodeSetRole { nodes, role } = request {
        return set_roles(context, nodes, *role).await;
    }
    if is_read(request) {
        raft.send(LinearizableRead)
            .await
            .map_err(mailbox)?
            .map_err(wire_error)?;
        let store = store.read();
        if store.cluster().is_none() {
            // `init` has not committed the cluster record yet: an empty answer would mislead.
            return Err(core(CoreError::NotInitialized));
        }
        return answer_read(&store, node_id, request, node_id);
    }
    let plan = plan_write(context, request)?;
    for command in plan.commands {
        raft.send(Propose { command })
            .await
            .map_err(mailbox)?
            .map_err(wire_error)?;
    }
    if let ControlRequest::JoinToken { role, .. } = request {
        return join_token(&store.read(), *role).map(ControlReply::Token);
    }
    Ok(ControlReply::Done(plan.ids))
}

/// The commands a write request turns into, validated against the store as it is now.
fn plan_write(context: &RequestContext, request: &ControlRequest) -> Result<WritePlan, WireError> {
    let store = context.store.read();
    let plan = match request {
        ControlRequest::ServiceCreate { spec } => {
            control_plan::plan_service_create(spec, &mut *context.ids.borrow_mut())
        }
        ControlRequest::ServiceScale { targets } => {
            control_plan::plan_service_scale(&store, targets)
        }
        ControlRequest::ServiceRemove { services } => {
            control_plan::plan_service_remove(&store, services)
        }
        ControlRequest::NodeUpdate {
            node,
            availability,
            labels_add,
            labels_rm,
        } => control_plan::plan_node_update(&store, node, *availability, labels_add, labels_rm),
        ControlRequest::NodeRemove { nodes, force } => {
            control_plan::plan_node_remove(&store, nodes, *force)
        }
        ControlRequest::JoinToken { role, rotate: true } => {
            let secret = token::generate_secret()
                .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?;
            Ok(control_plan::plan_join_secret_rotation(*role, secret))
        }
        _ => return Err(WireError::new(ErrorKind::Internal, "not a write")),
    };
    plan.map_err(core)
}
