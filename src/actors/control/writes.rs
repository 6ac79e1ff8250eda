//! Commands on the leader: reads after a barrier, roles to `roles`, and writes planned by
//! `core::control_plan` and proposed one command at a time.

use super::errors::{core, mailbox, wire_error};
use super::reads::{answer_read, is_read, join_token};
use super::roles::set_roles;
use super::routing::RequestContext;
use crate::actors::raft::{LinearizableRead, Propose};
use crate::core::control_plan::{self, WritePlan};
use crate::core::secret_plan::{self, NewData};
use crate::core::secrets::DataKey;
use crate::core::CoreError;
use crate::net::admin::{AdminReply, AdminRequest};
use crate::net::message::{ErrorKind, WireError};
use crate::net::token;

/// Carries out `request` on this manager, the leader.
pub(super) async fn on_leader(
    context: &RequestContext,
    request: &AdminRequest,
) -> Result<AdminReply, WireError> {
    let (store, raft, node_id) = (&context.store, &context.raft, &context.node_id);
    if let AdminRequest::NodeSetRole { nodes, role } = request {
        return set_roles(context, nodes, *role).await;
    }
    if super::autolock::handles(request) {
        return super::autolock::on_leader(context, request).await;
    }
    if let AdminRequest::NodeGossip { nodes } = request {
        return super::gossip_views::node_gossip(context, nodes).await;
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
    if let AdminRequest::JoinToken { role, .. } = request {
        return join_token(&store.read(), *role).map(AdminReply::Token);
    }
    Ok(AdminReply::Done(plan.ids))
}

/// The commands a write request turns into, validated against the store as it is now.
fn plan_write(context: &RequestContext, request: &AdminRequest) -> Result<WritePlan, WireError> {
    let store = context.store.read();
    let plan = match request {
        AdminRequest::ServiceCreate { spec } => {
            control_plan::plan_service_create(&store, spec, &mut *context.ids.borrow_mut())
        }
        AdminRequest::SecretCreate {
            kind,
            name,
            labels,
            data,
        } => {
            let key = context.keyring.data_key();
            let data = new_data(&data.0, key.as_deref());
            secret_plan::plan_secret_create(
                &store,
                *kind,
                name,
                labels,
                data,
                &mut *context.ids.borrow_mut(),
            )
        }
        AdminRequest::SecretRemove { kind, names } => {
            secret_plan::plan_secret_remove(&store, *kind, names)
        }
        AdminRequest::SecretRotate { kind, name, data } => {
            let key = context.keyring.data_key();
            secret_plan::plan_secret_rotate(&store, *kind, name, new_data(&data.0, key.as_deref()))
        }
        AdminRequest::ServiceScale { targets } => control_plan::plan_service_scale(&store, targets),
        AdminRequest::ServiceUpdate {
            service,
            spec,
            expected_version,
        } => control_plan::plan_service_update(&store, service, spec, *expected_version),
        AdminRequest::ServiceRollback { service } => {
            control_plan::plan_service_rollback(&store, service)
        }
        AdminRequest::ServiceRemove { services } => {
            control_plan::plan_service_remove(&store, services)
        }
        AdminRequest::NodeUpdate {
            node,
            availability,
            labels_add,
            labels_rm,
        } => control_plan::plan_node_update(&store, node, *availability, labels_add, labels_rm),
        AdminRequest::NodeRemove { nodes, force } => {
            control_plan::plan_node_remove(&store, nodes, *force)
        }
        AdminRequest::JoinToken { role, rotate: true } => {
            let secret = token::generate_secret()
                .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?;
            Ok(control_plan::plan_join_secret_rotation(*role, secret))
        }
        _ => return Err(WireError::new(ErrorKind::Internal, "not a write")),
    };
    plan.map_err(core)
}

fn new_data<'a>(bytes: &'a [u8], key: Option<&'a DataKey>) -> NewData<'a> {
    NewData {
        bytes,
        key,
        now_ms: crate::actors::environment::system_now_ms(),
    }
}
