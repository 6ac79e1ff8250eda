//! The control plane's write planner: what an admin's write turns into, checked against the
//! store as it is now.
//!
//! Each function takes the store (read-only) and the request's arguments and returns the
//! [`Command`]s to propose, in order, with the IDs the command line prints. Nothing is proposed
//! here: the control actor proposes the plan through Raft, where `Store::check` judges each
//! command again at apply time (the store may have moved on in between). New IDs come from the
//! generator passed in, so a seeded run (the whole-cluster simulation) replays exactly.

use std::collections::BTreeMap;

use rand::Rng;

use crate::core::ids;
use crate::core::model::{Availability, Node, NodeRole, NodeStatus, Service};
use crate::core::spec::{ServiceMode, ServiceSpec};
use crate::core::store::{Command, JoinSecret, NodeSpecUpdate, Revocation, RevocationScope, Store};
use crate::core::CoreError;

/// The commands to propose for one write, and the IDs to answer with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WritePlan {
    /// Proposed one after another; the first refused one stops the rest.
    pub commands: Vec<Command>,
    /// Printed by the CLI (a new service's ID, the nodes or services changed).
    pub ids: Vec<String>,
}

/// `service create`: a validated spec under a new ID.
/// Secrets and configs named in the spec are resolved to their IDs and newest versions.
pub fn plan_service_create<R: Rng + ?Sized>(
    store: &Store,
    spec: &ServiceSpec,
    rng: &mut R,
) -> Result<WritePlan, CoreError> {
    let mut spec = spec.clone();
    store.resolve_references(&mut spec)?;
    spec.validate()?;
    let id = ids::new_id(rng);
    let service = Service::new(id.clone(), spec);
    Ok(WritePlan {
        commands: vec![Command::CreateService(service)],
        ids: vec![id],
    })
}

/// `service scale SERVICE=N...`: a spec update per service, each conditional on the version
/// read here, so a concurrent change is refused rather than overwritten.
pub fn plan_service_scale(
    store: &Store,
    targets: &[(String, u64)],
) -> Result<WritePlan, CoreError> {
    let mut plan = WritePlan::default();
    for (query, replicas) in targets {
        let service = store.resolve_service(query)?;
        let ServiceMode::Replicated { .. } = service.spec.mode else {
            return Err(CoreError::BadRequest(format!(
                "{}: scale can only be used with replicated mode",
                service.spec.name
            )));
        };
        let mut spec = service.spec.clone();
        spec.mode = ServiceMode::Replicated {
            replicas: *replicas,
        };
        plan.commands.push(Command::UpdateService {
            service_id: service.id.clone(),
            spec,
            expected_version: Some(service.meta.version),
        });
        plan.ids.push(service.id.clone());
    }
    Ok(plan)
}

/// `service update`: the whole new spec the CLI made from the one it read at
/// `expected_version` (secrets and configs it adds by name resolved as at create). Checked against the store now with the store's own rules (version,
/// spec, mode, name), so a stale or bad update is refused before it is proposed; apply checks
/// it again, should the service move in between.
pub fn plan_service_update(
    store: &Store,
    query: &str,
    spec: &ServiceSpec,
    expected_version: u64,
) -> Result<WritePlan, CoreError> {
    let service = store.resolve_service(query)?;
    let mut spec = spec.clone();
    store.resolve_references(&mut spec)?;
    let command = Command::UpdateService {
        service_id: service.id.clone(),
        spec,
        expected_version: Some(expected_version),
    };
    store.check(&command)?;
    Ok(WritePlan {
        commands: vec![command],
        ids: vec![service.id.clone()],
    })
}

/// Why a rollback the admin asked for happens (`update_status.message`, Docker's words).
pub const MANUAL_ROLLBACK_MESSAGE: &str = "manually requested rollback";

