//! `Store::check`: whether a command may apply to the current state (nothing changes).

use std::collections::BTreeSet;

use super::Command;
use crate::core::error::CoreError;
use crate::core::model::{Meta, NodeRole, NodeStatus, TaskState};
use crate::core::ports::PortConfig;
use crate::core::spec::ServiceMode;
use crate::core::store::Store;

fn not_found(kind: &'static str, id: &str) -> CoreError {
    CoreError::NotFound {
        kind,
        query: id.to_string(),
    }
}

fn check_version(
    kind: &'static str,
    id: &str,
    meta: &Meta,
    expected: Option<u64>,
) -> Result<(), CoreError> {
    match expected {
        Some(expected) if expected != meta.version => Err(CoreError::VersionMismatch {
            kind,
            id: id.to_string(),
            expected,
            found: meta.version,
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// A published port is unique in the cluster (per protocol, SPEC §8): refuses `ports` of
    /// `service_id` when another service publishes one of them.
    fn check_ports_free(&self, service_id: &str, ports: &[PortConfig]) -> Result<(), CoreError> {
        for port in ports {
            let owner = self.services.values().find(|other| {
                other.id != service_id
                    && other.spec.ports.iter().any(|theirs| {
                        theirs.published == port.published && theirs.protocol == port.protocol
                    })
            });
            if let Some(owner) = owner {
                return Err(CoreError::PortInUse {
                    port: port.published,
                    protocol: port.protocol.to_string(),
                    service: owner.spec.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Validates a command against the current state without changing anything; run by the
    /// leader before proposing and again by [`Store::apply`] on every replica.
    pub fn check(&self, command: &Command) -> Result<(), CoreError> {
        match command {
            Command::InitCluster(_) => match self.cluster {
                Some(_) => Err(CoreError::AlreadyInitialized),
                None => Ok(()),
            },
            Command::RotateJoinSecret { secret, .. } => {
                if self.cluster.is_none() {
                    return Err(CoreError::NotInitialized);
                }
                if secret.0.is_empty() {
                    return Err(CoreError::InvalidCommand("empty join secret".into()));
                }
                Ok(())
            }
            Command::UpsertNode(node) => {
                if node.id.is_empty() {
                    return Err(CoreError::InvalidCommand("node without ID".into()));
                }
                Ok(())
            }
            Command::UpdateNodeStatus { node_id, .. } => self
                .node(node_id)
                .map(|_| ())
                .ok_or_else(|| not_found("node", node_id)),
            Command::UpdateNodeSpec(update) => {
                let node = self
                    .node(&update.node_id)
                    .ok_or_else(|| not_found("node", &update.node_id))?;
                check_version("node", &node.id, &node.meta, update.expected_version)?;
                if update.labels_add.keys().any(String::is_empty) {
                    return Err(CoreError::InvalidCommand("empty label key".into()));
                }
                Ok(())
            }
            Command::RemoveNode { node_id, force } => {
                let node = self
                    .node(node_id)
                    .ok_or_else(|| not_found("node", node_id))?;
                if node.role == NodeRole::Manager {
                    return Err(CoreError::InvalidCommand(format!(
                        "node {node_id} is a cluster manager; demote it before removal"
                    )));
                }
                if !force && node.status != NodeStatus::Down {
                    return Err(CoreError::NodeNotDown(node_id.clone()));
                }
                Ok(())
            }
            Command::CreateService(service) => {
                if service.id.is_empty() {
                    return Err(CoreError::InvalidCommand("service without ID".into()));
                }
                if self.services.contains_key(&service.id) {
                    return Err(CoreError::AlreadyExists {
                        kind: "service",
                        id: service.id.clone(),
                    });
                }
                if self.index.service_by_name.contains_key(&service.spec.name) {
                    return Err(CoreError::NameInUse(service.spec.name.clone()));
                }
                service.spec.validate()?;
                self.check_references(&service.spec)?;
                self.check_ports_free(&service.id, &service.spec.ports)
            }
            Command::UpdateService {
                service_id,
                spec,
                expected_version,
            } => {
                let service = self
                    .service(service_id)
                    .ok_or_else(|| not_found("service", service_id))?;
                check_version("service", service_id, &service.meta, *expected_version)?;
                spec.validate()?;
                let was_global = service.spec.mode == ServiceMode::Global;
                if was_global != (spec.mode == ServiceMode::Global) {
                    return Err(CoreError::InvalidCommand(
                        "a service's mode can't be changed".into(),
                    ));
                }
                self.check_references(spec)?;
                self.check_ports_free(service_id, &spec.ports)?;
                match self.index.service_by_name.get(&spec.name) {
                    Some(owner) if owner != service_id => {
                        Err(CoreError::NameInUse(spec.name.clone()))
                    }
                    _ => Ok(()),
                }
            }
            Command::RollbackService {
                service_id,
                expected_version,
                ..
            } => {
                let service = self
                    .service(service_id)
                    .ok_or_else(|| not_found("service", service_id))?;
                check_version("service", service_id, &service.meta, *expected_version)?;
                match &service.previous_spec {
                    None => Err(CoreError::BadRequest(format!(
                        "service {} does not have a previous spec to roll back to",
                        service.spec.name
                    ))),
                    Some(previous) => {
                        self.check_references(&previous.spec)?;
                        self.check_ports_free(service_id, &previous.spec.ports)?;
                        match self.index.service_by_name.get(&previous.spec.name) {
                            Some(owner) if owner != service_id => {
                                Err(CoreError::NameInUse(previous.spec.name.clone()))
                            }
                            _ => Ok(()),
                        }
                    }
                }
            }
            Command::SetUpdateStatus { service_id, .. } => self
                .service(service_id)
                .map(|_| ())
                .ok_or_else(|| not_found("service", service_id)),
            Command::RemoveService { service_id } => self
                .service(service_id)
                .map(|_| ())
                .ok_or_else(|| not_found("service", service_id)),
            Command::CreateTasks(tasks) => {
                let mut seen = BTreeSet::new();
                for task in tasks {
                    if task.id.is_empty()
                        || self.tasks.contains_key(&task.id)
                        || !seen.insert(&task.id)
                    {
                        return Err(CoreError::AlreadyExists {
                            kind: "task",
                            id: task.id.clone(),
                        });
                    }
                }
                Ok(())
            }
            Command::SetTaskDesiredStates(items) => {
                match items.iter().find(|(_, state)| *state < TaskState::Running) {
                    Some((id, state)) => Err(CoreError::InvalidCommand(format!(
                        "desired state {} for task {id}",
                        state.as_str()
                    ))),
                    None => Ok(()),
                }
            }
            Command::AssignTasks(_)
            | Command::UpdateTaskStatuses(_)
            | Command::RemoveTasks(_)
            | Command::SetPendingReasons(_) => Ok(()),
            // A node removed meanwhile stays removed.
            Command::RevokeCertificates(revocation) => {
                if revocation.node_id.is_empty() {
                    return Err(CoreError::InvalidCommand(
                        "revocation without a node".into(),
                    ));
                }
                Ok(())
            }
            Command::RefreshNode(refresh) => self
                .node(&refresh.node_id)
                .map(|_| ())
                .ok_or_else(|| not_found("node", &refresh.node_id)),
            Command::CreateSecret(object) => self.check_create_secret(object),
            Command::RemoveSecret { kind, id } => self.check_remove_secret(*kind, id),
            Command::RotateSecret { kind, id, version } => {
                self.check_rotate_secret(*kind, id, version)
            }
            Command::SetAutolock(_) => self.cluster().map(|_| ()).ok_or(CoreError::NotInitialized),
        }
    }
}
