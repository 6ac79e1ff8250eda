//! `node promote` / `node demote` on the leader. The rules are `core::control_plan`'s
//! [`plan_role_change`]; here the plan is carried out.

use actix::Addr;

use super::errors::{core, mailbox, wire_error};
use super::routing::RequestContext;
use crate::actors::raft::{
    ChangeMembership, GetStatus, LinearizableRead, Propose, RaftActor, TransferLeadership,
};
use crate::consensus::store_machine::raft_id_of;
use crate::consensus::MembershipChange;
use crate::core::control_plan::{plan_role_change, RolePlan};
use crate::core::model::NodeRole;
use crate::core::store::Command;
use crate::net::admin::AdminReply;
use crate::net::message::{ErrorKind, WireError};

/// The store records the new role; the node learns it from its next heartbeat answer with new
/// credentials and restarts in that role. A promoted node becomes a Raft voter when it first
/// heartbeats as a manager (the dispatcher adds it); a demoted one leaves the Raft group here,
/// right after its role changes in the store. A demotion whose member removal failed is
/// finished by demoting the node again.
pub(super) async fn set_roles(
    context: &RequestContext,
    nodes: &[String],
    role: NodeRole,
) -> Result<AdminReply, WireError> {
    let raft = &context.raft;
    raft.send(LinearizableRead)
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
    let status = raft.send(GetStatus).await.map_err(mailbox)?;
    let in_raft_group = |node_id: &str| {
        let raft_id = raft_id_of(node_id);
        status.voters.contains(&raft_id) || status.learners.contains(&raft_id)
    };
    let mut changed = Vec::new();
    for query in nodes {
        let plan = plan_role_change(
            &context.store.read(),
            query,
            role,
            &context.node_id,
            in_raft_group,
        )
        .map_err(core)?;
        match plan {
            RolePlan::Unchanged { node_id } => changed.push(node_id),
            RolePlan::FinishDemotion {
                node_id,
                revocation,
            } => {
                tracing::info!(node = %node_id, "finishing a demotion: removing its Raft member");
                remove_member(raft, &node_id).await?;
                propose(raft, *revocation).await?;
                changed.push(node_id);
            }
            RolePlan::MoveLeadershipFirst { refusal } => {
                raft.do_send(TransferLeadership { to: None });
                return Err(WireError::new(ErrorKind::Conflict, refusal));
            }
            RolePlan::Change {
                node_id,
                command,
                leaves_raft_group,
                revocation,
            } => {
                propose(raft, *command).await?;
                if leaves_raft_group {
                    remove_member(raft, &node_id).await?;
                }
                if let Some(revocation) = revocation {
                    propose(raft, *revocation).await?;
                }
                changed.push(node_id);
            }
        }
    }
    Ok(AdminReply::Done(changed))
}

async fn propose(raft: &Addr<RaftActor>, command: Command) -> Result<(), WireError> {
    raft.send(Propose { command })
        .await
        .map_err(mailbox)?
        .map_err(wire_error)
        .map(|_| ())
}

async fn remove_member(raft: &Addr<RaftActor>, node_id: &str) -> Result<(), WireError> {
    raft.send(ChangeMembership {
        change: MembershipChange::RemoveMember(raft_id_of(node_id)),
        addr: None,
    })
    .await
    .map_err(mailbox)?
    .map_err(wire_error)
}