/// `service rollback` / `service update --rollback`: back to the previous spec, which a
/// service that was never updated does not have.
pub fn plan_service_rollback(store: &Store, query: &str) -> Result<WritePlan, CoreError> {
    let service = store.resolve_service(query)?;
    let command = Command::RollbackService {
        service_id: service.id.clone(),
        expected_version: None,
        message: MANUAL_ROLLBACK_MESSAGE.to_string(),
    };
    store.check(&command)?;
    Ok(WritePlan {
        commands: vec![command],
        ids: vec![service.id.clone()],
    })
}

/// `service rm SERVICE...`.
pub fn plan_service_remove(store: &Store, services: &[String]) -> Result<WritePlan, CoreError> {
    let mut plan = WritePlan::default();
    for query in services {
        let service = store.resolve_service(query)?;
        plan.commands.push(Command::RemoveService {
            service_id: service.id.clone(),
        });
        plan.ids.push(service.id.clone());
    }
    Ok(plan)
}

/// `node update`: availability and labels, conditional on the node's version.
pub fn plan_node_update(
    store: &Store,
    query: &str,
    availability: Option<Availability>,
    labels_add: &BTreeMap<String, String>,
    labels_rm: &[String],
) -> Result<WritePlan, CoreError> {
    let node = store.resolve_node(query)?;
    let update = NodeSpecUpdate {
        node_id: node.id.clone(),
        availability,
        role: None,
        labels_add: labels_add.clone(),
        labels_rm: labels_rm.to_vec(),
        expected_version: Some(node.meta.version),
    };
    Ok(WritePlan {
        commands: vec![Command::UpdateNodeSpec(update)],
        ids: vec![node.id.clone()],
    })
}

/// `node rm [--force] NODE...`: managers must be demoted first; a node that is not down needs
/// `--force`. Each node's certificates are revoked before it is removed: should the removal
/// then be refused (the node changed meanwhile), the node is cut off and goes down, and
/// `node rm` can be run again; the other order could leave a removed node unrevoked for ever.
pub fn plan_node_remove(
    store: &Store,
    nodes: &[String],
    force: bool,
) -> Result<WritePlan, CoreError> {
    let mut plan = WritePlan::default();
    for query in nodes {
        let node = store.resolve_node(query)?;
        if node.role == NodeRole::Manager {
            return Err(CoreError::Conflict(format!(
                "node {} is a manager: demote it first (`flotilla node demote {}`), then remove it",
                node.id, node.id
            )));
        }
        if node.status != NodeStatus::Down && !force {
            return Err(CoreError::Conflict(format!(
                "node {} is not down and can't be removed (use --force to remove it anyway)",
                node.id
            )));
        }
        plan.commands.push(Command::RevokeCertificates(Revocation {
            node_id: node.id.clone(),
            scope: RevocationScope::AllCertificates,
        }));
        plan.commands.push(Command::RemoveNode {
            node_id: node.id.clone(),
            force,
        });
        plan.ids.push(node.id.clone());
    }
    Ok(plan)
}

/// `swarm join-token --rotate ROLE`: the new secret is made by the caller (it must come from
/// the operating system's generator, never from a seeded one).
pub fn plan_join_secret_rotation(role: NodeRole, secret: String) -> WritePlan {
    WritePlan {
        commands: vec![Command::RotateJoinSecret {
            role,
            secret: JoinSecret(secret),
        }],
        ids: vec![],
    }
}

