//! Read-only commands, answered from the applied store after a linearizable read barrier.

use rustls::pki_types::pem::PemObject;

use super::errors::core;
use crate::core::model::{Node, NodeRole, NodeStatus, Service};
use crate::core::ports::{display_ports, PublishMode};
use crate::core::spec::ServiceMode;
use crate::core::store::Store;
use crate::core::CoreError;
use crate::net::admin::{
    AdminReply, AdminRequest, NodeView, SecretView, ServiceView, TaskView, UpdateStatusView,
    TASK_PAGE_MAX,
};
use crate::net::message::{ErrorKind, WireError};
use crate::net::tls::certificate_digest;
use crate::net::token::JoinToken;

/// A read-only command answered from the store.
pub(super) fn answer_read(
    store: &Store,
    node_id: &str,
    request: &AdminRequest,
    now_leader: &str,
) -> Result<AdminReply, WireError> {
    match request {
        AdminRequest::NodeList => Ok(AdminReply::Nodes(
            store
                .nodes()
                .values()
                .map(|node| {
                    NodeView::of(node, manager_status(node, now_leader), node.id == node_id)
                })
                .collect(),
        )),
        AdminRequest::NodeInspect { nodes } => nodes
            .iter()
            .map(|query| store.resolve_node(query).cloned().map_err(core))
            .collect::<Result<Vec<Node>, _>>()
            .map(AdminReply::NodeDetails),
        AdminRequest::NodeTasks { node } => {
            let node = store
                .resolve_node(node.as_deref().unwrap_or(node_id))
                .map_err(core)?;
            let mut tasks = store.tasks_of_node(&node.id);
            // Grouped like `service ps`: by service and slot, newest first within a slot.
            tasks.sort_by(|a, b| {
                (
                    &a.service_name,
                    a.slot,
                    std::cmp::Reverse(a.meta.created_index),
                )
                    .cmp(&(
                        &b.service_name,
                        b.slot,
                        std::cmp::Reverse(b.meta.created_index),
                    ))
            });
            Ok(AdminReply::Tasks(
                tasks
                    .into_iter()
                    .map(|task| TaskView::of(task, Some(&node.hostname)))
                    .collect(),
            ))
        }
        AdminRequest::ServiceList => Ok(AdminReply::Services(
            store
                .services()
                .values()
                .map(|service| service_view(store, service))
                .collect(),
        )),
        AdminRequest::ServiceInspect { services } => services
            .iter()
            .map(|query| store.resolve_service(query).cloned().map_err(core))
            .collect::<Result<Vec<Service>, _>>()
            .map(AdminReply::ServiceDetails),
        AdminRequest::ServiceTasks {
            services,
            offset,
            limit,
        } => {
            let mut listing = Vec::new();
            for query in services {
                let service = store.resolve_service(query).map_err(core)?;
                listing.extend(store.tasks_of_service(&service.id));
            }
            let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
            let limit = (*limit).min(TASK_PAGE_MAX) as usize;
            let tasks = listing
                .iter()
                .skip(offset)
                .take(limit)
                .map(|task| {
                    let hostname = task
                        .node_id
                        .as_deref()
                        .and_then(|id| store.node(id))
                        .map(|node| node.hostname.as_str());
                    TaskView::of(task, hostname)
                })
                .collect();
            Ok(AdminReply::TaskPage {
                tasks,
                total: listing.len() as u64,
            })
        }
        AdminRequest::JoinToken {
            role,
            rotate: false,
        } => join_token(store, *role).map(AdminReply::Token),
        AdminRequest::SecretList { kind } => Ok(AdminReply::Secrets(
            store
                .secrets(*kind)
                .values()
                .map(|object| secret_view(store, object))
                .collect(),
        )),
        AdminRequest::SecretInspect { kind, names } => names
            .iter()
            .map(|query| {
                let object = store.resolve_secret(*kind, query).map_err(core)?;
                Ok(secret_view(store, object))
            })
            .collect::<Result<Vec<_>, WireError>>()
            .map(AdminReply::Secrets),
        _ => Err(WireError::new(ErrorKind::Internal, "not a read")),
    }
}

fn secret_view(store: &Store, object: &crate::core::secrets::SecretObject) -> SecretView {
    SecretView::of(object, store.services_using(object.kind, &object.id))
}

fn manager_status(node: &Node, leader_node_id: &str) -> Option<&'static str> {
    match node.role {
        NodeRole::Worker => None,
        NodeRole::Manager if node.id == leader_node_id => Some("leader"),
        NodeRole::Manager if node.status == NodeStatus::Ready => Some("reachable"),
        NodeRole::Manager => Some("unreachable"),
    }
}

fn service_view(store: &Store, service: &Service) -> ServiceView {
    let (mode, desired) = match service.spec.mode {
        ServiceMode::Replicated { .. } => ("replicated", store.desired_count(service)),
        ServiceMode::Global => ("global", store.desired_count(service)),
    };
    ServiceView {
        id: service.id.clone(),
        name: service.spec.name.clone(),
        mode: mode.to_string(),
        image: service.spec.image.clone(),
        command: service.spec.command.clone(),
        replicas_running: store.running_count(&service.id),
        replicas_desired: desired,
        created_at: crate::net::admin::rfc3339(service.meta.created_at_ms),
        updated_at: crate::net::admin::rfc3339(service.meta.updated_at_ms),
        update_status: service.update_status.as_ref().map(UpdateStatusView::of),
        ports: display_ports(&service.spec.ports, PublishMode::Ingress),
    }
}

/// The join token for `role`, from the cluster record.
pub fn join_token(store: &Store, role: NodeRole) -> Result<String, WireError> {
    let cluster = store
        .cluster()
        .ok_or_else(|| core(CoreError::NotInitialized))?;
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(cluster.ca_cert_pem.as_bytes())
        .map_err(|e| WireError::new(ErrorKind::Internal, format!("CA certificate: {e}")))?;
    let secret = match role {
        NodeRole::Worker => &cluster.worker_join_secret,
        NodeRole::Manager => &cluster.manager_join_secret,
    };
    Ok(JoinToken::new(certificate_digest(&ca_der), secret.clone()).to_string())
}

/// Whether a request only reads (answered after a read barrier, never proposed).
pub(super) fn is_read(request: &AdminRequest) -> bool {
    matches!(
        request,
        AdminRequest::NodeList
            | AdminRequest::NodeInspect { .. }
            | AdminRequest::NodeTasks { .. }
            | AdminRequest::ServiceList
            | AdminRequest::ServiceInspect { .. }
            | AdminRequest::ServiceTasks { .. }
            | AdminRequest::JoinToken { rotate: false, .. }
            | AdminRequest::SecretList { .. }
            | AdminRequest::SecretInspect { .. }
    )
}