/// What `node promote` / `node demote` does to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolePlan {
    /// The node already has the role: nothing to do.
    Unchanged {
        /// The node.
        node_id: String,
    },
    /// The node is a worker in the store but still a Raft member: an earlier demotion
    /// recorded the role and then failed to remove the member. Finish it, or the ghost voter
    /// eats into the quorum for ever.
    FinishDemotion {
        /// The node.
        node_id: String,
        /// Revokes its manager certificates, proposed after the member is removed.
        revocation: Box<Command>,
    },
    /// The node to demote is the leader answering: leadership must move to another manager
    /// first, and the admin asked to run the command again.
    MoveLeadershipFirst {
        /// The refusal to show meanwhile.
        refusal: String,
    },
    /// Record the new role; a demoted manager also leaves the Raft group (after the role, so
    /// that it is never re-added as a voter).
    Change {
        /// The node.
        node_id: String,
        /// The role change to propose (boxed: commands are large).
        command: Box<Command>,
        /// Whether the node's Raft membership must be removed after the command.
        leaves_raft_group: bool,
        /// For a demotion: revokes the node's manager certificates, proposed after the member
        /// is removed (before, a two-manager group could not commit the removal: the demoted
        /// member's votes would already be refused).
        revocation: Option<Box<Command>>,
    },
}

/// Plans one node's role change as answered by the leader `leader_node_id`; `in_raft_group`
/// says whether a node is still a member of the Raft group. Refuses to demote the last
/// manager, or one whose demotion would leave the remaining Raft members without a quorum of
/// reachable ones; a manager outside the Raft group may always be demoted.
pub fn plan_role_change(
    store: &Store,
    query: &str,
    role: NodeRole,
    leader_node_id: &str,
    in_raft_group: impl Fn(&str) -> bool,
) -> Result<RolePlan, CoreError> {
    let node = store.resolve_node(query)?;
    if node.role == role {
        if role == NodeRole::Worker && in_raft_group(&node.id) {
            return Ok(RolePlan::FinishDemotion {
                node_id: node.id.clone(),
                revocation: Box::new(manager_revocation(&node.id)),
            });
        }
        return Ok(RolePlan::Unchanged {
            node_id: node.id.clone(),
        });
    }
    if role == NodeRole::Worker {
        refuse_unsafe_demotion(store, node, &in_raft_group)?;
        if node.id == leader_node_id {
            return Ok(RolePlan::MoveLeadershipFirst {
                refusal: format!(
                    "cannot demote {}: it is the leader; leadership is moving to another manager, run the command again in a moment",
                    node.hostname
                ),
            });
        }
    }
    let update = NodeSpecUpdate {
        node_id: node.id.clone(),
        role: Some(role),
        ..NodeSpecUpdate::default()
    };
    Ok(RolePlan::Change {
        node_id: node.id.clone(),
        command: Box::new(Command::UpdateNodeSpec(update)),
        leaves_raft_group: role == NodeRole::Worker && in_raft_group(&node.id),
        revocation: (role == NodeRole::Worker).then(|| Box::new(manager_revocation(&node.id))),
    })
}

fn manager_revocation(node_id: &str) -> Command {
    Command::RevokeCertificates(Revocation {
        node_id: node_id.to_string(),
        scope: RevocationScope::ManagerCertificates,
    })
}

/// The quorum that matters is the Raft group's: managers outside it (a survivor forced a new
/// cluster, or a demotion half done) hold no vote, so demoting one never risks the quorum.
fn refuse_unsafe_demotion(
    store: &Store,
    node: &Node,
    in_raft_group: &impl Fn(&str) -> bool,
) -> Result<(), CoreError> {
    let voters: Vec<&Node> = store
        .nodes()
        .values()
        .filter(|n| n.role == NodeRole::Manager && in_raft_group(&n.id))
        .collect();
    if !in_raft_group(&node.id) {
        return Ok(());
    }
    if voters.len() <= 1 {
        return Err(CoreError::Conflict(format!(
            "cannot demote {}: it is the last manager of the swarm",
            node.hostname
        )));
    }
    let reachable_others = voters
        .iter()
        .filter(|n| n.id != node.id && n.status == NodeStatus::Ready)
        .count();
    let voters_after = voters.len() - 1;
    if reachable_others < voters_after / 2 + 1 {
        return Err(CoreError::Conflict(format!(
            "cannot demote {}: the {} remaining managers would not have a quorum ({} reachable)",
            node.hostname, voters_after, reachable_others
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "control_plan_tests.rs"]
mod tests;
